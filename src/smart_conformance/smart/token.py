"""Token, refresh, introspection and revocation requests, each returning the raw ``httpx.Response`` to be judged.

Nothing here raises on an HTTP error status or mutates shared state: a 400 from the token endpoint is evidence.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote_plus

import httpx

if TYPE_CHECKING:
    from smart_conformance.smart.assertion import Signer

AuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
FORM = "application/x-www-form-urlencoded"


def form_urlencode(value: str) -> str:
    """The application/x-www-form-urlencoded byte serializer (WHATWG): only ``*-._`` and alphanumerics stay as is."""
    return quote_plus(value, safe="*").replace("~", "%7E")


def basic_auth_header(client_id: str, client_secret: str) -> str:
    """RFC 6749 §2.3.1: form-urlencode client_id and secret, *then* base64 ``id:secret`` (RFC 7617)."""
    pair = f"{form_urlencode(client_id)}:{form_urlencode(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    auth_method: AuthMethod = "client_secret_basic"
    signer: Signer | None = field(default=None, repr=False)  # private_key_jwt: the client's signing identity

    def apply(self, form: dict[str, str], headers: dict[str, str], url: str | None = None) -> None:
        """Authenticate a request to ``url`` the registered way (in place on this request's own dicts).

        private_key_jwt (SMART client-confidential-asymmetric, RFC 7523 §2.2): a fresh assertion per request, its
        ``aud`` the URL it is posted to (SMART: "the same URL to which this authentication JWT will be posted")."""
        if self.auth_method == "client_secret_basic":
            if self.client_secret is None:
                raise ValueError("client_secret_basic needs a client_secret")
            headers["Authorization"] = basic_auth_header(self.client_id, self.client_secret)
        elif self.auth_method == "client_secret_post":
            if self.client_secret is None:
                raise ValueError("client_secret_post needs a client_secret")
            form["client_id"] = self.client_id
            form["client_secret"] = self.client_secret
        elif self.auth_method == "private_key_jwt":
            if self.signer is None or url is None:
                raise ValueError("private_key_jwt needs a signer and the URL the assertion is posted to")
            from smart_conformance.smart.assertion import ASSERTION_TYPE

            form["client_assertion_type"] = ASSERTION_TYPE
            form["client_assertion"] = self.signer.assertion(url)
        elif self.auth_method == "none":
            form["client_id"] = self.client_id
        else:
            raise ValueError(f"unknown client auth method {self.auth_method!r}")


def _post(http: httpx.Client, url: str, form: dict[str, str], client: ClientCredentials | None,
          extra: Mapping[str, str | None] | None, headers: Mapping[str, str] | None) -> httpx.Response:
    sent_headers = {"Accept": "application/json", "Content-Type": FORM}
    if client is not None:
        client.apply(form, sent_headers, url)
    for key, value in (extra or {}).items():  # None removes a parameter: for negative tests
        if value is None:
            form.pop(key, None)
        else:
            form[key] = value
    sent_headers.update(headers or {})
    return http.post(url, data=form, headers=sent_headers)


def exchange_code(http: httpx.Client, token_endpoint: str, *, code: str, redirect_uri: str | None,
                  code_verifier: str | None, client: ClientCredentials | None,
                  extra: Mapping[str, str | None] | None = None,
                  headers: Mapping[str, str] | None = None) -> httpx.Response:
    """``grant_type=authorization_code``. None for redirect_uri / code_verifier / client leaves it out."""
    form = {"grant_type": "authorization_code", "code": code}
    if redirect_uri is not None:
        form["redirect_uri"] = redirect_uri
    if code_verifier is not None:
        form["code_verifier"] = code_verifier
    return _post(http, token_endpoint, form, client, extra, headers)


def refresh(http: httpx.Client, token_endpoint: str, *, refresh_token: str, client: ClientCredentials | None,
            scope: str | None = None, extra: Mapping[str, str | None] | None = None,
            headers: Mapping[str, str] | None = None) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if scope is not None:
        form["scope"] = scope
    return _post(http, token_endpoint, form, client, extra, headers)


def introspect(http: httpx.Client, introspection_endpoint: str, *, token: str,
               client: ClientCredentials | None = None, bearer: str | None = None,
               token_type_hint: str | None = None, extra: Mapping[str, str | None] | None = None) -> httpx.Response:
    """RFC 7662. SMART servers protect introspection with client authentication or a bearer token: give either."""
    form = {"token": token}
    if token_type_hint:
        form["token_type_hint"] = token_type_hint
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
    return _post(http, introspection_endpoint, form, client, extra, headers)


def revoke(http: httpx.Client, revocation_endpoint: str, *, token: str, client: ClientCredentials | None,
           token_type_hint: str | None = None, extra: Mapping[str, str | None] | None = None) -> httpx.Response:
    """RFC 7009."""
    form = {"token": token}
    if token_type_hint:
        form["token_type_hint"] = token_type_hint
    return _post(http, revocation_endpoint, form, client, extra, None)


class TokenResponseError(ValueError):
    """The body is not a JSON object: there is no token response to read."""


@dataclass(frozen=True)
class TokenResponse:
    """Typed view of a token response. A field of the wrong JSON type is None here and named in ``problems``."""

    status: int
    raw: dict[str, Any] = field(repr=False)
    access_token: str | None = field(default=None, repr=False)
    token_type: str | None = None
    expires_in: int | None = None
    scope: str | None = None
    refresh_token: str | None = field(default=None, repr=False)
    id_token: str | None = field(default=None, repr=False)
    patient: str | None = None
    encounter: str | None = None
    need_patient_banner: bool | None = None
    smart_style_url: str | None = None
    authorization_details: list[Any] | None = None
    problems: tuple[str, ...] = ()

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple((self.scope or "").split())

    @classmethod
    def parse(cls, response: httpx.Response | Mapping[str, Any], status: int | None = None) -> TokenResponse:
        if isinstance(response, httpx.Response):
            status = response.status_code
            try:
                body = response.json()
            except ValueError as exc:
                ctype = response.headers.get("content-type", "")
                raise TokenResponseError(f"token response (HTTP {status}, {ctype or 'no content-type'}) is not "
                                         f"JSON: {exc}") from None
        else:
            body = response
        if not isinstance(body, Mapping):
            raise TokenResponseError(f"token response is JSON {type(body).__name__}, not an object")
        raw = dict(body)
        problems: list[str] = []

        def typed(name: str, kind: type | tuple[type, ...], label: str) -> Any:
            value = raw.get(name)
            if value is None:
                return None
            if isinstance(value, bool) and kind is not bool:
                ok = False
            else:
                ok = isinstance(value, kind)
            if not ok:
                problems.append(f"{name} is {type(value).__name__} {value!r}, expected {label}")
                return None
            return value

        return cls(status=status if status is not None else 200, raw=raw,
                   access_token=typed("access_token", str, "a string"),
                   token_type=typed("token_type", str, "a string"),
                   expires_in=typed("expires_in", int, "an integer (seconds)"),
                   scope=typed("scope", str, "a space-separated string"),
                   refresh_token=typed("refresh_token", str, "a string"),
                   id_token=typed("id_token", str, "a string (a JWT)"),
                   patient=typed("patient", str, "a string (a Patient id)"),
                   encounter=typed("encounter", str, "a string"),
                   need_patient_banner=typed("need_patient_banner", bool, "a boolean"),
                   smart_style_url=typed("smart_style_url", str, "a URL string"),
                   authorization_details=typed("authorization_details", list, "a JSON array"),
                   problems=tuple(problems))
