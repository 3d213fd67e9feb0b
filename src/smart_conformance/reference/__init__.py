"""Embedded reference payer server: a conformant SMART App Launch 2.2 + FHIR R4 server with switchable faults."""
