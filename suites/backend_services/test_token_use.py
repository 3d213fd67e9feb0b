"""Using the backend token: system-scoped reads work for the granted types and nothing else

SMART App Launch 2.2 §Backend Services, Access FHIR API: the resource server validates the token and ensures its scope
covers the requested resource. A search of each granted type works (HTTP 200 Bundle); a type outside the granted
scopes is refused (401/403/404) or at least gets no data, judged next to a granted read with the same token that
worked (the positive control).
"""

from __future__ import annotations

import time

import pytest

from smart_conformance.checks import could_not_check, expect, not_applicable
from smart_conformance.config import Target
from smart_conformance.smart.backend import (
    BackendSession,
    Grant,
    granted_types,
    has_resources,
    must_have_token,
    outside_types,
    supported_types,
    system_search,
)
from smart_conformance.smart.discovery import Document
from smart_conformance.testplan import Fault, Needs, needs, proves


def _granted(backend: BackendSession, grant: Grant) -> list[str]:
    return granted_types(grant.scope if grant.scope is not None else backend.scopes)


@pytest.mark.requirement("BACKEND-10")
@proves(Fault.SYSTEM_TOKENS_REFUSED)
def test_system_read_of_granted_types(backend: BackendSession, live_backend_grant: Grant, target: Target) -> None:
    """A search (_count=1) of every resource type the granted system scopes name answers HTTP 200 with a Bundle."""
    token = must_have_token(live_backend_grant, "no token to read with")
    types = _granted(backend, live_backend_grant)
    if not types:
        not_applicable("the granted scope names no concrete resource type (only wildcards)")
    for rtype in types:
        response = system_search(backend.http, target.fhir_base_url, rtype, token)
        try:
            body = response.json()
        except ValueError:
            body = None
        expect(response.status_code == 200 and isinstance(body, dict) and body.get("resourceType") == "Bundle",
               expected=f"GET {rtype}?_count=1 with the system token: HTTP 200 with a Bundle (scope "
                        f"{live_backend_grant.scope or backend.scopes})",
               actual=f"HTTP {response.status_code}", exchange=backend.http.exchange_for(response))


@pytest.mark.requirement("BACKEND-10")
@proves(Fault.BACKEND_SCOPE_WIDENED, Fault.SYSTEM_SCOPE_NOT_ENFORCED)
@needs(Needs.SYSTEM_READ)
def test_system_read_outside_scopes_refused(backend: BackendSession, live_backend_grant: Grant, target: Target,
                                            capability_statement: Document) -> None:
    """A type the CapabilityStatement offers but the requested system scopes do not cover: refused or given no data;
    a granted type read with the same token works (positive control)."""
    token = must_have_token(live_backend_grant, "no token to read with")
    outside = outside_types(supported_types(capability_statement.json), backend.scopes)
    if not outside:
        not_applicable("every resource type the CapabilityStatement lists is within the requested system scopes")
    granted = _granted(backend, live_backend_grant)
    if not granted:
        not_applicable("the granted scope names no concrete resource type for the positive control")
    control = system_search(backend.http, target.fhir_base_url, granted[0], token)
    if control.status_code != 200:
        could_not_check(f"positive control failed: GET {granted[0]} with the system token gave HTTP "
                        f"{control.status_code}, so a refusal of another type proves nothing")
    rtype = outside[0]
    response = system_search(backend.http, target.fhir_base_url, rtype, token)
    expect(not has_resources(response, rtype),
           expected=f"GET {rtype} (outside the granted system scopes) refused with 401/403/404, or without {rtype} "
                    "data", actual=f"HTTP {response.status_code} with {rtype} resources",
           exchange=backend.http.exchange_for(response))


MAX_EXPIRY_WAIT = 30  # seconds this check will wait for a backend token to expire; longer-lived tokens: n/a
EXPIRY_GRACE = 5  # clock skew and caching the resource server may add
EXPIRY_POLL_S = 1.0  # how often the token is tried while it should be dying


@pytest.mark.requirement("BACKEND-10")
def test_backend_token_refused_after_expiry(backend: BackendSession, target: Target) -> None:
    """A short-lived backend token (expires_in at most 30 s) stops working once expired: a granted read that worked
    with it is refused (401) within 5 s after expires_in. Longer-lived tokens: not applicable (too long to wait)."""
    grant = backend.good()  # a token of its own, so its clock starts now
    token = must_have_token(grant, "no token to watch expire")
    ttl = grant.body.get("expires_in")
    if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl > MAX_EXPIRY_WAIT:
        not_applicable(f"expires_in is {ttl!r}: only tokens living at most {MAX_EXPIRY_WAIT} s are watched expire")
    issued = time.monotonic()
    types = _granted(backend, grant)
    if not types:
        not_applicable("the granted scope names no concrete resource type to read")
    control = system_search(backend.http, target.fhir_base_url, types[0], token)
    if control.status_code != 200:
        could_not_check(f"positive control failed: GET {types[0]} with the fresh token gave HTTP {control.status_code}")
    deadline = issued + ttl + EXPIRY_GRACE
    response = control
    while time.monotonic() < deadline and response.status_code == 200:
        time.sleep(EXPIRY_POLL_S)  # polling for the refusal; the wait is bounded by expires_in + EXPIRY_GRACE
        response = system_search(backend.http, target.fhir_base_url, types[0], token)
    waited = time.monotonic() - issued
    expect(response.status_code == 401, expected=f"the token refused (401) within {ttl + EXPIRY_GRACE} s of issue "
                                                 f"(expires_in {ttl})",
           actual=f"HTTP {response.status_code} after {waited:.1f} s", exchange=backend.http.exchange_for(response))
