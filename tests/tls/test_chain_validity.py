"""A certificate chain is valid when clients accept it; strict RFC 5280 profile lints are their own finding (issue 10,
class 6).

RFC 5280 §4.2.1.6: when the subject is non-empty, CAs SHOULD mark subjectAltName non-critical. cryptography's strict
verifier (which sslyze 6 runs) rejects a leaf that marks it critical anyway, while OpenSSL, Python's default client
context and Chromium accept it. Such a chain is valid (TLS-05 passes); the lint is a SHOULD (TLS-10), never a SHALL.
The end-to-end proof, with the suite run against a server presenting such a leaf, is the ``critical-san`` scenario
of tests/tls/test_tls_suite.py and the ``cert-critical-san`` reference fault of the fault matrix.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from cryptography import x509

from smart_conformance import tls
from smart_conformance.tls import Endpoint, TlsScan, TlsScanSettings
from tests.tls_servers import LOCAL, Behaviour, Pki, server_context, serving

pytestmark = pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, TlsScan], Pki, Pki]]:
    pki, stranger = Pki(tmp_path_factory.mktemp("pki")), Pki(tmp_path_factory.mktemp("stranger"))
    leaves = {"critical-san": pki.issue(LOCAL, critical_san=True), "clean": pki.issue(LOCAL),
              "untrusted": stranger.issue(LOCAL)}
    with ExitStack() as stack:
        ports = {name: stack.enter_context(serving(Behaviour(), server_context(leaf))) for name, leaf in leaves.items()}
        endpoints = {name: Endpoint(LOCAL, port, LOCAL) for name, port in ports.items()}
        results = tls.scan(list(endpoints.values()), TlsScanSettings(ca_bundle=pki.ca_path))
        yield {name: results[endpoint] for name, endpoint in endpoints.items()}, pki, stranger


def test_the_leaf_really_has_a_critical_san_and_a_subject(scans: tuple[dict[str, TlsScan], Pki, Pki]) -> None:
    _, pki, _ = scans
    leaf = x509.load_pem_x509_certificate(Path(pki.directory / "leaf1.pem").read_bytes())
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    assert leaf.subject.rfc4514_string()


def test_python_default_client_accepts_the_chain(scans: tuple[dict[str, TlsScan], Pki, Pki]) -> None:
    """Independent of the code under test: a plain ssl handshake trusting the CA succeeds."""
    result, pki, _ = scans
    cert = result["critical-san"].certificate
    assert cert is not None
    context = ssl.create_default_context(cafile=str(pki.ca_path))
    import socket

    with socket.create_connection((LOCAL, result["critical-san"].endpoint.port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=LOCAL) as tls_sock:
        assert tls_sock.version() in ("TLSv1.2", "TLSv1.3")


def test_client_valid_but_strict_profile_lint(scans: tuple[dict[str, TlsScan], Pki, Pki]) -> None:
    result, _, _ = scans
    cert = result["critical-san"].certificate
    assert cert is not None
    assert cert.client_valid is True and cert.client_error is None
    assert not cert.strict_profile_ok
    assert cert.validation_error is not None and "subjectAltName MUST NOT be critical" in cert.validation_error
    assert cert.hostname_ok  # only the profile lint (TLS-10, a SHOULD) is left to report, not an untrusted chain


def test_clean_and_untrusted_chains_are_judged_as_before(scans: tuple[dict[str, TlsScan], Pki, Pki]) -> None:
    result, _, _ = scans
    clean, untrusted = result["clean"].certificate, result["untrusted"].certificate
    assert clean is not None and untrusted is not None
    assert clean.client_valid is True and clean.strict_profile_ok
    assert untrusted.client_valid is False and untrusted.client_error
    assert "unable to get local issuer certificate" in untrusted.client_error
    assert untrusted.hostname_ok  # the anchor is the only problem


def test_a_handshake_that_never_happens_is_no_verdict() -> None:
    from tests.tls_servers import closed_port

    verdict, why = tls.client_verifies(Endpoint(LOCAL, closed_port(), LOCAL), TlsScanSettings())
    assert verdict is None and why and "ConnectionRefusedError" in why
