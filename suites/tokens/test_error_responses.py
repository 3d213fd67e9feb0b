"""Error responses: how the token, revocation and introspection endpoints word a refusal

RFC 6749 §5.2, RFC 7009 §2.2.1 and RFC 7662 §2.3 define one wording for a refusal: HTTP 400 (for a failed client
authentication 400 or 401, and 401 with WWW-Authenticate when the client used the Authorization header), with a JSON
body whose ``error`` is a defined code. The checks of the protections (single-use codes, PKCE, client authentication,
refresh binding, broken assertions...) judge only whether the server refused; each records how it was refused. The
checks here judge that wording, once per endpoint: first a few refusals of their own (made-up values, nothing spent,
nothing changed), then every refusal the other checks of the run recorded (these checks run after them). A server that
words every refusal as ``403 invalid_code`` gets one finding here, naming each exchange, not one per protection.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from smart_conformance import refusals
from smart_conformance.checks import not_applicable
from smart_conformance.config import Target
from smart_conformance.http import RecordingClient
from smart_conformance.launcher import Launcher, credentials
from smart_conformance.oauth import oauth_error
from smart_conformance.refusals import Family, Observation
from smart_conformance.smart.pkce import new_pkce
from smart_conformance.smart.token import ClientCredentials, exchange_code, introspect, revoke
from smart_conformance.testplan import Fault, proves

DEFINED = "the defined HTTP status and a JSON body with a defined error code"


def _made_up() -> str:
    return "smart-conformance-made-up-" + secrets.token_urlsafe(12)


@pytest.mark.reads_run
@pytest.mark.requirement("RFC6749-08", "RFC6749-13", "ASYM-05", "RFC7521-01")
@proves(Fault.INVALID_CLIENT_WITHOUT_401, Fault.TOKEN_ERRORS_NONSTANDARD)
def test_token_error_responses(launcher: Launcher, http: RecordingClient, target: Target) -> None:
    """The token endpoint's refusals: a made-up code (invalid_grant), a wrong or missing client secret
    (invalid_client), an invented grant type (unsupported_grant_type), then every refusal of the run. The shared
    launch, which reached tokens with the same client, shows the client's credentials are good (positive control)."""
    launcher.shared()
    endpoint, client = launcher.token_endpoint, credentials(target.client)
    redirect_uri = target.client.redirect_uri

    def code_exchange(with_client: ClientCredentials) -> Any:
        return exchange_code(http, endpoint, code=_made_up(), redirect_uri=redirect_uri,
                             code_verifier=new_pkce().verifier, client=with_client)

    own = [refusals.record(http, code_exchange(client), refusals.token_error("invalid_grant"))]
    if target.client.auth_method in ("client_secret_basic", "client_secret_post"):
        wrong = ClientCredentials(target.client.client_id, "smart-conformance-wrong-secret", target.client.auth_method)
        for sent in (wrong, ClientCredentials(target.client.client_id, None, "none")):
            response = code_exchange(sent)
            if oauth_error(response).error != "invalid_grant":  # invalid_grant: it let the client through (the
                own.append(refusals.record(http, response, refusals.INVALID_CLIENT))  # protection check's finding)
    form, headers = {"grant_type": "urn:smart-conformance:made-up-grant"}, {}
    client.apply(form, headers, endpoint)
    own.append(refusals.record(http, http.post(endpoint, data=form, headers=headers), refusals.UNSUPPORTED_GRANT))
    refusals.judge_wording(Family.TOKEN, endpoint, own, section="RFC 6749 §5.2", defined=DEFINED)


def _advertised(smart_config: dict[str, Any], name: str) -> str:
    url = smart_config.get(name)
    if not isinstance(url, str) or not url:
        not_applicable(f"{name} is not advertised in the SMART configuration")
    return url


@pytest.mark.reads_run
@pytest.mark.requirement("RFC7009-09")
@proves(Fault.REVOCATION_ERROR_WITHOUT_BODY)
def test_revocation_error_responses(http: RecordingClient, smart_config: dict[str, Any], target: Target) -> None:
    """The revocation endpoint's refusals: a revocation (of a made-up token) without client credentials gets
    invalid_client, then every refusal of the run."""
    endpoint = _advertised(smart_config, "revocation_endpoint")
    own: list[Observation | None] = []
    if target.client.auth_method != "none":
        response = revoke(http, endpoint, token=_made_up(), token_type_hint="refresh_token",
                          client=ClientCredentials(target.client.client_id, None, "none"))
        own.append(refusals.record(http, response, refusals.REVOCATION_INVALID_CLIENT))
    refusals.judge_wording(Family.REVOCATION, endpoint, own, section="RFC 7009 §2.2.1 (RFC 6749 §5.2)",
                           defined=DEFINED)


@pytest.mark.reads_run
@pytest.mark.requirement("RFC7662-03")
@proves(Fault.INTROSPECTION_ERROR_NOT_401)
def test_introspection_error_responses(http: RecordingClient, smart_config: dict[str, Any], target: Target) -> None:
    """The introspection endpoint's refusals: an introspection (of a made-up token) without client authentication
    gets 401 invalid_client, then every refusal of the run."""
    endpoint = _advertised(smart_config, "introspection_endpoint")
    response = introspect(http, endpoint, token=_made_up(), client=None)
    own = [refusals.record(http, response, refusals.INTROSPECTION_INVALID_CLIENT)]
    refusals.judge_wording(Family.INTROSPECTION, endpoint, own, section="RFC 7662 §2.3 (RFC 6749 §5.2)",
                           defined=DEFINED)
