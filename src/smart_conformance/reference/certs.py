"""Test PKI for the reference server: a local CA and the leaf the HTTPS listener presents.

trustme makes the CA; the leaf is built here with ``cryptography`` so that strict validators (sslyze 6) accept it
and so the TLS faults can vary it (expired, 1024-bit RSA, wrong host name).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import warnings
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smart_conformance.reference.faults import ActiveFaults, Fault

HOST_NAMES = ("127.0.0.1", "localhost")
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class ServerPki:
    """Paths of the PEM files the listener and its clients need."""

    ca_path: Path
    cert_path: Path
    key_path: Path


def _leaf(ca: trustme.CA, key: PrivateKey, hosts: tuple[str, ...], not_before: dt.datetime,
          not_after: dt.datetime, critical_san: bool = False) -> tuple[bytes, bytes]:
    """A server leaf signed by the CA, shaped for strict (RFC 5280 / CA/B Forum) validators: subject CN, SAN
    non-critical, EKU serverAuth, KeyUsage, SKI and AKI. trustme's own leaf marks the SAN critical next to a
    non-empty subject, which cryptography's verifier (sslyze 6) rejects."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "smart-payer-conformance"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=critical_san)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=is_rsa, content_commitment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
                       critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def issue(state_dir: Path, faults: ActiveFaults) -> ServerPki:
    """Create the CA and the leaf for this server (fault variants included) and write them to ``state_dir``."""
    ca = trustme.CA(organization_name="smart-payer-conformance reference test CA")
    now = dt.datetime.now(dt.UTC)
    not_before, not_after = now - dt.timedelta(hours=1), now + dt.timedelta(days=90)
    hosts = HOST_NAMES
    key: PrivateKey = ec.generate_private_key(ec.SECP256R1())
    if faults.active(Fault.CERT_WEAK_KEY_1024):
        key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    elif faults.active(Fault.TLS_WEAK_CIPHERS):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # static-RSA suites need RSA
    if faults.active(Fault.CERT_EXPIRED):
        not_before, not_after = now - dt.timedelta(days=30), now - dt.timedelta(days=1)
    if faults.active(Fault.CERT_EXPIRING_SOON):
        not_after = now + dt.timedelta(days=10)
    if faults.active(Fault.CERT_HOSTNAME_MISMATCH):
        hosts = ("reference.invalid",)
    cert_pem, key_pem = _leaf(ca, key, hosts, not_before, not_after,
                              critical_san=faults.active(Fault.CERT_CRITICAL_SAN))
    pki = ServerPki(state_dir / "ca.pem", state_dir / "server-cert.pem", state_dir / "server-key.pem")
    pki.ca_path.write_bytes(ca.cert_pem.bytes())
    pki.cert_path.write_bytes(cert_pem)
    pki.key_path.write_bytes(key_pem)
    pki.key_path.chmod(0o600)
    return pki


# TLS 1.2 suites: ECDHE key exchange with AEAD ciphers only (TLS 1.3 suites are AEAD + FS by construction).
STRICT_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"


def server_context(pki: ServerPki, faults: ActiveFaults) -> ssl.SSLContext:
    """The listener's SSL context: TLS 1.2 minimum, 1.3 offered, FS AEAD suites only, unless a TLS fault says so."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ciphers = STRICT_TLS12_CIPHERS
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if faults.active(Fault.TLS_LEGACY_PROTOCOLS):
        # Debian's OpenSSL refuses TLS < 1.2 above security level 0.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
        ciphers = "@SECLEVEL=0:" + ciphers + ":ECDHE+AES:AES"
    if faults.active(Fault.TLS12_DISABLED):
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if faults.active(Fault.TLS_CBC_ONLY):
        ciphers = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA"  # forward secret, but no AEAD suite on TLS 1.2
    if faults.active(Fault.TLS13_DISABLED):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if faults.active(Fault.TLS_WEAK_CIPHERS):
        ciphers += ":AES128-SHA:AES256-SHA"
    if faults.active(Fault.CERT_WEAK_KEY_1024):
        ciphers = "@SECLEVEL=0:" + ciphers  # otherwise OpenSSL refuses to load the small key
    ctx.set_ciphers(ciphers)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    ctx.load_cert_chain(str(pki.cert_path), str(pki.key_path))
    return ctx
