"""The clean listener's TLS: 1.3 offered, 1.2 minimum, FS AEAD suites only on 1.2, a certificate a strict client
accepts for 127.0.0.1 and localhost."""

from __future__ import annotations

import socket
import ssl
import warnings

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from smart_conformance.reference.server import ReferenceServer


def _connect(server: ReferenceServer, ctx: ssl.SSLContext, host: str = "127.0.0.1") -> tuple[str, str]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:
        return tls.version() or "", tls.cipher()[0]  # type: ignore[index]


def test_strict_client_accepts_certificate(server: ReferenceServer) -> None:
    for host in ("127.0.0.1", "localhost"):
        version, _ = _connect(server, server.ssl_context(), host)
        assert version == "TLSv1.3"
    cert = x509.load_pem_x509_certificate(server.ca_path.parent.joinpath("server-cert.pem").read_bytes())
    assert ExtendedKeyUsageOID.SERVER_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)


def test_tls12_offers_only_forward_secret_aead(server: ReferenceServer) -> None:
    ctx = server.ssl_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    version, cipher = _connect(server, ctx)
    assert version == "TLSv1.2" and cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher)
    for weak in ("AES128-SHA", "ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384"):
        ctx = server.ssl_context()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(weak)
        with pytest.raises(ssl.SSLError):
            _connect(server, ctx)


@pytest.mark.parametrize("name", ["TLSv1", "TLSv1_1"])
def test_legacy_protocols_refused(server: ReferenceServer, name: str) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, name)
    ctx.set_ciphers("@SECLEVEL=0:ALL")
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        _connect(server, ctx)


def test_startup_is_fast_and_state_dir_is_removed() -> None:
    with ReferenceServer() as srv:
        state = srv.state_dir
        assert srv.startup_seconds < 2.0, srv.startup_seconds
        assert srv.ca_path.exists()
    assert not state.exists()


def test_target_env_keys(server: ReferenceServer) -> None:
    """The server gives every variable the reference target file (and its variants' patches) interpolates."""
    import re

    from smart_conformance import paths
    from smart_conformance.reference.variants import VARIANTS

    env = server.target_env()
    texts = [paths.reference_target().read_text(encoding="utf-8"), *(repr(v.target_patch) for v in VARIANTS.values())]
    wanted = {name for text in texts for name in re.findall(r"\$\{(SMART_REFERENCE_[A-Z0-9_]+)", text)}
    assert wanted and wanted <= set(env), sorted(wanted - set(env))
    assert env["SMART_REFERENCE_FHIR_BASE_URL"] == server.fhir_base_url
    assert env["SMART_REFERENCE_CLIENT_ID"] == "reference-confidential-app"
