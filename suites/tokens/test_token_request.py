"""The token request: client authentication, single-use codes bound to their client and redirect_uri, PKCE proof

RFC 6749 §4.1.3, RFC 7636 §4.6 and SMART App Launch 2.2 §Obtain access token: a confidential client authenticates; a
code works once, only for the client and redirect_uri it was issued for, and only with the PKCE verifier that matches
its challenge. Only the code grant and refresh are offered, and only by POST. Each check spends a fresh code of its
own, and each refusal is backed by the same code (or a fresh one) redeemed properly. These checks judge the protection:
no tokens. The wording of the refusal (RFC 6749 §5.2) is judged apart, in test_error_responses.py.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from smart_conformance import refusals
from smart_conformance.checks import could_not_check, describe, expect, not_applicable
from smart_conformance.config import Target
from smart_conformance.http import RecordingClient
from smart_conformance.launcher import Launcher, credentials
from smart_conformance.oauth import issued_tokens, oauth_error
from smart_conformance.revocation import REFUSAL_WAIT_S, wait_for_refusal, watch
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.smart.token import ClientCredentials, exchange_code
from smart_conformance.testplan import Fault, proves


def fresh_code(launcher: Launcher, **kwargs: Any) -> LaunchResult:
    result = launcher.launch(exchange=False, **kwargs)
    if not result.code:
        could_not_check("no code to test with: " + "; ".join(result.problems))
    return result


def redeem(http: RecordingClient, launcher: Launcher, result: LaunchResult, *, client: ClientCredentials | None = None,
           redirect_uri: str | None = None, verifier: str | None = "(launch)") -> Any:
    return exchange_code(http, launcher.token_endpoint, code=result.code,
                         redirect_uri=redirect_uri or result.spec.redirect_uri,
                         code_verifier=result.code_verifier if verifier == "(launch)" else verifier,
                         client=client or result.spec.client)


@pytest.mark.requirement("SMART-TOKEN-02")
@pytest.mark.parametrize("auth", ["wrong-secret", "no-authentication"])
@proves(Fault.WRONG_SECRET_ACCEPTED)
def test_client_authentication_required(launcher: Launcher, http: RecordingClient, target: Target, auth: str) -> None:
    """A wrong client secret, or none at all, gets no tokens; the same code with the right credentials then works
    (positive control). How the refusal is worded (invalid_client, 401 and its challenge) is judged apart, by
    test_token_error_responses."""
    if target.client.auth_method == "none":
        not_applicable("the target's client is public (auth_method: none)")
    result = fresh_code(launcher)
    method = target.client.auth_method if target.client.auth_method != "private_key_jwt" else "client_secret_basic"
    client = ClientCredentials(target.client.client_id, "wrong-" + (target.client.client_secret or "x")[:4] + "-secret",
                               method) if auth == "wrong-secret" else \
        ClientCredentials(target.client.client_id, None, "none")
    response = redeem(http, launcher, result, client=client)
    refusals.refused(http, response, what=f"a code exchange with {auth}", shape=refusals.INVALID_CLIENT)
    _code_control(http, launcher, result, "a code refused without valid client authentication")


def _code_control(http: RecordingClient, launcher: Launcher, result: Any, refusal: str) -> None:
    """The same code with the client's own credentials works; a server may spend a code on a failed attempt, so a
    second fresh code, redeemed properly, is the control then."""
    if redeem(http, launcher, result).status_code == 200:
        return
    other = fresh_code(launcher)
    again = redeem(http, launcher, other)
    if again.status_code != 200:
        could_not_check(f"no positive control for {refusal}: a fresh code redeemed with the client's own "
                        f"credentials was refused too (HTTP {again.status_code})")


@pytest.mark.requirement("RFC6749-04")
@proves(Fault.CODE_REUSE_ALLOWED)
def test_code_single_use(launcher: Launcher, http: RecordingClient) -> None:
    """A code works once; the second exchange is refused with invalid_grant."""
    result = fresh_code(launcher)
    first = redeem(http, launcher, result)
    if first.status_code != 200:
        could_not_check(f"the first exchange of a fresh code failed (HTTP {first.status_code})")
    second = redeem(http, launcher, result)
    refusals.refused(http, second, what="the second use of a code", shape=refusals.token_error("invalid_grant"))


@pytest.mark.requirement("RFC6749-11")
@proves(Fault.CODE_REUSE_ALLOWED, Fault.CODE_REUSE_KEEPS_TOKENS, Fault.REVOKED_TOKEN_ACCEPTED)
def test_code_reuse_revokes_tokens(launcher: Launcher, http: RecordingClient, target: Target) -> None:
    """After a code is replayed, the token issued for it, which worked just before, stops working (RFC 6749 §4.1.2:
    SHOULD). Without that positive control a refusal proves nothing."""
    result = fresh_code(launcher)
    first = redeem(http, launcher, result)
    body = first.json() if first.status_code == 200 else {}
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        could_not_check(f"the first exchange of a fresh code failed (HTTP {first.status_code})")
    watched = watch(http, target, token, "the token of a replayed code refused",
                    body.get("patient") if isinstance(body.get("patient"), str) else None)
    redeem(http, launcher, result)
    delay, reply = wait_for_refusal(http, target, watched)
    expect(delay is not None, expected="the token of a replayed code revoked: refused, where it worked just before",
           actual=f"HTTP {reply.status} after {REFUSAL_WAIT_S:.0f}s: it still works", exchange=reply.exchange)


@pytest.mark.requirement("RFC6749-06")
@proves(Fault.CODE_NOT_BOUND_TO_REDIRECT)
def test_code_bound_to_redirect_uri(launcher: Launcher, http: RecordingClient) -> None:
    """A code presented with another redirect_uri is refused; presented with its own, it works (positive control)."""
    result = fresh_code(launcher)
    response = redeem(http, launcher, result, redirect_uri=result.spec.redirect_uri.rstrip("/") + "/other")
    refusals.refused(http, response, what="a code presented with a different redirect_uri",
                     shape=refusals.token_error("invalid_grant"))
    _code_control(http, launcher, result, "a code refused for a different redirect_uri")


@pytest.mark.requirement("RFC6749-05")
@proves(Fault.CODE_NOT_BOUND_TO_CLIENT)
def test_code_bound_to_client(launcher: Launcher, http: RecordingClient, target: Target) -> None:
    """A code issued to one client is refused when another registered client presents it."""
    if target.other_client is None:
        not_applicable("the target names no other_client")
    result = fresh_code(launcher)
    response = redeem(http, launcher, result, client=credentials(target.other_client),
                      redirect_uri=result.spec.redirect_uri)
    refusals.refused(http, response, what="another client's code",
                     shape=refusals.token_error("invalid_grant", "invalid_client"))
    _code_control(http, launcher, result, "another client's code refused")


@pytest.mark.requirement("SMART-PKCE-03", "SMART-PKCE-04", "OAUTHBCP-02")
@pytest.mark.parametrize("verifier", ["missing", "blank", "wrong", "equals-challenge", "other-launch"])
@proves(Fault.PKCE_VERIFIER_NOT_CHECKED)
def test_pkce_verifier_checked(launcher: Launcher, http: RecordingClient, verifier: str) -> None:
    """The code is refused without the exact code_verifier of its own challenge."""
    result = fresh_code(launcher)
    if verifier == "other-launch":
        other = fresh_code(launcher)
        sent: str | None = other.code_verifier
    elif verifier == "equals-challenge":
        digest = hashlib.sha256((result.code_verifier or "").encode("ascii")).digest()
        sent = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    else:
        sent = {"missing": None, "blank": "", "wrong": "W" * 64}[verifier]
    response = redeem(http, launcher, result, verifier=sent)
    refusals.refused(http, response, what=f"a code with a {verifier} code_verifier",
                     shape=refusals.token_error("invalid_grant", "invalid_request"))
    _code_control(http, launcher, result, f"a code refused with a {verifier} code_verifier")


@pytest.mark.requirement("OAUTHBCP-03")
@pytest.mark.parametrize("grant", ["password", "made-up"])
@proves(Fault.PASSWORD_GRANT_ALLOWED)
def test_unsupported_grant_types_refused(launcher: Launcher, http: RecordingClient, target: Target, grant: str) -> None:
    """The password grant and unknown grant types get no tokens (the error code they get is judged by
    test_token_error_responses)."""
    form = {"grant_type": "password", "username": target.member.username, "password": target.member.password,
            "scope": target.scopes["full"]} if grant == "password" else {"grant_type": "urn:example:made-up"}
    headers: dict[str, str] = {}
    credentials(target.client).apply(form, headers, launcher.token_endpoint)
    response = http.post(launcher.token_endpoint, data=form, headers=headers)
    refusals.refused(http, response, what=f"grant_type={form['grant_type']}", shape=refusals.UNSUPPORTED_GRANT)


@pytest.mark.requirement("RFC6749-12")
@proves(Fault.TOKEN_GET_ACCEPTED)
def test_token_endpoint_requires_post(launcher: Launcher, http: RecordingClient, target: Target) -> None:
    """The token endpoint does not hand out tokens to a GET (credentials would end up in logs)."""
    result = fresh_code(launcher)
    params = {"grant_type": "authorization_code", "code": result.code, "redirect_uri": result.spec.redirect_uri,
              "code_verifier": result.code_verifier or ""}
    headers: dict[str, str] = {}
    credentials(target.client).apply(params, headers, launcher.token_endpoint)  # properly authenticated: only the method is wrong
    response = http.get(launcher.token_endpoint, params=params, headers=headers)
    refusals.decided(response, "a token request by GET")
    expect(not issued_tokens(response),
           expected="GET refused (405, or a 4xx OAuth error) without tokens",
           actual=f"HTTP {response.status_code} {describe(oauth_error(response).body)}",
           exchange=http.exchange_for(response))
