"""Asymmetric client authentication at the authorization-code exchange (private_key_jwt for the member launch)

SMART App Launch 2.2 §Client Authentication: Asymmetric, RFC 7523 §2.2 / §3 and RFC 7521 §4.2: where the payer
registered the member-facing app with a public key (``client.auth_method: private_key_jwt``), the token endpoint
authenticates it only by a signed assertion (iss = sub = client_id, aud = the URL it is posted to, a short exp, a
fresh jti, signed with the registered key). Every one-change broken assertion the Backend Services suite sends is
refused here too, with invalid_client and no token, at the exchange of a real authorization code.

Codes: each sign-in costs a browser launch, so the negatives share one code. RFC 6749 does not say a code survives a
failed client authentication, so a refusal on a code that was already presented counts only once a good assertion
has been shown to exchange that very code afterwards; the first refusal on a fresh code counts beside any positive
control of this run. Not applicable when the member client authenticates with a secret.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from smart_conformance import refusals
from smart_conformance.checks import (
    Expectations,
    could_not_check,
    expectations,
    not_applicable,
)
from smart_conformance.config import Target
from smart_conformance.http import RecordingClient
from smart_conformance.launcher import Launcher, credentials
from smart_conformance.oauth import issued_tokens, oauth_error
from smart_conformance.smart.assertion import ASSERTION_TYPE, Signer, new_key_like
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.smart.token import basic_auth_header, exchange_code
from smart_conformance.testplan import Fault, proves

SAML_TYPE = "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"


@dataclass(frozen=True)
class Negative:
    """One change to a good client authentication: the form fields (or headers) it sends, what it breaks."""

    what: str
    requirement: tuple[str, ...]
    build: Callable[[Signer, str], tuple[dict[str, str], dict[str, str]]]
    errors: tuple[str, ...] = ("invalid_client",)
    error_requirement: str = "ASYM-05"  # the wording a refusal owes (judged by test_token_error_responses)


def _assert(token: str, assertion_type: str = ASSERTION_TYPE) -> tuple[dict[str, str], dict[str, str]]:
    return {"client_assertion_type": assertion_type, "client_assertion": token}, {}


def _claims(signer: Signer, audience: str, **changes: object) -> dict[str, object]:
    """A good assertion's claims with some changed (None removes one)."""
    claims: dict[str, object] = dict(signer.claims(audience))
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


NEGATIVES: tuple[Negative, ...] = (
    Negative("an assertion whose exp passed two minutes ago", ("RFC7523-02",),
             lambda s, aud: _assert(s.sign(s.claims(aud, now=time.time() - 360)))),
    Negative("an assertion with exp one hour ahead", ("ASYM-06",),
             lambda s, aud: _assert(s.sign(s.claims(aud, lifetime=3600)))),
    Negative("an assertion whose aud names another URL", ("RFC7523-01",),
             lambda s, aud: _assert(s.sign(_claims(s, aud, aud=aud.rstrip("/") + "/other")))),
    Negative("an assertion without aud", ("RFC7523-01",),
             lambda s, aud: _assert(s.sign(_claims(s, aud, aud=None)))),
    Negative("an assertion whose iss differs from sub", ("ASYM-03", "RFC7523-03"),
             lambda s, aud: _assert(s.sign(_claims(s, aud, iss=f"{s.client_id}-other")))),
    Negative("an assertion from an unknown client_id", ("ASYM-03",),
             lambda s, aud: _assert(s.sign(_claims(s, aud, iss="smart-conformance-unregistered-client",
                                                   sub="smart-conformance-unregistered-client")))),
    Negative("an assertion whose kid matches no registered key", ("ASYM-04",),
             lambda s, aud: _assert(s.sign(s.claims(aud), kid="smart-conformance-unknown-kid"))),
    Negative("an assertion signed with an unregistered key", ("ASYM-01",),
             lambda s, aud: _assert(s.sign(s.claims(aud), key=new_key_like(s.key)))),
    Negative("an unsigned assertion (alg none)", ("ASYM-01", "JWTBCP-01"),
             lambda s, aud: _assert(s.unsigned(s.claims(aud)))),
    Negative("an HS256 assertion keyed with the public key", ("ASYM-01", "JWTBCP-01"),
             lambda s, aud: _assert(s.hs256_with_public_key(s.claims(aud)))),
    Negative("an assertion whose payload was altered after signing", ("ASYM-01",),
             lambda s, aud: _assert(s.tampered(s.claims(aud), {"jti": s.claims(aud)["jti"]}))),
    Negative("a good assertion under a wrong client_assertion_type", ("RFC7523-04",),
             lambda s, aud: _assert(s.assertion(aud), SAML_TYPE), errors=("invalid_client", "invalid_request"),
             error_requirement="RFC7521-01"),
    Negative("a client secret for a client registered with a key", ("ASYM-07",),
             lambda s, aud: ({}, {"Authorization": basic_auth_header(s.client_id, "smart-conformance-made-up")})),
)


def _signer(target: Target) -> Signer:
    if target.client.auth_method != "private_key_jwt":
        not_applicable(f"the member client authenticates with {target.client.auth_method}, not a key "
                       "(client.auth_method: private_key_jwt in the target file)")
    signer = credentials(target.client).signer
    assert signer is not None
    return signer


def _code(launcher: Launcher) -> LaunchResult:
    result = launcher.launch(exchange=False)
    if not result.code:
        could_not_check("no authorization code to exchange: " + "; ".join(result.problems))
    return result


def _exchange(http: RecordingClient, launcher: Launcher, result: LaunchResult, form: dict[str, str],
              headers: dict[str, str]) -> httpx.Response:
    """The code exchange with exactly the given client authentication (no other is added)."""
    return exchange_code(http, launcher.token_endpoint, code=result.code or "", redirect_uri=result.spec.redirect_uri,
                         code_verifier=result.code_verifier, client=None, extra=form, headers=headers)


def _good(http: RecordingClient, launcher: Launcher, signer: Signer, result: LaunchResult,
          assertion: str | None = None) -> httpx.Response:
    return _exchange(http, launcher, result, *_assert(assertion or signer.assertion(launcher.token_endpoint)))


def _judge(check: Expectations, http: RecordingClient, response: httpx.Response, negative: Negative) -> None:
    """The protection: no token for the broken assertion. Its wording is recorded for test_token_error_responses."""
    refusals.decided(response, negative.what)
    check.expect(not issued_tokens(response), expected=f"no token for {negative.what}",
                 actual=f"HTTP {response.status_code} with tokens", requirement=negative.requirement,
                 exchange=http.exchange_for(response))
    shape = refusals.assertion_error(negative.errors, negative.error_requirement)
    refusals.note_format(refusals.record(http, response, shape), negative.what)


@pytest.mark.requirement("ASYM-01", "ASYM-03", "ASYM-04", "ASYM-06", "ASYM-07", "RFC7523-01",
                         "RFC7523-02", "RFC7523-03", "RFC7523-04", "JWTBCP-01")
@proves(Fault.MEMBER_ASSERTION_SIGNATURE_NOT_CHECKED)
def test_member_assertion_negatives_refused(launcher: Launcher, http: RecordingClient, target: Target) -> None:
    """Each broken assertion at the code exchange gets invalid_client and no token; a good assertion then exchanges
    the same code (positive control). A negative that got tokens failed, and spent its code: the next ones get a new
    code. A refusal on a code already presented is judged only once the code is shown to still work; if it no longer
    does, those negatives are repeated, each with a code of its own."""
    signer = _signer(target)
    aud = launcher.token_endpoint
    with expectations() as check:
        pending = list(NEGATIVES)
        unproven: list[Negative] = []
        control_needed = False  # a fresh-code positive control, when a shared code failed its closing control
        while pending:
            result = _code(launcher)
            refused: list[tuple[httpx.Response, Negative]] = []
            code_still_good = False
            while pending:
                negative = pending.pop(0)
                response = _exchange(http, launcher, result, *negative.build(signer, aud))
                if issued_tokens(response):
                    _judge(check, http, response, negative)  # tokens for a broken assertion: a finding, always
                    code_still_good = True  # it was still good after the refusals before it
                    break
                refused.append((response, negative))
            else:
                code_still_good = issued_tokens(_good(http, launcher, signer, result))
            judged = refused if code_still_good else refused[:1]  # the first refusal was on a fresh code
            for response, negative in judged:
                _judge(check, http, response, negative)
            unproven += [negative for _, negative in refused[len(judged):]]
            control_needed = control_needed or not code_still_good
        if control_needed:
            control = _good(http, launcher, signer, _code(launcher))
            if not issued_tokens(control):
                err = oauth_error(control)
                could_not_check(f"positive control failed: a good assertion got HTTP {err.status} "
                                f"error={err.error!r} for a fresh code, so no refusal here can be judged")
            for negative in unproven:  # this server spends a code on a failed client authentication
                _judge(check, http, _exchange(http, launcher, _code(launcher), *negative.build(signer, aud)),
                       negative)


@pytest.mark.requirement("ASYM-02")
@proves(Fault.MEMBER_ASSERTION_REPLAY_ACCEPTED)
def test_member_assertion_replay_refused(launcher: Launcher, http: RecordingClient, target: Target) -> None:
    """An assertion that just exchanged one code (positive control), sent again with a fresh code: its jti was
    already used, so it must be refused with invalid_client and no token."""
    signer = _signer(target)
    assertion = signer.assertion(launcher.token_endpoint)
    first = _good(http, launcher, signer, _code(launcher), assertion)
    if not issued_tokens(first):
        err = oauth_error(first)
        could_not_check(f"positive control failed: a good assertion got HTTP {err.status} error={err.error!r}, so "
                        "a replay cannot be judged")
    replay = Negative("a replayed assertion (jti already used)", ("ASYM-02",), lambda s, aud: _assert(assertion))
    with expectations() as check:
        _judge(check, http, _exchange(http, launcher, _code(launcher), *replay.build(signer, "")), replay)
