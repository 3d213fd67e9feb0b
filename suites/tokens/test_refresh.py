"""Refresh tokens

SMART App Launch 2.2 §Refresh access token: with offline_access granted the app receives a refresh token. Using it
requires the client's own authentication, works only for the client it was issued to, returns a new access token
with expires_in and scope, and never widens the grant; a narrower scope is honoured. The answer is not cached.

Each check refreshes a grant of its own (servers may rotate refresh tokens, SMART-REFRESH-05, or end the grant), so
no check depends on what another did. A refusal counts only when the same refresh with the client's own credentials
then succeeds: the positive control.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from smart_conformance import refusals
from smart_conformance.checks import could_not_check, describe, expect, not_applicable
from smart_conformance.config import Target
from smart_conformance.http import RecordingClient
from smart_conformance.launcher import Launcher, credentials
from smart_conformance.oauth import (
    issued_tokens,
    no_store_problems,
    oauth_error,
    scope_set,
    wider_than,
)
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.smart.token import ClientCredentials, refresh
from smart_conformance.testplan import Fault, proves


def _grant(launcher: Launcher, why: str) -> tuple[str, str]:
    """A grant of the check's own: its refresh token and granted scope."""
    result = launcher.fresh_grant(why)
    if not result.token.refresh_token:
        not_applicable("no refresh_token was issued with offline_access (see test_refresh_token_issued)")
    return result.token.refresh_token, result.token.scope or ""


def _refresh(http: RecordingClient, launcher: Launcher, refresh_token: str, *, client: ClientCredentials | None = None,
             scope: str | None = None) -> httpx.Response:
    return refresh(http, launcher.token_endpoint, refresh_token=refresh_token,
                   client=client if client is not None else credentials(launcher.target.client), scope=scope)


def _control(http: RecordingClient, launcher: Launcher, refresh_token: str, refusal: str) -> None:
    """The same refresh with the client's own credentials and no scope must work, or the refusal proves nothing."""
    response = _refresh(http, launcher, refresh_token)
    if not issued_tokens(response):
        could_not_check(f"no positive control for {refusal}: the same refresh token with the client's own "
                        f"credentials was refused too (HTTP {response.status_code} "
                        f"{describe(oauth_error(response).body)})")


@pytest.mark.requirement("SMART-REFRESH-01", "SMART-CAP-02")
@proves(Fault.OFFLINE_ACCESS_NO_REFRESH_TOKEN)
def test_refresh_token_issued(launch: LaunchResult, smart_config: dict[str, Any]) -> None:
    """offline_access granted (permission-offline advertised) → a refresh_token comes with the access token."""
    if "offline_access" not in scope_set(launch.token.scope):
        not_applicable("offline_access was not granted")
    advertised = "permission-offline" in (smart_config.get("capabilities") or [])
    expect(bool(launch.token.refresh_token), expected="a refresh_token alongside offline_access",
           actual="no refresh_token in the token response",
           requirement=("SMART-REFRESH-01", "SMART-CAP-02") if advertised else "SMART-REFRESH-01",
           exchange=launch.token_exchange)


@pytest.mark.requirement("SMART-REFRESH-02", "SMART-TOKEN-06")
@proves(Fault.EXPIRES_IN_MISSING, Fault.TOKEN_NO_STORE_MISSING, Fault.TOKEN_SCOPE_MISSING)
def test_refresh_returns_new_access_token(launcher: Launcher, http: RecordingClient) -> None:
    """A refresh with client authentication returns a new access token, expires_in and scope, not cached."""
    refresh_token, _ = _grant(launcher, "the refresh check")
    response = _refresh(http, launcher, refresh_token)
    exchange = http.exchange_for(response)
    body = response.json() if response.status_code == 200 else oauth_error(response).body
    expect(response.status_code == 200, expected="HTTP 200 for a refresh by its own client",
           actual=f"HTTP {response.status_code} {describe(body)}", requirement="SMART-REFRESH-02", exchange=exchange)
    missing = [f for f in ("access_token", "token_type", "expires_in", "scope") if f not in body]
    expect(not missing, expected="access_token, token_type, expires_in and scope in the refresh response",
           actual=f"missing {', '.join(missing)}", requirement="SMART-REFRESH-02", exchange=exchange)
    problems = no_store_problems(response)
    expect(not problems, expected="Cache-Control: no-store and Pragma: no-cache on the refresh response",
           actual="; ".join(problems), requirement="SMART-TOKEN-06", exchange=exchange)


@pytest.mark.requirement("SMART-REFRESH-02", "SMART-TOKEN-02")
@proves(Fault.REFRESH_WITHOUT_CLIENT_AUTH)
def test_refresh_requires_client_authentication(launcher: Launcher, http: RecordingClient, target: Target) -> None:
    """A refresh without client authentication gets no tokens (while the same refresh, authenticated, does)."""
    if target.client.auth_method == "none":
        not_applicable("the target's client is public")
    refresh_token, _ = _grant(launcher, "the refresh authentication check")
    response = _refresh(http, launcher, refresh_token, client=ClientCredentials(target.client.client_id, None, "none"))
    refusals.refused(http, response, what="a refresh without client authentication", shape=refusals.INVALID_CLIENT)
    _control(http, launcher, refresh_token, "a refresh refused without client authentication")


@pytest.mark.requirement("SMART-REFRESH-03")
@proves(Fault.REFRESH_OTHER_CLIENT)
def test_refresh_token_bound_to_client(launcher: Launcher, http: RecordingClient, target: Target) -> None:
    """Another registered client cannot use this client's refresh token (its own client still can)."""
    if target.other_client is None:
        not_applicable("the target names no other_client")
    refresh_token, _ = _grant(launcher, "the refresh client-binding check")
    response = _refresh(http, launcher, refresh_token, client=credentials(target.other_client))
    refusals.refused(http, response, what="another client's refresh token",
                     shape=refusals.token_error("invalid_grant", "invalid_client"))
    _control(http, launcher, refresh_token, "another client's refresh refused")


@pytest.mark.requirement("SMART-REFRESH-04")
@proves(Fault.REFRESH_WIDENS_SCOPE)
def test_refresh_never_widens_scope(launcher: Launcher, http: RecordingClient) -> None:
    """Asking for more at refresh (a write scope never granted) gets an error or the original scope, never more."""
    refresh_token, scope = _grant(launcher, "the refresh scope-widening check")
    original = scope_set(scope)
    wider = scope + " patient/*.cruds patient/*.write"
    response = _refresh(http, launcher, refresh_token, scope=wider)
    if response.status_code != 200:
        refusals.refused(http, response, what="a refresh asking for a wider scope",
                         shape=refusals.token_error("invalid_scope"))
        _control(http, launcher, refresh_token, "a wider scope refused at refresh")
        return
    granted = scope_set(response.json().get("scope"))
    extra = wider_than(granted, original)
    expect(not extra, expected=f"at most the original scope {scope!r}",
           actual=f"refresh granted also {', '.join(extra)}", exchange=http.exchange_for(response))


@pytest.mark.requirement("SMART-REFRESH-04")
@proves(Fault.REFRESH_IGNORES_NARROWER_SCOPE)
def test_refresh_narrower_scope_honoured(launcher: Launcher, http: RecordingClient) -> None:
    """Asking for a subset at refresh yields a token with that subset."""
    refresh_token, scope = _grant(launcher, "the refresh scope-narrowing check")
    resource_scopes = [s for s in scope.split() if s.startswith("patient/")]
    if len(resource_scopes) < 2:
        not_applicable("the grant has fewer than two resource scopes to narrow")
    narrower = " ".join(s for s in scope.split() if s != resource_scopes[-1])
    response = _refresh(http, launcher, refresh_token, scope=narrower)
    if response.status_code != 200:
        could_not_check(f"refresh with a narrower scope failed: HTTP {response.status_code}")
    granted = scope_set(response.json().get("scope"))
    expect(resource_scopes[-1] not in granted and not wider_than(granted, scope_set(narrower)),
           expected=f"scope within {narrower!r} (without {resource_scopes[-1]})",
           actual=f"scope {response.json().get('scope')!r}", exchange=http.exchange_for(response))


@pytest.mark.requirement("SMART-REFRESH-05")
@proves(Fault.ROTATED_REFRESH_TOKEN_REUSABLE)
def test_rotated_refresh_token_retired(launcher: Launcher, http: RecordingClient) -> None:
    """Where a refresh returns a new refresh token, the one it replaced no longer refreshes (RFC 9700 §4.14.2:
    rotation detects a stolen refresh token only if the old one dies). The first refresh, which worked with it, is
    the positive control; a server that does not rotate is not judged."""
    refresh_token, _ = _grant(launcher, "the refresh rotation check")
    first = _refresh(http, launcher, refresh_token)
    if not issued_tokens(first):
        could_not_check(f"the grant's first refresh failed (HTTP {first.status_code}): no rotation to judge")
    rotated = first.json().get("refresh_token")
    if not isinstance(rotated, str) or rotated == refresh_token:
        not_applicable("the server keeps the refresh token across refreshes (no rotation to judge)")
    replay = _refresh(http, launcher, refresh_token)
    refusals.refused(http, replay, what="the replaced refresh token (already rotated away)",
                     shape=refusals.token_error("invalid_grant"))
