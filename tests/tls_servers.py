"""Local TLS/HTTP servers and a test PKI, shared by the scanner's unit tests and the TLS suite's end-to-end tests.

Every server listens on 127.0.0.1 on a free port and is stopped by the context manager that started it. Certificates
come from a trustme CA; leaves are issued here with cryptography (non-critical SAN, SKI/AKI, EKU serverAuth) because
trustme 1.2's own leaves carry a *critical* SAN next to a non-empty subject, which sslyze 6 / cryptography 46 strict
path validation rejects ("EE subjectAltName MUST NOT be critical when subject is nonempty").
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

LOCAL = "127.0.0.1"

# --------------------------------------------------------------------------------------------------------------------
# Local PKI
# --------------------------------------------------------------------------------------------------------------------


class Pki:
    """A trustme CA plus leaves issued with cryptography, signed by the CA key trustme exposes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA(key_type=trustme.KeyType.RSA)
        self.ca_path = directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        self._ca_key = serialization.load_pem_private_key(self.ca.private_key_pem.bytes(), None)
        self._ca_cert = x509.load_pem_x509_certificate(self.ca.cert_pem.bytes())
        self._count = 0

    def issue(self, *names: str, key: Any = None, not_before: dt.datetime | None = None,
              not_after: dt.datetime | None = None, sha1: bool = False,
              critical_san: bool = False) -> tuple[Path, Path]:
        """A leaf for ``names`` (IPs become IP SANs); ``sha1=True`` signs it with sha1WithRSAEncryption;
        ``critical_san=True`` marks the SAN critical next to the non-empty subject, as trustme does."""
        key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = dt.datetime.now(dt.UTC)
        sans: list[x509.GeneralName] = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self._ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(days=1))
            .not_valid_after(not_after or now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=critical_san)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(self._ca_key, hashes.SHA256())  # type: ignore[arg-type]
        )
        if sha1:
            cert = self._resign_sha1(cert)
        self._count += 1
        cert_path = self.directory / f"leaf{self._count}.pem"
        key_path = self.directory / f"leaf{self._count}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_path, key_path

    def _resign_sha1(self, cert: x509.Certificate) -> x509.Certificate:
        """cryptography 46 refuses to *build* SHA-1 signatures, but the CA key still signs SHA-1 digests.

        The sha256WithRSAEncryption and sha1WithRSAEncryption OIDs have the same DER length and the signature length
        is the CA key's, so swapping both OIDs and the signature bytes in place leaves every DER length unchanged.
        """
        assert isinstance(self._ca_key, rsa.RSAPrivateKey)
        old, new = _oid_der(SignatureAlgorithmOID.RSA_WITH_SHA256), _oid_der(SignatureAlgorithmOID.RSA_WITH_SHA1)
        assert len(old) == len(new)
        der = cert.public_bytes(serialization.Encoding.DER)
        tbs = cert.tbs_certificate_bytes.replace(old, new)
        signature = self._ca_key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
        assert len(signature) == len(cert.signature)
        head = der[: len(der) - len(cert.signature)]
        resigned = head.replace(cert.tbs_certificate_bytes, tbs).replace(old, new) + signature
        parsed = x509.load_der_x509_certificate(resigned)
        assert parsed.signature_hash_algorithm is not None and parsed.signature_hash_algorithm.name == "sha1"
        return parsed


def _oid_der(oid: x509.ObjectIdentifier) -> bytes:
    """DER of an OBJECT IDENTIFIER (tag, length, content), enough to find it inside a certificate."""
    arcs = [int(a) for a in oid.dotted_string.split(".")]
    body = bytearray([arcs[0] * 40 + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return bytes([0x06, len(body)]) + bytes(body)


# --------------------------------------------------------------------------------------------------------------------
# Local servers
# --------------------------------------------------------------------------------------------------------------------

CAPABILITY_STATEMENT = json.dumps({"resourceType": "CapabilityStatement", "status": "active"}).encode()


@dataclass(frozen=True)
class Behaviour:
    """What a server answers. ``routes`` map an exact path to (content type, body); other paths get ``body``.

    ``{port}`` in ``redirect_to`` and in route bodies becomes the server's own port.
    """

    status: int = 200
    body: bytes = CAPABILITY_STATEMENT
    headers: tuple[tuple[str, str], ...] = ()
    redirect_to: str | None = None
    routes: tuple[tuple[str, str, bytes], ...] = ()


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer

    def do_GET(self) -> None:
        behaviour = self.server.behaviour
        port = str(self.server.server_address[1])
        if behaviour.redirect_to is not None:
            self.send_response(301)
            self.send_header("Location", behaviour.redirect_to.replace("{port}", port))
            self.send_header("Content-Length", "0")
            for name, value in behaviour.headers:
                self.send_header(name, value)
            self.end_headers()
            return
        content_type, body, status = "application/fhir+json", behaviour.body, behaviour.status
        path = self.path.split("?", 1)[0]
        for route, route_type, route_body in behaviour.routes:
            if route == path:
                content_type, body, status = route_type, route_body.replace(b"{port}", port.encode()), 200
                break
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in behaviour.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HttpServer(ThreadingHTTPServer):
    """Threaded HTTP(S) server; the TLS handshake runs in the per-connection thread so one bad client blocks nobody."""

    daemon_threads = True

    def __init__(self, behaviour: Behaviour, context: ssl.SSLContext | None) -> None:
        super().__init__((LOCAL, 0), _Handler)
        self.behaviour = behaviour
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(5)
        if self.context is None:
            super().finish_request(request, client_address)
            return
        try:
            conn = self.context.wrap_socket(request, server_side=True)
        except (OSError, ValueError):
            return  # a scanner offering something this server refuses: expected, and not an error of the test
        try:
            self.RequestHandlerClass(conn, client_address, self)
        except OSError:
            pass
        finally:
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


def wait_listening(port: int, deadline_s: float = 5.0) -> None:
    """Poll until something accepts connections on the port (never a fixed sleep)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with socket.create_connection((LOCAL, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            threading.Event().wait(0.01)


@contextmanager
def serving(behaviour: Behaviour, context: ssl.SSLContext | None) -> Iterator[int]:
    """Serve ``behaviour`` over TLS (``context``) or plain http (None) until the block ends; yields the port."""
    server = _HttpServer(behaviour, context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        wait_listening(port)
        yield port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def server_context(cert: tuple[Path, Path], *, minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
                   maximum: ssl.TLSVersion | None = None, ciphers: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():  # TLSv1/TLSv1_1 are deprecated names; using them is the point here
        warnings.simplefilter("ignore", DeprecationWarning)
        if ciphers:
            ctx.set_ciphers(ciphers)
        ctx.minimum_version = minimum
        if maximum is not None:
            ctx.maximum_version = maximum
    ctx.load_cert_chain(*cert)
    return ctx


def closed_port() -> int:
    """A port nothing listens on: bind, learn the number, close."""
    with socket.socket() as sock:
        sock.bind((LOCAL, 0))
        return int(sock.getsockname()[1])


def local_openssl_negotiates(version: ssl.TLSVersion, cert: tuple[Path, Path]) -> str | None:
    """Handshake the local OpenSSL with itself in memory at exactly ``version``; None if it works, else the reason.

    Independent of sslyze, so a skip based on it says something about this machine, not about the code under test.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            server = server_context(cert, minimum=version, maximum=version, ciphers="ALL:@SECLEVEL=0")
            client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            client.check_hostname = False
            client.verify_mode = ssl.CERT_NONE
            client.set_ciphers("ALL:@SECLEVEL=0")
            client.minimum_version = version
            client.maximum_version = version
        except (ssl.SSLError, ValueError) as exc:
            return f"cannot configure {version.name}: {exc}"
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_side=False)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    try:
        for _ in range(20):
            for name, obj in (("c", c), ("s", s)):
                if not done[name]:
                    try:
                        obj.do_handshake()
                        done[name] = True
                    except ssl.SSLWantReadError:
                        pass
            s_in.write(c_out.read())
            c_in.write(s_out.read())
            if all(done.values()):
                return None if c.version() == {"TLSv1": "TLSv1", "TLSv1_1": "TLSv1.1"}.get(version.name) else (
                    f"negotiated {c.version()} instead")
    except ssl.SSLError as exc:
        return f"{ssl.OPENSSL_VERSION} refuses {version.name} even at SECLEVEL=0: {exc}"
    return "handshake did not finish"
