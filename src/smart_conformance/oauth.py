"""Reading OAuth 2.0 answers the way the RFCs define them, for checks that judge refusals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class OAuthError:
    status: int
    error: str | None
    description: str | None
    body: Any
    www_authenticate: str | None


def oauth_error(response: httpx.Response) -> OAuthError:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text[:300]
    error = body.get("error") if isinstance(body, dict) else None
    description = body.get("error_description") if isinstance(body, dict) else None
    return OAuthError(response.status_code, error if isinstance(error, str) else None,
                      description if isinstance(description, str) else None, body,
                      response.headers.get("www-authenticate"))


def not_a_decision(status: int) -> bool:
    """5xx (the server failed) and 429 (too many requests) say nothing about whether the request was acceptable."""
    return status >= 500 or status == 429


def issued_tokens(response: httpx.Response) -> bool:
    """Did a token endpoint answer hand out a token? (What a refusal must never do.)"""
    if response.status_code >= 300:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and any(isinstance(body.get(k), str) and body.get(k)
                                          for k in ("access_token", "id_token", "refresh_token"))


def no_store_problems(response: httpx.Response) -> list[str]:
    """RFC 6749 §5.1 / SMART: token responses must not be cached by the client or intermediaries."""
    problems = []
    cache_control = [d.strip().lower() for d in response.headers.get("cache-control", "").split(",")]
    if "no-store" not in cache_control:
        problems.append(f"Cache-Control: {response.headers.get('cache-control', '(absent)')}")
    if "no-cache" not in response.headers.get("pragma", "").lower():
        problems.append(f"Pragma: {response.headers.get('pragma', '(absent)')}")
    return problems


def cacheable(cache_control: str | None) -> str | None:
    """Why a cache may keep an answer with health data or token metadata (None when none may), after RFC 9111 §5.2:
    no-store keeps every cache from storing it; private or no-cache keep shared caches from it, unless public or
    s-maxage invite them back. No header, or only max-age, leaves the answer to each cache's own rules."""
    if not cache_control:
        return "no Cache-Control header: caches follow their own rules"
    found = {part.strip().partition("=")[0].strip().lower() for part in cache_control.replace("\n", ",").split(",")}
    if "no-store" in found:
        return None
    if "public" in found or "s-maxage" in found:
        return f"Cache-Control: {cache_control} lets shared caches keep it"
    if "private" in found or "no-cache" in found:
        return None
    return f"Cache-Control: {cache_control} lets caches keep it (neither no-store nor private)"


def scope_set(scope: str | None) -> set[str]:
    return set((scope or "").split())


_V1_TO_V2 = {"read": "rs", "write": "cud", "*": "cruds"}


def normalise_scope(scope: str) -> tuple[str, str, frozenset[str]] | None:
    """``patient/Coverage.read`` and ``patient/Coverage.rs`` → (context, type, {'r','s'}); None for non-resource scopes."""
    if "/" not in scope or "." not in scope:
        return None
    context, rest = scope.split("/", 1)
    if context not in ("patient", "user", "system"):
        return None
    resource, _, perms = rest.partition(".")
    perms = perms.split("?", 1)[0]
    perms = _V1_TO_V2.get(perms, perms)
    return context, resource, frozenset(perms)


def covered_by(scope: str, granted: set[str]) -> bool:
    """Is ``scope`` within what ``granted`` gives (v1 and v2 syntax, wildcards)?"""
    if scope in granted:
        return True
    wanted = normalise_scope(scope)
    if wanted is None:
        return False
    for have in granted:
        got = normalise_scope(have)
        if got and got[0] == wanted[0] and got[1] in (wanted[1], "*") and wanted[2] <= got[2]:
            return True
    return False


def wider_than(granted: set[str], requested: set[str]) -> list[str]:
    """Granted scopes that the request did not ask for (nothing beyond what was requested may be granted)."""
    return sorted(s for s in granted if not covered_by(s, requested))


# A state value with characters a sloppy server re-encodes or drops (RFC 6749 §4.1.2: returned exactly as sent).
AWKWARD_STATE = "st/+ &=?%20~*'()!$,;:@[]{}|^-._xyz"
