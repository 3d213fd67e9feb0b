"""Fifty authorization-code flows at once against one reference server: none lost, none crossed.

RFC 6749 §4.1 binds each step to the request that began it: the code comes back with *that* request's ``state``
(§4.1.2), it is exchanged only with *that* request's PKCE verifier (RFC 7636 §4.6), and the tokens carry the
member who signed in (SMART App Launch: ``patient`` launch context, ``fhirUser`` in the id_token). A payer server
runs many members' launches at once, and so do the harness's xdist workers. Here each flow is its own browser (its own
cookie jar) and its own PKCE pair and state, at the HTTP level (no Chromium, so the test stays cheap). The flows move
through the steps in waves: every flow has a pending authorization before any signs in, every flow is signed in
before any consents, and each wave runs in a different order, so the server holds 50 pending requests of
interleaved members while it answers each one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt

from smart_conformance.reference.server import ReferenceServer
from tests.reference.launcher import CALLBACK, FULL_SCOPE, hidden_inputs, scope_boxes

FLOWS = 50
MEMBERS = ("alice", "bob", "carol")  # interleaved: flow i signs in as MEMBERS[i % 3]


@dataclass
class Flow:
    """One member's launch in its own browser: what it sent and what came back to it."""

    number: int
    member: str
    state: str = field(default_factory=lambda: f"st@te/{secrets.token_urlsafe(12)}+&=é")  # echoed exactly (§4.1.2)
    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    location: str = ""  # where the last step sent the browser
    redirect: dict[str, str] = field(default_factory=dict)  # the callback's query
    tokens: dict[str, Any] = field(default_factory=dict)
    own_read: int = 0  # HTTP status of GET Patient/<the token's patient> with the flow's token

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


async def _authorize(srv: ReferenceServer, browser: httpx.AsyncClient, flow: Flow, client_id: str) -> None:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": CALLBACK, "scope": FULL_SCOPE,
              "state": flow.state, "aud": srv.fhir_base_url, "code_challenge": flow.challenge,
              "code_challenge_method": "S256", "nonce": f"nonce-{flow.number}"}
    reply = await browser.get(srv.issuer + "/authorize", params=params)
    assert reply.status_code == 303, (flow.number, reply.status_code, reply.text[:300])
    flow.location = reply.headers["location"]


async def _sign_in(srv: ReferenceServer, browser: httpx.AsyncClient, flow: Flow, password: str) -> None:
    page = await browser.get(srv.origin + flow.location)
    assert page.status_code == 200, (flow.number, page.status_code)
    form = hidden_inputs(page.text)  # req and csrf_token of this flow's own pending request
    form.update(username=flow.member, password=password)
    reply = await browser.post(srv.origin + "/auth/login", data=form)
    assert reply.status_code == 303 and reply.headers["location"].startswith("/auth/consent"), \
        (flow.number, reply.status_code, reply.text[:300])
    flow.location = reply.headers["location"]


async def _consent(srv: ReferenceServer, browser: httpx.AsyncClient, flow: Flow) -> None:
    page = await browser.get(srv.origin + flow.location)
    assert page.status_code == 200, (flow.number, page.status_code)
    form: dict[str, Any] = hidden_inputs(page.text)
    form["scope"] = scope_boxes(page.text)
    form["decision"] = "allow"
    reply = await browser.post(srv.origin + "/auth/consent", data=form)
    assert reply.status_code in (302, 303), (flow.number, reply.status_code, reply.text[:300])
    flow.location = reply.headers["location"]
    flow.redirect = _query(flow.location)


async def _exchange(srv: ReferenceServer, api: httpx.AsyncClient, flow: Flow, auth: tuple[str, str]) -> None:
    data = {"grant_type": "authorization_code", "code": flow.redirect.get("code", ""), "redirect_uri": CALLBACK,
            "code_verifier": flow.verifier}
    reply = await api.post(srv.issuer + "/token", data=data, auth=auth)
    assert reply.status_code == 200, (flow.number, reply.status_code, reply.text[:300])
    flow.tokens = reply.json()
    patient = flow.tokens.get("patient")
    read = await api.get(f"{srv.fhir_base_url}/Patient/{patient}",
                         headers={"Authorization": f"Bearer {flow.tokens['access_token']}"})
    flow.own_read = read.status_code


async def _run_flows(srv: ReferenceServer, flows: list[Flow]) -> None:
    env = srv.target_env()
    client_id, secret = env["SMART_REFERENCE_CLIENT_ID"], env["SMART_REFERENCE_CLIENT_SECRET"]
    passwords = {name: member.password for name, member in srv.dataset.members.items()}  # type: ignore[union-attr]
    verify = srv.ssl_context()
    browsers = [httpx.AsyncClient(verify=verify, follow_redirects=False, timeout=60) for _ in flows]
    api = httpx.AsyncClient(verify=verify, timeout=60, limits=httpx.Limits(max_connections=FLOWS))
    shuffle = random.Random(12)  # a fixed order per wave: reproducible, and unlike the order of the wave before
    try:
        waves = [lambda b, f: _authorize(srv, b, f, client_id), lambda b, f: _sign_in(srv, b, f, passwords[f.member]),
                 lambda b, f: _consent(srv, b, f), lambda b, f: _exchange(srv, api, f, (client_id, secret))]
        for wave in waves:
            order = list(range(len(flows)))
            shuffle.shuffle(order)
            await asyncio.gather(*(wave(browsers[i], flows[i]) for i in order))
    finally:
        for browser in browsers:
            await browser.aclose()
        await api.aclose()


def test_fifty_concurrent_launches_keep_their_own_state(server: ReferenceServer) -> None:
    """Every flow gets its own code with its own state, and tokens for the member who signed in in that browser."""
    flows = [Flow(number=i, member=MEMBERS[i % len(MEMBERS)]) for i in range(FLOWS)]
    asyncio.run(_run_flows(server, flows))
    members = server.dataset.members  # type: ignore[union-attr]

    assert all(f.redirect.get("state") == f.state for f in flows), "a callback did not carry its own flow's state, exactly"
    assert all(f.location.startswith(CALLBACK + "?") for f in flows)
    codes = [f.redirect.get("code") for f in flows]
    assert all(codes) and len(set(codes)) == FLOWS, "a flow got no code, or two flows got the same code"
    tokens = [f.tokens.get("access_token") for f in flows]
    assert all(tokens) and len(set(tokens)) == FLOWS, "a flow got no access token, or two flows got the same one"
    assert len({f.tokens.get("refresh_token") for f in flows}) == FLOWS
    for f in flows:
        member = members[f.member]
        assert f.tokens.get("patient") == member.patients[0], (f.number, f.member, f.tokens.get("patient"))
        claims = jwt.decode(f.tokens["id_token"], options={"verify_signature": False})
        assert claims["sub"] == member.sub and claims["fhirUser"].endswith("/" + member.fhir_user), \
            (f.number, f.member, claims["sub"])
        assert claims["nonce"] == f"nonce-{f.number}", (f.number, claims.get("nonce"))
        assert f.own_read == 200, (f.number, f.own_read)
        access = jwt.decode(f.tokens["access_token"], options={"verify_signature": False})  # the reference's JWTs
        assert (access["sub"], access["patient"]) == (member.sub, member.patients[0]), (f.number, access["sub"])
