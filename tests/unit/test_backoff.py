"""Rate limits waited out by the recording client: Retry-After read as RFC 9110 §10.2.3 writes it, the same request
sent again within a budget per request, every answer kept in the evidence, every wait counted; and the reference's
api-rate-limit gateway that makes a run meet them. No real waits: the client's sleep is a fake."""

from __future__ import annotations

import asyncio
import json
from email.utils import formatdate
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from smart_conformance import refusals, tally
from smart_conformance.checks import CouldNotCheck
from smart_conformance.config import ConfigError, load_target
from smart_conformance.http import (
    NO_BACKOFF,
    Backoff,
    Evidence,
    RecordingClient,
    collecting,
    exchange_of,
    rate_limit_note,
    retry_after_seconds,
)
from smart_conformance.reference import rate_limit
from smart_conformance.reference.variants import API_RATE_LIMIT, ActiveVariants


def test_retry_after_is_delay_seconds_or_an_http_date() -> None:
    now = 1_800_000_000.0
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(" 120 ") == 120.0
    assert retry_after_seconds(formatdate(now + 5, usegmt=True), now=now) == 5.0
    assert retry_after_seconds(formatdate(now - 60, usegmt=True), now=now) == 0.0  # a date already past: now
    assert retry_after_seconds(None) is None and retry_after_seconds("") is None
    assert retry_after_seconds("soon") is None and retry_after_seconds("-1") is None


class Server:
    """A MockTransport handler answering ``statuses`` in turn (then 200), each with ``retry_after`` when given; it
    keeps every request it got."""

    def __init__(self, *statuses: int, retry_after: str | None = "2") -> None:
        self.statuses = list(statuses)
        self.retry_after = retry_after
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status = self.statuses.pop(0) if self.statuses else 200
        headers = {"Retry-After": self.retry_after} if status != 200 and self.retry_after is not None else {}
        return httpx.Response(status, headers=headers, json={"resourceType": "Patient", "id": "p1"})


def client(server: Server, waits: list[float], max_wait_s: float = 30.0) -> RecordingClient:
    return RecordingClient(transport=httpx.MockTransport(server), sleep=waits.append,
                           backoff=Backoff(max_wait_s, tally_as="acme", source="acme.yaml"))


@pytest.fixture(autouse=True)
def fresh_tally() -> None:
    tally.drain()


def test_a_429_is_waited_out_and_the_same_request_sent_again_both_recorded_and_counted() -> None:
    server, waits, evidence = Server(429), [], Evidence()
    with client(server, waits) as http, collecting(evidence):
        response = http.get("https://fhir.acme.example/Patient/p1", headers={"Authorization": "Bearer t"})
    assert response.status_code == 200 and waits == [2.0]
    assert [e.status for e in evidence.exchanges] == [429, 200]  # the 429 stays in the evidence, before the retry
    assert exchange_of(response) is evidence.exchanges[-1]  # what a check names is the answer it judged
    assert server.requests[0].url == server.requests[1].url
    assert any("HTTP 429 (Retry-After: 2)" in n and "waited 2 s" in n for n in evidence.notes)
    assert tally.drain() == {"acme": {tally.RATE_LIMITED: 1, tally.RATE_LIMIT_WAIT_MS: 2000}}
    assert rate_limit_note(response) == ""


def test_without_retry_after_the_wait_is_one_second() -> None:
    server, waits = Server(429, 429, retry_after=None), []
    with client(server, waits) as http:
        assert http.get("https://fhir.acme.example/Patient/p1").status_code == 200
    assert waits == [1.0, 1.0]
    assert tally.drain()["acme"] == {tally.RATE_LIMITED: 2, tally.RATE_LIMIT_WAIT_MS: 2000}


def test_beyond_the_budget_the_429_stays_and_says_which_budget() -> None:
    server, waits, evidence = Server(*[429] * 10, retry_after="10"), [], Evidence()
    with client(server, waits, max_wait_s=25) as http, collecting(evidence):
        response = http.get("https://fhir.acme.example/Patient/p1")
    assert response.status_code == 429 and waits == [10.0, 10.0]  # a third wait would make 30 s > 25 s
    assert len(server.requests) == 3 and len(evidence.exchanges) == 3
    note = rate_limit_note(response)
    assert "budget of 25 s per request" in note and "rate_limit.max_wait_s in acme.yaml" in note and "Fix:" in note
    with pytest.raises(CouldNotCheck, match=r"HTTP 429 .*rate_limit\.max_wait_s in acme\.yaml"):
        refusals.decided(response, "a refusal of a forged token")
    assert tally.drain()["acme"][tally.RATE_LIMITED] == 2


def test_a_retry_after_longer_than_the_budget_is_not_waited_at_all() -> None:
    server, waits = Server(429, retry_after="3600"), []
    with client(server, waits) as http:
        assert http.get("https://fhir.acme.example/Patient/p1").status_code == 429
    assert waits == [] and tally.drain() == {}


def test_a_one_time_code_exchange_is_sent_again_unchanged_after_a_429_only() -> None:
    """A 429 says the server did not process it: the code is unspent. A 503 on a POST is handed back."""
    form = {"grant_type": "authorization_code", "code": "one-time-code-1", "code_verifier": "v" * 43}
    server, waits = Server(429), []
    with client(server, waits) as http:
        assert http.post("https://as.acme.example/token", data=form).status_code == 200
    assert len(server.requests) == 2 and server.requests[0].content == server.requests[1].content
    server = Server(503)
    with client(server, waits) as http:
        assert http.post("https://as.acme.example/token", data=form).status_code == 503
    assert len(server.requests) == 1
    server = Server(503)
    with client(server, waits) as http:
        assert http.get("https://fhir.acme.example/metadata").status_code == 200 and len(server.requests) == 2
    server = Server(503, retry_after=None)  # a 503 without Retry-After is an outage, not a "come back later"
    with client(server, waits) as http:
        assert http.get("https://fhir.acme.example/metadata").status_code == 503 and len(server.requests) == 1


def test_callers_that_judge_the_429_opt_out_and_clients_without_a_budget_never_wait() -> None:
    server, waits = Server(429), []
    with client(server, waits) as http:
        assert http.get("https://fhir.acme.example/bulk-status/1", extensions=NO_BACKOFF).status_code == 429
    with RecordingClient(transport=httpx.MockTransport(Server(429))) as plain:
        assert plain.get("https://fhir.acme.example/Patient/p1").status_code == 429
    with client(Server(429), waits, max_wait_s=0) as never:
        assert never.get("https://fhir.acme.example/Patient/p1").status_code == 429
    assert waits == [] and tally.drain() == {}


def test_rate_limit_max_wait_s_is_read_and_checked(tmp_path: Path) -> None:
    def target(extra: str) -> object:
        file = tmp_path / "acme.yaml"
        file.write_text(f"""
name: acme
fhir_base_url: https://fhir.acme.example/r4
client: {{client_id: app, client_secret: "${{ACME_SECRET}}", redirect_uri: "http://127.0.0.1:8765/callback"}}
members:
  primary: {{username: member1, password: "${{ACME_PASSWORD}}", patient_id: "123"}}
{extra}""")
        return load_target(file, {"ACME_SECRET": "s3cret-value-1", "ACME_PASSWORD": "member-pass-1"})

    assert target("").rate_limit.max_wait_s == 30.0  # type: ignore[attr-defined]
    assert target("rate_limit: {max_wait_s: 5}").rate_limit.max_wait_s == 5.0  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="rate_limit"):
        target("rate_limit: {max_wait_s: -1}")
    with pytest.raises(ConfigError, match="rate_limit"):
        target("rate_limit: {max_wait: 5}")


class Gateway:
    """The api-rate-limit middleware in front of an app that answers 200 to everything, called as ASGI directly."""

    def __init__(self, on: bool = True) -> None:
        async def ok(scope: dict, receive: object, send: object) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
            await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]

        ctx = SimpleNamespace(variants=ActiveVariants([API_RATE_LIMIT] if on else []), rate_limit_count=0)
        self.app = rate_limit.ApiRateLimit(ok, ctx)  # type: ignore[arg-type]

    def __call__(self, method: str, path: str, token: bool = False) -> tuple[int, dict[str, str], bytes]:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        scope = {"type": "http", "method": method, "path": path,
                 "headers": [(b"authorization", b"Bearer t")] if token else []}
        asyncio.run(self.app(scope, receive, send))  # type: ignore[arg-type]
        headers = {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}
        return sent[0]["status"], headers, sent[1]["body"]


def test_the_reference_gateway_limits_every_ninth_credentialed_request() -> None:
    api = Gateway()
    for _ in range(3 * rate_limit.EVERY):  # not counted: discovery, and API calls without a token
        assert api("GET", "/fhir/.well-known/smart-configuration", token=True)[0] == 200
        assert api("GET", "/fhir/Patient/p1")[0] == 200
    statuses = [api("GET", "/fhir/Patient/p1", token=True)[0] for _ in range(rate_limit.EVERY - 1)]
    status, headers, body = api("POST", "/auth/token")
    assert statuses == [200] * (rate_limit.EVERY - 1) and status == 429
    assert headers["retry-after"] == "1" and headers["cache-control"] == "no-store"
    assert json.loads(body)["error"] == "too_many_requests"
    status, headers, body = [api("GET", "/fhir/Coverage", token=True) for _ in range(rate_limit.EVERY)][-1]
    assert status == 429 and json.loads(body)["issue"][0]["code"] == "throttled"
    assert headers["content-type"] == "application/fhir+json"
    off = Gateway(on=False)
    assert all(off("GET", "/fhir/Patient/p1", token=True)[0] == 200 for _ in range(20))
