"""Every fault in the catalog changes observable behaviour: one probe per fault, each against a server with only that
fault on. The clean counterpart of each probe is asserted in test_errors.py / test_launch.py / test_tls.py."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import time
import warnings
from collections.abc import Callable

import httpx
import jwt
import pytest
from cryptography import x509

from smart_conformance.reference.faults import FAULTS, Fault
from smart_conformance.reference.keys import KeySet
from smart_conformance.reference.server import ReferenceServer
from smart_conformance.reference.variants import TOTP_MFA
from smart_conformance.testplan import plan
from tests.reference.launcher import (
    CALLBACK,
    TRICKY_STATE,
    Launcher,
    hidden_inputs,
    pkce_pair,
    query,
)

Probe = Callable[[Launcher], None]
PROBES: dict[str, Probe] = {}


def probe(*names: str) -> Callable[[Probe], Probe]:
    def register(fn: Probe) -> Probe:
        for name in names:
            PROBES[name] = fn
        return fn
    return register


def _get(L: Launcher, url: str, **kwargs: object) -> httpx.Response:
    with L.api() as api:
        return api.get(url, **kwargs)  # type: ignore[arg-type]


def _smart(L: Launcher) -> dict[str, object]:
    return dict(_get(L, L.srv.fhir_base_url + "/.well-known/smart-configuration").json())


def _authorize(L: Launcher, params: dict[str, str], *, post: bool = False) -> httpx.Response:
    with L.browser() as browser:
        return L.start(browser, params, post=post)


def _code_run(L: Launcher, **kw: str) -> tuple[dict[str, str], str]:
    run = L.launch(exchange=False, **kw)
    return run.params, run.verifier


def _id_claims(L: Launcher, **kw: str) -> dict[str, object]:
    run = L.launch(nonce="nonce-123", **kw)
    return dict(jwt.decode(run.tokens["id_token"], options={"verify_signature": False}))


# --- discovery -----------------------------------------------------------------------------------------------
@probe("smart-config-missing-capability")
def _(L: Launcher) -> None:
    assert "launch-standalone" not in _smart(L)["capabilities"]  # type: ignore[operator]


@probe("pkce-plain-advertised")
def _(L: Launcher) -> None:
    assert "plain" in _smart(L)["code_challenge_methods_supported"]  # type: ignore[operator]


@probe("smart-config-relative-urls")
def _(L: Launcher) -> None:
    assert _smart(L)["token_endpoint"] == "/auth/token"


@probe("smart-config-html-on-accept-html")
def _(L: Launcher) -> None:
    response = _get(L, L.srv.fhir_base_url + "/.well-known/smart-configuration", headers={"Accept": "text/html"})
    assert response.headers["content-type"].startswith("text/html")


@probe("grant-types-missing")
def _(L: Launcher) -> None:
    assert "grant_types_supported" not in _smart(L)


@probe("scopes-supported-missing")
def _(L: Launcher) -> None:
    assert "scopes_supported" not in _smart(L)


@probe("issuer-mismatch")
def _(L: Launcher) -> None:
    oidc = _get(L, L.srv.issuer + "/.well-known/openid-configuration").json()
    assert oidc["issuer"] != _smart(L)["issuer"]


@probe("jwks-missing-kid")
def _(L: Launcher) -> None:
    keys = _get(L, L.srv.issuer + "/jwks").json()["keys"]
    assert len(keys) == 2 and all("kid" not in k for k in keys)


@probe("capability-oauth-uris-mismatch")
def _(L: Launcher) -> None:
    meta = _get(L, L.srv.fhir_base_url + "/metadata").json()
    uris = {e["url"]: e["valueUri"] for e in meta["rest"][0]["security"]["extension"][0]["extension"]}
    assert uris["token"] != _smart(L)["token_endpoint"]


@probe("metadata-requires-token")
def _(L: Launcher) -> None:
    assert _get(L, L.srv.fhir_base_url + "/metadata").status_code == 401


# --- authorize -----------------------------------------------------------------------------------------------
@probe("pkce-plain-accepted")
def _(L: Launcher) -> None:
    verifier = "p" * 50
    response = _authorize(L, L.authorize_params(state="s", challenge=verifier, code_challenge_method="plain"))
    assert response.headers["location"].startswith("/auth/login")


@probe("pkce-not-required")
def _(L: Launcher) -> None:
    run = L.launch(code_challenge=None, code_challenge_method=None, exchange=False)
    assert L.exchange(run.params["code"], None).status_code == 200


@probe("redirect-uri-prefix-match")
def _(L: Launcher) -> None:
    _, challenge = pkce_pair()
    response = _authorize(L, L.authorize_params(state="s", challenge=challenge,
                                                 redirect_uri=CALLBACK + ".attacker.example/x"))
    assert response.status_code == 303


@probe("unknown-client-redirects")
def _(L: Launcher) -> None:
    response = _authorize(L, L.authorize_params(state="s", challenge="c" * 43, client_id="nobody",
                                                redirect_uri="https://evil.example/cb"))
    assert response.status_code == 303 and response.headers["location"].startswith("https://evil.example/cb")


@probe("state-not-echoed-on-error")
def _(L: Launcher) -> None:
    response = _authorize(L, L.authorize_params(state="s1", challenge="c" * 43, response_type="token"))
    assert "state" not in query(response.headers["location"])


@probe("state-altered")
def _(L: Launcher) -> None:
    _, challenge = pkce_pair()
    with L.browser() as browser:
        first = L.start(browser, L.authorize_params(state=TRICKY_STATE, challenge=challenge))
        after = L.login(browser, first.headers["location"])
        final = L.consent(browser, after.headers["location"])
    assert query(final.headers["location"])["state"] != TRICKY_STATE


@probe("aud-not-validated")
def _(L: Launcher) -> None:
    run = L.launch(aud="https://evil.example/fhir")
    assert L.fhir("/Patient/pat-alice", run.tokens["access_token"]).status_code == 200


@probe("implicit-grant-allowed")
def _(L: Launcher) -> None:
    run = L.launch(response_type="token", exchange=False)
    assert "access_token=" in run.redirect.split("#", 1)[1]


@probe("authorize-post-unsupported")
def _(L: Launcher) -> None:
    _, challenge = pkce_pair()
    assert _authorize(L, L.authorize_params(state="s", challenge=challenge), post=True).status_code == 405


# --- member pages --------------------------------------------------------------------------------------------
@probe("login-no-csrf")
def _(L: Launcher) -> None:
    _, challenge = pkce_pair()
    with L.browser() as browser:
        login_url = L.start(browser, L.authorize_params(state="s", challenge=challenge)).headers["location"]
        form = hidden_inputs(browser.get(L.srv.origin + login_url).text)
    assert "csrf_token" not in form
    with L.browser() as attacker:  # another browser, no cookie, no token
        response = attacker.post(L.srv.origin + "/auth/login", data=dict(form, username="alice",
                                                                          password=L.passwords["alice"]))
    assert response.status_code == 303


@probe("login-accepts-any-password")
def _(L: Launcher) -> None:
    _, challenge = pkce_pair()
    with L.browser() as browser:
        login_url = L.start(browser, L.authorize_params(state="s", challenge=challenge)).headers["location"]
        assert L.login(browser, login_url, password="wrong").status_code == 303


@probe("consent-skipped")
def _(L: Launcher) -> None:
    run = L.launch(exchange=False)  # the launcher goes straight from login to the callback
    assert "code" in run.params


@probe("consent-ignores-unticked")
def _(L: Launcher) -> None:
    run = L.launch(untick=("patient/Coverage.rs",))
    assert "patient/Coverage.rs" in run.tokens["scope"].split()


@probe("deny-returns-code")
def _(L: Launcher) -> None:
    assert "code" in L.launch(decision="deny", exchange=False).params


@probe("mfa-skipped")
def _(L: Launcher) -> None:
    assert L.srv.variants.active(TOTP_MFA)  # runs_with: every member is enrolled, the code page is due
    _, challenge = pkce_pair()
    with L.browser() as browser:
        login_url = L.start(browser, L.authorize_params(state="s", challenge=challenge)).headers["location"]
        after_password = L.login(browser, login_url)
    assert after_password.status_code == 303 and after_password.headers["location"].startswith("/auth/consent")
    assert "code" in L.launch(exchange=False).params  # the password alone ends in a code for the app


@probe("consent-page-frameable")
def _(L: Launcher) -> None:
    _, challenge = pkce_pair()
    with L.browser() as browser:
        login_url = L.start(browser, L.authorize_params(state="s", challenge=challenge)).headers["location"]
        page = browser.get(L.srv.origin + login_url)
    assert "x-frame-options" not in page.headers and "content-security-policy" not in page.headers


# --- token endpoint ------------------------------------------------------------------------------------------
@probe("code-reuse-allowed")
def _(L: Launcher) -> None:
    run = L.launch()
    assert L.exchange(run.params["code"], run.verifier).status_code == 200


@probe("code-not-bound-to-redirect")
def _(L: Launcher) -> None:
    params, verifier = _code_run(L)
    assert L.exchange(params["code"], verifier, redirect_uri="http://127.0.0.1:9/other").status_code == 200


@probe("code-not-bound-to-client")
def _(L: Launcher) -> None:
    params, verifier = _code_run(L)
    assert L.exchange(params["code"], verifier, auth=L.basic(L.other_id)).status_code == 200


@probe("pkce-verifier-not-checked")
def _(L: Launcher) -> None:
    params, _ = _code_run(L)
    assert L.exchange(params["code"], None).status_code == 200


@probe("token-no-store-missing")
def _(L: Launcher) -> None:
    response = L.token_post({"grant_type": "authorization_code", "code": "x"})
    assert "cache-control" not in response.headers and "pragma" not in response.headers


@probe("wrong-secret-accepted")
def _(L: Launcher) -> None:
    params, verifier = _code_run(L)
    assert L.exchange(params["code"], verifier, auth=(L.client_id, "not-the-secret")).status_code == 200


@probe("invalid-client-without-401")
def _(L: Launcher) -> None:
    response = L.token_post({"grant_type": "authorization_code", "code": "x"}, (L.client_id, "bad"))
    assert response.status_code == 400 and "www-authenticate" not in response.headers


@probe("password-grant-allowed")
def _(L: Launcher) -> None:
    response = L.token_post({"grant_type": "password", "username": "alice", "password": L.passwords["alice"]})
    assert response.status_code == 200 and response.json()["access_token"]


@probe("expires-in-missing")
def _(L: Launcher) -> None:
    assert "expires_in" not in L.launch().tokens


@probe("scope-widened")
def _(L: Launcher) -> None:
    run = L.launch(scope="launch/patient patient/Patient.rs")
    assert "patient/*.rs" in run.tokens["scope"].split()
    assert L.fhir("/Coverage", run.tokens["access_token"]).status_code == 200


@probe("patient-missing")
def _(L: Launcher) -> None:
    assert "patient" not in L.launch().tokens


# --- id_token ------------------------------------------------------------------------------------------------
@probe("id-token-missing")
def _(L: Launcher) -> None:
    assert "id_token" not in L.launch().tokens


@probe("id-token-wrong-aud")
def _(L: Launcher) -> None:
    assert _id_claims(L)["aud"] != L.client_id


@probe("id-token-hs256")
def _(L: Launcher) -> None:
    assert jwt.get_unverified_header(L.launch().tokens["id_token"])["alg"] == "HS256"


@probe("id-token-no-kid")
def _(L: Launcher) -> None:
    assert "kid" not in jwt.get_unverified_header(L.launch().tokens["id_token"])


@probe("id-token-bad-signature")
def _(L: Launcher) -> None:
    token = L.launch().tokens["id_token"]
    key = KeySet(L.srv.state_dir).active.private.public_key()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, key, algorithms=["RS256"], audience=L.client_id)


@probe("id-token-nonce-not-echoed")
def _(L: Launcher) -> None:
    assert "nonce" not in _id_claims(L)


@probe("id-token-expired")
def _(L: Launcher) -> None:
    assert int(_id_claims(L)["exp"]) < time.time()  # type: ignore[call-overload]


@probe("fhiruser-missing")
def _(L: Launcher) -> None:
    assert "fhirUser" not in _id_claims(L)


@probe("authorize-refusals-as-503")
def _(L: Launcher) -> None:
    response = _authorize(L, L.authorize_params(state="s", challenge="c" * 43, client_id="nobody"))
    assert response.status_code == 503  # where the clean server shows its error page (400)


@probe("gateway-blocks-after-refusal")
def _(L: Launcher) -> None:
    token = L.launch().tokens["access_token"]
    assert L.fhir("/Patient/pat-alice", token).status_code == 200
    assert _get(L, L.srv.fhir_base_url + "/Patient/pat-alice").status_code == 401  # a refusal trips the gateway
    assert L.fhir("/Patient/pat-alice", token).status_code == 401  # from then on the valid token is refused too


@probe("fhiruser-other-origin")
def _(L: Launcher) -> None:
    assert not str(_id_claims(L)["fhirUser"]).startswith(L.srv.fhir_base_url)


@probe("sub-unstable")
def _(L: Launcher) -> None:
    assert _id_claims(L)["sub"] != _id_claims(L)["sub"]


# --- refresh -------------------------------------------------------------------------------------------------
@probe("offline-access-no-refresh-token")
def _(L: Launcher) -> None:
    assert "offline_access" in L.launch().tokens["scope"] and "refresh_token" not in L.launch().tokens


@probe("refresh-widens-scope")
def _(L: Launcher) -> None:
    run = L.launch(scope="launch/patient offline_access patient/Patient.rs")
    wider = L.token_post({"grant_type": "refresh_token", "refresh_token": run.tokens["refresh_token"],
                          "scope": "launch/patient patient/Coverage.rs"})
    assert wider.status_code == 200 and L.fhir("/Coverage", wider.json()["access_token"]).status_code == 200


@probe("refresh-without-client-auth")
def _(L: Launcher) -> None:
    run = L.launch()
    assert L.token_post({"grant_type": "refresh_token", "refresh_token": run.tokens["refresh_token"]},
                        no_auth=True).status_code == 200


@probe("refresh-other-client")
def _(L: Launcher) -> None:
    run = L.launch()
    assert L.token_post({"grant_type": "refresh_token", "refresh_token": run.tokens["refresh_token"]},
                        L.basic(L.other_id)).status_code == 200


# --- revocation / introspection ------------------------------------------------------------------------------
def _revoke(L: Launcher, token: str) -> None:
    with L.api() as api:
        assert api.post(L.srv.issuer + "/revoke", data={"token": token}, auth=L.basic()).status_code == 200


def _introspect(L: Launcher, token: str, auth: bool = True) -> dict[str, object]:
    with L.api() as api:
        return dict(api.post(L.srv.issuer + "/introspect", data={"token": token},
                             auth=L.basic() if auth else None).json())


@probe("revocation-ignored", "revoked-token-accepted")
def _(L: Launcher) -> None:
    run = L.launch()
    _revoke(L, run.tokens["access_token"])
    assert L.fhir("/Patient/pat-alice", run.tokens["access_token"]).status_code == 200


@probe("refresh-survives-revocation")
def _(L: Launcher) -> None:
    run = L.launch()
    _revoke(L, run.tokens["refresh_token"])
    assert L.token_post({"grant_type": "refresh_token",
                         "refresh_token": run.tokens["refresh_token"]}).status_code == 200


@probe("access-survives-refresh-revocation")
def _(L: Launcher) -> None:
    run = L.launch()
    _revoke(L, run.tokens["refresh_token"])
    assert L.fhir("/Patient/pat-alice", run.tokens["access_token"]).status_code == 200


@probe("introspect-revoked-active")
def _(L: Launcher) -> None:
    run = L.launch()
    _revoke(L, run.tokens["access_token"])
    assert _introspect(L, run.tokens["access_token"])["active"] is True


@probe("introspect-missing-patient")
def _(L: Launcher) -> None:
    info = _introspect(L, L.launch().tokens["access_token"])
    assert info["active"] is True and "patient" not in info


@probe("introspect-unauthenticated")
def _(L: Launcher) -> None:
    assert _introspect(L, L.launch().tokens["access_token"], auth=False)["active"] is True


# --- FHIR API ------------------------------------------------------------------------------------------------
def _claims(L: Launcher) -> tuple[str, dict[str, object]]:
    token = L.launch().tokens["access_token"]
    return token, dict(jwt.decode(token, options={"verify_signature": False}))


@probe("token-in-query-accepted")
def _(L: Launcher) -> None:
    token, _ = _claims(L)
    assert L.fhir("/Patient/pat-alice", None, params={"access_token": token}).status_code == 200


@probe("expired-token-accepted")
def _(L: Launcher) -> None:
    _, claims = _claims(L)
    expired = KeySet(L.srv.state_dir).sign(dict(claims, exp=int(time.time()) - 60, jti="expired-1"))
    assert L.fhir("/Patient/pat-alice", expired).status_code == 200


@probe("alg-none-accepted")
def _(L: Launcher) -> None:
    _, claims = _claims(L)
    def b64(d: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
    forged = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(dict(claims, patient='pat-bob', jti='forged'))}."
    assert L.fhir("/Patient/pat-bob", forged).status_code == 200


@probe("tampered-signature-accepted")
def _(L: Launcher) -> None:
    token, claims = _claims(L)
    head, _, sig = token.split(".")
    body = base64.urlsafe_b64encode(json.dumps(dict(claims, patient="pat-bob")).encode()).rstrip(b"=").decode()
    assert L.fhir("/Patient/pat-bob", f"{head}.{body}.{sig}").status_code == 200


@probe("www-authenticate-missing")
def _(L: Launcher) -> None:
    response = L.fhir("/Patient/pat-alice", "garbage")
    assert response.status_code == 401 and "www-authenticate" not in response.headers


@probe("operations-token-unverified")
def _(L: Launcher) -> None:
    assert L.fhir("/Patient/pat-bob/$everything", "garbage").status_code == 200
    assert L.fhir("/Patient/pat-bob", "garbage").status_code == 401  # reads still verify the token


@probe("scope-not-enforced")
def _(L: Launcher) -> None:
    run = L.launch(scope="launch/patient patient/Patient.rs")
    assert L.fhir("/Coverage", run.tokens["access_token"]).status_code == 200


@probe("writes-allowed")
def _(L: Launcher) -> None:
    token, _ = _claims(L)
    response = L.fhir("/Patient", token, method="POST", json={"resourceType": "Patient"})
    assert response.status_code == 201


@probe("compartment-leak-read")
def _(L: Launcher) -> None:
    token, _ = _claims(L)
    assert L.fhir("/Patient/pat-bob", token).status_code == 200


@probe("compartment-leak-search")
def _(L: Launcher) -> None:
    token, _ = _claims(L)
    assert L.fhir("/ExplanationOfBenefit", token, params={"patient": "pat-bob"}).json()["total"] == 3


@probe("compartment-leak-include")
def _(L: Launcher) -> None:
    token, _ = _claims(L)
    bundle = L.fhir("/Organization", token, params={"_id": "org-payer",
                                                    "_revinclude": "ExplanationOfBenefit:insurer"}).json()
    assert {"Patient/pat-bob", "Patient/pat-alice"} <= {
        e["resource"].get("patient", {}).get("reference") for e in bundle["entry"]}
    assert L.fhir("/Patient/pat-bob", token).status_code == 404  # plain reads stay closed


@probe("compartment-leak-everything")
def _(L: Launcher) -> None:
    token, _ = _claims(L)
    assert L.fhir("/Patient/pat-bob/$everything", token).status_code == 200


@probe("existence-oracle")
def _(L: Launcher) -> None:
    token, _ = _claims(L)
    assert L.fhir("/Patient/pat-bob", token).status_code == 403
    assert L.fhir("/Patient/pat-nobody", token).status_code == 404


@probe("error-stack-trace")
def _(L: Launcher) -> None:
    token, _ = _claims(L)
    response = L.fhir("/ExplanationOfBenefit", token, params={"_count": "abc"})
    assert response.status_code == 500 and "Traceback" in response.text


@probe("error-not-operationoutcome")
def _(L: Launcher) -> None:
    response = L.fhir("/Patient/pat-alice", None)
    assert response.status_code == 401 and response.headers["content-type"].startswith("text/html")


@probe("server-banner")
def _(L: Launcher) -> None:
    assert "uvicorn" in L.fhir("/Patient/pat-alice", None).headers["server"]


@probe("wrong-content-type")
def _(L: Launcher) -> None:
    token, _ = _claims(L)
    assert L.fhir("/Patient/pat-alice", token).headers["content-type"].startswith("application/json")


@probe("nosniff-missing")
def _(L: Launcher) -> None:
    assert "x-content-type-options" not in L.fhir("/Patient/pat-alice", None).headers


@probe("cors-wildcard-credentials")
def _(L: Launcher) -> None:
    response = L.fhir("/Patient/pat-alice", None, headers={"Origin": "https://evil.example"})
    assert response.headers["access-control-allow-origin"] == "https://evil.example"
    assert response.headers["access-control-allow-credentials"] == "true"


# --- TLS -----------------------------------------------------------------------------------------------------
def _handshake(L: Launcher, *, version: ssl.TLSVersion | None = None, ciphers: str | None = None,
               verify: bool = False) -> tuple[str, str]:
    if verify:
        ctx = L.srv.ssl_context()
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if version is not None:
            ctx.minimum_version = ctx.maximum_version = version
    if ciphers:
        ctx.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", L.srv.port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        version_name, cipher = tls.version() or "", tls.cipher()[0]  # type: ignore[index]
    return version_name, cipher


@probe("tls-legacy-protocols")
def _(L: Launcher) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        v10, v11 = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1
    assert _handshake(L, version=v10, ciphers="@SECLEVEL=0:ALL")[0] == "TLSv1"
    assert _handshake(L, version=v11, ciphers="@SECLEVEL=0:ALL")[0] == "TLSv1.1"


@probe("tls13-disabled")
def _(L: Launcher) -> None:
    assert _handshake(L)[0] == "TLSv1.2"


@probe("tls-weak-ciphers")
def _(L: Launcher) -> None:
    assert _handshake(L, version=ssl.TLSVersion.TLSv1_2, ciphers="AES128-SHA")[1] == "AES128-SHA"


@probe("cert-expired")
def _(L: Launcher) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        _handshake(L, verify=True)


@probe("cert-hostname-mismatch")
def _(L: Launcher) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch|match"):
        _handshake(L, verify=True)


@probe("cert-weak-key-1024")
def _(L: Launcher) -> None:
    pem = ssl.get_server_certificate(("127.0.0.1", L.srv.port))
    assert x509.load_pem_x509_certificate(pem.encode()).public_key().key_size == 1024  # type: ignore[union-attr]


@probe("hsts-missing")
def _(L: Launcher) -> None:
    assert "strict-transport-security" not in _get(L, L.srv.fhir_base_url + "/metadata").headers


@probe("plaintext-http-served")
def _(L: Launcher) -> None:
    port = L.srv.target_env()["SMART_REFERENCE_PLAIN_HTTP_PORT"]
    response = httpx.get(f"http://127.0.0.1:{port}/fhir/metadata")
    assert response.status_code == 200 and response.json()["resourceType"] == "CapabilityStatement"


def test_every_fault_has_a_probe() -> None:
    """Each fault's effect is shown here by a direct probe, or through the harness by the fault matrix
    (tests/test_fault_matrix.py runs the suite checks that @proves it against it)."""
    assert not set(PROBES) - set(FAULTS), "probes for faults that do not exist"
    unproven = sorted(name for name in FAULTS if name not in PROBES and not plan().caught_by(name))
    assert not unproven, f"faults with neither a probe nor a check that @proves it: {unproven}"


def test_fault_records_are_well_formed() -> None:
    from smart_conformance.requirements import catalog

    known = set(catalog())
    for name, fault in FAULTS.items():
        assert isinstance(fault, Fault) and fault == name and fault.summary and fault.breaks and fault.area
        assert set(fault.breaks) <= known, f"{name} breaks ids missing from the catalog: {set(fault.breaks) - known}"


def test_unknown_fault_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="valid names: .*pkce-plain-accepted"):
        ReferenceServer(faults=["no-such-fault"])


@pytest.mark.parametrize("fault", sorted(PROBES))
def test_fault_is_observable(fault: str) -> None:
    with ReferenceServer(faults=[fault], variants=FAULTS[fault].runs_with) as srv:  # the variants it needs
        PROBES[fault](Launcher(srv))
