"""PKCE (RFC 7636): a fresh code_verifier per launch and its S256 challenge."""

from __future__ import annotations

import base64
import hashlib
import secrets
import string
from dataclasses import dataclass, field

# RFC 7636 §4.1: code-verifier = 43*128unreserved, unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
UNRESERVED = string.ascii_letters + string.digits + "-._~"
MIN_LENGTH, MAX_LENGTH = 43, 128


def new_code_verifier(length: int = 64) -> str:
    """A verifier from the OS CSPRNG. 64 characters of a 66-symbol alphabet is ~387 bits of entropy."""
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise ValueError(f"a PKCE code_verifier is {MIN_LENGTH} to {MAX_LENGTH} characters, not {length}")
    return "".join(secrets.choice(UNRESERVED) for _ in range(length))


def is_valid_verifier(verifier: str) -> bool:
    return MIN_LENGTH <= len(verifier) <= MAX_LENGTH and all(c in UNRESERVED for c in verifier)


def s256_challenge(verifier: str) -> str:
    """BASE64URL(SHA256(ASCII(code_verifier))) without padding (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Pkce:
    """A verifier with its challenge. ``method`` "plain" exists only so negative tests can send it."""

    verifier: str = field(repr=False)
    challenge: str
    method: str = "S256"


def new_pkce(length: int = 64, method: str = "S256") -> Pkce:
    verifier = new_code_verifier(length)
    if method == "S256":
        return Pkce(verifier, s256_challenge(verifier), "S256")
    if method == "plain":
        return Pkce(verifier, verifier, "plain")
    raise ValueError(f"unknown code_challenge_method {method!r} (S256 or plain)")
