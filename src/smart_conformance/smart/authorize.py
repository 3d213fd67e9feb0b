"""The authorization request of a SMART standalone launch, easy to bend for negative tests.

Every parameter is a plain field; ``extra`` adds or overrides any parameter and ``omit`` drops any, so a test can send
no challenge, ``plain``, a foreign ``aud`` or an odd ``state`` without fighting the API.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from smart_conformance.smart.pkce import Pkce, new_pkce


def new_state() -> str:
    """Fresh, unguessable: 32 random bytes (256 bits), URL-safe so it survives any echo unchanged."""
    return secrets.token_urlsafe(32)


def new_nonce() -> str:
    """OpenID Connect nonce: 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class AuthorizationRequest:
    """Parameters of ``GET|POST {authorize}``; None fields are not sent."""

    client_id: str
    redirect_uri: str | None
    scope: str | None
    state: str | None
    aud: str | None
    response_type: str | None = "code"
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    nonce: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    omit: frozenset[str] = frozenset()

    _ORDER = ("response_type", "client_id", "redirect_uri", "scope", "state", "aud", "code_challenge",
              "code_challenge_method", "nonce")

    def params(self) -> list[tuple[str, str]]:
        """The parameters in a stable order: standard ones, then ``extra`` (which overrides), minus ``omit``."""
        out: dict[str, str] = {}
        for name in self._ORDER:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out.update(self.extra)
        return [(k, v) for k, v in out.items() if k not in self.omit]

    def to_form(self) -> dict[str, str]:
        return dict(self.params())

    def query(self) -> str:
        """Percent-encoded with %20 for spaces (never '+'), so every server decodes the same string."""
        return urlencode(self.params(), quote_via=quote, safe="")

    def to_url(self, endpoint: str) -> str:
        """``endpoint`` with the parameters appended (after any query the endpoint already has)."""
        parts = urlsplit(endpoint)
        query = "&".join(q for q in (parts.query, self.query()) if q)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))

    def but(self, *, omit: Iterable[str] = (), **changes: Any) -> AuthorizationRequest:
        """A copy with fields changed and/or parameters omitted: ``req.but(code_challenge_method="plain")``."""
        known = {f for f in self.__dataclass_fields__}
        fields_ = {k: v for k, v in changes.items() if k in known}
        extra = {k: v for k, v in changes.items() if k not in known}
        if extra:
            fields_["extra"] = {**self.extra, **extra}
        if omit:
            fields_["omit"] = self.omit | frozenset(omit)
        return replace(self, **fields_)


def standard_request(*, client_id: str, redirect_uri: str, scope: str, aud: str, pkce: Pkce | bool = True,
                     nonce: str | bool | None = None, state: str | None = None) -> tuple[AuthorizationRequest,
                                                                                         Pkce | None]:
    """A conformant request: fresh state, PKCE S256, aud; a nonce when asked (or when ``openid`` is requested).

    Returns the request and the PKCE pair whose verifier the token exchange needs.
    """
    pair = new_pkce() if pkce is True else (pkce or None)
    if nonce is None:
        nonce = "openid" in scope.split()
    nonce_value = new_nonce() if nonce is True else (nonce or None)
    request = AuthorizationRequest(client_id=client_id, redirect_uri=redirect_uri, scope=scope,
                                   state=state if state is not None else new_state(), aud=aud,
                                   code_challenge=pair.challenge if pair else None,
                                   code_challenge_method=pair.method if pair else None, nonce=nonce_value)
    return request, pair
