"""What the TLS checks count as weak: every threshold and judgement, in one place.

The suite (``suites/tls``) walks the endpoints and words the failures; whether a key, a hash, a cipher suite, a
validity period or an HSTS header is good enough is decided here, once, so a unit test of a rule tests the rule the
checks apply. The sources: BCP 195 (RFC 9325, RFC 8996) for versions and suites, the CA/Browser Forum baseline for
keys and signature hashes, RFC 6797 and the HSTS preload list for max-age.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from smart_conformance.tls.model import (
    CertificateSummary,
    CipherInfo,
    HstsPolicy,
    ProtocolVersion,
)

SSL_VERSIONS: tuple[ProtocolVersion, ...] = ("SSLv2", "SSLv3")
LEGACY_TLS_VERSIONS: tuple[ProtocolVersion, ...] = ("TLSv1", "TLSv1.1")  # RFC 8996 deprecates both
# Versions whose cipher suites can be weak or lack forward secrecy (every TLS 1.3 suite is AEAD and ephemeral).
PRE_TLS13: tuple[ProtocolVersion, ...] = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2")

EXPIRY_WARNING_DAYS = 30
MIN_RSA_BITS = 2048
MIN_EC_BITS = 256
STRONG_HASHES = frozenset({"sha256", "sha384", "sha512", "sha3-256", "sha3-384", "sha3-512", "sha512-256"})
# Keys whose signatures carry no separate hash (EdDSA hashes internally with SHA-512 / SHAKE256).
HASHLESS_KEYS = frozenset({"Ed25519", "Ed448"})
HSTS_MIN_MAX_AGE = 31_536_000  # one year, the usual floor (and the HSTS preload list's)

Strength = Literal["strong", "weak", "unknown"]
Validity = Literal["valid", "expired", "not_yet_valid"]


# --------------------------------------------------------------------------------------------------------------------
# Cipher suites
# --------------------------------------------------------------------------------------------------------------------


def broken_cipher_flags(cipher: CipherInfo) -> tuple[str, ...]:
    """Why no one should accept this suite in any version: NULL, EXPORT, anonymous, RC4, 3DES, DES (empty if none)."""
    return tuple(name for name, on in (("NULL", cipher.is_null), ("EXPORT", cipher.is_export),
                                       ("anonymous", cipher.is_anonymous), ("RC4", cipher.is_rc4),
                                       ("3DES", cipher.is_3des), ("DES", cipher.is_des)) if on)


def lacks_aead(version: ProtocolVersion, ciphers: tuple[CipherInfo, ...]) -> bool:
    """TLS 1.2 accepted with CBC/stream suites only: RFC 9325 §4.2 wants an AEAD suite (GCM, ChaCha20-Poly1305)."""
    return version == "TLSv1.2" and bool(ciphers) and not any(c.is_aead for c in ciphers)


def lacks_forward_secrecy(cipher: CipherInfo) -> bool:
    """Static RSA or (EC)DH key exchange. Anonymous suites are ephemeral but unauthenticated: broken, not this."""
    return not cipher.forward_secret and not cipher.is_anonymous


# --------------------------------------------------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------------------------------------------------


def validity(cert: CertificateSummary, now: datetime) -> Validity:
    if now > cert.not_after:
        return "expired"
    if now < cert.not_before:
        return "not_yet_valid"
    return "valid"


def expiring_soon(cert: CertificateSummary, now: datetime) -> bool:
    """Valid now, with fewer than :data:`EXPIRY_WARNING_DAYS` days left (an expired one is :func:`validity`'s)."""
    return validity(cert, now) == "valid" and (cert.not_after - now).days < EXPIRY_WARNING_DAYS


def key_strength(cert: CertificateSummary) -> Strength:
    """RSA >= 2048 bits, EC >= 256 bits and EdDSA are strong; DSA and shorter keys weak; other key types unknown."""
    size = cert.key_size or 0
    if (cert.key_type == "RSA" and size < MIN_RSA_BITS or cert.key_type == "EC" and size < MIN_EC_BITS
            or cert.key_type == "DSA"):
        return "weak"
    if cert.key_type not in ("RSA", "EC", *HASHLESS_KEYS):
        return "unknown"
    return "strong"


def signature_hash_strength(cert: CertificateSummary) -> Strength:
    """SHA-256 or stronger (or an EdDSA key, whose signature needs no separate hash); SHA-1 and MD5 are weak."""
    if cert.signature_hash is None:
        return "strong" if cert.key_type in HASHLESS_KEYS else "unknown"
    return "strong" if cert.signature_hash.lower() in STRONG_HASHES else "weak"


# --------------------------------------------------------------------------------------------------------------------
# HSTS
# --------------------------------------------------------------------------------------------------------------------


def hsts_problem(policy: HstsPolicy | None, *, min_max_age: int = HSTS_MIN_MAX_AGE) -> str | None:
    """What is wrong with a response's HSTS policy: missing, malformed, disabled (max-age=0) or short-lived."""
    if policy is None:
        return "no Strict-Transport-Security header"
    if policy.max_age is None:
        return f"Strict-Transport-Security without a valid max-age: {policy.raw!r}"
    if policy.max_age == 0:
        return "Strict-Transport-Security max-age=0 switches HSTS off"
    if policy.max_age < min_max_age:
        return f"max-age={policy.max_age} is below {min_max_age}"
    return None
