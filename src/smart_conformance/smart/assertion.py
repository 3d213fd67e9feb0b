"""Client assertions for SMART Backend Services (client-confidential-asymmetric, RFC 7523 §2.2 / §3).

The harness signs the one-time authentication JWT a backend client sends with ``grant_type=client_credentials``:
``iss`` = ``sub`` = client_id, ``aud`` = the token endpoint, ``exp`` at most five minutes ahead, a fresh ``jti``,
header ``alg`` RS384 or ES384, ``kid`` and ``typ: JWT``. The negative variants (expired, too long-lived, wrong
audience, algorithm confusion, a tampered payload...) each change exactly one thing of a good assertion, so a refusal
can be blamed on that one thing. Assertions are registered as secrets: they are bearer credentials for their lifetime.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from smart_conformance import redact

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
LIFETIME = 240  # seconds: inside the five minutes SMART allows, with room for clock skew

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_private_key(text: str) -> PrivateKey:
    """A PEM private key, or a private JWK (JSON). Raises ValueError with a reason a target author can act on."""
    text = text.strip()
    try:
        if text.startswith("{"):
            key: Any = jwt.PyJWK(json.loads(text)).key
        else:
            key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        raise ValueError(f"not a readable unencrypted PEM private key or private JWK ({type(exc).__name__})") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ValueError("the key is neither an RSA nor an EC private key")  # noqa: TRY004  (a config error)
    return key


def key_matches_alg(key: PrivateKey, alg: str) -> bool:
    if alg == "RS384":
        return isinstance(key, rsa.RSAPrivateKey)
    return isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"


def new_key_like(key: PrivateKey) -> PrivateKey:
    """A fresh key of the same type: one the server has never seen (the unregistered-key negative)."""
    if isinstance(key, rsa.RSAPrivateKey):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP384R1())


@dataclass(frozen=True)
class Signer:
    """A backend client's signing identity: client_id, private key, algorithm and kid."""

    client_id: str
    key: PrivateKey = field(repr=False)
    alg: str
    kid: str

    def claims(self, audience: str, *, lifetime: int = LIFETIME, now: float | None = None) -> dict[str, Any]:
        """The claims of a good assertion (a fresh jti each call)."""
        now = time.time() if now is None else now
        return {"iss": self.client_id, "sub": self.client_id, "aud": audience, "exp": int(now) + lifetime,
                "iat": int(now), "jti": secrets.token_urlsafe(24)}

    def sign(self, claims: Mapping[str, Any], *, key: PrivateKey | None = None, kid: str | None = None,
             headers: Mapping[str, Any] | None = None) -> str:
        head = {"kid": self.kid if kid is None else kid, "typ": "JWT", **(headers or {})}
        token = jwt.encode(dict(claims), key or self.key, algorithm=self.alg, headers=head)
        redact.register_secret(token)
        return token

    def assertion(self, audience: str, **kwargs: Any) -> str:
        return self.sign(self.claims(audience, **kwargs))

    # --- negative forms ----------------------------------------------------------------------------------------
    def unsigned(self, claims: Mapping[str, Any]) -> str:
        """``alg: none`` with an empty signature (RFC 7519 §6): what a server must never accept."""
        head = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": self.kid}, separators=(",", ":")).encode())
        body = _b64(json.dumps(dict(claims), separators=(",", ":")).encode())
        token = f"{head}.{body}."
        redact.register_secret(token)
        return token

    def hs256_with_public_key(self, claims: Mapping[str, Any]) -> str:
        """Algorithm confusion: HS256 keyed with the client's *public* key (PEM), which anyone may know. A verifier
        that lets the token's header choose the algorithm and passes it the registered key accepts this."""
        public_pem = self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo)
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": self.kid}, separators=(",", ":")).encode())
        body = _b64(json.dumps(dict(claims), separators=(",", ":")).encode())
        sig = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
        token = f"{head}.{body}.{_b64(sig)}"
        redact.register_secret(token)
        return token

    def tampered(self, claims: Mapping[str, Any], changed: Mapping[str, Any]) -> str:
        """A correctly signed assertion whose payload was then changed (signature left as it was)."""
        head, _, sig = self.sign(claims).split(".")
        body = _b64(json.dumps({**claims, **changed}, separators=(",", ":")).encode())
        token = f"{head}.{body}.{sig}"
        redact.register_secret(token)
        return token


def token_form(assertion: str, scope: str, *, assertion_type: str = ASSERTION_TYPE) -> dict[str, str]:
    """The client_credentials token request body (SMART Backend Services §Obtain access token)."""
    return {"grant_type": "client_credentials", "scope": scope, "client_assertion_type": assertion_type,
            "client_assertion": assertion}


def request_token(http: httpx.Client, token_endpoint: str, form: Mapping[str, str],
                  headers: Mapping[str, str] | None = None) -> httpx.Response:
    response = http.post(token_endpoint, data=dict(form), headers={"Accept": "application/json", **(headers or {})})
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("access_token"), str):
        redact.register_secret(body["access_token"])
    return response
