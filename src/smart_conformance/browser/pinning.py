"""TLS in the browser: trusting a private CA in Chromium without ignoring TLS errors.

A private CA (``tls.ca_bundle``) is trusted by verifying the origin's leaf in Python first (chain and hostname) and
then pinning exactly that key in Chromium (``--ignore-certificate-errors-spki-list``). TLS errors are never ignored
wholesale for targets on the public web PKI.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

TlsMode = Literal["system-trust", "spki-pin", "ignore-https-errors-after-python-verify"]


class OriginNotVerified(RuntimeError):
    """The origin's certificate does not verify against the configured CA bundle (chain or hostname)."""


def origin_parts(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname or "", port


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def verified_spki_sha256(host: str, port: int, ca_bundle: Path | str, timeout: float = 10.0) -> str:
    """Fetch the origin's leaf, verifying chain and hostname against ``ca_bundle``; return its SPKI sha256 (base64).

    That hash is what Chromium's ``--ignore-certificate-errors-spki-list`` pins: only this key is accepted.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ctx = ssl.create_default_context(cafile=str(ca_bundle))
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock, \
                ctx.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise OriginNotVerified(f"https://{host}:{port} does not verify against {ca_bundle}: {exc}") from exc
    if not der:
        raise OriginNotVerified(f"https://{host}:{port} presented no certificate")
    spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


class Pins:
    """What one browser session knows about private-CA origins: which verified in Python (and their key), which
    did not (and why), which keys the running Chromium was started with, and, per authorization attempt, which
    origins Chromium refused and which the ignore-https-errors fallback blocked."""

    def __init__(self, ca_bundle: Path | None) -> None:
        self.ca_bundle = ca_bundle
        self.verified: dict[tuple[str, int], str] = {}  # (host, port) -> spki
        self.errors: dict[tuple[str, int], str] = {}
        self.launched: frozenset[str] = frozenset()
        self.cert_failures: set[str] = set()
        self.blocked: set[str] = set()

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(self.verified.values())

    def verify(self, url: str) -> bool:
        """Verify (once) an https origin against the CA bundle; True when it verified (and so is to be pinned)."""
        scheme, host, port = origin_parts(url)
        if scheme != "https" or self.ca_bundle is None or not host:
            return False
        if (host, port) not in self.verified:
            try:
                self.verified[(host, port)] = verified_spki_sha256(host, port, self.ca_bundle)
            except (OriginNotVerified, OSError) as exc:
                self.errors[(host, port)] = str(exc)
                return False  # not pinned: Chromium will refuse it, and say so
        return True

    def new_attempt(self) -> None:
        self.cert_failures, self.blocked = set(), set()

    def pins_ignored(self) -> bool:
        """Chromium refused only origins we verified and pinned: its pinning, not the target, is at fault."""
        failed = self.cert_failures
        return bool(failed) and all(self.verify(o) and self.verified[origin_parts(o)[1:]] in self.launched
                                    for o in failed)

    def note(self, unpinnable: str = "") -> str:
        """Why TLS may be behind a failure: origins Chromium refused (with the Python-side verdict) or we blocked.

        ``unpinnable``: the fix to name when the browser runs elsewhere and a refused origin did verify in Python
        (the harness could not pin it there, so the remote browser must trust the CA itself)."""
        notes = []
        for origin in sorted(self.cert_failures):
            problem = self.errors.get(origin_parts(origin)[1:])
            note = f"Chromium refused the certificate of {origin}" + (f"; {problem}" if problem else "")
            if unpinnable and self.verify(origin):
                note += (f"; it verifies against {self.ca_bundle}, but "
                         + unpinnable.replace("{pins}", ",".join(sorted(self.keys))))
            notes.append(note)
        for origin in sorted(self.blocked):
            notes.append(f"blocked {origin}: it does not verify against the CA bundle")
        return f" ({'; '.join(notes)})" if notes else ""
