"""Every refusal the clean server must make, and how it makes it."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from smart_conformance.reference.keys import KeySet
from tests.reference.launcher import (
    CALLBACK,
    TRICKY_STATE,
    Launch,
    Launcher,
    hidden_inputs,
    pkce_pair,
    query,
)


# --- authorize -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change", [
    {"client_id": "no-such-client"},
    {"client_id": None},
    {"redirect_uri": "http://127.0.0.1:8765/callback/extra"},
    {"redirect_uri": "http://127.0.0.1:8765/callbackx"},
    {"redirect_uri": "http://127.0.0.1:8766/callback"},  # registered, but for the other client
    {"redirect_uri": None},
])
def test_untrusted_redirect_shows_error_page(launcher: Launcher, change: dict[str, str | None]) -> None:
    _, challenge = pkce_pair()
    params = launcher.authorize_params(state="s1", challenge=challenge)
    for key, value in change.items():
        if value is None:
            params.pop(key)
        else:
            params[key] = value
    with launcher.browser() as browser:
        response = launcher.start(browser, params)
    assert response.status_code == 400 and "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("change, error", [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"response_type": "id_token"}, "unsupported_response_type"),
    ({"response_type": None}, "invalid_request"),
    ({"aud": "https://evil.example/fhir"}, "invalid_request"),
    ({"aud": None}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": None}, "invalid_request"),
    ({"code_challenge": None}, "invalid_request"),
    ({"scope": "patient/Coverage.sr patient/Observation.rs user/*.read made-up"}, "invalid_scope"),
])
def test_authorize_errors_redirect_with_state(launcher: Launcher, change: dict[str, str | None], error: str) -> None:
    _, challenge = pkce_pair()
    params = launcher.authorize_params(state=TRICKY_STATE, challenge=challenge)
    for key, value in change.items():
        if value is None:
            params.pop(key)
        else:
            params[key] = value
    with launcher.browser() as browser:
        response = launcher.start(browser, params, post=True)
    assert response.status_code == 303
    got = query(response.headers["location"])
    assert response.headers["location"].startswith(CALLBACK + "?")
    assert got["error"] == error and got["error_description"] and got["state"] == TRICKY_STATE
    assert "code" not in got


def test_missing_state_is_refused(launcher: Launcher) -> None:
    _, challenge = pkce_pair()
    params = launcher.authorize_params(challenge=challenge)
    with launcher.browser() as browser:
        response = launcher.start(browser, params)
    assert query(response.headers["location"])["error"] == "invalid_request"


def test_resource_is_a_synonym_for_aud_and_state_survives_success(launcher: Launcher) -> None:
    _verifier, challenge = pkce_pair()
    params = launcher.authorize_params(state=TRICKY_STATE, challenge=challenge, scope="launch/patient patient/Patient.rs")
    params["resource"] = params.pop("aud")
    with launcher.browser() as browser:
        first = launcher.start(browser, params, post=True)
        after = launcher.login(browser, first.headers["location"])
        final = launcher.consent(browser, after.headers["location"])
    assert query(final.headers["location"])["state"] == TRICKY_STATE


def test_malformed_v2_scopes_are_dropped_never_widened(launcher: Launcher) -> None:
    run = launcher.launch(scope="launch/patient patient/Patient.rs patient/Coverage.sr patient/Coverage.cruds "
                                "patient/ExplanationOfBenefit.dus patient/Organization.write")
    assert run.tokens["scope"].split() == ["launch/patient", "patient/Patient.rs", "patient/Coverage.rs"]


# --- member pages --------------------------------------------------------------------------------------------
def _to_login(launcher: Launcher, browser, state: str = "s") -> str:  # type: ignore[no-untyped-def]
    _, challenge = pkce_pair()
    response = launcher.start(browser, launcher.authorize_params(state=state, challenge=challenge))
    return str(response.headers["location"])


def test_wrong_password_shows_form_again(launcher: Launcher) -> None:
    with launcher.browser() as browser:
        response = launcher.login(browser, _to_login(launcher, browser), password="wrong")
    assert response.status_code == 401 and 'id="username"' in response.text and "Incorrect" in response.text


def test_pages_are_hardened(launcher: Launcher) -> None:
    with launcher.browser() as browser:
        page = browser.get(launcher.srv.origin + _to_login(launcher, browser))
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert 'id="password"' in page.text and '<button type="submit">' in page.text


def test_login_without_csrf_or_cookie_is_refused(launcher: Launcher) -> None:
    with launcher.browser() as browser:
        login_url = _to_login(launcher, browser)
        form = hidden_inputs(browser.get(launcher.srv.origin + login_url).text)
        form.update(username="alice", password=launcher.passwords["alice"])
        forged = dict(form, csrf_token="forged")
        assert browser.post(launcher.srv.origin + "/auth/login", data=forged).status_code == 403
    with launcher.browser() as other_browser:  # right token, but not the browser that started the request
        assert other_browser.post(launcher.srv.origin + "/auth/login", data=form).status_code == 403


def test_deny_returns_access_denied_with_state(launcher: Launcher) -> None:
    run = launcher.launch(decision="deny")
    assert run.params["error"] == "access_denied" and run.params["state"] == run.state and "code" not in run.params


# --- token endpoint ------------------------------------------------------------------------------------------
def _code(launcher: Launcher) -> Launch:
    return launcher.launch(exchange=False)


def test_token_endpoint_get_is_405(launcher: Launcher) -> None:
    with launcher.api() as api:
        response = api.get(launcher.srv.issuer + "/token")
    assert response.status_code == 405 and response.json()["error"] and response.headers["cache-control"] == "no-store"


def test_client_authentication_failures_are_401(launcher: Launcher) -> None:
    run = _code(launcher)
    data = {"grant_type": "authorization_code", "code": run.params["code"], "redirect_uri": CALLBACK,
            "code_verifier": run.verifier}
    for response in (launcher.token_post(data, no_auth=True), launcher.token_post(data, (launcher.client_id, "x"))):
        assert response.status_code == 401 and response.json()["error"] == "invalid_client"
        assert response.headers["www-authenticate"].startswith("Basic realm=")
        assert response.headers["cache-control"] == "no-store" and response.headers["pragma"] == "no-cache"
    assert launcher.token_post(data).status_code == 200  # the code was not burnt by the failed attempts


@pytest.mark.parametrize("grant_type", ["password", "implicit", "urn:x"])  # client_credentials: test_backend.py
def test_unsupported_grant_types(launcher: Launcher, grant_type: str) -> None:
    response = launcher.token_post({"grant_type": grant_type, "username": "alice",
                                    "password": launcher.passwords["alice"]})
    assert response.status_code == 400 and response.json()["error"] == "unsupported_grant_type"


def test_code_errors(launcher: Launcher) -> None:
    assert launcher.token_post({"grant_type": "authorization_code"}).json()["error"] == "invalid_request"
    assert launcher.exchange("not-a-code", "x" * 43).json()["error"] == "invalid_grant"
    run = _code(launcher)
    assert launcher.exchange(run.params["code"], run.verifier,
                             redirect_uri="http://127.0.0.1:8765/other").json()["error"] == "invalid_grant"
    run = _code(launcher)
    other = launcher.exchange(run.params["code"], run.verifier, auth=launcher.basic(launcher.other_id))
    assert other.status_code == 400 and other.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("verifier", [None, "", "wrong" * 10, "other-launch"])
def test_pkce_verifier_must_match(launcher: Launcher, verifier: str | None) -> None:
    run = _code(launcher)
    if verifier == "other-launch":
        verifier = _code(launcher).verifier
    response = launcher.exchange(run.params["code"], verifier)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_code_reuse_fails_and_revokes(launcher: Launcher) -> None:
    run = launcher.launch()
    again = launcher.exchange(run.params["code"], run.verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert launcher.fhir("/Patient/pat-alice", run.tokens["access_token"]).status_code == 401
    assert launcher.token_post({"grant_type": "refresh_token",
                                "refresh_token": run.tokens["refresh_token"]}).status_code == 400


def test_refresh_errors(launcher: Launcher) -> None:
    run = launcher.launch(scope="launch/patient offline_access patient/Patient.rs")
    data = {"grant_type": "refresh_token", "refresh_token": run.tokens["refresh_token"]}
    assert launcher.token_post(data, no_auth=True).status_code == 401
    assert launcher.token_post(data, launcher.basic(launcher.other_id)).json()["error"] == "invalid_grant"
    wider = launcher.token_post(dict(data, scope="launch/patient patient/Coverage.rs"))
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    same = launcher.token_post(data)
    assert same.status_code == 200 and same.json()["scope"] == "launch/patient offline_access patient/Patient.rs"


def test_revoke_and_introspect_need_client_auth(launcher: Launcher, alice: Launch) -> None:
    with launcher.api() as api:
        for path in ("/introspect", "/revoke"):
            response = api.post(launcher.srv.issuer + path, data={"token": alice.tokens["access_token"]})
            assert response.status_code == 401
        other = api.post(launcher.srv.issuer + "/revoke", data={"token": alice.tokens["access_token"]},
                         auth=launcher.basic(launcher.other_id))
        assert other.status_code == 400
    assert launcher.fhir("/Patient/pat-alice", alice.tokens["access_token"]).status_code == 200


# --- FHIR API ------------------------------------------------------------------------------------------------
def _forge(claims: dict[str, object], alg: str = "none") -> str:
    def b64(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(claims)}."


def _assert_401(response, *, error: bool = True) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 401, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="')
    assert ('error="invalid_token"' in challenge) == error


def test_bad_tokens_get_401(launcher: Launcher, alice: Launch) -> None:
    real = alice.tokens["access_token"]
    claims = jwt.decode(real, options={"verify_signature": False})
    head, body, sig = real.split(".")
    _assert_401(launcher.fhir("/Patient/pat-alice", None), error=False)
    _assert_401(launcher.fhir("/Patient/pat-alice", "garbage"))
    _assert_401(launcher.fhir("/Patient/pat-alice", _forge(claims)))
    _assert_401(launcher.fhir("/Patient/pat-alice", f"{head}.{body}.{sig[::-1]}"))
    swapped = base64.urlsafe_b64encode(json.dumps(dict(claims, patient="pat-bob")).encode()).rstrip(b"=").decode()
    _assert_401(launcher.fhir("/Patient/pat-bob", f"{head}.{swapped}.{sig}"))
    _assert_401(launcher.fhir("/Patient/pat-alice", None, params={"access_token": real}), error=False)
    keys = KeySet(launcher.srv.state_dir)
    expired = keys.sign(dict(claims, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600, jti="old"))
    _assert_401(launcher.fhir("/Patient/pat-alice", expired))


def test_other_members_data_is_invisible(launcher: Launcher, alice: Launch) -> None:
    token = alice.tokens["access_token"]
    other = launcher.fhir("/Patient/pat-bob", token)
    missing = launcher.fhir("/Patient/pat-nobody", token)
    assert other.status_code == missing.status_code == 404
    assert other.json()["issue"][0]["code"] == missing.json()["issue"][0]["code"] == "not-found"
    assert launcher.fhir("/ExplanationOfBenefit/eob-bob-prof", token).status_code == 404
    for params in ({"patient": "pat-bob"}, {"patient": "Patient/pat-bob"}, {"_id": "eob-bob-prof"}):
        bundle = launcher.fhir("/ExplanationOfBenefit", token, params=params).json()
        assert bundle["total"] == 0 and bundle["entry"] == []
    rev = launcher.fhir("/Organization", token, params={"_id": "org-payer",
                                                         "_revinclude": "ExplanationOfBenefit:insurer"}).json()
    patients = {e["resource"]["patient"]["reference"] for e in rev["entry"] if e["search"]["mode"] == "include"}
    assert patients == {"Patient/pat-alice"}
    assert launcher.fhir("/Patient/pat-bob/$everything", token).status_code == 404


def test_scope_and_write_refusals(launcher: Launcher) -> None:
    run = launcher.launch(scope="launch/patient patient/Patient.rs")
    token = run.tokens["access_token"]
    for path in ("/Coverage", "/ExplanationOfBenefit/eob-alice-prof", "/Organization/org-payer"):
        response = launcher.fhir(path, token)
        assert response.status_code == 403 and response.json()["resourceType"] == "OperationOutcome"
    for method, path in (("POST", "/Patient"), ("PUT", "/Patient/pat-alice"), ("DELETE", "/Patient/pat-alice"),
                         ("PATCH", "/Patient/pat-alice")):
        response = launcher.fhir(path, token, method=method, json={"resourceType": "Patient", "id": "pat-alice"})
        assert response.status_code == 403 and response.json()["resourceType"] == "OperationOutcome"
    included = launcher.fhir("/Patient", token, params={"_revinclude": "ExplanationOfBenefit:patient"}).json()
    assert [e["resource"]["resourceType"] for e in included["entry"]] == ["Patient"]


@pytest.mark.parametrize("path, params, status", [
    ("/ExplanationOfBenefit", {"_count": "abc"}, 400),
    ("/ExplanationOfBenefit", {"_count": "-1"}, 400),
    ("/ExplanationOfBenefit", {"_count": "²"}, 400),
    ("/ExplanationOfBenefit", {"_offset": "9" * 40}, 400),
    ("/ExplanationOfBenefit", {"foo": "bar"}, 400),
    ("/ExplanationOfBenefit", {"_include": "Patient:organization"}, 400),
    ("/ExplanationOfBenefit", {"_format": "xml"}, 406),
    ("/Observation", {}, 404),
    ("/Patient/pat-alice/_history", {}, 404),
    ("/Patient/%00%ff<script>", {}, 404),
])
def test_junk_input_gets_operationoutcome(launcher: Launcher, alice: Launch, path: str, params: dict[str, str],
                                          status: int) -> None:
    response = launcher.fhir(path, alice.tokens["access_token"], params=params)
    assert response.status_code == status, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "Traceback" not in response.text and "server" not in response.headers


def test_unsupported_method_and_no_banner(launcher: Launcher, alice: Launch) -> None:
    response = launcher.fhir("/Patient/pat-alice", alice.tokens["access_token"], method="TRACE")
    assert response.status_code == 405 and response.json()["resourceType"] == "OperationOutcome"
    ok = launcher.fhir("/Patient/pat-alice", alice.tokens["access_token"])
    assert "server" not in ok.headers and ok.headers["x-content-type-options"] == "nosniff"
    assert ok.headers["strict-transport-security"].startswith("max-age=63072000; includeSubDomains")


def test_cors_policy(launcher: Launcher) -> None:
    with launcher.api() as api:
        origin = {"Origin": "https://random.example"}
        public = api.get(launcher.srv.fhir_base_url + "/.well-known/smart-configuration", headers=origin)
        assert public.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in public.headers
        preflight = api.options(launcher.srv.fhir_base_url + "/Patient", headers={
            **origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"})
        assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers
        token = api.options(launcher.srv.issuer + "/token", headers={**origin, "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in token.headers


def test_discovery_documents(launcher: Launcher) -> None:
    with launcher.api() as api:
        smart = api.get(launcher.srv.fhir_base_url + "/.well-known/smart-configuration",
                        headers={"Accept": "text/html"})
        assert smart.headers["content-type"] == "application/json"
        doc = smart.json()
        assert doc["code_challenge_methods_supported"] == ["S256"] and "launch-standalone" in doc["capabilities"]
        assert all(doc[k].startswith("https://") for k in doc if k.endswith("_endpoint") or k in ("issuer", "jwks_uri"))
        oidc = api.get(doc["issuer"] + "/.well-known/openid-configuration").json()
        assert oidc["issuer"] == doc["issuer"] and oidc["id_token_signing_alg_values_supported"] == ["RS256"]
        meta = api.get(launcher.srv.fhir_base_url + "/metadata").json()
        uris = {e["url"]: e["valueUri"] for e in meta["rest"][0]["security"]["extension"][0]["extension"]}
        assert uris == {"authorize": doc["authorization_endpoint"], "token": doc["token_endpoint"],
                        "introspect": doc["introspection_endpoint"], "revoke": doc["revocation_endpoint"]}
        assert meta["fhirVersion"] == "4.0.1"


def test_plain_http_only_redirects(launcher: Launcher) -> None:
    import httpx

    port = launcher.srv.target_env()["SMART_REFERENCE_PLAIN_HTTP_PORT"]
    response = httpx.get(f"http://127.0.0.1:{port}/fhir/metadata")
    assert response.status_code == 301 and response.headers["location"].startswith("https://127.0.0.1:")
    assert response.content == b""
