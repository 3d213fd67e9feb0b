"""Evidence recording: every exchange kept, redacted, attributable to the running test, reproducible with curl."""

from __future__ import annotations

import json
import shlex

import httpx

from smart_conformance.http import Evidence, RecordingClient, collecting


def token_endpoint(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/token":
        return httpx.Response(200, json={"access_token": "at-very-secret-1", "token_type": "Bearer",
                                         "scope": "openid"}, headers={"Cache-Control": "no-store"})
    return httpx.Response(302, headers={"Location": "http://127.0.0.1:8765/cb?code=code-secret-2&state=s1"})


def client() -> RecordingClient:
    return RecordingClient(transport=httpx.MockTransport(token_endpoint))


def test_exchange_recorded_and_redacted() -> None:
    with client() as http:
        http.post("https://as.example/token", data={"grant_type": "authorization_code", "code": "c-secret-3",
                                                    "client_secret": "cs-secret-4"},
                  headers={"Authorization": "Basic YXBwOnNlY3JldA=="})
    (exchange,) = http.log
    dumped = json.dumps(exchange.as_dict())
    for secret in ("at-very-secret-1", "c-secret-3", "cs-secret-4", "YXBwOnNlY3JldA=="):
        assert secret not in dumped
    assert exchange.status == 200 and exchange.header("cache-control") == "no-store"
    assert '"token_type": "Bearer"' in exchange.response_body


def test_secrets_seen_on_the_wire_are_scrubbed_later_everywhere() -> None:
    with client() as http:
        http.get("https://as.example/authorize")
    from smart_conformance import redact

    assert redact.text("the code was code-secret-2") == "the code was ***"


def test_exchanges_go_to_the_running_tests_evidence() -> None:
    evidence = Evidence()
    with client() as http:
        http.get("https://as.example/outside")
        with collecting(evidence):
            http.post("https://as.example/token", data={"a": "b"})
    assert [e.url for e in evidence.exchanges] == ["https://as.example/token"]
    assert len(http.log) == 2


def test_curl_reproduces_without_secrets() -> None:
    with client() as http:
        response = http.post("https://as.example/token", data={"grant_type": "refresh_token", "refresh_token": "rt-5"},
                             headers={"Authorization": "Basic YXBwOnNlY3JldA=="})
    curl = http.exchange_for(response).to_curl()
    words = shlex.split(curl)
    assert words[:4] == ["curl", "-i", "-X", "POST"] and words[-1] == "https://as.example/token"
    assert "Authorization: Basic $CLIENT_CREDENTIALS" in words
    assert "rt-5" not in curl and "grant_type=refresh_token" in curl
