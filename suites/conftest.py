"""Suites are collected by the smart_conformance pytest plugin; fixtures live in smart_conformance.plugin."""
