"""Clocks in sync (Safety Checklist item 24)

FHIR R4 safety.html item 24: the server's clock agrees with real time, so token lifetimes and timestamps mean what
they say. The server's ``Date`` header is compared with the harness clock; the member's id_token ``iat`` and the
introspected access token's ``iat``/``exp`` must be consistent with it (issued no later than now, still valid now).
The tolerance is ours (``TOLERANCE_S``): far wider than network latency, far narrower than a wrong time zone or a
drifting clock. A skew beyond it is a SHOULD finding.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from smart_conformance.checks import expect, not_applicable
from smart_conformance.config import Target
from smart_conformance.fhir import call
from smart_conformance.http import RecordingClient
from smart_conformance.launcher import credentials
from smart_conformance.smart.idtoken import decode_unverified
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.smart.token import introspect
from smart_conformance.testplan import Fault, proves

TOLERANCE_S = 300


def _ago(seconds: float) -> str:
    return f"{abs(seconds):.0f} s {'ahead of' if seconds > 0 else 'behind'} the harness clock"


@pytest.mark.requirement("SAFETY-24")
@proves(Fault.CLOCK_SKEWED)
def test_server_clock_in_sync(http: RecordingClient, target: Target, launch: LaunchResult,
                              smart_config: dict[str, Any]) -> None:
    """The Date header, the id_token's iat and the introspected token's iat/exp agree with the harness clock."""
    before = time.time()
    reply = call(http, "GET", f"{target.fhir_base_url}/metadata")
    now = (before + time.time()) / 2
    header = reply.response.headers.get("date")
    if not header:
        not_applicable("the FHIR server's /metadata answer has no Date header to compare clocks with")
    try:
        served = parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError):
        served = None
    expect(served is not None, expected="an HTTP-date in the Date header", actual=f"Date: {header}",
           exchange=reply.exchange)
    skew = (served or 0) - now
    expect(abs(skew) <= TOLERANCE_S, expected=f"the Date header within {TOLERANCE_S} s of the harness clock",
           actual=f"Date: {header} ({_ago(skew)})", exchange=reply.exchange)
    if launch.token.id_token:
        claims, _ = decode_unverified(launch.token.id_token)
        iat = claims.get("iat")
        if isinstance(iat, (int, float)):
            expect(iat <= time.time() + TOLERANCE_S, expected=f"id_token iat no later than now (+{TOLERANCE_S} s)",
                   actual=f"iat {iat} ({_ago(iat - time.time())})", exchange=launch.token_exchange)
    endpoint = smart_config.get("introspection_endpoint")
    if isinstance(endpoint, str):
        response = introspect(http, endpoint, token=launch.token.access_token, client=credentials(target.client))
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        if isinstance(body, dict) and body.get("active") is True:
            now = time.time()
            for name, ok, want in (("iat", lambda v: v <= now + TOLERANCE_S, "no later than now"),
                                   ("exp", lambda v: v >= now - TOLERANCE_S, "not before now: the token still works")):
                value = body.get(name)
                if isinstance(value, (int, float)):
                    expect(ok(value), expected=f"introspection {name} {want} (±{TOLERANCE_S} s)",
                           actual=f"{name} {value} ({_ago(value - now)})", exchange=http.exchange_for(response))
