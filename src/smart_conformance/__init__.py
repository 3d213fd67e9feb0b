"""Headless conformance harness for SMART on FHIR payer Patient Access APIs."""

__version__ = "0.1.0"
