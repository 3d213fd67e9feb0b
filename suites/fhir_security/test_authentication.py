"""Access tokens at the FHIR API

SMART App Launch 2.2 §Access token use, RFC 6750 §3 and FHIR R4 security.html: the resource server validates the
token on every request. A request with no token, a made-up token, an unsigned (``alg: none``) token, a token whose
signature was altered or one whose lifetime has passed is refused with 401 and a ``WWW-Authenticate: Bearer``
challenge, and the refusal carries no data, no server internals and not the token it refused. Every refusal is
judged only next to its positive control: the same request with the member's valid token succeeds in the same run
(a URL that answers 404 to everything refuses every token too). The same negatives run beyond the single read, on the
member's claims search, its next link, an ``_include`` search and ``$everything``: each way in, often other code,
verifies the token too. A token in the ``access_token`` query parameter may be accepted by a resource server (RFC 6750
§2.3, MAY): that is reported as advice, never as a violation.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest

from smart_conformance import refusals
from smart_conformance.checks import Expectations, could_not_check, expect, expectations, not_applicable
from smart_conformance.config import Target
from smart_conformance.fhir import (
    FHIR_SURFACES,
    Control,
    Reply,
    call,
    control,
    disclosure,
    echoed_credential,
    fhir_surface,
    leaked_data,
    require,
    require_surface,
    tampered_signature,
    unsigned_jwt,
)
from smart_conformance.http import RecordingClient
from smart_conformance.launcher import Launcher
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.testplan import Fault, proves


def _alg_none_token(target: Target, smart_config: dict[str, Any]) -> str:
    now = int(time.time())
    return unsigned_jwt({"iss": smart_config.get("issuer", target.fhir_base_url), "aud": target.fhir_base_url,
                         "sub": "smart-conformance", "client_id": target.client.client_id,
                         "patient": target.member.patient_id, "scope": "launch/patient patient/*.read patient/*.rs",
                         "iat": now, "exp": now + 600, "jti": secrets.token_hex(8)})


def _own_read(http: RecordingClient, target: Target, launch: LaunchResult) -> Control:
    """The positive control of every refusal here: the member's own Patient, read with their valid token."""
    return control(http, target.fhir_base_url, f"Patient/{target.member.patient_id}", launch.token.access_token)


def _assert_refused(reply: Reply, target: Target, label: str, credential: str | None = None, *,
                    rule: tuple[str, ...] = ("SMART-FHIR-01", "CARIN-SEC-07"),
                    check: Expectations | None = None) -> None:
    """The protection: refused (a 4xx the server decided), no data, the refused token not repeated; with ``check``,
    each broken expectation is recorded there instead of stopping the check. How it refused (401 and its Bearer
    challenge, RFC 6750 §3) is recorded for test_fhir_refusal_responses, and noted here when non-standard."""
    judge = check.expect if check is not None else expect
    refusals.decided(reply.response, f"the refusal of {label}")
    judge(400 <= reply.status < 500, expected=f"{label} refused (HTTP 401, or another 4xx)",
          actual=f"HTTP {reply.status}", requirement=rule, exchange=reply.exchange)
    leak = leaked_data(reply)
    judge(leak is None, expected=f"no resource data in the refusal of {label}", actual=f"the refusal carried {leak}",
          requirement="SMART-FHIR-01", exchange=reply.exchange)
    echo = echoed_credential(reply, credential) if credential else None
    judge(echo is None, expected=f"a refusal of {label} that does not repeat the credential it refused", actual=echo,
          requirement="FHIR-SEC-14", exchange=reply.exchange)
    refusals.note_format(refusals.record_reply(reply, refusals.bearer_refusal(target.unauthorized_statuses)), label)


@pytest.mark.requirement("SMART-FHIR-01", "CARIN-SEC-07")
@proves(Fault.TOKENLESS_PATIENT_READ)
def test_request_without_token_refused(http: RecordingClient, target: Target, launch: LaunchResult) -> None:
    """A read of the member's Patient without any token is refused (the same read with the token works)."""
    require(_own_read(http, target, launch), verdict="a refusal of a request without a token")
    reply = call(http, "GET", f"{target.fhir_base_url}/Patient/{target.member.patient_id}")
    _assert_refused(reply, target, "a request without a token")


@pytest.mark.requirement("SMART-FHIR-01", "CARIN-SEC-07", "FHIR-SEC-14")
@proves(Fault.REFUSAL_ECHOES_TOKEN)
def test_made_up_token_refused(http: RecordingClient, target: Target, launch: LaunchResult) -> None:
    """A random bearer token is refused, and the refusal does not repeat it."""
    require(_own_read(http, target, launch), verdict="a refusal of a made-up token")
    token = secrets.token_urlsafe(32)
    reply = call(http, "GET", f"{target.fhir_base_url}/Patient/{target.member.patient_id}", token=token)
    _assert_refused(reply, target, "a made-up token", token)


@pytest.mark.requirement("SMART-FHIR-01", "CARIN-SEC-07", "JWTBCP-01", "FHIR-SEC-14")
@proves(Fault.ALG_NONE_ACCEPTED, Fault.REFUSAL_ECHOES_TOKEN, Fault.TAMPERED_SIGNATURE_ACCEPTED)
def test_unsigned_alg_none_token_refused(http: RecordingClient, target: Target, smart_config: dict[str, Any],
                                         launch: LaunchResult) -> None:
    """An unsigned JWT (alg: none) claiming the member's patient is refused."""
    require(_own_read(http, target, launch), verdict="a refusal of an alg:none token")
    token = _alg_none_token(target, smart_config)
    reply = call(http, "GET", f"{target.fhir_base_url}/Patient/{target.member.patient_id}", token=token)
    _assert_refused(reply, target, "an alg:none token", token)


@pytest.mark.requirement("FHIR-SEC-03")
@proves(Fault.SERVER_BANNER)
def test_refusal_discloses_no_internals(http: RecordingClient, target: Target, launch: LaunchResult) -> None:
    """An unauthorized request's response reveals no stack trace, framework banner or software version."""
    require(control(http, target.fhir_base_url, "ExplanationOfBenefit", launch.token.access_token,
                    params={"patient": target.member.patient_id}),
            verdict="judging the refusal of an unauthorized search")
    reply = call(http, "GET", f"{target.fhir_base_url}/ExplanationOfBenefit",
                 params={"patient": target.member.patient_id}, token="not-a-token'\"<x>")
    found = disclosure(reply)
    expect(found is None, expected="an error without server internals (no stack trace, framework or version)",
           actual=found, exchange=reply.exchange)


@pytest.mark.requirement("SMART-FHIR-01", "CARIN-SEC-07", "JWTBCP-01", "FHIR-SEC-14")
@proves(Fault.REFUSAL_ECHOES_TOKEN, Fault.TAMPERED_SIGNATURE_ACCEPTED)
def test_tampered_signature_refused(http: RecordingClient, target: Target, launch: LaunchResult) -> None:
    """The shared access token with one signature character altered is refused (opaque tokens: last character)."""
    require(_own_read(http, target, launch), verdict="a refusal of an altered token")
    token = tampered_signature(launch.token.access_token)
    reply = call(http, "GET", f"{target.fhir_base_url}/Patient/{target.member.patient_id}", token=token)
    _assert_refused(reply, target, "a token whose signature was altered", token)


@pytest.mark.requirement("SMART-FHIR-01", "CARIN-SEC-07", "JWTBCP-01", "FHIR-SEC-14")
@pytest.mark.parametrize("surface", FHIR_SURFACES)
@proves(Fault.ALG_NONE_ACCEPTED, Fault.OPERATIONS_TOKEN_UNVERIFIED, Fault.REFUSAL_ECHOES_TOKEN,
        Fault.TAMPERED_SIGNATURE_ACCEPTED)
def test_every_fhir_surface_requires_a_valid_token(surface: str, http: RecordingClient, target: Target,
                                                   smart_config: dict[str, Any], launch: LaunchResult) -> None:
    """The member's claims search, its next link, an ``_include`` search and ``$everything`` are refused, like the
    read, without a token, with a made-up token, with an unsigned (alg: none) token and with the member's token
    altered: a search, a page link and an operation often run through other code than the read.

    Positive control: the same request with the member's valid token succeeds; a surface the target does not offer
    (refused even then, or a search whose claims fit on one page) is not applicable."""
    found = fhir_surface(http, target.fhir_base_url, target.member.patient_id, launch.token.access_token, surface)
    require_surface(found, verdict=f"refusals on the {surface}")
    forged: dict[str, str | None] = {"no token": None, "a made-up token": secrets.token_urlsafe(32),
                                     "an alg:none token": _alg_none_token(target, smart_config),
                                     "the member's token with its signature altered":
                                         tampered_signature(launch.token.access_token)}
    with expectations() as check:  # each forged credential is its own finding
        for label, token in forged.items():
            reply = call(http, "GET", found.url, token=token, params=found.params)
            _assert_refused(reply, target, f"the {surface} with {label}", token, check=check)


# Longest token lifetime this check will wait out (polling the target) to see an expired token refused.
EXPIRY_WAIT_LIMIT_S = 120
EXPIRY_GRACE_S = 30  # clock skew the target may allow
EXPIRY_POLL_S = 1.0


@pytest.mark.requirement("SMART-FHIR-02", "CARIN-SEC-07", "SMART-FHIR-01", "FHIR-SEC-14")
def test_expired_token_refused(http: RecordingClient, target: Target, launch: LaunchResult, launcher: Launcher) -> None:
    """A token is refused once its expires_in has passed (only where the target issues short-lived tokens)."""
    lifetime = launch.token.raw.get("expires_in")
    if not isinstance(lifetime, int) or isinstance(lifetime, bool) or lifetime > EXPIRY_WAIT_LIMIT_S:
        not_applicable(f"access tokens live {lifetime!r} s; this check waits out at most {EXPIRY_WAIT_LIMIT_S} s, "
                       "and without the target's signing key the harness cannot make an expired token")
    result = launcher.launch()  # a token of its own: the shared one must stay valid for the other checks
    if result.token is None:
        could_not_check("the launch for the expiry check produced no token: " + "; ".join(result.problems))
    url = f"{target.fhir_base_url}/Patient/{target.member.patient_id}"
    expires = time.monotonic() + lifetime
    reply = call(http, "GET", url, token=result.token.access_token)
    if reply.status != 200 or reply.resource_type != "Patient":  # the positive control: the live token works
        could_not_check(f"no positive control for an expired-token refusal: the fresh token's own read answered "
                        f"HTTP {reply.status} {reply.resource_type or ''}".rstrip())
    while reply.status == 200 and time.monotonic() < expires + EXPIRY_GRACE_S:
        time.sleep(EXPIRY_POLL_S)  # polling the target: its clock decides when the token expires
        reply = call(http, "GET", url, token=result.token.access_token)
    _assert_refused(reply, target, f"a token {lifetime + EXPIRY_GRACE_S} s after issue (expires_in {lifetime})",
                    result.token.access_token, rule=("SMART-FHIR-02", "CARIN-SEC-07"))


@pytest.mark.requirement("RFC6750-02")
@proves(Fault.TOKEN_IN_QUERY_ACCEPTED, Fault.TOKENLESS_PATIENT_READ)  # a tokenless read served: the query token "worked"
def test_token_in_query_not_accepted(http: RecordingClient, target: Target, launch: LaunchResult) -> None:
    """A valid token sent only as ?access_token= (no Authorization header) on the read, the claims search, an
    ``_include`` search and ``$everything`` (each where the target offers it): advice if it is accepted.

    RFC 6750 §2.3 lets a resource server accept it (MAY) while telling clients not to send it (SHOULD NOT); RFC 9700
    §4.3.2 forbids clients to. A server that accepts it breaks no requirement, so the finding is MAY-level advice
    (a warning that says so), never a failure: refusing it keeps tokens out of URLs and logs.
    """
    require(_own_read(http, target, launch), verdict="judging a token sent in the query string")
    token, base, pid = launch.token.access_token, target.fhir_base_url, target.member.patient_id
    probes: list[tuple[str, str, dict[str, str]]] = [("the read", f"{base}/Patient/{pid}", {})]
    for name in ("search", "include", "$everything"):  # each where the member's own token (in the header) works
        found = fhir_surface(http, base, pid, token, name)
        if found.absent is None and found.control.ok:
            probes.append((f"the {name}", found.url, found.params or {}))
    with expectations() as check:  # each surface is its own finding
        for label, url, params in probes:
            reply = call(http, "GET", url, params={**params, "access_token": token})
            leak = leaked_data(reply)
            check.expect(reply.status != 200 and leak is None,
                         expected=f"advice, not a violation (RFC 6750 §2.3: resource servers MAY accept it): the "
                                  f"query-string token ignored on {label}, since clients must not send tokens in "
                                  "URLs (RFC 9700 §4.3.2) and URLs end up in logs",
                         actual=f"accepted: HTTP {reply.status}" + (f" with {leak}" if leak else ""),
                         requirement="RFC6750-02", exchange=reply.exchange)


@pytest.mark.reads_run
@pytest.mark.requirement("RFC6750-03")
@proves(Fault.WWW_AUTHENTICATE_MISSING)
def test_fhir_refusal_responses(http: RecordingClient, target: Target, launch: LaunchResult) -> None:
    """RFC 6750 §3: the FHIR API words every refusal of a missing or bad token as HTTP 401 with a Bearer challenge
    (or a status the target's guide allows). Judged apart from the protections above, which only need a refusal:
    first a read without a token and one with a made-up token (the same read with the member's token works), then
    every refusal of a token the run recorded, in one finding."""
    require(_own_read(http, target, launch), verdict="the wording of a refused token")
    shape = refusals.bearer_refusal(target.unauthorized_statuses)
    url = f"{target.fhir_base_url}/Patient/{target.member.patient_id}"
    own = [refusals.record_reply(call(http, "GET", url, token=token), shape)
           for token in (None, secrets.token_urlsafe(32))]
    refusals.judge_wording(refusals.Family.FHIR, target.fhir_base_url, own, section="RFC 6750 §3",
                           defined="HTTP 401 with a WWW-Authenticate: Bearer challenge")
