"""TLS probing with sslyze: one scan per distinct host:port, summarised into plain data the checks can assert on.

Why sslyze and not the local ``ssl`` module: a client built on the local OpenSSL can only offer the protocol versions
and suites that library was built with, so "the handshake failed" cannot tell "the server refused TLS 1.0" from "we
could not even offer TLS 1.0". sslyze ships its own legacy OpenSSL (via nassl) for old versions. Even so, every
attempt that errored is reported as ``not_tested`` with its reason -- never folded into ``refused``.

Nothing here imports pytest: the pytest plugin calls :func:`scan_once` from a session fixture and the checks call the
small ``*_findings`` functions, which are pure functions over :class:`TlsScan`.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from traceback import TracebackException
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from smart_conformance import redact

ProtocolVersion = Literal["SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
ProtocolStatus = Literal["accepted", "refused", "not_tested"]
Severity = Literal["fail", "warn"]

# Oldest first; names match ``ssl.SSLSocket.version()`` so they compare with what http.py records per exchange.
PROTOCOL_VERSIONS: tuple[ProtocolVersion, ...] = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
LEGACY_VERSIONS: frozenset[str] = frozenset({"SSLv2", "SSLv3", "TLSv1", "TLSv1.1"})
_SSLYZE_FIELD: dict[ProtocolVersion, str] = {
    "SSLv2": "ssl_2_0_cipher_suites",
    "SSLv3": "ssl_3_0_cipher_suites",
    "TLSv1": "tls_1_0_cipher_suites",
    "TLSv1.1": "tls_1_1_cipher_suites",
    "TLSv1.2": "tls_1_2_cipher_suites",
    "TLSv1.3": "tls_1_3_cipher_suites",
}
HSTS_MIN_MAX_AGE = 31_536_000  # one year, the usual floor (and the HSTS preload list's)


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
            seen[(host, port)] = Endpoint(host, port, host if _is_ip(host) else None)
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
    is_cbc: bool
    is_null: bool
    is_export: bool
    is_anonymous: bool
    is_rc4: bool
    is_3des: bool
    is_des: bool

    @property
    def is_broken(self) -> bool:
        """Ciphers no one should accept in any protocol version."""
        return self.is_null or self.is_export or self.is_anonymous or self.is_rc4 or self.is_3des or self.is_des


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
    days_left: int
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

    @property
    def accepted_versions(self) -> tuple[str, ...]:
        return tuple(p.version for p in self.protocols if p.status == "accepted")

    @property
    def untested_versions(self) -> tuple[str, ...]:
        return tuple(p.version for p in self.protocols if p.status == "not_tested")


@dataclass(frozen=True)
class Finding:
    """One problem. ``severity`` is advisory; the check that reports it chooses the requirement and the outcome."""

    code: str
    severity: Severity
    message: str
    items: tuple[str, ...] = ()


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
        return CipherInfo(name, openssl_name, "ANY", forward_secret=True, is_aead=True, is_cbc=False, is_null=False,
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
        is_cbc="CBC" in bulk or (is_3des or is_des) or _openssl_cbc(bulk),
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


def _openssl_cbc(bulk: str) -> bool:
    # OpenSSL names omit "CBC" for most block ciphers (AES128-SHA); a non-AEAD, non-stream, non-NULL suite is CBC.
    if "-" not in bulk:
        return False
    return not (any(m in bulk for m in _AEAD_MARKERS) or "RC4" in bulk or "NULL" in bulk)


# --------------------------------------------------------------------------------------------------------------------
# Scanning
# --------------------------------------------------------------------------------------------------------------------


def scan(endpoints: Sequence[Endpoint], settings: TlsScanSettings) -> dict[Endpoint, TlsScan]:
    """Scan every distinct endpoint in ONE sslyze run (servers in parallel, connections per server capped)."""
    from sslyze import (  # imported lazily: loading nassl costs ~0.3 s and most test runs never scan
        CertificateInfoExtraArgument,
        ClientAuthenticationCredentials,
        ScanCommand,
        ScanCommandsExtraArguments,
        Scanner,
        ServerNetworkConfiguration,
        ServerNetworkLocation,
        ServerScanRequest,
    )
    from sslyze.errors import ServerHostnameCouldNotBeResolved

    distinct = list(dict.fromkeys(endpoints))
    if not distinct:
        return {}
    credentials = None
    if settings.client_cert or settings.client_key:
        if not (settings.client_cert and settings.client_key):
            raise TlsScanError("mTLS needs both client_cert and client_key")
        try:
            credentials = ClientAuthenticationCredentials(settings.client_cert, settings.client_key)
        except Exception as exc:  # nassl raises its own OpenSSLError / ValueError here
            raise TlsScanError(f"client certificate/key could not be loaded: {exc}") from exc
    extra = ScanCommandsExtraArguments()
    if settings.ca_bundle is not None:
        try:
            extra = ScanCommandsExtraArguments(certificate_info=CertificateInfoExtraArgument(settings.ca_bundle))
        except ValueError as exc:
            raise TlsScanError(str(exc)) from exc
    commands = {ScanCommand.CERTIFICATE_INFO, ScanCommand.HTTP_HEADERS, ScanCommand.SSL_2_0_CIPHER_SUITES,
                ScanCommand.SSL_3_0_CIPHER_SUITES, ScanCommand.TLS_1_0_CIPHER_SUITES,
                ScanCommand.TLS_1_1_CIPHER_SUITES, ScanCommand.TLS_1_2_CIPHER_SUITES,
                ScanCommand.TLS_1_3_CIPHER_SUITES}

    started = time.monotonic()
    results: dict[Endpoint, TlsScan] = {}
    requests: dict[Any, Endpoint] = {}
    queued: list[Any] = []
    for endpoint in distinct:
        try:
            location = ServerNetworkLocation(endpoint.host, endpoint.port, endpoint.ip_address)
        except ServerHostnameCouldNotBeResolved as exc:
            results[endpoint] = _unreachable(endpoint, f"could not resolve {endpoint.host}: {exc}",
                                             time.monotonic() - started)
            continue
        network = ServerNetworkConfiguration(tls_server_name_indication=endpoint.host,
                                             tls_client_auth_credentials=credentials,
                                             network_timeout=settings.timeout_s,
                                             network_max_retries=settings.retries)
        request = ServerScanRequest(location, network_configuration=network, scan_commands=commands,
                                    scan_commands_extra_arguments=extra)
        requests[request.uuid] = endpoint
        queued.append(request)
    if queued:
        scanner = Scanner(per_server_concurrent_connections_limit=settings.per_server_concurrency,
                          concurrent_server_scans_limit=min(10, len(requests)))
        scanner.queue_scans(queued)
        for server_result in scanner.get_results():
            endpoint = requests[server_result.uuid]
            results[endpoint] = _summarise(endpoint, server_result, settings, time.monotonic() - started)
    return {endpoint: results[endpoint] for endpoint in distinct}


def _unreachable(endpoint: Endpoint, reason: str, duration: float) -> TlsScan:
    error = f"server not reachable: {reason}"
    protocols = tuple(ProtocolResult(v, "not_tested", error=error) for v in PROTOCOL_VERSIONS)
    return TlsScan(endpoint, protocols, connectivity_error=reason, certificate_error=reason, hsts_error=reason,
                   duration_s=duration)


def _trace_text(trace: TracebackException | None) -> str:
    if trace is None:
        return "no detail"
    return "".join(trace.format_exception_only()).strip().replace("\n", " ")


def _attempt_error(attempt: Any) -> str:
    status = getattr(attempt.status, "value", attempt.status)
    if status == "NOT_SCHEDULED":
        return "not scheduled by sslyze"
    reason = getattr(attempt.error_reason, "value", attempt.error_reason) or "error"
    return f"{reason}: {_trace_text(attempt.error_trace)}"


def _completed(attempt: Any) -> bool:
    return getattr(attempt.status, "value", attempt.status) == "COMPLETED" and attempt.result is not None


def _summarise(endpoint: Endpoint, server_result: Any, settings: TlsScanSettings, duration: float) -> TlsScan:
    if server_result.scan_result is None:
        reason = _trace_text(server_result.connectivity_error_trace)
        return _unreachable(endpoint, reason, duration)
    attempts = server_result.scan_result
    protocols = tuple(_protocol_result(v, getattr(attempts, _SSLYZE_FIELD[v])) for v in PROTOCOL_VERSIONS)

    certificate, certificate_error = None, None
    if _completed(attempts.certificate_info):
        certificate, certificate_error = _certificate(endpoint, attempts.certificate_info.result, settings)
    else:
        certificate_error = _attempt_error(attempts.certificate_info)

    hsts, hsts_path, hsts_error = None, None, None
    if _completed(attempts.http_headers):
        headers_result = attempts.http_headers.result
        if headers_result.http_error_trace is not None:
            hsts_error = f"HTTP request over TLS failed: {_trace_text(headers_result.http_error_trace)}"
        else:
            hsts_path = headers_result.http_path_redirected_to
            sts = headers_result.strict_transport_security_header
            if sts is not None:
                hsts = HstsPolicy(sts.max_age, sts.include_subdomains, sts.preload)
    else:
        hsts_error = _attempt_error(attempts.http_headers)

    probing = server_result.connectivity_result
    return TlsScan(
        endpoint=endpoint,
        protocols=protocols,
        certificate=certificate,
        certificate_error=certificate_error,
        hsts=hsts,
        hsts_path=hsts_path,
        hsts_error=hsts_error,
        highest_version=_VERSION_FROM_SSLYZE.get(probing.highest_tls_version_supported.name) if probing else None,
        client_auth=getattr(probing.client_auth_requirement, "value", None) if probing else None,
        duration_s=duration,
    )


_VERSION_FROM_SSLYZE: dict[str, ProtocolVersion] = {"SSL_2_0": "SSLv2", "SSL_3_0": "SSLv3", "TLS_1_0": "TLSv1",
                                                    "TLS_1_1": "TLSv1.1", "TLS_1_2": "TLSv1.2", "TLS_1_3": "TLSv1.3"}


def _protocol_result(version: ProtocolVersion, attempt: Any) -> ProtocolResult:
    """COMPLETED with accepted suites -> accepted; COMPLETED with none -> refused; anything else -> not_tested."""
    if not _completed(attempt):
        return ProtocolResult(version, "not_tested", error=_attempt_error(attempt))
    accepted = tuple(
        classify_cipher(a.cipher_suite.name, a.cipher_suite.openssl_name, anonymous=a.cipher_suite.is_anonymous)
        for a in attempt.result.accepted_cipher_suites
    )
    return ProtocolResult(version, "accepted" if accepted else "refused", accepted)


# --------------------------------------------------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------------------------------------------------

_SUPPLIED_STORE = "Supplied CA file"
_DEFAULT_STORE = "Mozilla"


def _certificate(endpoint: Endpoint, info: Any, settings: TlsScanSettings) -> tuple[CertificateSummary | None,
                                                                                      str | None]:
    if not info.certificate_deployments:
        return None, "the server sent no certificate"
    deployment = info.certificate_deployments[0]
    chain = deployment.received_certificate_chain
    leaf: x509.Certificate = chain[0]
    results = sorted(deployment.path_validation_results,
                     key=lambda r: (r.trust_store.name != _SUPPLIED_STORE, r.trust_store.name != _DEFAULT_STORE,
                                    r.trust_store.name))
    if settings.ca_bundle is not None:
        # The operator named the trust anchor: judge against it alone so a public store cannot mask its verdict.
        results = [r for r in results if r.trust_store.name == _SUPPLIED_STORE] or results
    good = next((r for r in results if r.was_validation_successful), None)
    chosen = good or (results[0] if results else None)
    san_dns, san_ip = _san(leaf)
    hostname_ok = _hostname_matches(endpoint.host, san_dns, san_ip)

    trusted_ignoring_hostname = good is not None
    if good is None and chosen is not None and not hostname_ok and (san_dns or san_ip):
        trusted_ignoring_hostname = _verifies_for_own_name(chosen.trust_store, deployment, san_dns, san_ip)

    client_valid, client_error = client_verifies(endpoint, settings)
    not_before = leaf.not_valid_before_utc
    not_after = leaf.not_valid_after_utc
    key_type, key_size = _key(leaf)
    hash_alg = leaf.signature_hash_algorithm
    return CertificateSummary(
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        not_before=not_before,
        not_after=not_after,
        days_left=(not_after - datetime.now(UTC)).days,
        key_type=key_type,
        key_size=key_size,
        signature_hash=hash_alg.name if hash_alg is not None else None,
        san_dns=san_dns,
        san_ip=san_ip,
        chain_valid=good is not None,
        validation_error=None if good is not None or chosen is None else str(chosen.validation_error),
        trust_store=chosen.trust_store.name if chosen is not None else None,
        hostname_ok=hostname_ok,
        trusted_ignoring_hostname=trusted_ignoring_hostname,
        chain_length=len(chain),
        client_valid=client_valid,
        client_error=client_error,
    ), None


def client_verifies(endpoint: Endpoint, settings: TlsScanSettings) -> tuple[bool | None, str | None]:
    """Does a client accept the chain this endpoint serves? One handshake with Python's default client context
    (OpenSSL's verifier, as curl and most HTTP clients use it) trusting the target's CA bundle, or the system store
    without one. The host name is not judged here (it has its own check): only path, anchor, validity, signatures
    and extensions. Returns (verdict, why); verdict None when the handshake failed for another reason.
    """
    try:
        context = ssl.create_default_context(cafile=str(settings.ca_bundle) if settings.ca_bundle else None)
        context.check_hostname = False  # the chain alone; test_tls_certificate_hostname_matches judges the name
        # OpenSSL security level 1, whatever the distribution's default: SHA-1 signatures are rejected (as browsers
        # do), while a short key is left to its own check (key strength) instead of a level that varies by platform.
        context.set_ciphers("DEFAULT:@SECLEVEL=1")
        if settings.client_cert:
            context.load_cert_chain(str(settings.client_cert),
                                    str(settings.client_key) if settings.client_key else None)
    except (OSError, ssl.SSLError) as exc:
        return None, f"the client context could not be set up: {exc}"
    address = endpoint.ip_address or endpoint.host
    server_name = None if _is_ip(endpoint.host) else endpoint.host
    try:
        with socket.create_connection((address, endpoint.port), timeout=settings.timeout_s) as raw, \
                context.wrap_socket(raw, server_hostname=server_name):
            return True, None
    except ssl.SSLCertVerificationError as exc:
        return False, exc.verify_message or str(exc)
    except (OSError, ssl.SSLError) as exc:  # refused, reset, timeout, no common protocol: no verdict on the chain
        return None, f"{type(exc).__name__}: {exc}"


def _verifies_for_own_name(store: Any, deployment: Any, san_dns: tuple[str, ...], san_ip: tuple[str, ...]) -> bool:
    """Re-validate with a name the leaf does carry: passes iff the hostname was the only problem."""
    subject: x509.GeneralName
    concrete = [n for n in san_dns if not n.startswith("*.")]
    if concrete:
        subject = x509.DNSName(concrete[0])
    elif san_dns:
        subject = x509.DNSName("x" + san_dns[0][1:])
    else:
        subject = x509.IPAddress(ipaddress.ip_address(san_ip[0]))
    try:
        return bool(store.verify_certificate_chain(deployment.received_certificate_chain_as_pem,
                                                   subject).was_validation_successful)
    except Exception:  # a certificate cryptography cannot even parse for this: not trusted
        return False


def _san(cert: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), ()
    return (tuple(ext.get_values_for_type(x509.DNSName)),
            tuple(str(ip) for ip in ext.get_values_for_type(x509.IPAddress)))


def _hostname_matches(host: str, san_dns: tuple[str, ...], san_ip: tuple[str, ...]) -> bool:
    """RFC 6125 matching on SANs only (no CN fallback, as browsers and cryptography do); wildcard = one left label."""
    if _is_ip(host):
        return ipaddress.ip_address(host) in {ipaddress.ip_address(ip) for ip in san_ip}
    wanted = host.rstrip(".").lower()
    for name in san_dns:
        name = name.rstrip(".").lower()
        if name == wanted:
            return True
        if name.startswith("*.") and "." in wanted:
            label, _, rest = wanted.partition(".")
            if label and rest == name[2:] and rest.count(".") >= 1:
                return True
    return False


def _key(cert: x509.Certificate) -> tuple[str, int | None]:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    return type(key).__name__, None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------------------------------------
# Per-process cache
# --------------------------------------------------------------------------------------------------------------------

_cache: dict[tuple[Endpoint, TlsScanSettings], TlsScan] = {}
_cache_lock = threading.Lock()


def scan_once(endpoints: Sequence[Endpoint], settings: TlsScanSettings) -> dict[Endpoint, TlsScan]:
    """Like :func:`scan`, but each (endpoint, settings) is scanned at most once per process.

    Only the endpoints not yet cached are scanned (still in one sslyze run). The lock is held during the scan so two
    fixtures asking at once do not scan the same servers twice.
    """
    with _cache_lock:
        missing = [e for e in dict.fromkeys(endpoints) if (e, settings) not in _cache]
        if missing:
            for endpoint, result in scan(missing, settings).items():
                _cache[(endpoint, settings)] = result
        return {e: _cache[(e, settings)] for e in dict.fromkeys(endpoints)}


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


# --------------------------------------------------------------------------------------------------------------------
# Findings: pure functions over a TlsScan
# --------------------------------------------------------------------------------------------------------------------


def protocol_findings(scan_: TlsScan) -> list[Finding]:
    """Legacy versions accepted, or neither TLS 1.2 nor 1.3 accepted. ``not_tested`` versions are never findings."""
    findings: list[Finding] = []
    legacy = [p.version for p in scan_.protocols if p.version in LEGACY_VERSIONS and p.status == "accepted"]
    if legacy:
        findings.append(Finding("legacy-protocol-accepted", "fail",
                                f"{scan_.endpoint.display} accepts {', '.join(legacy)}", tuple(legacy)))
    modern = [scan_.protocol("TLSv1.2"), scan_.protocol("TLSv1.3")]
    if all(p.status == "refused" for p in modern):
        findings.append(Finding("no-modern-protocol", "fail",
                                f"{scan_.endpoint.display} accepts neither TLS 1.2 nor TLS 1.3"))
    return findings


def weak_cipher_findings(scan_: TlsScan) -> list[Finding]:
    """Broken suites in any version; static key exchange; on TLS 1.2, suites that are neither AEAD nor FS, CBC-only."""
    buckets: dict[str, list[str]] = {}

    def add(code: str, version: str, cipher: CipherInfo) -> None:
        buckets.setdefault(code, []).append(f"{version} {cipher.name}")

    for proto in scan_.protocols:
        if proto.status != "accepted":
            continue
        for c in proto.accepted_ciphers:
            for flag, code in ((c.is_null, "cipher-null"), (c.is_export, "cipher-export"),
                               (c.is_anonymous, "cipher-anonymous"), (c.is_rc4, "cipher-rc4"),
                               (c.is_3des, "cipher-3des"), (c.is_des, "cipher-des")):
                if flag:
                    add(code, proto.version, c)
            if not c.forward_secret and not c.is_anonymous:
                add("cipher-no-forward-secrecy", proto.version, c)
            if proto.version == "TLSv1.2" and not c.is_aead and not c.forward_secret:
                add("cipher-tls12-neither-aead-nor-fs", proto.version, c)
        if proto.version == "TLSv1.2" and not any(c.is_aead for c in proto.accepted_ciphers):
            buckets.setdefault("tls12-no-aead", []).extend(f"TLSv1.2 {c.name}" for c in proto.accepted_ciphers)

    return [Finding(code, _CIPHER_FINDINGS[code][0], f"{scan_.endpoint.display} {_CIPHER_FINDINGS[code][1]}",
                    tuple(items)) for code, items in buckets.items()]


_CIPHER_FINDINGS: dict[str, tuple[Severity, str]] = {
    "cipher-null": ("fail", "accepts NULL (unencrypted) cipher suites"),
    "cipher-export": ("fail", "accepts EXPORT-grade cipher suites"),
    "cipher-anonymous": ("fail", "accepts anonymous (unauthenticated) cipher suites"),
    "cipher-rc4": ("fail", "accepts RC4 cipher suites"),
    "cipher-3des": ("fail", "accepts 3DES cipher suites (Sweet32)"),
    "cipher-des": ("fail", "accepts single-DES cipher suites"),
    "cipher-no-forward-secrecy": ("fail", "accepts key exchanges without forward secrecy (static RSA/DH)"),
    "cipher-tls12-neither-aead-nor-fs": ("fail", "accepts TLS 1.2 suites that are neither AEAD nor forward secret"),
    "tls12-no-aead": ("fail", "offers TLS 1.2 with CBC/non-AEAD suites only"),
}


def certificate_findings(scan_: TlsScan, now: datetime | None = None, *, expiry_warning_days: int = 30,
                         min_rsa_bits: int = 2048, min_ec_bits: int = 256) -> list[Finding]:
    """Expired/not yet valid, untrusted chain, hostname mismatch, weak key, weak signature hash, expiring soon."""
    cert = scan_.certificate
    if cert is None:
        return []
    now = now or datetime.now(UTC)
    where = scan_.endpoint.display
    findings: list[Finding] = []
    if now > cert.not_after:
        findings.append(Finding("cert-expired", "fail", f"{where}: certificate expired {cert.not_after:%Y-%m-%d}"))
    elif now < cert.not_before:
        findings.append(Finding("cert-not-yet-valid", "fail",
                                f"{where}: certificate not valid before {cert.not_before:%Y-%m-%d}"))
    elif (cert.not_after - now).days < expiry_warning_days:
        findings.append(Finding("cert-expiring-soon", "warn",
                                f"{where}: certificate expires {cert.not_after:%Y-%m-%d}"))
    if not cert.hostname_ok:
        names = cert.san_dns + cert.san_ip
        findings.append(Finding("cert-hostname-mismatch", "fail",
                                f"{where}: certificate names {', '.join(names) or '(no SAN)'}, not "
                                f"{scan_.endpoint.host}", names))
    if cert.client_valid is False or (cert.client_valid is None and not cert.trusted_ignoring_hostname):
        findings.append(Finding("cert-untrusted", "fail", f"{where}: a client rejects the chain: "
                                f"{cert.client_error or cert.validation_error}"))
    elif cert.client_valid and not cert.strict_profile_ok:
        findings.append(Finding("cert-strict-profile", "warn", f"{where}: clients accept the chain, but the strict "
                                f"RFC 5280 verifier rejects it: {cert.validation_error}"))
    weak_key = ((cert.key_type == "RSA" and (cert.key_size or 0) < min_rsa_bits)
                or (cert.key_type == "EC" and (cert.key_size or 0) < min_ec_bits)
                or cert.key_type == "DSA")
    if weak_key:
        findings.append(Finding("cert-weak-key", "fail", f"{where}: {cert.key_type} {cert.key_size}-bit key"))
    if cert.signature_hash in {"md5", "sha1"}:
        findings.append(Finding("cert-weak-signature", "fail", f"{where}: signed with {cert.signature_hash}"))
    return findings


def hsts_findings(policy: HstsPolicy | None, *, min_max_age: int = HSTS_MIN_MAX_AGE) -> list[Finding]:
    """Missing, malformed, disabled (max-age=0) or short-lived HSTS. Callers decide whether HSTS is required."""
    if policy is None:
        return [Finding("hsts-missing", "fail", "no Strict-Transport-Security header")]
    if policy.max_age is None:
        return [Finding("hsts-invalid", "fail", f"Strict-Transport-Security without a valid max-age: {policy.raw!r}")]
    if policy.max_age == 0:
        return [Finding("hsts-disabled", "fail", "Strict-Transport-Security max-age=0 switches HSTS off")]
    if policy.max_age < min_max_age:
        return [Finding("hsts-short-max-age", "warn", f"max-age={policy.max_age} is below {min_max_age}")]
    return []


# --------------------------------------------------------------------------------------------------------------------
# HSTS header parsing (for httpx responses too)
# --------------------------------------------------------------------------------------------------------------------


def hsts_from_headers(headers: httpx.Headers | Mapping[str, str] | Iterable[tuple[str, str]]) -> HstsPolicy | None:
    """Parse the FIRST Strict-Transport-Security header (RFC 6797 §8.1: later ones are ignored).

    Directive names are case-insensitive and values may be quoted. A header without a usable max-age, or with a
    repeated directive, is returned with ``max_age=None`` so a check can say "present but invalid".
    """
    raw = _first_header(headers, "strict-transport-security")
    if raw is None:
        return None
    max_age: int | None = None
    seen: set[str] = set()
    include_subdomains = preload = invalid = False
    for part in raw.split(";"):
        name, _, value = part.strip().partition("=")
        name = name.strip().lower()
        if not name:
            continue
        if name in seen:
            invalid = True
        seen.add(name)
        value = value.strip().strip('"')
        if name == "max-age":
            max_age = int(value) if value.isdigit() else None
            invalid = invalid or max_age is None
        elif name == "includesubdomains":
            include_subdomains = True
        elif name == "preload":
            preload = True
    return HstsPolicy(None if invalid else max_age, include_subdomains, preload, raw)


def _first_header(headers: Any, name: str) -> str | None:
    if isinstance(headers, httpx.Headers):
        values = headers.get_list(name)
        return values[0] if values else None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        if key.lower() == name:
            return str(value)
    return None


# --------------------------------------------------------------------------------------------------------------------
# Plain-HTTP probe
# --------------------------------------------------------------------------------------------------------------------

PlainHttpStatus = Literal["refused", "redirect_to_https", "redirect_elsewhere", "served", "error"]


@dataclass(frozen=True)
class PlainHttpResult:
    """What ``http://host:port/path`` does.

    ``refused``: connection refused or closed without an HTTP answer, or a 4xx/5xx (nothing served in clear text).
    ``redirect_to_https``: a 3xx to ``https://`` on the same host. ``redirect_elsewhere``: any other 3xx.
    ``served``: a 2xx (``data_served`` tells whether it carried a non-trivial body). ``error``: could not test.
    """

    status: PlainHttpStatus
    url: str
    status_code: int | None = None
    location: str | None = None
    body_snippet: str = ""
    data_served: bool = False
    detail: str | None = None
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)


_SNIPPET = 300


def probe_plain_http(host: str, port: int = 80, path: str = "/", *, timeout: float = 5.0) -> PlainHttpResult:
    """One GET over plain http, redirects not followed. Only a refused connection counts as refused; timeouts and
    DNS failures are ``error`` because they say nothing about what the server would do."""
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    url = f"http://{netloc}{path if path.startswith('/') else '/' + path}"
    try:
        with httpx.Client(follow_redirects=False, trust_env=False, timeout=timeout) as client:
            response = client.get(url, headers={"Accept": "application/fhir+json, application/json, */*"})
    except httpx.TimeoutException as exc:
        return PlainHttpResult("error", url, detail=f"timed out after {timeout}s: {type(exc).__name__}")
    except httpx.ConnectError as exc:
        if _is_refusal(exc):
            return PlainHttpResult("refused", url, detail=f"connection refused: {exc}")
        return PlainHttpResult("error", url, detail=f"could not connect: {exc}")
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        # The port took the connection but closed or reset it without an HTTP answer (a TLS-only port hanging up on
        # plain text does this): nothing is served in clear text.
        return PlainHttpResult("refused", url, detail=f"no HTTP response over plain http: {type(exc).__name__}: {exc}")
    except httpx.HTTPError as exc:
        return PlainHttpResult("error", url, detail=f"{type(exc).__name__}: {exc}")

    body = response.text
    snippet = redact.text(body[:_SNIPPET])
    headers = tuple(redact.headers(response.headers.multi_items()))
    code = response.status_code
    if 300 <= code < 400:
        location = response.headers.get("location")
        target = urlsplit(response.url.join(location).__str__()) if location else None
        to_https = (target is not None and target.scheme == "https"
                    and (target.hostname or "").lower() == host.lower())
        return PlainHttpResult("redirect_to_https" if to_https else "redirect_elsewhere", url, code, location,
                               snippet, False, None if to_https else "redirect does not go to https on the same host",
                               headers)
    if 200 <= code < 300:
        return PlainHttpResult("served", url, code, None, snippet, bool(body.strip()), None, headers)
    return PlainHttpResult("refused", url, code, None, snippet, False, f"answered {code} over plain http", headers)


def _is_refusal(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return True
        if "connection refused" in str(current).lower() or "errno 111" in str(current).lower():
            return True
        current = current.__cause__ or current.__context__
    return False
