"""Scanning with sslyze: one run per set of distinct host:port services, summarised into :mod:`.model` data.

Why sslyze and not the local ``ssl`` module: a client built on the local OpenSSL can only offer the protocol versions
and suites that library was built with, so "the handshake failed" cannot tell "the server refused TLS 1.0" from "we
could not even offer TLS 1.0". sslyze ships its own legacy OpenSSL (via nassl) for old versions. Even so, every
attempt that errored is reported as ``not_tested`` with its reason -- never folded into ``refused``.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from traceback import TracebackException
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from smart_conformance.tls.model import (
    PROTOCOL_VERSIONS,
    CertificateSummary,
    Endpoint,
    HstsPolicy,
    ProtocolResult,
    ProtocolVersion,
    TlsScan,
    TlsScanError,
    TlsScanSettings,
    classify_cipher,
    is_ip,
)

_SSLYZE_FIELD: dict[ProtocolVersion, str] = {
    "SSLv2": "ssl_2_0_cipher_suites",
    "SSLv3": "ssl_3_0_cipher_suites",
    "TLSv1": "tls_1_0_cipher_suites",
    "TLSv1.1": "tls_1_1_cipher_suites",
    "TLSv1.2": "tls_1_2_cipher_suites",
    "TLSv1.3": "tls_1_3_cipher_suites",
}


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
    hostname_ok = hostname_matches(endpoint.host, san_dns, san_ip)

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
        context.check_hostname = False  # the chain alone; the hostname check judges the name
        # OpenSSL security level 1, whatever the distribution's default: SHA-1 signatures are rejected (as browsers
        # do), while a short key is left to its own check (key strength) instead of a level that varies by platform.
        context.set_ciphers("DEFAULT:@SECLEVEL=1")
        if settings.client_cert:
            context.load_cert_chain(str(settings.client_cert),
                                    str(settings.client_key) if settings.client_key else None)
    except (OSError, ssl.SSLError) as exc:
        return None, f"the client context could not be set up: {exc}"
    address = endpoint.ip_address or endpoint.host
    server_name = None if is_ip(endpoint.host) else endpoint.host
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
    except Exception:  # noqa: BLE001 -- a certificate cryptography cannot even parse for this: not trusted
        return False


def _san(cert: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), ()
    return (tuple(ext.get_values_for_type(x509.DNSName)),
            tuple(str(ip) for ip in ext.get_values_for_type(x509.IPAddress)))


def hostname_matches(host: str, san_dns: tuple[str, ...], san_ip: tuple[str, ...]) -> bool:
    """RFC 6125 matching on SANs only (no CN fallback, as browsers and cryptography do); wildcard = one left label."""
    if is_ip(host):
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


