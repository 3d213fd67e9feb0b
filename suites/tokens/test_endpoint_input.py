"""Junk in the OAuth endpoints' parameters

FHIR R4 security.html (input validation, information disclosure) and OWASP ASVS V5 applied to the token, introspection
and revocation endpoints: every form parameter, one at a time, is given a markup marker, an SQL-shaped value, an 8 KB
value and control and unicode characters, with the client's real authentication beside it (never a real code or
token: junk takes their place). The answer is an OAuth error (or, for revocation, the 200 RFC 7009 §2.2 gives an
invalid token), never a server error, never the marker as live markup in an HTML page, and never a stack trace or a
software version. Introspection and revocation are probed only where discovery names them.

Each endpoint's probes count only beside a positive control in the same run: the same request, well formed, answered
the way the RFCs define (a code exchange with a made-up code refused for the code, not the client; an introspection of
the member's live token active; a revocation of a made-up token 200).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from smart_conformance.checks import could_not_check, describe, expectations, not_applicable
from smart_conformance.config import Target
from smart_conformance.fhir import Reply, disclosure
from smart_conformance.http import RecordingClient
from smart_conformance.launcher import Launcher, credentials
from smart_conformance.markup import landed, new_mark, payload
from smart_conformance.oauth import oauth_error
from smart_conformance.smart.assertion import ASSERTION_TYPE
from smart_conformance.smart.token import exchange_code, introspect, refresh, revoke
from smart_conformance.testplan import Fault, proves

JUNK = {"SQL-shaped": "x' OR '1'='1' --", "8 KB": "A" * 8192, "control and unicode": "\u202e\U0001d54f\u0000\ufeff"}

# A request with every parameter but one well formed: ``extra`` replaces (or adds) the junk one.
Send = Callable[[dict[str, str]], httpx.Response]


def _junk(param: str, value: str) -> dict[str, str]:
    """The parameters a probe changes: a junk client_assertion goes with its type, as a client would send it."""
    if param == "client_assertion":
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": value}
    return {param: value}


def _token_probes(http: RecordingClient, launcher: Launcher, target: Target) -> tuple[Send, list[tuple[str, Send]]]:
    """The code exchange (with a made-up code and verifier) and a refresh (with a made-up refresh token)."""
    url, client = launcher.token_endpoint, credentials(target.client)
    code, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(48)

    def exchange(extra: dict[str, str]) -> httpx.Response:
        return exchange_code(http, url, code=code, redirect_uri=target.client.redirect_uri, code_verifier=verifier,
                             client=client, extra=extra)

    def renew(extra: dict[str, str]) -> httpx.Response:
        return refresh(http, url, refresh_token=secrets.token_urlsafe(24), client=client,
                       scope=target.scopes["full"], extra=extra)

    probes = [(p, exchange) for p in ("grant_type", "code", "redirect_uri", "code_verifier", "client_id",
                                      "client_assertion")]
    return exchange, [*probes, ("refresh_token", renew), ("scope", renew)]


def _token_control(response: httpx.Response) -> str | None:
    """A made-up code is refused for the code, after the client was authenticated: else the probes may never get past
    client authentication. Any 4xx but 401 that names no client error will do (the wording is judged by
    test_token_error_responses)."""
    err = oauth_error(response)
    if 400 <= response.status_code < 500 and response.status_code != 401 \
            and err.error not in ("invalid_client", "unauthorized_client"):
        return None
    return f"HTTP {response.status_code} {describe(err.body)} (expected 400 invalid_grant for a made-up code)"


def _introspection_control(response: httpx.Response) -> str | None:
    """The member's live token introspects as active (RFC 7662 §2.2)."""
    body = oauth_error(response).body
    if response.status_code == 200 and isinstance(body, dict) and body.get("active") is True:
        return None
    return f"HTTP {response.status_code} {describe(body)} (expected active: true)"


def _revocation_control(response: httpx.Response) -> str | None:
    """A made-up token is revoked with 200 (RFC 7009 §2.2: an invalid token is no error)."""
    if response.status_code == 200:
        return None
    return f"HTTP {response.status_code} {describe(oauth_error(response).body)} (expected 200)"


def _token_param_probes(http: RecordingClient, launcher: Launcher, smart_config: dict[str, Any], target: Target,
                        endpoint: str) -> tuple[Send, list[tuple[str, Send]]]:
    """Introspection or revocation of a made-up token; the control introspects the member's live token (an
    introspection must say active to show the probes reach it) or revokes the made-up one."""
    url = smart_config.get(f"{endpoint}_endpoint")
    if not isinstance(url, str):
        not_applicable(f"{endpoint}_endpoint is not advertised")
    ask = introspect if endpoint == "introspection" else revoke
    client, made_up = credentials(target.client), secrets.token_urlsafe(24)

    def about(token: str) -> Send:
        return lambda extra: ask(http, url, token=token, client=client, token_type_hint="access_token", extra=extra)

    send = about(made_up)
    probes = [(p, send) for p in ("token", "token_type_hint", "client_id", "client_assertion")]
    if endpoint == "revocation":
        return send, probes
    live = launcher.shared().token
    if live is None or not live.access_token:
        could_not_check("the member's launch gave no access token to introspect (the positive control)")
    return about(live.access_token), probes


CONTROLS: dict[str, Callable[[httpx.Response], str | None]] = {
    "token": _token_control, "introspection": _introspection_control, "revocation": _revocation_control}


@pytest.mark.requirement("FHIR-SEC-13", "HTTP-HYG-05", "FHIR-SEC-03")
@pytest.mark.parametrize("endpoint", list(CONTROLS))
@proves(Fault.TOKEN_ERROR_STACK_TRACE, Fault.SERVER_BANNER)
def test_oauth_endpoints_answer_junk_cleanly(endpoint: str, launcher: Launcher, http: RecordingClient,
                                             smart_config: dict[str, Any], target: Target) -> None:
    """Markup, injection-shaped, 8 KB and control-character values in each parameter of the endpoint are answered
    without a server error, without the value as live markup and without a stack trace or version banner: input is
    validated before it reaches code that breaks on it, and what breaks stays inside."""
    if endpoint == "token":
        control, probes = _token_probes(http, launcher, target)
    else:
        control, probes = _token_param_probes(http, launcher, smart_config, target, endpoint)
    problem = CONTROLS[endpoint](control({}))
    if problem:
        could_not_check(f"no positive control: the well-formed {endpoint} request answered {problem}, so its junk "
                        "probes may not reach the parameters they change")
    mark = new_mark()
    values = {"markup": payload(mark), **JUNK}
    with expectations() as check:  # every answer judged, each problem its own finding
        for param, send_one in probes:
            for kind, value in values.items():
                # Unique to this probe: a value sent as a code, token or assertion is registered as a secret and
                # masked from then on, so the same junk must not also stand, unmasked, in another check's evidence.
                response = send_one(_junk(param, f"{mark}{param}{value}"))
                exchange, label = http.exchange_for(response), f"{endpoint}: {kind} {param}"
                check.expect(response.status_code < 500, expected=f"{label}: an OAuth error (4xx), not a server "
                             "error", actual=f"HTTP {response.status_code}", requirement="FHIR-SEC-13",
                             exchange=exchange)
                for where in landed(response, mark):
                    check.fail(expected=f"{label}: JSON, or the value escaped, never live markup", actual=where,
                               requirement="HTTP-HYG-05", exchange=exchange)
                found = disclosure(Reply(response, exchange))
                check.expect(found is None, expected=f"{label}: no stack trace, framework or version",
                             actual=found, requirement="FHIR-SEC-03", exchange=exchange)
