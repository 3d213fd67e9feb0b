"""OpenID Connect id_token validation as separate, data-returning steps, so each property is its own check."""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

import httpx
import jwt


class MalformedJwt(ValueError):
    """Not a JWS compact serialization (three base64url parts, JSON header and claims)."""


class IdTokenProblem(Exception):
    """One way an id_token fails validation: which field, what was expected, what was found."""

    def __init__(self, field: str, expected: str, actual: Any) -> None:
        self.field, self.expected, self.actual = field, expected, actual
        super().__init__(f"id_token {field}: expected {expected}, got {actual!r}")


def _b64url_json(segment: str, what: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise MalformedJwt(f"JWT {what} is not base64url ({exc})") from None
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedJwt(f"JWT {what} is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise MalformedJwt(f"JWT {what} is JSON {type(value).__name__}, not an object")
    return value


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims, without checking anything: for reporting what a token says."""
    if not isinstance(token, str) or not token:
        raise MalformedJwt(f"expected a JWT string, got {type(token).__name__}")
    parts = token.split(".")
    if len(parts) != 3:
        raise MalformedJwt(f"JWT has {len(parts)} dot-separated part(s); a signed JWT (JWS compact) has 3")
    if not parts[2]:
        raise MalformedJwt("JWT has an empty signature (unsigned, alg 'none'?)")
    return _b64url_json(parts[0], "header"), _b64url_json(parts[1], "claims")


def fetch_openid_configuration(http: httpx.Client, iss: str) -> dict[str, Any]:
    """``{iss}/.well-known/openid-configuration`` as a dict; HTTP errors and non-objects raise."""
    response = http.get(iss.rstrip("/") + "/.well-known/openid-configuration", headers={"Accept": "application/json"})
    response.raise_for_status()
    body = response.json()
    if not isinstance(body, dict):
        raise ValueError(f"openid-configuration of {iss} is not a JSON object")  # noqa: TRY004 - callers treat any malformed document alike
    return body


def fetch_jwks(http: httpx.Client, jwks_uri: str) -> dict[str, Any]:
    response = http.get(jwks_uri, headers={"Accept": "application/json"})
    response.raise_for_status()
    body = response.json()
    if not isinstance(body, dict) or not isinstance(body.get("keys"), list):
        raise ValueError(f"{jwks_uri} is not a JWK Set (no 'keys' array)")  # noqa: TRY004 - as above
    return body


def find_key(jwks: Mapping[str, Any], kid: str) -> dict[str, Any] | None:
    for key in jwks.get("keys") or []:
        if isinstance(key, Mapping) and key.get("kid") == kid:
            return dict(key)
    return None


def verify_signature(token: str, jwks: Mapping[str, Any]) -> dict[str, Any]:
    """RS256 signature by a key of the JWKS named by the header's kid; returns the (now authentic) claims."""
    header, _ = decode_unverified(token)
    alg = header.get("alg")
    if alg != "RS256":
        raise IdTokenProblem("header.alg", "'RS256'", alg)
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise IdTokenProblem("header.kid", "a key id naming a key of the JWKS", kid)
    jwk = find_key(jwks, kid)
    if jwk is None:
        kids = [k.get("kid") for k in jwks.get("keys") or [] if isinstance(k, Mapping)]
        raise IdTokenProblem("header.kid", f"one of the JWKS key ids {kids}", kid)
    try:
        key = jwt.PyJWK(jwk, algorithm="RS256")
    except (jwt.PyJWKError, jwt.InvalidKeyError) as exc:
        raise IdTokenProblem("jwks", f"a usable RSA key for kid {kid!r}", str(exc)) from None
    try:
        return jwt.decode(token, key.key, algorithms=["RS256"],
                          options={"verify_signature": True, "verify_aud": False, "verify_iss": False,
                                   "verify_exp": False, "verify_iat": False, "verify_nbf": False,
                                   "require": []})
    except jwt.InvalidSignatureError:
        raise IdTokenProblem("signature", f"a valid RS256 signature by key {kid!r}", "signature does not verify") \
            from None
    except jwt.DecodeError as exc:
        raise IdTokenProblem("signature", "a decodable RS256 JWS", str(exc)) from None


def verify_id_token(token: str, jwks: Mapping[str, Any], *, issuer: str, audience: str, nonce: str | None,
                    leeway: int = 60, now: float | None = None) -> dict[str, Any]:
    """OpenID Connect Core §3.1.3.7 for our use: signature, iss, aud, exp, iat, nonce. First problem raises."""
    claims = verify_signature(token, jwks)
    now = time.time() if now is None else now
    if claims.get("iss") != issuer:
        raise IdTokenProblem("iss", repr(issuer), claims.get("iss"))
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if audience not in auds:
        raise IdTokenProblem("aud", f"{audience!r} (the client_id)", aud)
    if len(auds) > 1 and claims.get("azp") not in (None, audience):
        raise IdTokenProblem("azp", repr(audience), claims.get("azp"))
    exp = claims.get("exp")
    if not _is_number(exp):
        raise IdTokenProblem("exp", "a NumericDate", exp)
    if exp + leeway < now:
        raise IdTokenProblem("exp", f"in the future (now {int(now)}, leeway {leeway}s)", exp)
    iat = claims.get("iat")
    if not _is_number(iat):
        raise IdTokenProblem("iat", "a NumericDate", iat)
    if iat - leeway > now:
        raise IdTokenProblem("iat", f"not in the future (now {int(now)}, leeway {leeway}s)", iat)
    if nonce is not None and claims.get("nonce") != nonce:
        raise IdTokenProblem("nonce", "the nonce sent in the authorization request", claims.get("nonce"))
    return claims


def _origin(parts: SplitResult) -> tuple[str, str, int | None]:
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    return scheme, (parts.hostname or "").lower(), port or {"https": 443, "http": 80}.get(scheme)


def fhir_user_reference(fhir_user: str, fhir_base: str) -> str | None:
    """fhirUser as a reference relative to the FHIR base (``Patient/123``), or None when it resolves outside that
    base: another origin (plain http included) or another path. SMART: fhirUser is absolute or relative to the FHIR
    base; the member's access token may only ever be sent under the target's own FHIR base, so a fhirUser elsewhere
    is never requested with it."""
    base = fhir_base.rstrip("/") + "/"
    absolute = urlsplit(urljoin(base, fhir_user.strip()))
    here = urlsplit(base)
    if _origin(absolute) != _origin(here) or not absolute.path.startswith(here.path):
        return None
    reference = absolute.path[len(here.path):].strip("/")
    if not reference or any(segment in (".", "..") for segment in reference.split("/")):
        return None
    return reference


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
