"""What a TLS scan is about and what it found, as plain frozen data: checks judge these, never sslyze objects.

Cipher suites are classified by name here (:func:`classify_cipher`) so no check needs to know sslyze or OpenSSL
naming.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

ProtocolVersion = Literal["SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
ProtocolStatus = Literal["accepted", "refused", "not_tested"]

# Oldest first; names match ``ssl.SSLSocket.version()`` so they compare with what http.py records per exchange.
PROTOCOL_VERSIONS: tuple[ProtocolVersion, ...] = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")


class TlsScanError(Exception):
    """The scan could not be set up at all (bad CA bundle, unreadable client key): a harness problem, not a finding."""


# --------------------------------------------------------------------------------------------------------------------
# What to scan
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One TLS service. ``ip_address`` skips DNS when set (sslyze otherwise resolves ``host`` itself)."""

    host: str
    port: int = 443
    ip_address: str | None = None

    @property
    def display(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def endpoints_from_urls(urls: Iterable[str | None]) -> list[Endpoint]:
    """Distinct host:port of the https URLs, in first-seen order (FHIR base, authorize, token, JWKS, ...).

    Non-https and empty URLs are skipped: plain http is probed by :func:`probe_plain_http`, not by sslyze.
    """
    seen: dict[tuple[str, int], Endpoint] = {}
    for url in urls:
        if not url:
            continue
        parts = urlsplit(url)
        if parts.scheme.lower() != "https" or not parts.hostname:
            continue
        host = parts.hostname.lower()
        port = parts.port or 443
        if (host, port) not in seen:
            seen[(host, port)] = Endpoint(host, port, host if is_ip(host) else None)
    return list(seen.values())


@dataclass(frozen=True)
class TlsScanSettings:
    """How to connect. Hashable so it can key the per-process cache."""

    ca_bundle: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    timeout_s: int = 5
    retries: int = 1
    per_server_concurrency: int = 5


# --------------------------------------------------------------------------------------------------------------------
# What a scan found
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CipherInfo:
    """One accepted cipher suite, classified by name so checks never need to know sslyze or OpenSSL naming."""

    name: str
    openssl_name: str | None
    key_exchange: str  # ECDHE, DHE, RSA, DH, ECDH, DH_ANON, ECDH_ANON, PSK, ... ; "ANY" for TLS 1.3 suites
    forward_secret: bool
    is_aead: bool
    is_null: bool
    is_export: bool
    is_anonymous: bool
    is_rc4: bool
    is_3des: bool
    is_des: bool


@dataclass(frozen=True)
class ProtocolResult:
    version: ProtocolVersion
    status: ProtocolStatus
    accepted_ciphers: tuple[CipherInfo, ...] = ()
    error: str | None = None  # why it is not_tested


@dataclass(frozen=True)
class CertificateSummary:
    """The leaf of the first certificate deployment sslyze saw, plus its path validation.

    ``chain_valid`` is sslyze's verdict (in sslyze 6 that includes the hostname). ``hostname_ok`` is our own SAN match,
    and ``trusted_ignoring_hostname`` re-runs the same trust store against a name the leaf does carry -- together they
    separate "wrong name" from "untrusted/expired/malformed". sslyze 6 validates with cryptography's strict RFC 5280
    profile, which rejects chains every client accepts (a critical subjectAltName next to a non-empty subject), so
    whether the chain is *valid* is ``client_valid``: a real handshake with Python's default client context and the
    same trust anchor. The strict verdict is reported apart, as a profile lint.
    """

    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    key_type: str  # RSA, EC, DSA, Ed25519, Ed448, other
    key_size: int | None
    signature_hash: str | None  # sha256, sha1, ... None for Ed25519/Ed448
    san_dns: tuple[str, ...]
    san_ip: tuple[str, ...]
    chain_valid: bool
    validation_error: str | None
    trust_store: str | None  # the store that validated it, or the one whose error is reported
    hostname_ok: bool
    trusted_ignoring_hostname: bool
    chain_length: int
    # What a client decides (Python's default ssl context: OpenSSL's verifier, as curl and most HTTP clients use it):
    # True accepted, False rejected (``client_error`` says why), None could not be asked (``client_error`` says why).
    client_valid: bool | None = None
    client_error: str | None = None

    @property
    def strict_profile_ok(self) -> bool:
        """cryptography's strict RFC 5280 / CA/B Forum verifier (sslyze 6) accepts the chain, host name aside."""
        return self.trusted_ignoring_hostname


@dataclass(frozen=True)
class HstsPolicy:
    max_age: int | None  # None: header present but max-age missing or malformed (RFC 6797 says: ignore it)
    include_subdomains: bool = False
    preload: bool = False
    raw: str = ""


@dataclass(frozen=True)
class TlsScan:
    """Everything sslyze learned about one endpoint, as plain frozen data."""

    endpoint: Endpoint
    protocols: tuple[ProtocolResult, ...]
    certificate: CertificateSummary | None = None
    certificate_error: str | None = None  # certificate_info could not run
    hsts: HstsPolicy | None = None
    hsts_path: str | None = None  # path whose response carried the headers (sslyze GETs "/" and follows same-host)
    hsts_error: str | None = None  # http_headers could not run: HSTS unknown, not absent
    connectivity_error: str | None = None  # the server could not be reached at all
    highest_version: str | None = None
    client_auth: str | None = None  # DISABLED / OPTIONAL / REQUIRED, as sslyze's connectivity test saw it
    duration_s: float = 0.0

    @property
    def reachable(self) -> bool:
        return self.connectivity_error is None

    def protocol(self, version: ProtocolVersion) -> ProtocolResult:
        for result in self.protocols:
            if result.version == version:
                return result
        return ProtocolResult(version, "not_tested", error="not scanned")



# --------------------------------------------------------------------------------------------------------------------
# Cipher-suite classification
# --------------------------------------------------------------------------------------------------------------------

_TLS13_SUITES = frozenset({"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
                           "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"})
_AEAD_MARKERS = ("GCM", "CCM", "CHACHA20_POLY1305", "CHACHA20-POLY1305")


def classify_cipher(name: str, openssl_name: str | None = None, *, anonymous: bool | None = None) -> CipherInfo:
    """Classify an IANA (RFC) suite name such as ``TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256``.

    IANA names read ``TLS_<key exchange>_WITH_<cipher>_<mac>``; TLS 1.3 names have no key exchange (it is always
    ephemeral) and are all AEAD. SSLv2 names (``SSL_CK_*``) carry no key exchange; they are RSA. If sslyze hands us an
    OpenSSL-style name instead, the OpenSSL spelling is parsed with the same markers.
    """
    upper = name.upper()
    if upper in _TLS13_SUITES:
        return CipherInfo(name, openssl_name, "ANY", forward_secret=True, is_aead=True, is_null=False,
                          is_export=False, is_anonymous=False, is_rc4=False, is_3des=False, is_des=False)
    if upper.startswith("SSL_CK_"):  # e.g. SSL_CK_RC4_128_WITH_MD5: the "WITH" names the MAC, not a key exchange
        kx, bulk = "RSA", upper.removeprefix("SSL_CK_")
    elif "_WITH_" in upper:
        kx, _, bulk = upper.partition("_WITH_")
        kx = kx.removeprefix("TLS_").removeprefix("SSL_")
    else:  # OpenSSL name, e.g. ECDHE-RSA-AES128-GCM-SHA256, AES128-SHA, ADH-AES128-SHA
        kx, bulk = _openssl_kx(upper), upper
    kx_parts = kx.split("_")
    anon = bool(anonymous) or "ANON" in kx_parts or kx.startswith(("ADH", "AECDH"))
    forward_secret = (kx_parts[0] in {"DHE", "ECDHE", "EDH", "EECDH"}) and not anon
    is_3des = "3DES" in bulk or "DES_192_EDE3" in bulk or "DES-CBC3" in bulk or "EDE3" in bulk
    is_des = not is_3des and re.search(r"(^|[_-])DES(40)?([_-]|$)", bulk) is not None
    return CipherInfo(
        name=name,
        openssl_name=openssl_name,
        key_exchange=kx,
        forward_secret=forward_secret,
        is_aead=any(marker in bulk for marker in _AEAD_MARKERS),
        is_null=bulk.startswith("NULL") or "_NULL_" in f"_{bulk}_" or "-NULL-" in f"-{bulk}-",
        is_export="EXPORT" in upper or upper.startswith("EXP"),
        is_anonymous=anon,
        is_rc4="RC4" in bulk,
        is_3des=is_3des,
        is_des=is_des,
    )


def _openssl_kx(upper: str) -> str:
    for prefix, kx in (("ECDHE-", "ECDHE"), ("EECDH-", "ECDHE"), ("DHE-", "DHE"), ("EDH-", "DHE"),
                       ("AECDH-", "ECDH_ANON"), ("ADH-", "DH_ANON"), ("ECDH-", "ECDH"), ("DH-", "DH"),
                       ("PSK-", "PSK")):
        if upper.startswith(prefix):
            return kx
    return "RSA"


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

