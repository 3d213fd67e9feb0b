"""The token response

SMART App Launch 2.2 §Obtain access token and RFC 6749 §5.1: the app exchanges its code, authenticating with HTTP
Basic, and receives JSON with access_token, token_type Bearer, expires_in, the scope actually granted and the patient
in context. Nothing in the answer may be cached, errors included.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any
from urllib.parse import urlsplit

import pytest

from smart_conformance.checks import describe, expect, expectations, fail, not_applicable
from smart_conformance.config import Target
from smart_conformance.fhir import call
from smart_conformance.http import RecordingClient
from smart_conformance.launcher import Launcher
from smart_conformance.oauth import no_store_problems, scope_set, wider_than
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.testplan import Fault, proves


def _exchange(http: RecordingClient, launch: LaunchResult) -> Any:
    return http.exchange_for(launch.token_response) if launch.token_response is not None else None


@pytest.mark.requirement("SMART-TOKEN-03", "RFC6749-07")
@proves(Fault.TOKEN_TYPE_NOT_BEARER)
def test_token_response_fields(launch: LaunchResult, http: RecordingClient) -> None:
    """access_token is a non-empty string and token_type is Bearer (any case), as JSON.

    Each is judged on its own: every one that fails is reported."""
    token, response = launch.token, launch.token_response
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    with expectations() as check:
        check.expect(media == "application/json", expected="Content-Type application/json", actual=media or "(none)",
                     requirement="RFC6749-07", exchange=_exchange(http, launch))
        check.expect(bool(token.access_token), expected="a non-empty access_token string",
                     actual=describe(token.raw.get("access_token", "(absent)")), requirement="SMART-TOKEN-03",
                     exchange=_exchange(http, launch))
        check.expect((token.token_type or "").lower() == "bearer", expected="token_type 'Bearer' (case-insensitive)",
                     actual=f"token_type {token.raw.get('token_type')!r}", requirement="SMART-TOKEN-03",
                     exchange=_exchange(http, launch))


@pytest.mark.requirement("SMART-TOKEN-04")
@proves(Fault.TOKEN_SCOPE_MISSING)
def test_token_response_scope(launch: LaunchResult, http: RecordingClient) -> None:
    """scope is present: the scopes actually granted."""
    expect(isinstance(launch.token.raw.get("scope"), str) and bool(launch.token.scope),
           expected="scope: a non-empty space-separated string", actual=describe(launch.token.raw.get("scope")),
           exchange=_exchange(http, launch))


@pytest.mark.requirement("SMART-TOKEN-05")
@proves(Fault.EXPIRES_IN_MISSING)
def test_token_expires_in(launch: LaunchResult, http: RecordingClient) -> None:
    """expires_in is a positive integer of at most one hour."""
    value = launch.token.raw.get("expires_in")
    expect(isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 3600,
           expected="expires_in: an integer from 1 to 3600 seconds", actual=describe(value),
           exchange=_exchange(http, launch))


@pytest.mark.requirement("SMART-TOKEN-07", "SMART-AUTHZ-06", "CARIN-SEC-01")
@proves(Fault.PATIENT_MISSING)
def test_token_patient_context(launch: LaunchResult, target: Target, http: RecordingClient) -> None:
    """patient is the launched member's Patient id, and that Patient is readable with the token."""
    patient = launch.token.raw.get("patient")
    expect(patient == target.member.patient_id, expected=f"patient {target.member.patient_id!r} (members.primary)",
           actual=f"patient {patient!r}", exchange=_exchange(http, launch))
    reply = call(http, "GET", f"{target.fhir_base_url}/Patient/{patient}", token=launch.token.access_token)
    expect(reply.status == 200 and reply.resource_type == "Patient" and reply.json().get("id") == patient,
           expected=f"GET Patient/{patient} → 200 with that Patient", actual=f"HTTP {reply.status} "
                                                                           f"{reply.resource_type}",
           exchange=reply.exchange)


@pytest.mark.requirement("SMART-TOKEN-08", "SMART-TOKEN-09")
@proves(Fault.CONTEXT_WRONG_TYPES)
def test_token_context_types(launch: LaunchResult, http: RecordingClient) -> None:
    """Optional launch context values have their defined types when present."""
    raw, problems = launch.token.raw, list(launch.token.problems)
    if "need_patient_banner" in raw and not isinstance(raw["need_patient_banner"], bool):
        problems.append(f"need_patient_banner {raw['need_patient_banner']!r} is not a boolean")
    if "smart_style_url" in raw:
        url = raw["smart_style_url"]
        if not (isinstance(url, str) and urlsplit(url).scheme in ("http", "https")):
            problems.append(f"smart_style_url {url!r} is not an absolute URL")
    if "fhirContext" in raw:
        ctx = raw["fhirContext"]
        if not isinstance(ctx, list):
            problems.append(f"fhirContext is {type(ctx).__name__}, not an array")
        else:
            for i, item in enumerate(ctx):
                if not (isinstance(item, dict) and any(isinstance(item.get(k), (str, dict))
                                                       for k in ("reference", "canonical", "identifier"))):
                    problems.append(f"fhirContext[{i}] has none of reference, canonical, identifier")
                elif "role" in item and not item["role"]:
                    problems.append(f"fhirContext[{i}].role is empty")
    expect(not problems, expected="context values of the types SMART defines", actual="; ".join(problems),
           requirement=("SMART-TOKEN-08", "SMART-TOKEN-09") if any(p.startswith("fhirContext") for p in problems)
           else "SMART-TOKEN-08", exchange=_exchange(http, launch))


@pytest.mark.requirement("SMART-AUTHZ-09", "SMART-TOKEN-04")
@proves(Fault.SCOPE_WIDENED)
def test_granted_scope_within_requested(launch: LaunchResult, http: RecordingClient) -> None:
    """Nothing is granted beyond what the app requested."""
    extra = wider_than(scope_set(launch.token.scope), scope_set(launch.spec.scope))
    expect(not extra, expected=f"granted scopes within the requested {launch.spec.scope!r}",
           actual=f"also granted: {', '.join(extra)}", exchange=_exchange(http, launch))


@pytest.mark.requirement("SMART-TOKEN-06")
@proves(Fault.TOKEN_NO_STORE_MISSING)
def test_token_response_not_cached(launch: LaunchResult, http: RecordingClient) -> None:
    """The successful token response carries Cache-Control: no-store and Pragma: no-cache."""
    problems = no_store_problems(launch.token_response)
    expect(not problems, expected="Cache-Control: no-store and Pragma: no-cache", actual="; ".join(problems),
           exchange=_exchange(http, launch))


@pytest.mark.requirement("SMART-TOKEN-06", "RFC6749-08")
@proves(Fault.TOKEN_NO_STORE_MISSING)
def test_token_error_not_cached(launcher: Launcher, http: RecordingClient) -> None:
    """A token error (an unknown code) is a JSON OAuth error that is not cached either."""
    from smart_conformance.launcher import credentials
    from smart_conformance.smart.token import exchange_code

    response = exchange_code(http, launcher.token_endpoint, code="smart-conformance-unknown-code",
                             redirect_uri=launcher.target.client.redirect_uri, code_verifier="x" * 43,
                             client=credentials(launcher.target.client))
    exchange = http.exchange_for(response)
    if response.status_code == 200:
        fail(expected="a refusal of an unknown code", actual="HTTP 200", requirement="RFC6749-08", exchange=exchange)
    problems = no_store_problems(response)
    expect(not problems, expected="Cache-Control: no-store and Pragma: no-cache on the error",
           actual="; ".join(problems), requirement="SMART-TOKEN-06", exchange=exchange)


# --- RFC 6749 §10.10: codes and tokens nobody can guess ----------------------------------------------------------------
ALPHABETS = ("0123456789", "0123456789abcdef", "0123456789ABCDEF",
             "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
             "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_.~",
             "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/=-_.~")
MIN_BITS = 128


def _most_bits(value: str) -> float:
    """The most randomness a value of this length and alphabet can hold: an upper bound, so a value below 128 bits
    by it is guessable for certain, whatever its generator (the smallest common alphabet holding every character)."""
    alphabet = next((a for a in ALPHABETS if set(value) <= set(a)), None)
    size = len(alphabet) if alphabet else len(set(value) | set(ALPHABETS[-1]))
    return len(value) * math.log2(size)


def _signed(value: str) -> bool:
    """A JWS (header.payload.signature with a JSON header): forging one needs the server's key, not a guess."""
    parts = value.split(".")
    if len(parts) != 3:
        return False
    try:
        return isinstance(json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4))), dict)
    except ValueError:
        return False


@pytest.mark.requirement("RFC6749-09")
@proves(Fault.SHORT_AUTHORIZATION_CODES)
def test_codes_and_tokens_unguessable(launcher: Launcher, launch: LaunchResult) -> None:
    """The shared launch's authorization code, access token and refresh token are each long enough, in the alphabet
    they use, to hold 128 bits of randomness (RFC 6749 §10.10: guessing one MUST have a probability of 2^-128 or
    less). Only a value that cannot hold 128 bits fails; a signed JWT is judged by its signature, not its length.
    The values themselves are never shown."""
    control, problem = launcher.control()
    values = {"authorization code": control.browser.code if control is not None else None,
              "access token": launch.token.access_token, "refresh token": launch.token.refresh_token}
    judged = {what: value for what, value in values.items() if isinstance(value, str) and value and not _signed(value)}
    if not judged:
        not_applicable("the code and tokens are signed JWTs (or absent): forging them needs the server's key"
                       + (f"; no code to judge: {problem}" if control is None else ""))
    with expectations() as check:
        for what, value in judged.items():
            bits = _most_bits(value)
            check.expect(bits >= MIN_BITS, expected=f"the {what}: room for at least {MIN_BITS} bits of randomness",
                         actual=f"{len(value)} characters can hold at most {bits:.0f} bits",
                         exchange=_exchange(launcher.http, launch) if what != "authorization code" else None,
                         seen=control.seen if control is not None else None)  # the code: the redirect carried it
