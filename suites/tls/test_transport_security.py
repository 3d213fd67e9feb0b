"""Transport security (TLS) of every payer endpoint

BCP 195 (RFC 9325, RFC 8996), FHIR R4 security.html §Communications, US Core §Security and CARIN IG for Blue Button
§Exchange Security: every service a member's app talks to -- the FHIR base, the authorization, token, JWKS,
introspection and revocation endpoints and the issuer -- speaks TLS 1.2 (and preferably 1.3), never SSL or TLS
1.0/1.1, with forward-secret AEAD cipher suites and a certificate a strict client accepts: a chain to a trust anchor,
the right host name, unexpired, a strong key and a SHA-256-class signature. Web responses carry HSTS, and nothing is
served over plain http.

Each check looks at all endpoints at once (one sslyze scan per host:port) and names every offending ``host:port`` in
one failure. What the scanner could not find out is never counted as a pass or a refusal: an endpoint that could not be
reached, or a protocol version that could not be tested, makes the check "could not check" unless another endpoint
already fails it. The certificate chain check judges the chain as a client does (OpenSSL's verifier through
Python's default client context, trusting the target's CA bundle), ignoring only the host name; an expired leaf
therefore fails the chain check as well as its own, more specific check, which names the cause. What cryptography's
strict RFC 5280 verifier (sslyze 6) rejects beyond that is a profile lint, reported at its own (SHOULD) level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
import pytest

from smart_conformance import tls
from smart_conformance.checks import CouldNotCheck, could_not_check, describe, fail
from smart_conformance.config import Target
from smart_conformance.http import Exchange, RecordingClient
from smart_conformance.testplan import Fault, Needs, needs, proves
from smart_conformance.tls import (
    CertificateSummary,
    Endpoint,
    ProtocolVersion,
    TlsScan,
    policy,
)

# The thresholds (key sizes, hashes, suites, expiry, HSTS max-age) are smart_conformance.tls.policy's: one rule,
# unit-tested there, applied here.

# sslyze's bundled trust stores hold a certificate with a non-positive serial; cryptography warns on every load.
pytestmark = pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")

_OPENSSL_FLAG: dict[str, str] = {"TLSv1": "-tls1", "TLSv1.1": "-tls1_1", "TLSv1.2": "-tls1_2", "TLSv1.3": "-tls1_3"}
_SSLYZE_FLAG: dict[str, str] = {"SSLv2": "--sslv2", "SSLv3": "--sslv3", "TLSv1": "--tlsv1", "TLSv1.1": "--tlsv1_1",
                                "TLSv1.2": "--tlsv1_2", "TLSv1.3": "--tlsv1_3"}


# --------------------------------------------------------------------------------------------------------------------
# Walking the endpoints
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What one check found across the endpoints: offences, endpoints it could not judge, and repro commands."""

    offences: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    reproduce: list[str] = field(default_factory=list)
    offending: list[TlsScan] = field(default_factory=list)

    def offend(self, scan: TlsScan, label: str, what: str, *reproduce: str) -> None:
        self.offences.append(f"{label}: {what}")
        self.offending.append(scan)
        self.reproduce.extend(r for r in reproduce if r not in self.reproduce)

    def cannot_judge(self, label: str, why: str) -> None:
        self.unknown.append(f"{label}: {why}")

    def verdict(self, *, expected: str, requirement: str | tuple[str, ...] | None = None,
                detail: str | None = None, exchange: Exchange | None = None) -> None:
        """Fail on any offence (naming unchecked endpoints too); else could-not-check on any unknown; else pass."""
        if self.offences:
            notes = [detail] if detail else []
            if self.unknown:
                notes.append("not checked: " + "; ".join(self.unknown))
            if self.reproduce:
                notes.append("reproduce with: " + " ; ".join(self.reproduce))
            scanned = ", ".join(dict.fromkeys(scan.endpoint.display for scan in self.offending))
            fail(expected=expected, actual="; ".join(self.offences), requirement=requirement,
                 exchange=exchange, detail=" | ".join(notes) or None,
                 seen=f"TLS scan of {scanned}" if scanned else None)
        if self.unknown:
            could_not_check("; ".join(self.unknown))


def _label(endpoint: Endpoint, roles: dict[Endpoint, str]) -> str:
    role = roles.get(endpoint)
    return f"{endpoint.display} ({role})" if role else endpoint.display


def _reachable(scans: dict[Endpoint, TlsScan], roles: dict[Endpoint, str],
               tally: Tally) -> Iterable[tuple[str, TlsScan]]:
    """The scans a check can judge; unreachable endpoints are recorded as unknown, never as passing."""
    for endpoint, scan in scans.items():
        label = _label(endpoint, roles)
        if not scan.reachable:
            tally.cannot_judge(label, f"not reachable: {scan.connectivity_error}")
            continue
        yield label, scan


def _certificates(scans: dict[Endpoint, TlsScan], roles: dict[Endpoint, str],
                  tally: Tally) -> Iterable[tuple[str, TlsScan, CertificateSummary]]:
    for label, scan in _reachable(scans, roles, tally):
        if scan.certificate is None:
            tally.cannot_judge(label, f"certificate not retrieved: {scan.certificate_error}")
            continue
        yield label, scan, scan.certificate


def _s_client(endpoint: Endpoint, *flags: str) -> str:
    sni = "" if tls.is_ip(endpoint.host) else f" -servername {endpoint.host}"  # SNI carries host names only
    return f"openssl s_client -connect {endpoint.display}{sni} {' '.join(flags)} </dev/null"


def _handshake_hint(endpoint: Endpoint, version: str) -> str:
    if version in ("TLSv1", "TLSv1.1"):  # OpenSSL 3 clients refuse these below security level 0
        return _s_client(endpoint, _OPENSSL_FLAG[version], "-cipher 'DEFAULT:@SECLEVEL=0'")
    if version in _OPENSSL_FLAG:
        return _s_client(endpoint, _OPENSSL_FLAG[version])
    return f"sslyze {_SSLYZE_FLAG[version]} {endpoint.display}"  # current OpenSSL builds cannot speak SSL at all


def _cert_hint(endpoint: Endpoint) -> str:
    return f"{_s_client(endpoint, '-showcerts')} | openssl x509 -noout -text"


def _versions_refused(scans: dict[Endpoint, TlsScan], roles: dict[Endpoint, str],
                      versions: tuple[ProtocolVersion, ...]) -> Tally:
    tally = Tally()
    for label, scan in _reachable(scans, roles, tally):
        results = [scan.protocol(v) for v in versions]
        accepted = [p.version for p in results if p.status == "accepted"]
        if accepted:
            tally.offend(scan, label, f"accepts {', '.join(accepted)}",
                         *(_handshake_hint(scan.endpoint, v) for v in accepted))
        untested = [f"{p.version} could not be tested ({p.error})" for p in results if p.status == "not_tested"]
        if untested:
            tally.cannot_judge(label, "; ".join(untested))
    return tally


Problem = tuple[ProtocolVersion, str | None, str]  # version, OpenSSL name of one offending suite (if any), text


def _cipher_walk(scans: dict[Endpoint, TlsScan], roles: dict[Endpoint, str],
                 judge: Callable[[ProtocolVersion, tuple[tls.CipherInfo, ...]], list[Problem]]) -> Tally:
    """Apply ``judge`` to the accepted suites of every pre-1.3 version; untested versions leave the verdict open."""
    tally = Tally()
    for label, scan in _reachable(scans, roles, tally):
        problems: list[Problem] = []
        for version in policy.PRE_TLS13:
            result = scan.protocol(version)
            if result.status == "not_tested":
                tally.cannot_judge(label, f"{version} suites could not be listed ({result.error})")
            elif result.status == "accepted":
                problems.extend(judge(version, result.accepted_ciphers))
        if problems:
            tally.offend(scan, label, "; ".join(text for _, _, text in problems),
                         *(_cipher_hint(scan.endpoint, version, name) for version, name, _ in problems[:1]))
    return tally


def _cipher_hint(endpoint: Endpoint, version: ProtocolVersion, openssl_name: str | None) -> str:
    if version in _OPENSSL_FLAG and openssl_name:
        return _s_client(endpoint, _OPENSSL_FLAG[version], f"-cipher '{openssl_name}:@SECLEVEL=0'")
    return f"sslyze {_SSLYZE_FLAG[version]} {endpoint.display}"


# --------------------------------------------------------------------------------------------------------------------
# Protocol versions
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.requirement("TLS-03", "CARIN-SEC-06", "USCORE-SEC-01")
@proves(Fault.TLS12_DISABLED)
def test_tls_1_2_accepted(tls_scans: dict[Endpoint, TlsScan], tls_endpoints: dict[Endpoint, str]) -> None:
    """Every endpoint accepts a TLS 1.2 handshake."""
    tally = Tally()
    for label, scan in _reachable(tls_scans, tls_endpoints, tally):
        tls12, tls13 = scan.protocol("TLSv1.2"), scan.protocol("TLSv1.3")
        if tls12.status == "not_tested":
            tally.cannot_judge(label, f"TLS 1.2 could not be tested ({tls12.error})")
        elif tls12.status == "refused":
            tally.offend(scan, label, f"refuses TLS 1.2 (TLS 1.3: {tls13.status})",
                         _handshake_hint(scan.endpoint, "TLSv1.2"))
    # A TLS 1.3-only service still meets the "1.2 or higher" of CARIN and US Core; only RFC 9325 requires 1.2 itself.
    # CARIN and US Core are cited only where TLS 1.3 was seen refused too (an untested 1.3 proves nothing).
    modern_missing = any(s.protocol("TLSv1.3").status == "refused" for s in tally.offending)
    tally.verdict(expected="TLS 1.2 accepted on every endpoint",
                  requirement=None if modern_missing else "TLS-03")


@pytest.mark.requirement("TLS-01", "FHIR-SEC-02")
def test_tls_legacy_ssl_refused(tls_scans: dict[Endpoint, TlsScan], tls_endpoints: dict[Endpoint, str]) -> None:
    """No endpoint negotiates SSL 2.0 or SSL 3.0."""
    # An SSL handshake breaks RFC 9325's SHALL NOT and FHIR's SHOULD alike; the finding carries the stronger level.
    _versions_refused(tls_scans, tls_endpoints, policy.SSL_VERSIONS).verdict(
        expected="SSL 2.0 and SSL 3.0 handshakes refused on every endpoint", requirement=("TLS-01", "FHIR-SEC-02"))


@pytest.mark.requirement("TLS-02", "FHIR-SEC-02")
@proves(Fault.TLS_LEGACY_PROTOCOLS)
def test_tls_legacy_tls_refused(tls_scans: dict[Endpoint, TlsScan], tls_endpoints: dict[Endpoint, str]) -> None:
    """No endpoint negotiates TLS 1.0 or TLS 1.1."""
    _versions_refused(tls_scans, tls_endpoints, policy.LEGACY_TLS_VERSIONS).verdict(
        expected="TLS 1.0 and TLS 1.1 handshakes refused on every endpoint (RFC 8996)",
        requirement=("TLS-02", "FHIR-SEC-02"))


@pytest.mark.requirement("TLS-07")
@proves(Fault.TLS13_DISABLED)
def test_tls_1_3_offered(tls_scans: dict[Endpoint, TlsScan], tls_endpoints: dict[Endpoint, str]) -> None:
    """Every endpoint accepts TLS 1.3 (SHOULD)."""
    tally = Tally()
    for label, scan in _reachable(tls_scans, tls_endpoints, tally):
        tls13 = scan.protocol("TLSv1.3")
        if tls13.status == "not_tested":
            tally.cannot_judge(label, f"TLS 1.3 could not be tested ({tls13.error})")
        elif tls13.status == "refused":
            tally.offend(scan, label, f"refuses TLS 1.3 (highest version: {scan.highest_version or 'unknown'})",
                         _handshake_hint(scan.endpoint, "TLSv1.3"))
    tally.verdict(expected="TLS 1.3 accepted on every endpoint")


# --------------------------------------------------------------------------------------------------------------------
# Cipher suites
# --------------------------------------------------------------------------------------------------------------------


def _weak(version: ProtocolVersion, ciphers: tuple[tls.CipherInfo, ...]) -> list[Problem]:
    found: list[Problem] = []
    for c in ciphers:
        flags = policy.broken_cipher_flags(c)
        if flags:
            found.append((version, c.openssl_name, f"{version} {c.name} ({'/'.join(flags)})"))
    if policy.lacks_aead(version, ciphers):
        found.append((version, ciphers[0].openssl_name,
                      f"TLSv1.2 offers no AEAD suite, only {', '.join(c.name for c in ciphers)}"))
    return found


def _not_forward_secret(version: ProtocolVersion, ciphers: tuple[tls.CipherInfo, ...]) -> list[Problem]:
    # Anonymous suites are ephemeral but unauthenticated: test_tls_no_weak_cipher_suites reports those.
    return [(version, c.openssl_name, f"{version} {c.name} ({c.key_exchange} key exchange)") for c in ciphers
            if policy.lacks_forward_secrecy(c)]


@pytest.mark.requirement("TLS-04", "FHIR-SEC-02")
@proves(Fault.TLS_CBC_ONLY)
def test_tls_no_weak_cipher_suites(tls_scans: dict[Endpoint, TlsScan], tls_endpoints: dict[Endpoint, str]) -> None:
    """No NULL, EXPORT, anonymous, RC4, 3DES or DES suite in any version, and TLS 1.2 offers an AEAD suite."""
    _cipher_walk(tls_scans, tls_endpoints, _weak).verdict(
        expected="no NULL/EXPORT/anonymous/RC4/3DES/DES suites in any version, and at least one AEAD (GCM, "
                 "ChaCha20-Poly1305, CCM) suite on TLS 1.2 instead of CBC only", requirement=("TLS-04", "FHIR-SEC-02"))


@pytest.mark.requirement("TLS-04")
@proves(Fault.TLS_WEAK_CIPHERS)
def test_tls_forward_secrecy(tls_scans: dict[Endpoint, TlsScan], tls_endpoints: dict[Endpoint, str]) -> None:
    """Every accepted suite below TLS 1.3 uses an ephemeral (ECDHE/DHE) key exchange."""
    _cipher_walk(tls_scans, tls_endpoints, _not_forward_secret).verdict(
        expected="only forward-secret (ECDHE or DHE) key exchanges; no static RSA or static (EC)DH suites")


# --------------------------------------------------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------------------------------------------------


def _anchor(target: Target) -> str:
    return f"the supplied CA bundle {target.tls.ca_bundle}" if target.tls.ca_bundle else "the system trust store"


def _verify_hint(endpoint: Endpoint, target: Target) -> str:
    anchor = f"-CAfile {target.tls.ca_bundle}" if target.tls.ca_bundle else ""
    return _s_client(endpoint, anchor, "-verify_return_error").replace("  ", " ")


@pytest.mark.requirement("TLS-05")
@proves(Fault.CERT_EXPIRED)
def test_tls_certificate_chain_valid(tls_scans: dict[Endpoint, TlsScan], tls_endpoints: dict[Endpoint, str],
                                     target: Target) -> None:
    """Every certificate chain validates to a trust anchor as a client validates it (host name aside, which has its
    own check): a handshake with Python's default client context (OpenSSL's verifier) trusting the target's CA bundle,
    or the system store. Strict RFC 5280 profile lints that clients do not enforce are test_tls_certificate_profile."""
    tally = Tally()
    for label, scan, cert in _certificates(tls_scans, tls_endpoints, tally):
        if cert.client_valid is None:
            tally.cannot_judge(label, f"no client handshake to judge the chain: {cert.client_error}")
        elif not cert.client_valid:
            tally.offend(scan, label, f"a client trusting {_anchor(target)} rejects the chain: {cert.client_error} "
                         f"(issuer {cert.issuer}, chain of {cert.chain_length})", _verify_hint(scan.endpoint, target))
    tally.verdict(expected=f"a certificate chain a client accepts when it trusts {_anchor(target)}")


@pytest.mark.requirement("TLS-10")
@proves(Fault.CERT_CRITICAL_SAN)
@needs(Needs.CLIENT_ACCEPTED_CHAIN)
def test_tls_certificate_profile(tls_scans: dict[Endpoint, TlsScan], tls_endpoints: dict[Endpoint, str],
                                 target: Target) -> None:
    """Every chain clients accept also passes the strict RFC 5280 / CA/B Forum profile verifier (cryptography's, as
    sslyze 6 runs it), host name aside; e.g. no critical subjectAltName next to a non-empty subject (SHOULD).

    A chain a client rejects fails test_tls_certificate_chain_valid; the strict verifier stops at the same problem, so
    its profile cannot be judged apart and the endpoint is reported as not checked here."""
    tally = Tally()
    for label, scan, cert in _certificates(tls_scans, tls_endpoints, tally):
        if not cert.client_valid:
            tally.cannot_judge(label, "the profile is judged on chains clients accept, and this one is not "
                               f"({cert.client_error}; see test_tls_certificate_chain_valid)")
        elif not cert.strict_profile_ok:
            tally.offend(scan, label, f"the strict RFC 5280 verifier ({cert.trust_store}) rejects the chain: "
                         f"{cert.validation_error}", _cert_hint(scan.endpoint))
    tally.verdict(expected="a chain that also passes cryptography's strict RFC 5280 profile validation "
                           f"against {_anchor(target)}")


@pytest.mark.requirement("TLS-05")
@proves(Fault.CERT_HOSTNAME_MISMATCH)
def test_tls_certificate_hostname_matches(tls_scans: dict[Endpoint, TlsScan],
                                          tls_endpoints: dict[Endpoint, str]) -> None:
    """Every certificate names the host it is served for in its subjectAltName."""
    tally = Tally()
    for label, scan, cert in _certificates(tls_scans, tls_endpoints, tally):
        if not cert.hostname_ok:
            names = ", ".join(cert.san_dns + cert.san_ip) or "no subjectAltName"
            tally.offend(scan, label, f"certificate names {names}", _cert_hint(scan.endpoint))
    tally.verdict(expected="each certificate's subjectAltName covers the host name (or IP) the client connects to")


@pytest.mark.requirement("TLS-05")
@proves(Fault.CERT_EXPIRED)
def test_tls_certificate_not_expired(tls_scans: dict[Endpoint, TlsScan], tls_endpoints: dict[Endpoint, str]) -> None:
    """Every certificate is inside its validity period."""
    now = datetime.now(UTC)
    tally = Tally()
    for label, scan, cert in _certificates(tls_scans, tls_endpoints, tally):
        state = policy.validity(cert, now)
        if state == "expired":
            tally.offend(scan, label, f"expired {cert.not_after:%Y-%m-%d %H:%M} UTC", _cert_hint(scan.endpoint))
        elif state == "not_yet_valid":
            tally.offend(scan, label, f"not valid before {cert.not_before:%Y-%m-%d %H:%M} UTC",
                         _cert_hint(scan.endpoint))
    tally.verdict(expected=f"notBefore <= now ({now:%Y-%m-%d %H:%M} UTC) <= notAfter for every certificate")


@pytest.mark.requirement("TLS-08")
@proves(Fault.CERT_EXPIRING_SOON)
def test_tls_certificate_not_expiring_soon(tls_scans: dict[Endpoint, TlsScan],
                                           tls_endpoints: dict[Endpoint, str]) -> None:
    """No currently valid certificate expires within 30 days (SHOULD; expired ones are the check above)."""
    now = datetime.now(UTC)
    tally = Tally()
    for label, scan, cert in _certificates(tls_scans, tls_endpoints, tally):
        left = cert.not_after - now
        if policy.expiring_soon(cert, now):
            tally.offend(scan, label, f"expires {cert.not_after:%Y-%m-%d} ({left.days} days left)",
                         _cert_hint(scan.endpoint))
    tally.verdict(expected=f"at least {policy.EXPIRY_WARNING_DAYS} days of validity left on every certificate")


@pytest.mark.requirement("TLS-05")
@proves(Fault.CERT_WEAK_KEY_1024)
def test_tls_certificate_key_strength(tls_scans: dict[Endpoint, TlsScan], tls_endpoints: dict[Endpoint, str]) -> None:
    """Every leaf key is RSA of at least 2048 bits, EC of at least 256 bits, or EdDSA."""
    tally = Tally()
    for label, scan, cert in _certificates(tls_scans, tls_endpoints, tally):
        strength = policy.key_strength(cert)
        if strength == "weak":
            tally.offend(scan, label, f"{cert.key_type} {cert.key_size}-bit key", _cert_hint(scan.endpoint))
        elif strength == "unknown":
            tally.cannot_judge(label, f"unrecognised key type {cert.key_type}")
    tally.verdict(expected=f"RSA >= {policy.MIN_RSA_BITS} bits or EC >= {policy.MIN_EC_BITS} bits (or Ed25519/Ed448) "
                           "leaf keys")


@pytest.mark.requirement("TLS-05")
def test_tls_certificate_signature_hash(tls_scans: dict[Endpoint, TlsScan],
                                        tls_endpoints: dict[Endpoint, str]) -> None:
    """Every leaf is signed with SHA-256 or a stronger hash."""
    tally = Tally()
    for label, scan, cert in _certificates(tls_scans, tls_endpoints, tally):
        strength = policy.signature_hash_strength(cert)
        if strength == "unknown":
            tally.cannot_judge(label, "signature hash algorithm not recognised")
        elif strength == "weak":
            tally.offend(scan, label, f"signed with {cert.signature_hash}", _cert_hint(scan.endpoint))
    tally.verdict(expected="certificate signatures using SHA-256, SHA-384 or SHA-512")


# --------------------------------------------------------------------------------------------------------------------
# HTTP over TLS: HSTS and plain http
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.requirement("TLS-06")
@proves(Fault.HSTS_MISSING)
def test_tls_hsts_header(request: pytest.FixtureRequest, target: Target, tls_scans: dict[Endpoint, TlsScan],
                         tls_endpoints: dict[Endpoint, str]) -> None:
    """Responses carry Strict-Transport-Security with max-age of at least one year (SHOULD)."""
    tally = Tally()
    exchange = None
    metadata_url = f"{target.fhir_base_url}/metadata"
    try:
        http: RecordingClient = request.getfixturevalue("http")
        response = http.get(metadata_url, headers={"Accept": "application/fhir+json"})
    except (CouldNotCheck, httpx.TransportError) as exc:
        # A client that validates certificates may be unable to connect (that is another check's finding);
        # sslyze's own GET below still sees the headers.
        metadata_note = f"GET {metadata_url} not possible ({describe(str(exc), 160)}); judged on sslyze's view"
    else:
        metadata_note = None
        exchange = http.exchange_for(response)
        problem = policy.hsts_problem(tls.hsts_from_headers(response.headers))
        if problem:
            tally.offences.append(f"GET {metadata_url} (HTTP {response.status_code}): {problem}")
    for label, scan in _reachable(tls_scans, tls_endpoints, tally):
        if scan.hsts_error is not None:
            tally.cannot_judge(label, f"HTTP headers could not be read: {scan.hsts_error}")
            continue
        problem = policy.hsts_problem(scan.hsts)
        if problem:
            tally.offend(scan, f"{label} GET {scan.hsts_path or '/'}", problem,
                         f"curl -sk -o /dev/null -D - https://{scan.endpoint.display}{scan.hsts_path or '/'}")
    tally.verdict(expected=f"Strict-Transport-Security with max-age >= {policy.HSTS_MIN_MAX_AGE} on the FHIR base's "
                           "and every endpoint's responses", detail=metadata_note, exchange=exchange)


@pytest.mark.requirement("FHIR-SEC-01", "TLS-06", "TLS-09", "USCORE-SEC-01")
@proves(Fault.PLAINTEXT_HTTP_SERVED)
def test_tls_plain_http_not_served(request: pytest.FixtureRequest, target: Target) -> None:
    """Plain http to the FHIR host is refused or redirected to https, never serves data and sends no HSTS."""
    base = urlsplit(target.fhir_base_url)
    if base.scheme != "https":
        fail(expected="an https:// FHIR base URL", actual=f"the FHIR base is {target.fhir_base_url}",
             requirement=("FHIR-SEC-01", "USCORE-SEC-01"),
             seen=f"fhir_base_url {target.fhir_base_url} in {target.source}")
    tls_scans: dict[Endpoint, TlsScan] = request.getfixturevalue("tls_scans")  # after the scheme check: see above
    endpoint = tls.endpoints_from_urls([target.fhir_base_url])[0]
    if not tls_scans[endpoint].reachable:
        # A refused plain-http connection means nothing when the host does not answer over TLS either.
        could_not_check(f"{endpoint.display} is not reachable over TLS ({tls_scans[endpoint].connectivity_error}); "
                        "a refused plain-http connection would say nothing")
    result = tls.probe_plain_http(endpoint.host, target.tls.plain_http_port, f"{base.path.rstrip('/')}/metadata")
    hint = f"reproduce with: curl -si {result.url}"
    seen = f"plain http GET {result.url} -> HTTP {result.status_code}"
    # Data in clear text breaks US Core's SHALL; the rest of what can go wrong here is SHOULD-level.
    data_breach = ("FHIR-SEC-01", "TLS-06", "TLS-09", "USCORE-SEC-01")
    if result.status == "error":
        could_not_check(f"plain http probe of {result.url} failed: {result.detail}")
    if result.status == "served":
        fail(expected=f"{result.url} refused, or redirected to https without data",
             actual=f"HTTP {result.status_code} over plain http"
                    f"{': ' + describe(result.body_snippet, 200) if result.data_served else ' (empty body)'}",
             requirement=data_breach if result.data_served else ("FHIR-SEC-01", "TLS-09"), detail=hint, seen=seen)
    if result.status == "redirect_elsewhere":
        fail(expected=f"{result.url} redirected to https://{endpoint.host}...",
             actual=f"HTTP {result.status_code} Location: {result.location or '(none)'}",
             requirement=("FHIR-SEC-01", "TLS-09"), detail=hint, seen=seen)
    if result.status == "redirect_to_https" and '"resourceType"' in result.body_snippet:
        fail(expected="a redirect to https without a body of data",
             actual=f"HTTP {result.status_code} to {result.location} carrying {describe(result.body_snippet, 200)}",
             requirement=data_breach, detail=hint, seen=seen)
    sts = tls.hsts_from_headers(result.headers)
    if sts is not None:
        fail(expected="no Strict-Transport-Security header over plain http (RFC 6797 §7.2)",
             actual=f"HTTP {result.status_code} over plain http with Strict-Transport-Security: {sts.raw}",
             requirement="TLS-09", detail=hint, seen=seen)
