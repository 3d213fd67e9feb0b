"""The client side of SMART: PKCE, the authorization request, token requests and id_token validation."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from smart_conformance.smart import idtoken, pkce, token
from smart_conformance.smart.authorize import (
    AuthorizationRequest,
    new_nonce,
    new_state,
    standard_request,
)
from smart_conformance.smart.idtoken import (
    IdTokenProblem,
    MalformedJwt,
    decode_unverified,
    verify_id_token,
)
from smart_conformance.smart.launch import LaunchSpec, build_request
from smart_conformance.smart.token import (
    ClientCredentials,
    TokenResponse,
    TokenResponseError,
)

# ----------------------------------------------------------------------------------------------------------------
# PKCE


def test_rfc7636_appendix_b_vector() -> None:
    octets = bytes([116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212, 37, 77,
                    105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121])
    verifier = base64.urlsafe_b64encode(octets).rstrip(b"=").decode()
    assert verifier == "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce.s256_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_verifiers_are_fresh_and_in_the_unreserved_set() -> None:
    seen = {pkce.new_code_verifier() for _ in range(50)}
    assert len(seen) == 50
    assert all(pkce.is_valid_verifier(v) and len(v) == 64 for v in seen)
    assert pkce.is_valid_verifier(pkce.new_code_verifier(43)) and pkce.is_valid_verifier(pkce.new_code_verifier(128))
    for bad in (42, 129):
        with pytest.raises(ValueError, match="43 to 128"):
            pkce.new_code_verifier(bad)
    assert not pkce.is_valid_verifier("a" * 42) and not pkce.is_valid_verifier("a" * 42 + "+")
    pair = pkce.new_pkce()
    assert pair.method == "S256" and pair.challenge == pkce.s256_challenge(pair.verifier)
    assert pair.verifier not in repr(pair)
    plain = pkce.new_pkce(method="plain")
    assert plain.challenge == plain.verifier and plain.method == "plain"


# ----------------------------------------------------------------------------------------------------------------
# Authorization request


def test_state_and_nonce_are_unguessable() -> None:
    states = {new_state() for _ in range(100)}
    assert len(states) == 100
    assert all(len(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))) * 8 >= 128 for s in states)
    assert new_nonce() != new_nonce()


def test_authorize_url_encodes_every_parameter() -> None:
    state = "a b&c=d/é+%"
    req = AuthorizationRequest(client_id="app 1", redirect_uri="http://127.0.0.1:8765/callback",
                               scope="launch/patient openid patient/*.rs", state=state,
                               aud="https://fhir.example/r4",
                               code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", code_challenge_method="S256")
    url = req.to_url("https://auth.example/authorize")
    assert url.startswith("https://auth.example/authorize?response_type=code&client_id=app%201&")
    query = urlsplit(url).query
    assert "state=a%20b%26c%3Dd%2F%C3%A9%2B%25" in query
    assert "scope=launch%2Fpatient%20openid%20patient%2F%2A.rs" in query
    assert "+" not in query  # spaces are %20, never '+', so no server can read them differently
    parsed = parse_qs(query)
    assert parsed["state"] == [state] and parsed["aud"] == ["https://fhir.example/r4"]
    assert unquote(query.split("state=")[1].split("&")[0]) == state
    # an endpoint that already has a query keeps it
    assert req.to_url("https://auth.example/authorize?tenant=x").startswith(
        "https://auth.example/authorize?tenant=x&response_type=code")
    assert req.to_form()["state"] == state


def test_negative_requests_are_one_call_away() -> None:
    req, pair = standard_request(client_id="app", redirect_uri="http://127.0.0.1/cb", scope="openid launch/patient",
                                 aud="https://fhir.example")
    assert pair is not None and req.code_challenge_method == "S256" and req.nonce
    form = req.to_form()
    assert list(form) == ["response_type", "client_id", "redirect_uri", "scope", "state", "aud", "code_challenge",
                          "code_challenge_method", "nonce"]
    no_pkce = req.but(omit=["code_challenge", "code_challenge_method"])
    assert "code_challenge" not in no_pkce.to_form() and "code_challenge_method" not in no_pkce.to_form()
    plain = req.but(code_challenge=pair.verifier, code_challenge_method="plain")
    assert plain.to_form()["code_challenge_method"] == "plain"
    foreign = req.but(aud="https://evil.example/fhir", prompt="login")
    assert foreign.to_form()["aud"] == "https://evil.example/fhir" and foreign.to_form()["prompt"] == "login"
    no_aud = req.but(omit=["aud"])
    assert "aud" not in no_aud.to_url("https://a.example/authorize")
    assert req.to_form()["aud"] == "https://fhir.example"  # the original is untouched
    _, none = standard_request(client_id="app", redirect_uri="x:/", scope="launch/patient", aud="a", pkce=False)
    assert none is None


def test_launch_spec_overrides_shape_the_request() -> None:
    spec = LaunchSpec(authorization_endpoint="https://a.example/authorize", token_endpoint="https://a.example/token",
                      fhir_base_url="https://f.example/fhir", client=ClientCredentials("app", "s"),
                      redirect_uri="http://127.0.0.1:1/cb", scope="launch/patient openid", pkce="plain",
                      nonce=False, state="fixed", request_overrides={"aud": None, "launch": "x"})
    req, pair = build_request(spec)
    form = req.to_form()
    assert pair is not None and form["code_challenge"] == pair.verifier and form["code_challenge_method"] == "plain"
    assert "aud" not in form and "nonce" not in form and form["launch"] == "x" and form["state"] == "fixed"


# ----------------------------------------------------------------------------------------------------------------
# Token requests


def recorder() -> tuple[httpx.Client, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(400, json={"error": "invalid_grant"})

    return httpx.Client(transport=httpx.MockTransport(handler)), seen


def form_of(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode(), keep_blank_values=True)


def test_basic_auth_form_urlencodes_before_base64() -> None:
    header = token.basic_auth_header("my app:1", "s3cr3t/+=é~*")
    decoded = base64.b64decode(header.removeprefix("Basic ")).decode()
    assert decoded == "my+app%3A1:s3cr3t%2F%2B%3D%C3%A9%7E*"
    assert token.basic_auth_header("app", "secret") == "Basic " + base64.b64encode(b"app:secret").decode()


def test_exchange_code_with_each_client_auth_method() -> None:
    http, seen = recorder()
    basic = ClientCredentials("app", "pw:x")
    response = token.exchange_code(http, "https://a.example/token", code="c0de", redirect_uri="http://127.0.0.1/cb",
                                   code_verifier="v" * 43, client=basic)
    assert response.status_code == 400  # returned, never raised: the checks judge it
    sent = seen[-1]
    assert sent.method == "POST" and sent.headers["content-type"] == "application/x-www-form-urlencoded"
    assert sent.headers["authorization"] == token.basic_auth_header("app", "pw:x")
    assert form_of(sent) == {"grant_type": ["authorization_code"], "code": ["c0de"],
                             "redirect_uri": ["http://127.0.0.1/cb"], "code_verifier": ["v" * 43]}

    token.exchange_code(http, "https://a.example/token", code="c", redirect_uri=None, code_verifier=None,
                        client=ClientCredentials("app", "pw", "client_secret_post"))
    assert form_of(seen[-1]) == {"grant_type": ["authorization_code"], "code": ["c"], "client_id": ["app"],
                                 "client_secret": ["pw"]}
    assert "authorization" not in seen[-1].headers

    token.exchange_code(http, "https://a.example/token", code="c", redirect_uri="r", code_verifier="v",
                        client=ClientCredentials("app", None, "none"), extra={"code_verifier": None, "x": "1"})
    assert form_of(seen[-1]) == {"grant_type": ["authorization_code"], "code": ["c"], "redirect_uri": ["r"],
                                 "client_id": ["app"], "x": ["1"]}
    with pytest.raises(ValueError, match="needs a client_secret"):
        token.exchange_code(http, "https://a.example/token", code="c", redirect_uri="r", code_verifier=None,
                            client=ClientCredentials("app"))
    assert "pw" not in repr(basic)


def test_refresh_introspect_revoke() -> None:
    http, seen = recorder()
    client = ClientCredentials("app", "pw")
    token.refresh(http, "https://a.example/token", refresh_token="rt", client=client, scope="patient/Patient.rs")
    assert form_of(seen[-1]) == {"grant_type": ["refresh_token"], "refresh_token": ["rt"],
                                 "scope": ["patient/Patient.rs"]}
    token.introspect(http, "https://a.example/introspect", token="at", bearer="other-at")
    assert form_of(seen[-1]) == {"token": ["at"]} and seen[-1].headers["authorization"] == "Bearer other-at"
    token.revoke(http, "https://a.example/revoke", token="rt", client=client, token_type_hint="refresh_token")
    assert form_of(seen[-1]) == {"token": ["rt"], "token_type_hint": ["refresh_token"]}
    assert seen[-1].headers["authorization"].startswith("Basic ")


def test_token_response_parsing() -> None:
    body = {"access_token": "at", "token_type": "Bearer", "expires_in": 3600, "scope": "launch/patient openid",
            "refresh_token": "rt", "id_token": "a.b.c", "patient": "pat-1", "need_patient_banner": True,
            "custom": 1}
    parsed = TokenResponse.parse(httpx.Response(200, json=body))
    assert (parsed.access_token, parsed.token_type, parsed.expires_in, parsed.patient) == ("at", "Bearer", 3600,
                                                                                          "pat-1")
    assert parsed.scopes == ("launch/patient", "openid") and parsed.need_patient_banner is True
    assert parsed.raw["custom"] == 1 and parsed.problems == ()
    assert "'at'" not in repr(parsed) and "'rt'" not in repr(parsed)  # tokens stay out of assertion output
    odd = TokenResponse.parse({"access_token": "at", "expires_in": "3600", "need_patient_banner": "yes"})
    assert odd.expires_in is None and odd.need_patient_banner is None
    assert odd.problems == ("expires_in is str '3600', expected an integer (seconds)",
                            "need_patient_banner is str 'yes', expected a boolean")
    assert TokenResponse.parse({"expires_in": True}).problems[0].startswith("expires_in is bool")
    with pytest.raises(TokenResponseError, match="not JSON"):
        TokenResponse.parse(httpx.Response(200, text="<html>", headers={"content-type": "text/html"}))
    with pytest.raises(TokenResponseError, match="JSON list, not an object"):
        TokenResponse.parse(httpx.Response(200, json=[1]))


# ----------------------------------------------------------------------------------------------------------------
# id_token


ISS = "https://auth.example/auth"
AUD = "app"


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})
    return {"private": private, "other": other, "jwks": {"keys": [jwk]}}


def make_token(keys: dict[str, Any], *, key: str = "private", headers: dict[str, Any] | None = None,
               alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISS, "aud": AUD, "sub": "alice", "exp": now + 300, "iat": now, "nonce": "n-1",
            "fhirUser": "Patient/pat-1"}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    signing = keys[key] if alg.startswith("RS") else "not-a-real-secret-but-long-enough-for-hs256!"
    return jwt.encode(body, signing, algorithm=alg, headers={"kid": "k1", **(headers or {})})


def test_valid_id_token(keys: dict[str, Any]) -> None:
    claims = verify_id_token(make_token(keys), keys["jwks"], issuer=ISS, audience=AUD, nonce="n-1")
    assert claims["fhirUser"] == "Patient/pat-1"
    header, unverified = decode_unverified(make_token(keys))
    assert header["kid"] == "k1" and unverified["sub"] == "alice"
    assert verify_id_token(make_token(keys, aud=[AUD, "x"], azp=AUD), keys["jwks"], issuer=ISS, audience=AUD,
                           nonce=None)["azp"] == AUD


def _forge_unsigned_alg(keys: dict[str, Any]) -> str:
    good = make_token(keys)
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": "k1"}).encode()).rstrip(b"=").decode()
    return ".".join([header, good.split(".")[1], good.split(".")[2]])


def _tamper(keys: dict[str, Any]) -> str:
    head, _, sig = make_token(keys).split(".")
    now = int(time.time())
    payload = {"iss": ISS, "aud": AUD, "sub": "mallory", "exp": now + 300, "iat": now, "nonce": "n-1"}
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{sig}"


PROBLEMS: list[tuple[str, Callable[[dict[str, Any]], str], str]] = [
    ("alg HS256", lambda k: make_token(k, alg="HS256"), "header.alg"),
    ("alg none", _forge_unsigned_alg, "header.alg"),
    ("no kid", lambda k: jwt.encode({"iss": ISS}, k["private"], algorithm="RS256"), "header.kid"),
    ("unknown kid", lambda k: make_token(k, headers={"kid": "k9"}), "header.kid"),
    ("signed by another key", lambda k: make_token(k, key="other"), "signature"),
    ("tampered claims", _tamper, "signature"),
    ("iss", lambda k: make_token(k, iss="https://evil.example"), "iss"),
    ("aud", lambda k: make_token(k, aud="someone-else"), "aud"),
    ("expired", lambda k: make_token(k, exp=int(time.time()) - 3600), "exp"),
    ("no exp", lambda k: make_token(k, exp=None), "exp"),
    ("no iat", lambda k: make_token(k, iat=None), "iat"),
    ("iat in the future", lambda k: make_token(k, iat=int(time.time()) + 3600), "iat"),
    ("nonce", lambda k: make_token(k, nonce="replayed"), "nonce"),
    ("no nonce", lambda k: make_token(k, nonce=None), "nonce"),
]


@pytest.mark.parametrize(("make", "field"), [(m, f) for _, m, f in PROBLEMS], ids=[n for n, _, _ in PROBLEMS])
def test_each_id_token_problem_is_named(keys: dict[str, Any], make: Callable[[dict[str, Any]], str],
                                        field: str) -> None:
    with pytest.raises(IdTokenProblem) as caught:
        verify_id_token(make(keys), keys["jwks"], issuer=ISS, audience=AUD, nonce="n-1")
    assert caught.value.field == field
    assert str(caught.value).startswith(f"id_token {field}: expected ")


def test_leeway_tolerates_small_clock_skew(keys: dict[str, Any]) -> None:
    now = int(time.time())
    skewed = make_token(keys, iat=now + 30, exp=now - 30)
    assert verify_id_token(skewed, keys["jwks"], issuer=ISS, audience=AUD, nonce="n-1", leeway=60)
    with pytest.raises(IdTokenProblem):
        verify_id_token(skewed, keys["jwks"], issuer=ISS, audience=AUD, nonce="n-1", leeway=0)


@pytest.mark.parametrize(("value", "message"), [
    ("abc", "1 dot-separated part"),
    ("a.b", "2 dot-separated part"),
    ("eyJhbGciOiJub25lIn0.eyJhIjoxfQ.", "empty signature"),
    ("!!!.eyJhIjoxfQ.sig", "header is not"),
    ("eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.sig", "claims is not JSON"),
    ("WzFd.eyJhIjoxfQ.sig", "header is JSON list"),
])
def test_malformed_jwts_are_explained(value: str, message: str) -> None:
    with pytest.raises(MalformedJwt, match=message):
        decode_unverified(value)


def test_openid_configuration_and_jwks_fetch(keys: dict[str, Any]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/.well-known/openid-configuration":
            return httpx.Response(200, json={"issuer": ISS, "jwks_uri": "https://auth.example/auth/jwks"})
        if request.url.path == "/auth/jwks":
            return httpx.Response(200, json=keys["jwks"])
        return httpx.Response(404)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    config = idtoken.fetch_openid_configuration(http, ISS + "/")
    jwks = idtoken.fetch_jwks(http, config["jwks_uri"])
    assert verify_id_token(make_token(keys), jwks, issuer=ISS, audience=AUD, nonce="n-1")
    with pytest.raises(httpx.HTTPStatusError):
        idtoken.fetch_jwks(http, "https://auth.example/nope")
