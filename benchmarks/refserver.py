"""One embedded reference server in a process of its own, recording what every client asked of it.

The benchmark runs the harness and the floor script against the same servers, so it needs to know, from the
server's side, exactly which requests the harness made: method, path, the parameters that are not secret, which
client (Chromium, the harness's httpx clients, sslyze) and on which TCP connection. Secrets never leave this process:
tokens, codes and verifiers are kept as short SHA-256 labels (so the floor can tell "the token from that token
response" from "a made-up token"), passwords and client secrets as "right" / "wrong".

Protocol (stdin/stdout, one line each): prints the target environment as JSON on start; ``dump FILE`` writes the
log so far to FILE and clears it, answering ``ok``; ``quit`` (or EOF) stops the server. Arguments: reference variants
to switch on (``no-sign-in-session``: every launch signs in, the shape the floor replays).
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from smart_conformance.reference import server as server_module
from smart_conformance.reference.server import ReferenceServer

# Form fields and query parameters that carry secrets: recorded as labels only.
SECRET_PARAMS = {"code", "code_verifier", "refresh_token", "access_token", "id_token", "token", "state", "nonce",
                 "code_challenge", "client_assertion", "csrf_token"}
DROPPED_HEADERS = {"authorization", "cookie", "content-length", "host", "user-agent", "accept-encoding", "connection"}
TOKEN_FIELDS = ("access_token", "refresh_token", "id_token")


def label(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _jwt_parts(value: str) -> list[str]:
    """A client assertion's header and claims (not its signature): the floor signs one like it."""
    parts = value.split(".")
    decoded: list[str] = []
    for part in parts[:2]:
        try:
            decoded.append(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode())
        except ValueError:
            decoded.append("{}")
    return decoded


def client_kind(user_agent: str) -> str:
    if "SSLyze" in user_agent:  # sslyze's HTTP-headers probe says it is Chrome too, then names itself
        return "other"
    if "HeadlessChrome" in user_agent or "Chrome/" in user_agent:
        return "browser"
    if user_agent.startswith("smart-payer-conformance"):
        return "harness-httpx"
    if user_agent.startswith("python-httpx"):
        return "aux-httpx"
    return "other"


class Recorder:
    """ASGI middleware: one record per request, secrets reduced to labels."""

    def __init__(self, app: Any, scheme: str, srv: ReferenceServer) -> None:
        self.app, self.scheme, self.srv = app, scheme, srv
        self.srv_log: list[dict[str, Any]] = []

    def _secret_ok(self, kind: str, name: str, value: str) -> bool:
        data = self.srv.dataset
        assert data is not None
        if kind == "member":
            member = data.members.get(name)
            return member is not None and member.password == value
        client = data.clients.get(name)
        return client is not None and client.client_secret == value

    def _params(self, pairs: list[tuple[str, str]]) -> list[list[str]]:
        out: list[list[str]] = []
        for key, value in pairs:
            if key == "client_assertion":
                out.append([key, "<secret>", *_jwt_parts(value)])
            elif key in SECRET_PARAMS:
                extra = [label(value), label(s256(value))] if key == "code_verifier" else [label(value)]
                out.append([key, "<secret>", *extra])
            elif key == "password":
                continue  # judged below, with the username
            elif key == "client_secret":
                continue
            else:
                out.append([key, value])
        return out

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.time()
        chunks: list[bytes] = []

        async def tee() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        reply: dict[str, Any] = {"status": 0, "headers": {}, "body": []}

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                reply["status"] = message["status"]
                reply["headers"] = {k.decode("latin-1").lower(): v.decode("latin-1")
                                    for k, v in message.get("headers", [])}
            elif message["type"] == "http.response.body" and scope["path"] == "/auth/token":
                reply["body"].append(message.get("body", b""))
            await send(message)

        await self.app(scope, tee, watch)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        body = b"".join(chunks)
        ctype = headers.get("content-type", "")
        record: dict[str, Any] = {
            "t": started, "done": time.time(), "scheme": self.scheme, "method": scope["method"],
            "path": scope["path"], "port": scope["server"][1] if scope.get("server") else 0,
            "conn": scope["client"][1] if scope.get("client") else 0,
            "kind": client_kind(headers.get("user-agent", "")),
            "query": self._params(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)),
            "headers": [[k, v] for k, v in headers.items() if k not in DROPPED_HEADERS],
            "status": reply["status"],
        }
        auth = headers.get("authorization", "")
        if auth:
            scheme, _, value = auth.partition(" ")
            record["auth"] = [scheme, label(value.strip())]
            if scheme.lower() == "basic":
                try:
                    client_id, _, secret = base64.b64decode(value).decode().partition(":")
                    record["auth"] = [scheme, client_id, self._secret_ok("client", client_id, secret)]
                except ValueError:
                    record["auth"] = [scheme, "<undecodable>", False]
        if "x-www-form-urlencoded" in ctype:
            pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
            form = dict(pairs)
            record["form"] = self._params(pairs)
            if "password" in form:
                record["password_ok"] = self._secret_ok("member", form.get("username", ""), form["password"])
            if "client_secret" in form:
                record["client_secret_ok"] = self._secret_ok("client", form.get("client_id", ""),
                                                             form["client_secret"])
        elif body:
            record["body"] = body.decode("utf-8", "replace") if len(body) < 256 * 1024 else f"<{len(body)} bytes>"
        for name in ("location", "content-location", "retry-after"):
            if name in reply["headers"]:
                value = reply["headers"][name]
                if name == "location" and "?" in value:  # an authorization response: its code is a secret
                    base, _, query = value.partition("?")
                    pairs = parse_qsl(query.split("#", 1)[0], keep_blank_values=True)
                    record["location"] = [base, self._params(pairs)]
                else:
                    record[name.replace("-", "_")] = value
        if scope["path"] == "/auth/token" and reply["body"]:
            try:
                answer = json.loads(b"".join(reply["body"]))
                record["issued"] = {f: label(answer[f]) for f in TOKEN_FIELDS if isinstance(answer.get(f), str)}
            except ValueError:
                pass
        self.srv_log.append(record)


def main(argv: list[str] | None = None) -> int:
    variants = tuple(argv if argv is not None else sys.argv[1:])  # legitimate variants (names), e.g. no-sign-in-session
    log: list[dict[str, Any]] = []
    holder: dict[str, ReferenceServer] = {}
    build_app, build_plain_app = server_module.build_app, server_module.build_plain_app

    def wrap(app: Any, scheme: str) -> Any:
        recorder = Recorder(app, scheme, holder["srv"])
        recorder.srv_log = log
        return recorder

    server_module.build_app = lambda ctx, serves=server_module.BOTH: wrap(build_app(ctx, serves), "https")
    server_module.build_plain_app = lambda ctx, app: wrap(build_plain_app(ctx, app.app), "http")
    srv = ReferenceServer(variants=variants)
    holder["srv"] = srv
    with srv:
        env = srv.target_env()
        env["SMART_REFERENCE_PLAIN_HTTP_PORT"] = str(srv.plain_port)
        print(json.dumps(env), flush=True)
        for line in sys.stdin:
            command, _, arg = line.strip().partition(" ")
            if command == "dump":
                Path(arg).write_text(json.dumps(log), encoding="utf-8")
                log.clear()
                print("ok", flush=True)
            elif command == "quit":
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
