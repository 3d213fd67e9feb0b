"""TLS suite fixtures: which host:port services the target runs, and one sslyze scan over all of them.

The scan must not depend on discovery being healthy: a payer whose certificate is expired or whose discovery document
is broken still has TLS properties worth reporting. So the endpoints come from the plugin's ``smart_config`` when it
works, else from a discovery fetch that does not verify the certificate (only public URLs are read), else from the
FHIR base alone.
"""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
import pytest

from smart_conformance import tls
from smart_conformance.checks import could_not_check
from smart_conformance.config import Target
from smart_conformance.http import Evidence, collecting
from smart_conformance.smart.discovery import smart_configuration_url
from smart_conformance.tls import Endpoint, TlsScan, TlsScanSettings

# Where a SMART payer's TLS services are named, in the order they are reported.
DISCOVERY_FIELDS = ("authorization_endpoint", "token_endpoint", "jwks_uri", "introspection_endpoint",
                    "revocation_endpoint", "issuer")


def _discovery(request: pytest.FixtureRequest, target: Target) -> dict[str, Any] | None:
    """The SMART configuration, or None. Never raises: TLS checks run without discovery too.

    Why it failed is the discovery suite's finding; here it only narrows which endpoints can be scanned.
    """
    # A throwaway evidence sink: the discovery exchange must not show up as the "evidence" of a TLS finding.
    # Any failure (CouldNotCheck: unreachable, invalid certificate, not JSON; transport errors) falls back below.
    with collecting(Evidence()), contextlib.suppress(Exception):
        return request.getfixturevalue("smart_config")
    try:
        with httpx.Client(verify=False, trust_env=False, timeout=10.0, follow_redirects=False) as client:
            url = target.smart_configuration_url or smart_configuration_url(target.fhir_base_url)
            response = client.get(url, headers={"Accept": "application/json"})
        document = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    return document if response.status_code == 200 and isinstance(document, dict) else None


@pytest.fixture(scope="session")
def tls_endpoints(request: pytest.FixtureRequest, target: Target) -> dict[Endpoint, str]:
    """Every distinct https host:port of the target, each labelled with the roles it plays (for failure texts)."""
    config = _discovery(request, target)
    urls: list[tuple[str, str]] = [("FHIR base", target.fhir_base_url)]
    for name in DISCOVERY_FIELDS:
        value = (config or {}).get(name)
        if isinstance(value, str):
            urls.append((name, value))
    roles: dict[Endpoint, list[str]] = {}
    for role, url in urls:
        for endpoint in tls.endpoints_from_urls([url]):
            roles.setdefault(endpoint, []).append(role)
    if not roles:
        could_not_check(f"no https endpoint to scan: the FHIR base {target.fhir_base_url} is not an https URL"
                        + ("" if config else " and discovery was unavailable"))
    labels = {endpoint: ", ".join(names) for endpoint, names in roles.items()}
    if config is None:
        for endpoint in labels:
            labels[endpoint] += "; discovery unavailable, so the only endpoint scanned"
    return labels


@pytest.fixture(scope="session")
def tls_scans(target: Target, tls_endpoints: dict[Endpoint, str]) -> dict[Endpoint, TlsScan]:
    """One sslyze run over every endpoint (cached per process, so each service is scanned once per run)."""
    settings = TlsScanSettings(ca_bundle=target.tls.ca_bundle, client_cert=target.tls.client_cert,
                               client_key=target.tls.client_key)
    try:
        return tls.scan_once(list(tls_endpoints), settings)
    except tls.TlsScanError as exc:
        could_not_check(f"the TLS scan could not be set up: {exc}")
