"""Backend Services discovery: what the SMART configuration tells a backend client

SMART App Launch 2.2 §Conformance and §Client Authentication: Asymmetric, Advertising server support: a server that
offers Backend Services lists the client_credentials grant, private_key_jwt with an RS384 or ES384 signing algorithm,
the client-confidential-asymmetric capability, and (recommended) the system scopes a client may ask for.
"""

from __future__ import annotations

from typing import Any

import pytest

from smart_conformance.checks import describe, expect
from smart_conformance.config import BackendClient
from smart_conformance.smart.discovery import Document
from smart_conformance.testplan import Fault, proves


def _list(doc: dict[str, Any], name: str) -> Any:
    return doc.get(name)


def _expect_listed(config: dict[str, Any], document: Document, field: str, value: str) -> None:
    """The smart-configuration array ``field`` holds ``value``."""
    listed = _list(config, field)
    expect(isinstance(listed, list) and value in listed, expected=f"{field}: an array containing '{value}'",
           actual=f"{field} = {describe(listed)}", exchange=document.exchange)


@pytest.mark.requirement("BACKEND-01")
@proves(Fault.CLIENT_CREDENTIALS_NOT_ADVERTISED)
def test_client_credentials_grant_advertised(backend_client: BackendClient, smart_configuration: Document,
                                             smart_config_raw: dict[str, Any]) -> None:
    """grant_types_supported lists client_credentials."""
    _expect_listed(smart_config_raw, smart_configuration, "grant_types_supported", "client_credentials")


@pytest.mark.requirement("BACKEND-02")
@proves(Fault.PRIVATE_KEY_JWT_NOT_ADVERTISED)
def test_private_key_jwt_advertised(backend_client: BackendClient, smart_configuration: Document,
                                    smart_config_raw: dict[str, Any]) -> None:
    """token_endpoint_auth_methods_supported lists private_key_jwt."""
    _expect_listed(smart_config_raw, smart_configuration, "token_endpoint_auth_methods_supported", "private_key_jwt")


@pytest.mark.requirement("BACKEND-02")
@proves(Fault.ASYMMETRIC_CAPABILITY_MISSING)
def test_asymmetric_capability_advertised(backend_client: BackendClient, smart_configuration: Document,
                                          smart_config_raw: dict[str, Any]) -> None:
    """capabilities lists client-confidential-asymmetric."""
    _expect_listed(smart_config_raw, smart_configuration, "capabilities", "client-confidential-asymmetric")


@pytest.mark.requirement("BACKEND-03")
@proves(Fault.ASSERTION_ALGS_NOT_ADVERTISED)
def test_assertion_signing_algs_advertised(backend_client: BackendClient, smart_configuration: Document,
                                           smart_config_raw: dict[str, Any]) -> None:
    """token_endpoint_auth_signing_alg_values_supported lists RS384 or ES384, and the algorithm the target file says
    the client's key uses."""
    algs = _list(smart_config_raw, "token_endpoint_auth_signing_alg_values_supported")
    ok = isinstance(algs, list) and bool({"RS384", "ES384"} & set(algs)) and backend_client.alg in algs
    expect(ok, expected=f"token_endpoint_auth_signing_alg_values_supported: an array with RS384 and/or ES384, "
                        f"including {backend_client.alg} (the backend client's algorithm)",
           actual=f"token_endpoint_auth_signing_alg_values_supported = {describe(algs)}",
           exchange=smart_configuration.exchange)


@pytest.mark.requirement("BACKEND-04")
@proves(Fault.SYSTEM_SCOPES_NOT_ADVERTISED)
def test_system_scopes_advertised(backend_client: BackendClient, smart_configuration: Document,
                                  smart_config_raw: dict[str, Any]) -> None:
    """scopes_supported includes system/ scopes (recommended: scopes_supported is RECOMMENDED)."""
    scopes = _list(smart_config_raw, "scopes_supported")
    system = [s for s in scopes if isinstance(s, str) and s.startswith("system/")] if isinstance(scopes, list) else []
    expect(bool(system), expected="scopes_supported listing the system/ scopes a backend client may request",
           actual=f"scopes_supported = {describe(scopes)}", exchange=smart_configuration.exchange)
