"""Caches and front proxies

OWASP ASVS 4.0.3 V8.2.1 and V14.5.4, RFC 9111 and RFC 7239 §8.1: what a member's app reads (a FHIR read, a search
and its next page, an ``_include`` search, ``$everything``, the introspection of the app's own token) and the pages
where the member signs in and consents tell every cache not to keep them (``no-store``, or ``private``/``no-cache``
with nothing that invites a shared cache), so a proxy, a CDN or the back button of a shared device does not show
one member's data to the next. And the server builds its own URLs (the endpoints its discovery documents advertise,
a search's links, the authorize endpoint's redirect or sign-in form) from its configuration, never from the
``X-Forwarded-Host``, ``X-Forwarded-Proto`` or ``Forwarded`` headers of whoever is calling: a backend that trusts
them from anyone hands out links to an attacker's host, and a shared cache may keep that answer for everybody.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from smart_conformance.checks import could_not_check, expectations
from smart_conformance.config import Target
from smart_conformance.fhir import FHIR_SURFACES, Reply, call, control, fhir_surface, require
from smart_conformance.http import Exchange, RecordingClient
from smart_conformance.launcher import Launcher, credentials
from smart_conformance.oauth import cacheable
from smart_conformance.plugin import build_client
from smart_conformance.smart.authorize import standard_request
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.smart.token import introspect
from smart_conformance.testplan import Fault, proves

ATTACKER_HOST = "smart-conformance-attacker.example"
FORGED = {"X-Forwarded-Host": ATTACKER_HOST, "X-Forwarded-Proto": "http",
          "Forwarded": f'host="{ATTACKER_HOST}";proto=http'}


# --- RFC 9111 / ASVS V8.2.1: answers with member data are not kept by caches -----------------------------------------
@pytest.mark.requirement("ASVS-CACHE-01")
@proves(Fault.MEMBER_DATA_CACHEABLE)
def test_member_data_not_cached(http: RecordingClient, target: Target, launch: LaunchResult, launcher: Launcher,
                                smart_config: dict[str, Any]) -> None:
    """The member's read, search, next page, include search and $everything, the introspection of the run's own
    token, and the sign-in and consent pages the browser loaded, each say no cache may keep them."""
    base, pid, token = target.fhir_base_url, target.member.patient_id, launch.token.access_token
    read = control(http, base, f"Patient/{pid}", token)
    require(read, verdict="judging the cache headers of the member's data")
    answers: list[tuple[str, httpx.Response, Exchange | None]] = [
        (f"GET Patient/{pid}", read.reply.response, read.reply.exchange)]
    for name in FHIR_SURFACES:  # what the target does not offer, or cannot serve the member, holds nothing to judge
        surface = fhir_surface(http, base, pid, token, name)
        if surface.absent is None and surface.control.ok:
            answers.append((f"FHIR {name}", surface.control.reply.response, surface.control.reply.exchange))
    endpoint = smart_config.get("introspection_endpoint")
    if isinstance(endpoint, str):
        response = introspect(http, endpoint, token=token, client=credentials(target.client))
        if response.status_code == 200:  # the token's scope, patient and subject
            answers.append(("introspection of the run's own token", response, http.exchange_for(response)))
    control_launch, _problem = launcher.control()
    pages = [d for d in control_launch.browser.documents if d.status < 400
             and "html" in d.headers.get("content-type", "")] if control_launch is not None else []
    with expectations() as check:  # each answer is its own finding
        for label, response, exchange in answers:
            found = cacheable(response.headers.get("cache-control"))
            check.expect(found is None, expected=f"{label}: Cache-Control no-store (or private / no-cache)",
                         actual=f"HTTP {response.status_code}: {found}", exchange=exchange)
        for document in pages:
            found = cacheable(document.headers.get("cache-control"))
            check.expect(found is None, expected=f"the page {document.url}: Cache-Control no-store (or private)",
                         actual=f"HTTP {document.status}: {found}",
                         seen=f"the browser loaded {document.url} (HTTP {document.status}) on the member's launch")


# --- RFC 7239 §8.1 / ASVS V14.5.4: a caller's forwarding headers do not move the server's own URLs ------------------
def _names_attacker(response: httpx.Response) -> str | None:
    """Where the answer names the forged host: a header (Location, Link, Content-Location) or the body."""
    for name, value in response.headers.items():
        if ATTACKER_HOST in value.lower():
            return f"header {name}: {value[:200]}"
    text = response.text[:200000]
    at = text.lower().find(ATTACKER_HOST)
    if at >= 0:
        return f"body: …{text[max(at - 80, 0):at + len(ATTACKER_HOST) + 40]}…"
    return None


@pytest.mark.requirement("ASVS-PROXY-01")
@proves(Fault.FORWARDED_HOST_TRUSTED)
def test_forwarded_host_not_trusted(http: RecordingClient, target: Target, launch: LaunchResult,
                                    smart_config: dict[str, Any]) -> None:
    """The SMART configuration, the CapabilityStatement, the member's search (its self and next links) and the
    authorize endpoint's first answer (its redirect or sign-in form), requested again with X-Forwarded-Host,
    X-Forwarded-Proto and Forwarded naming another host, name nothing of that host. Each forged request is judged
    only where the same request without those headers worked in this run."""
    base, pid, token = target.fhir_base_url, target.member.patient_id, launch.token.access_token
    json_only = {"Accept": "application/json"}
    probes: list[tuple[str, str, str | None, dict[str, str], dict[str, str] | None]] = [
        ("the SMART configuration", f"{base}/.well-known/smart-configuration", None, json_only, None),
        ("the CapabilityStatement", f"{base}/metadata", None, {}, None),
        ("the member's search", f"{base}/ExplanationOfBenefit", token, {}, {"patient": pid, "_count": "1"})]
    judged: list[tuple[str, Reply]] = []
    for label, url, bearer, headers, params in probes:
        plain = call(http, "GET", url, token=bearer, headers=headers, params=params)
        if plain.status == 200:
            judged.append((label, call(http, "GET", url, token=bearer, headers={**headers, **FORGED}, params=params)))
    endpoint = smart_config.get("authorization_endpoint")
    authorize: list[tuple[httpx.Response, Exchange | None]] = []
    if isinstance(endpoint, str):
        request, _ = standard_request(client_id=target.client.client_id, redirect_uri=target.client.redirect_uri,
                                      scope=target.scopes["full"], aud=base)
        with build_client(target) as browser:  # no cookies: each request only starts a sign-in
            plain_start = browser.get(request.to_url(endpoint))
            if plain_start.status_code < 400:
                forged = browser.get(request.to_url(endpoint), headers=FORGED)
                authorize.append((forged, browser.exchange_for(forged)))
    if not judged and not authorize:
        could_not_check("neither discovery, the member's search nor the authorize endpoint answered the plain request:"
                        " no positive control to compare a forged one with")
    with expectations() as check:  # each surface is its own finding
        for label, reply in judged:
            found = _names_attacker(reply.response)
            check.expect(found is None, expected=f"{label}: no URL built from the forged {ATTACKER_HOST}",
                         actual=f"HTTP {reply.status}, {found}", exchange=reply.exchange)
        for response, exchange in authorize:
            found = _names_attacker(response)
            check.expect(found is None, expected=f"the authorize endpoint's first answer: no redirect or form to the "
                         f"forged {ATTACKER_HOST}", actual=f"HTTP {response.status_code}, {found}", exchange=exchange)
