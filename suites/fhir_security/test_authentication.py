"""Access tokens at the FHIR API

SMART App Launch 2.2 §Access token use, RFC 6750 §3 and FHIR R4 security.html: the resource server validates the
token on every request. A request with no token, a made-up token or an unsigned (``alg: none``) token is refused
with 401 and a ``WWW-Authenticate: Bearer`` challenge, and the refusal carries no data and no server internals.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest

from smart_conformance.checks import expect
from smart_conformance.config import Target
from smart_conformance.fhir import Reply, call, disclosure, leaked_data, unsigned_jwt
from smart_conformance.http import RecordingClient


def _alg_none_token(target: Target, smart_config: dict[str, Any]) -> str:
    now = int(time.time())
    return unsigned_jwt({"iss": smart_config.get("issuer", target.fhir_base_url), "aud": target.fhir_base_url,
                         "sub": "smart-conformance", "client_id": target.client.client_id,
                         "patient": target.member.patient_id, "scope": "launch/patient patient/*.read patient/*.rs",
                         "iat": now, "exp": now + 600, "jti": secrets.token_hex(8)})


def _assert_refused(reply: Reply, target: Target, label: str) -> None:
    expect(reply.status == 401 or (reply.status in target.unauthorized_statuses and reply.status != 200),
           expected=f"HTTP 401 for {label} (or one of {list(target.unauthorized_statuses)} as the target's guide allows)",
           actual=f"HTTP {reply.status}", requirement=("SMART-FHIR-01", "CARIN-SEC-07"), exchange=reply.exchange)
    leak = leaked_data(reply)
    expect(leak is None, expected="no resource data in a refusal", actual=f"the refusal carried {leak}",
           requirement="SMART-FHIR-01", exchange=reply.exchange)
    if reply.status == 401:
        challenge = reply.response.headers.get("www-authenticate", "")
        expect(challenge.lower().startswith("bearer"), expected="WWW-Authenticate: Bearer … on the 401",
               actual=f"WWW-Authenticate: {challenge or '(absent)'}", requirement="RFC6750-03",
               exchange=reply.exchange)


@pytest.mark.requirement("SMART-FHIR-01", "CARIN-SEC-07", "RFC6750-03")
def test_request_without_token_refused(http: RecordingClient, target: Target) -> None:
    """A read of the member's Patient without any token is refused with 401 and a Bearer challenge."""
    reply = call(http, "GET", f"{target.fhir_base_url}/Patient/{target.member.patient_id}")
    _assert_refused(reply, target, "a request without a token")


@pytest.mark.requirement("SMART-FHIR-01", "CARIN-SEC-07", "RFC6750-03")
def test_made_up_token_refused(http: RecordingClient, target: Target) -> None:
    """A random bearer token is refused with 401 and a Bearer challenge."""
    reply = call(http, "GET", f"{target.fhir_base_url}/Patient/{target.member.patient_id}",
                 token=secrets.token_urlsafe(32))
    _assert_refused(reply, target, "a made-up token")


@pytest.mark.requirement("SMART-FHIR-01", "CARIN-SEC-07", "RFC6750-03", "JWTBCP-01")
def test_unsigned_alg_none_token_refused(http: RecordingClient, target: Target, smart_config: dict[str, Any]) -> None:
    """An unsigned JWT (alg: none) claiming the member's patient is refused."""
    reply = call(http, "GET", f"{target.fhir_base_url}/Patient/{target.member.patient_id}",
                 token=_alg_none_token(target, smart_config))
    _assert_refused(reply, target, "an alg:none token")


@pytest.mark.requirement("FHIR-SEC-03")
def test_refusal_discloses_no_internals(http: RecordingClient, target: Target) -> None:
    """An unauthorized request's response reveals no stack trace, framework banner or software version."""
    reply = call(http, "GET", f"{target.fhir_base_url}/ExplanationOfBenefit",
                 params={"patient": target.member.patient_id}, token="not-a-token'\"<x>")
    found = disclosure(reply)
    expect(found is None, expected="an error without server internals (no stack trace, framework or version)",
           actual=found, exchange=reply.exchange)
