"""Structural validation of FHIR resources against the base specification's models.

Uses the maintained ``fhir.resources`` package (pydantic v2). Its FHIR 4.0.1 (R4) models only exist in releases up to
6.1, which are built on pydantic v1 and unmaintained since 2021; from 7.0 the package ships R5, R4B and STU3. R4B
(4.3.0) is the R4 technical correction release: it changed the medication-definition, evidence and subscription
resources and left Patient, Coverage, ExplanationOfBenefit, Organization and Practitioner, and every data type they
use, as in R4. So the R4B models judge the CARIN resource types exactly as R4 does (cardinality, data types, primitive
formats, unknown elements); they do not judge terminology bindings or CARIN profiles.
"""

from __future__ import annotations

from functools import cache
from typing import Any

FHIR_RELEASE = "R4B models (same definitions as R4 4.0.1 for the CARIN types)"


@cache
def _model(resource_type: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        return get_fhir_model_class(resource_type)
    except KeyError:
        return None


def problems(resource: dict[str, Any], limit: int = 5) -> list[str]:
    """What makes ``resource`` invalid FHIR (empty when valid); an unknown resourceType is itself a problem."""
    from pydantic import ValidationError

    rtype = resource.get("resourceType")
    model = _model(str(rtype)) if isinstance(rtype, str) else None
    if model is None:
        return [f"resourceType {rtype!r} is not a FHIR resource type"]
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        out = []
        for error in exc.errors()[:limit]:
            where = ".".join(str(p) for p in error.get("loc", ())) or "(resource)"
            out.append(f"{where}: {error.get('msg', '')}".splitlines()[0][:200])
        return out
    return []
