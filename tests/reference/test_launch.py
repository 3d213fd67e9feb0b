"""The happy path: a full standalone launch over real HTTPS, then the token's life (FHIR, refresh, introspect, revoke)."""

from __future__ import annotations

import jwt

from tests.reference.launcher import FULL_SCOPE, Launch, Launcher


def test_full_launch_issues_every_token(launcher: Launcher, alice: Launch) -> None:
    assert alice.params["state"] == alice.state and alice.params["iss"] == launcher.srv.issuer
    assert alice.redirect.startswith("http://127.0.0.1:8765/callback?")
    response = alice.token_response
    assert response is not None and response.status_code == 200, response.text if response else None
    assert response.headers["cache-control"] == "no-store" and response.headers["pragma"] == "no-cache"
    assert response.headers["content-type"].startswith("application/json")
    body = alice.tokens
    assert body["token_type"] == "Bearer" and 0 < body["expires_in"] <= 3600
    assert body["scope"].split() == FULL_SCOPE.split()
    assert body["patient"] == "pat-alice" and body["refresh_token"] and body["id_token"]


def test_id_token_verifies_with_jwks(launcher: Launcher, alice: Launch) -> None:
    with launcher.api() as api:
        config = api.get(launcher.srv.issuer + "/.well-known/openid-configuration").json()
        jwks = api.get(config["jwks_uri"]).json()
    header = jwt.get_unverified_header(alice.tokens["id_token"])
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    assert set(key) == {"kty", "kid", "use", "alg", "n", "e"}
    claims = jwt.decode(alice.tokens["id_token"], jwt.PyJWK(key).key, algorithms=["RS256"],
                        audience=launcher.client_id, issuer=config["issuer"])
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert claims["fhirUser"] == launcher.srv.fhir_base_url + "/Patient/pat-alice"
    again = launcher.launch(scope="openid fhirUser launch/patient patient/Patient.rs")
    assert jwt.decode(again.tokens["id_token"], options={"verify_signature": False})["sub"] == claims["sub"]


def test_token_reads_own_patient_data(launcher: Launcher, alice: Launch) -> None:
    token = alice.tokens["access_token"]
    patient = launcher.fhir("/Patient/pat-alice", token)
    assert patient.status_code == 200 and patient.json()["id"] == "pat-alice"
    assert patient.headers["content-type"].startswith("application/fhir+json")
    eobs = launcher.fhir("/ExplanationOfBenefit", token, params={"patient": "pat-alice"}).json()
    assert eobs["resourceType"] == "Bundle" and eobs["type"] == "searchset" and eobs["total"] == 4
    assert {e["resource"]["patient"]["reference"] for e in eobs["entry"]} == {"Patient/pat-alice"}
    coverage = launcher.fhir("/Coverage", token, params={"beneficiary": "Patient/pat-alice"}).json()
    assert [e["resource"]["id"] for e in coverage["entry"]] == ["cov-alice"]
    assert launcher.fhir("/Organization/org-payer", token).status_code == 200


def test_paging_includes_and_everything(launcher: Launcher, alice: Launch) -> None:
    token = alice.tokens["access_token"]
    first = launcher.fhir("/ExplanationOfBenefit", token, params={"_count": "3"}).json()
    links = {link["relation"]: link["url"] for link in first["link"]}
    assert first["total"] == 4 and len(first["entry"]) == 3 and "next" in links and "previous" not in links
    with launcher.api() as api:
        second = api.get(links["next"], headers={"Authorization": f"Bearer {token}"}).json()
    assert len(second["entry"]) == 1 and "previous" in {link["relation"] for link in second["link"]}
    included = launcher.fhir("/ExplanationOfBenefit", token, params={
        "_include": ["ExplanationOfBenefit:insurer", "ExplanationOfBenefit:coverage", "ExplanationOfBenefit:patient",
                     "ExplanationOfBenefit:provider"]}).json()
    kinds = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in included["entry"]}
    assert {("Organization", "include"), ("Coverage", "include"), ("Patient", "include")} <= kinds
    rev = launcher.fhir("/Patient", token, params={"_revinclude": "ExplanationOfBenefit:patient"}).json()
    assert len(rev["entry"]) == 5
    everything = launcher.fhir("/Patient/pat-alice/$everything", token).json()
    types = {e["resource"]["resourceType"] for e in everything["entry"]}
    assert {"Patient", "Coverage", "ExplanationOfBenefit", "Organization", "Practitioner"} <= types


def test_refresh_introspect_and_revoke(launcher: Launcher) -> None:
    run = launcher.launch()
    refresh = run.tokens["refresh_token"]
    renewed = launcher.token_post({"grant_type": "refresh_token", "refresh_token": refresh,
                                   "scope": "launch/patient patient/Patient.rs"})
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["scope"] == "launch/patient patient/Patient.rs" and renewed.json()["expires_in"] <= 3600
    assert renewed.headers["cache-control"] == "no-store"
    narrow = renewed.json()["access_token"]
    assert launcher.fhir("/Coverage", narrow).status_code == 403
    with launcher.api() as api:
        url = launcher.srv.issuer
        live = api.post(url + "/introspect", data={"token": run.tokens["access_token"]}, auth=launcher.basic()).json()
        assert live["active"] is True and live["patient"] == "pat-alice" and live["client_id"] == launcher.client_id
        assert {"scope", "exp", "iat", "sub", "iss", "token_type"} <= set(live)
        assert api.post(url + "/revoke", data={"token": run.tokens["access_token"]},
                        auth=launcher.basic()).status_code == 200
        assert launcher.fhir("/Patient/pat-alice", run.tokens["access_token"]).status_code == 401
        dead = api.post(url + "/introspect", data={"token": run.tokens["access_token"]}, auth=launcher.basic())
        assert dead.json() == {"active": False}
        assert launcher.fhir("/Patient/pat-alice", narrow).status_code == 200
        assert api.post(url + "/revoke", data={"token": refresh}, auth=launcher.basic()).status_code == 200
        assert launcher.fhir("/Patient/pat-alice", narrow).status_code == 401
        again = launcher.token_post({"grant_type": "refresh_token", "refresh_token": refresh})
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
        assert api.post(url + "/revoke", data={"token": "never-issued"}, auth=launcher.basic()).status_code == 200
        assert api.post(url + "/introspect", data={"token": "garbage"}, auth=launcher.basic()).json() == {
            "active": False}


def test_authorize_by_post_and_v1_scopes(launcher: Launcher) -> None:
    run = launcher.launch(scope="launch/patient openid fhirUser patient/*.read")
    assert run.tokens["scope"] == "launch/patient openid fhirUser patient/*.read"
    assert launcher.fhir("/Coverage", run.tokens["access_token"]).status_code == 200


def test_unticked_scopes_are_not_granted(launcher: Launcher) -> None:
    run = launcher.launch(untick=("patient/Coverage.rs", "offline_access"))
    assert "patient/Coverage.rs" not in run.tokens["scope"].split() and "refresh_token" not in run.tokens
    assert launcher.fhir("/Coverage", run.tokens["access_token"]).status_code == 403


def test_representative_gets_dependent_context(launcher: Launcher) -> None:
    run = launcher.launch(member="carol", scope=FULL_SCOPE + " patient/RelatedPerson.rs")
    assert run.tokens["patient"] == "pat-dylan"
    claims = jwt.decode(run.tokens["id_token"], options={"verify_signature": False})
    assert claims["fhirUser"] == launcher.srv.fhir_base_url + "/RelatedPerson/rp-carol-dylan"
    token = run.tokens["access_token"]
    assert launcher.fhir("/RelatedPerson/rp-carol-dylan", token).json()["patient"]["reference"] == "Patient/pat-dylan"
    assert launcher.fhir("/Patient/pat-alice", token).status_code == 404
