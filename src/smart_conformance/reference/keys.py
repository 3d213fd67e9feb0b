"""Signing keys: two RSA-2048 keys (the active one and the next rotation key), published as a bare-JWK set.

Two keys, because that is what a payer mid-rotation publishes and it makes ``kid`` mandatory for verifiers
(OIDC Core §10.1). Keys are kept in the state directory so a restarted server with the same state still
validates its earlier tokens.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey

    def jwk(self) -> dict[str, str]:
        """The bare public JWK (n, e only: never d, p, q)."""
        numbers = self.private.public_key().public_numbers()
        return {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256", "n": _b64(numbers.n),
                "e": _b64(numbers.e)}


def _kid(key: rsa.RSAPrivateKey) -> str:
    """RFC 7638-style thumbprint, so the kid is stable for a key and unique across keys."""
    numbers = key.public_key().public_numbers()
    canonical = json.dumps({"e": _b64(numbers.e), "kty": "RSA", "n": _b64(numbers.n)}, separators=(",", ":"),
                           sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


class KeySet:
    """The active signing key plus the published next key."""

    def __init__(self, state_dir: Path) -> None:
        path = state_dir / "signing-keys.json"
        if path.exists():
            pems = json.loads(path.read_text(encoding="utf-8"))
            privs = [serialization.load_pem_private_key(p.encode(), password=None) for p in pems]
        else:
            privs = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]
            path.write_text(json.dumps([k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()).decode() for k in privs]),
                            encoding="utf-8")
            path.chmod(0o600)
        self.keys = [SigningKey(_kid(k), k) for k in privs if isinstance(k, rsa.RSAPrivateKey)]
        self.active = self.keys[0]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.jwk() for k in self.keys]}

    def sign(self, claims: dict[str, Any], *, kid: bool = True) -> str:
        headers = {"kid": self.active.kid, "typ": "JWT"} if kid else {"typ": "JWT"}
        return jwt.encode(claims, self.active.private, algorithm="RS256", headers=headers)

    def public_key(self, kid: str | None) -> rsa.RSAPublicKey | None:
        for key in self.keys:
            if key.kid == kid:
                return key.private.public_key()
        return None
