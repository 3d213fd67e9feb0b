"""The protocol floor: the harness's requests to one target, replayed by a bare script (Playwright + httpx + sslyze).

No pytest, no evidence, no redaction, no reports, no waiting beyond what the server's answers require. The input is
the server-side log of a harness run (``benchmarks/refserver.py``): every request the harness made, in order, by
client (Chromium, the harness's httpx clients, sslyze) and TCP connection. The floor makes the same requests:

- each browser launch (an authorization request and the sign-in / consent form posts the server saw after it) in a
  fresh Chromium context, the redirect to the redirect_uri captured by a route, deciding on the first page load;
- each httpx request on a connection of its own where the harness opened one (so the TLS handshakes match), with
  its tokens, codes and verifiers replaced by the floor's own (mapped through the labels the server recorded;
  a credential the server never issued, such as a made-up token, becomes a random one), client assertions signed
  afresh with the same key and claims shape, bulk job ids mapped to the floor's jobs, and ``Retry-After`` honoured;
- one sslyze scan with the harness's scan commands where the harness scanned;
- Chromium started as many times as the harness started it.

Usage: ``floor.py --log LOG.json --env ENV.json --out OUT.json [--chromium-starts K]``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import secrets
import socket
import ssl
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import sync_playwright

from smart_conformance.browser import (
    find_chromium,  # only to pick the same Chromium binary and flags
)

HOST = "127.0.0.1"


def label(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class Floor:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.ca = env["SMART_REFERENCE_CA_BUNDLE"]
        self.tls = ssl.create_default_context(cafile=self.ca)
        self.secrets: dict[str, str] = {}  # harness label -> the floor's value (codes, tokens)
        self.verifiers: dict[str, str] = {}  # harness code_challenge label -> the floor's verifier
        self.jobs: dict[str, str] = {}  # harness bulk job id -> the floor's
        self.retry: dict[str, float] = {}  # floor status URL -> Retry-After of its last 202
        self.clients: dict[tuple[str, int], httpx.Client] = {}
        self.client_secrets = {env["SMART_REFERENCE_CLIENT_ID"]: env["SMART_REFERENCE_CLIENT_SECRET"],
                               env["SMART_REFERENCE_OTHER_CLIENT_ID"]: env["SMART_REFERENCE_OTHER_CLIENT_SECRET"]}
        self.passwords = {env["SMART_REFERENCE_MEMBER_USERNAME"]: env["SMART_REFERENCE_MEMBER_PASSWORD"],
                          env["SMART_REFERENCE_OTHER_MEMBER_USERNAME"]: env["SMART_REFERENCE_OTHER_MEMBER_PASSWORD"],
                          env["SMART_REFERENCE_REP_USERNAME"]: env["SMART_REFERENCE_REP_PASSWORD"]}
        self.keys = {env["SMART_REFERENCE_BACKEND_CLIENT_ID"]: (env["SMART_REFERENCE_BACKEND_KEY_FILE"],
                                                                 env["SMART_REFERENCE_BACKEND_KID"]),
                     env["SMART_REFERENCE_OTHER_BACKEND_CLIENT_ID"]: (env["SMART_REFERENCE_OTHER_BACKEND_KEY_FILE"],
                                                                       env["SMART_REFERENCE_OTHER_BACKEND_KID"]),
                     env["SMART_REFERENCE_P2P_CLIENT_ID"]: (env["SMART_REFERENCE_P2P_KEY_FILE"],
                                                            env["SMART_REFERENCE_P2P_KID"])}
        self.stats = {"launches": 0, "http": 0, "status_same": 0, "status_differs": [], "tls_scans": 0,
                      "chromium_starts": 0, "launch_seconds": [], "seconds": {"browser": 0.0, "http": 0.0, "tls_scan": 0.0,
                                                        "chromium_start": 0.0, "python_handshakes": 0.0}}

    # values ---------------------------------------------------------------------------------------------------
    def secret_for(self, key: str, item: list[str]) -> str:
        if key == "code_verifier":
            for wanted in item[2:]:
                if wanted in self.verifiers:
                    return self.verifiers[wanted]
            return secrets.token_urlsafe(48)
        if key == "client_assertion":
            return self.assertion(item[2] if len(item) > 2 else "{}", item[3] if len(item) > 3 else "{}")
        return self.secrets.get(item[2], secrets.token_urlsafe(32)) if len(item) > 2 else secrets.token_urlsafe(32)

    def assertion(self, header_json: str, claims_json: str) -> str:
        try:
            header, claims = json.loads(header_json), json.loads(claims_json)
        except ValueError:
            header, claims = {}, {}
        issuer = claims.get("iss") or next(iter(self.keys))
        key_file, kid = self.keys.get(issuer, next(iter(self.keys.values())))
        now = int(time.time())
        body = {"iss": issuer, "sub": claims.get("sub", issuer), "aud": claims.get("aud", ""), "exp": now + 240,
                "iat": now, "jti": uuid.uuid4().hex}
        key = Path(key_file).read_bytes()
        return jwt.encode(body, key, algorithm=header.get("alg", "RS384") if header.get("alg", "").startswith(
            ("RS", "ES")) else "RS384", headers={"kid": kid})

    def pairs(self, recorded: list[list[str]]) -> list[tuple[str, str]]:
        return [(item[0], self.secret_for(item[0], item) if item[1] == "<secret>" and len(item) > 1 else item[1])
                for item in recorded]

    def path(self, path: str) -> str:
        for old, new in self.jobs.items():
            path = path.replace(old, new)
        return path

    # http -----------------------------------------------------------------------------------------------------
    def client(self, record: dict[str, Any]) -> httpx.Client:
        key = (record["kind"], record["conn"])
        if key not in self.clients:
            self.clients[key] = httpx.Client(verify=self.tls, follow_redirects=False, timeout=30.0,
                                             limits=httpx.Limits(max_connections=1))
        return self.clients[key]

    def http(self, record: dict[str, Any]) -> None:
        began = time.perf_counter()
        url = f"{record['scheme']}://{HOST}:{record['port']}{self.path(record['path'])}"
        query = self.pairs(record["query"])
        headers = dict(record["headers"])
        if record["kind"] == "harness-httpx":  # so the server counts it with the harness's own client's requests
            headers["user-agent"] = "smart-payer-conformance/0.1 (floor)"
        auth = record.get("auth")
        if auth and auth[0].lower() == "basic":
            client_id, right = auth[1], auth[2]
            secret = self.client_secrets.get(client_id, "") if right else "wrong-" + secrets.token_hex(8)
            headers["authorization"] = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        elif auth:
            headers["authorization"] = f"{auth[0]} {self.secrets.get(auth[1], secrets.token_urlsafe(32))}"
        content: bytes | None = None
        if "form" in record:
            form = self.pairs(record["form"])
            if "password_ok" in record:
                user = dict(form).get("username", "")
                form.append(("password", self.passwords.get(user, "") if record["password_ok"] else "wrong"))
            if "client_secret_ok" in record:
                client_id = dict(form).get("client_id", "")
                form.append(("client_secret", self.client_secrets.get(client_id, "") if record["client_secret_ok"]
                             else "wrong"))
            content = urlencode(form).encode()
        elif "body" in record:
            content = record["body"].encode()
        wait = self.retry.pop(url, 0.0)
        if wait:
            time.sleep(wait)  # the server asked for it (Retry-After): the harness must wait as long
        response = self.client(record).request(record["method"], url + ("?" + urlencode(query) if query else ""),
                                               headers=headers, content=content)
        self.learn(record, response)
        self.stats["http"] += 1
        if response.status_code == record["status"]:
            self.stats["status_same"] += 1
        else:
            self.stats["status_differs"].append(f"{record['method']} {record['path']}: harness {record['status']}, "
                                                f"floor {response.status_code}")
        self.stats["seconds"]["http"] += time.perf_counter() - began - wait

    def learn(self, record: dict[str, Any], response: httpx.Response) -> None:
        issued = record.get("issued") or {}
        if issued and "json" in response.headers.get("content-type", ""):
            try:
                answer = response.json()
            except ValueError:
                answer = {}
            for field, harness_label in issued.items():
                if isinstance(answer.get(field), str):
                    self.secrets[harness_label] = answer[field]
        mine = response.headers.get("content-location", "")
        theirs = record.get("content_location", "")
        if "/bulk-status/" in mine and "/bulk-status/" in theirs:
            self.jobs[theirs.rsplit("/", 1)[1]] = mine.rsplit("/", 1)[1]
        if response.status_code == 202 and response.headers.get("retry-after", "").isdigit():
            self.retry[str(response.request.url).split("?")[0]] = float(response.headers["retry-after"])

    # browser --------------------------------------------------------------------------------------------------
    def spki_pin(self, port: int) -> str:
        """A Python handshake verifying the origin against the CA (as the harness does before pinning it)."""
        began = time.perf_counter()
        with socket.create_connection((HOST, port), timeout=10) as raw, \
                self.tls.wrap_socket(raw, server_hostname=HOST) as conn:
            der = conn.getpeercert(binary_form=True)
        spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.stats["seconds"]["python_handshakes"] += time.perf_counter() - began
        return base64.b64encode(hashlib.sha256(spki).digest()).decode()

    def launch(self, browser: Any, records: list[dict[str, Any]]) -> None:
        began = time.perf_counter()
        first = records[0]
        query = {item[0]: item[1] for item in first["query"]}
        form = {item[0]: item[1] for item in first.get("form", [])}
        redirect_uri = query.get("redirect_uri") or form.get("redirect_uri") or ""
        context = browser.new_context()
        captured: list[str] = []

        def capture(route: Any) -> None:
            if route.request.url not in captured:
                captured.append(route.request.url)
            route.fulfill(status=200, content_type="text/html", body="<html><body>captured</body></html>")

        if redirect_uri:
            # A route sees only the first URL of a redirect chain, so the redirect to the app is taken from the
            # request event; nothing listens there, so Chromium fails that navigation at once, and the floor is done.
            pattern = re.compile("^" + re.escape(redirect_uri.split("?")[0]))
            context.route(pattern, capture)
            context.on("request", lambda request: captured.append(request.url) if pattern.match(request.url)
                       and request.url not in captured else None)
        page = context.new_page()
        url = f"{first['scheme']}://{HOST}:{first['port']}{first['path']}"
        params = self.launch_params(first.get("form") if first["method"] == "POST" else first["query"])
        try:
            if first["method"] == "POST" and first["path"] == "/auth/authorize":
                inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in params)
                page.set_content(f'<form method="post" action="{url}">{inputs}</form>')
                with page.expect_navigation(wait_until="load"):
                    page.evaluate("document.forms[0].submit()")
            else:
                page.goto(url + ("?" + urlencode(params) if params else ""), wait_until="load")
        except Exception:  # noqa: BLE001, S110
            pass  # an error status with no body: Chromium's own error page; the server has answered
        for record in records[1:]:
            if captured or record["method"] != "POST":
                continue
            posted = {item[0]: item[1] for item in record.get("form", [])}
            try:
                if record["path"] == "/auth/login":
                    user = posted.get("username", "")
                    page.fill("#username", user)
                    page.fill("#password", self.passwords.get(user, "") if record.get("password_ok") else "wrong")
                    with page.expect_navigation(wait_until="load"):
                        page.click("button[type=submit]")
                elif record["path"] == "/auth/consent":
                    granted = {item[1] for item in record.get("form", []) if item[0] == "scope"}
                    for box in page.query_selector_all("input[name=scope]"):
                        if (box.get_attribute("value") in granted) != box.is_checked():
                            box.set_checked(not box.is_checked())
                    with page.expect_navigation(wait_until="load"):
                        page.click(f"button[name=decision][value={posted.get('decision', 'allow')}]")
            except Exception as exc:  # noqa: BLE001  the redirect to the app fails the navigation on purpose
                if not captured:
                    self.stats["status_differs"].append(f"launch step {record['path']}: {str(exc).splitlines()[0]}")
        context.close()
        if captured:
            theirs = next((r["location"] for r in reversed(records) if r.get("location")), None)
            mine = dict(parse_qsl(urlsplit(captured[0]).query))
            if theirs:
                for item in theirs[1]:
                    if item[0] == "code" and len(item) > 2 and "code" in mine:
                        self.secrets[item[2]] = mine["code"]
        self.stats["launches"] += 1
        self.stats["launch_seconds"].append(time.perf_counter() - began)
        self.stats["seconds"]["browser"] += time.perf_counter() - began

    def launch_params(self, recorded: list[list[str]] | None) -> list[tuple[str, str]]:
        """The authorization request's parameters with fresh state, nonce and PKCE (the challenge's verifier kept
        for the token request that the harness made with the matching verifier)."""
        out: list[tuple[str, str]] = []
        method = next((item[1] for item in recorded or [] if item[0] == "code_challenge_method"), "S256")
        for item in recorded or []:
            key, value = item[0], item[1]
            if key == "code_challenge":
                verifier = secrets.token_urlsafe(48)
                if len(item) > 2:
                    self.verifiers[item[2]] = verifier
                value = verifier if method == "plain" else s256(verifier)
            elif value == "<secret>":
                value = secrets.token_urlsafe(16)
            out.append((key, value))
        return out

    # tls ------------------------------------------------------------------------------------------------------
    def tls_scan(self, ports: list[int]) -> None:
        from sslyze import (
            CertificateInfoExtraArgument,
            ScanCommand,
            ScanCommandsExtraArguments,
            Scanner,
            ServerNetworkLocation,
            ServerScanRequest,
        )

        began = time.perf_counter()
        commands = {ScanCommand.CERTIFICATE_INFO, ScanCommand.HTTP_HEADERS, ScanCommand.SSL_2_0_CIPHER_SUITES,
                    ScanCommand.SSL_3_0_CIPHER_SUITES, ScanCommand.TLS_1_0_CIPHER_SUITES,
                    ScanCommand.TLS_1_1_CIPHER_SUITES, ScanCommand.TLS_1_2_CIPHER_SUITES,
                    ScanCommand.TLS_1_3_CIPHER_SUITES}
        extra = ScanCommandsExtraArguments(certificate_info=CertificateInfoExtraArgument(Path(self.ca)))
        scanner = Scanner()
        scanner.queue_scans([ServerScanRequest(ServerNetworkLocation(HOST, port), scan_commands=commands,
                                               scan_commands_extra_arguments=extra) for port in ports])
        for _ in scanner.get_results():
            pass
        self.stats["tls_scans"] += len(ports)
        self.stats["seconds"]["tls_scan"] += time.perf_counter() - began


def same_server(log: list[dict[str, Any]], env: dict[str, str]) -> list[dict[str, Any]]:
    """A log recorded against another instance of the reference server: its ports (in the records and inside every
    value, e.g. ``aud``) become this one's."""
    https = urlsplit(env["SMART_REFERENCE_FHIR_BASE_URL"]).port
    plain = int(env.get("SMART_REFERENCE_PLAIN_HTTP_PORT") or 0)
    ports = {r["port"]: https for r in log if r["scheme"] == "https"}
    ports.update({r["port"]: plain for r in log if r["scheme"] == "http"})
    if all(old == new for old, new in ports.items()):
        return log
    text = json.dumps(log)
    for old, new in ports.items():
        text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
    out = json.loads(text)
    for record in out:
        record["port"] = ports.get(record["port"], record["port"])
    return out


def plan(log: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """The harness's requests as a sequence of steps: browser launches, httpx requests, TLS scans."""
    steps: list[tuple[str, Any]] = []
    current: list[dict[str, Any]] | None = None
    scanned: set[int] = set()
    for record in sorted(log, key=lambda r: r["t"]):
        if record["kind"] == "browser":
            if record["path"] == "/auth/authorize" or current is None:
                current = [record]
                steps.append(("launch", current))
            else:
                current.append(record)
        elif record["kind"] in ("harness-httpx", "aux-httpx"):
            steps.append(("http", record))
        elif record["port"] not in scanned:  # sslyze: its HTTP_HEADERS request marks the scan of that port
            scanned.add(record["port"])
            steps.append(("tls", record["port"]))
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", required=True)
    parser.add_argument("--env", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--chromium-starts", type=int, default=1)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    env = json.loads(Path(args.env).read_text())
    log = same_server(json.loads(Path(args.log).read_text()), env)
    floor = Floor(env)
    steps = plan(log)
    ports = sorted({r["port"] for r in log if r["kind"] == "browser" and r["scheme"] == "https"})
    choice = find_chromium()
    with sync_playwright() as pw:
        browser = None
        for _ in range(max(1, args.chromium_starts)):
            started = time.perf_counter()
            if browser is not None:
                browser.close()
            pins = [floor.spki_pin(port) for port in ports]
            browser = pw.chromium.launch(executable_path=None if choice.kind == "managed" else choice.path,
                                         headless=True, args=[*choice.launch_args,
                                                              "--ignore-certificate-errors-spki-list=" + ",".join(pins)])
            floor.stats["chromium_starts"] += 1
            floor.stats["seconds"]["chromium_start"] += time.perf_counter() - started
        for kind, item in steps:
            try:
                if kind == "launch":
                    floor.launch(browser, item)
                elif kind == "http":
                    floor.http(item)
                else:
                    floor.tls_scan([item])
            except Exception as exc:  # noqa: BLE001  a replay that cannot be made is reported, not fatal
                floor.stats["status_differs"].append(f"{kind} not replayed: {type(exc).__name__}: "
                                                     f"{str(exc).splitlines()[0] if str(exc) else ''}")
        browser.close()
    for client in floor.clients.values():
        client.close()
    floor.stats["wall_seconds"] = time.perf_counter() - began
    floor.stats["connections_opened"] = len(floor.clients)
    Path(args.out).write_text(json.dumps(floor.stats, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
