"""Run the reference payer server: ``with ReferenceServer(faults=[...]) as srv:`` or ``serve-reference``.

uvicorn runs in a daemon thread with its own event loop, serving two listeners bound before start-up (so the
ports are known and connections queue even before the loop runs): HTTPS for everything, and plain HTTP that only
redirects to HTTPS (unless the plaintext-http-served fault is on). With the split-origin-auth-server variant a third
listener (HTTPS, another port, the same test CA and leaf) serves the authorization server while the first keeps the
FHIR API; with separate-idp-origin one more (HTTPS, another port) serves the identity provider's sign-in page.
Everything binds 127.0.0.1 only, and every listener stops with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import uvicorn

from smart_conformance.reference import certs
from smart_conformance.reference.app import (
    AUTH_SERVER,
    BOTH,
    FHIR_API,
    IDENTITY_PROVIDER,
    build_app,
    build_plain_app,
)
from smart_conformance.reference.context import ACCESS_TOKEN_TTL, Context
from smart_conformance.reference.data import Dataset, load
from smart_conformance.reference.faults import ActiveFaults, Fault
from smart_conformance.reference.idp import enrol_totp
from smart_conformance.reference.keys import KeySet
from smart_conformance.reference.store import Store
from smart_conformance.reference.variants import (
    SEPARATE_IDP_ORIGIN,
    SHORT_LIVED_ACCESS_TOKENS,
    SPLIT_ORIGIN_AUTH_SERVER,
    ActiveVariants,
)

HOST = "127.0.0.1"
START_TIMEOUT = 15.0
SHORT_ACCESS_TOKEN_TTL = 20  # the short-lived-access-tokens variant: expiry checks see a token die within a run


def _bind(port: int) -> socket.socket:
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say so (accepted ones inherit it).
    # Without it every TLS answer's body, written after its headers, waited for the client's delayed ACK: 40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class ReferenceServer:
    """The embedded reference payer, started on enter and stopped on exit."""

    def __init__(self, faults: Iterable[str] = (), state_dir: str | Path | None = None, port: int = 0,
                 plain_port: int = 0, cors_origins: Iterable[str] = (), access_token_ttl: int | None = None,
                 variants: Iterable[str] = ()) -> None:
        """``access_token_ttl`` (seconds; default 3600, or $SMART_REFERENCE_ACCESS_TOKEN_TTL) lets expiry checks
        watch a token die within a test run. ``variants``: legitimate behaviours other than the defaults."""
        self.faults = ActiveFaults(faults)  # raises ValueError on unknown names, before anything starts
        self.variants = ActiveVariants(variants)
        self._state_arg = Path(state_dir) if state_dir is not None else None
        self._port, self._plain_port = port, plain_port
        self._cors = frozenset(cors_origins)
        default_ttl = SHORT_ACCESS_TOKEN_TTL if self.variants.active(SHORT_LIVED_ACCESS_TOKENS) else ACCESS_TOKEN_TTL
        self.access_token_ttl = access_token_ttl or int(os.environ.get("SMART_REFERENCE_ACCESS_TOKEN_TTL", default_ttl))
        self._thread: threading.Thread | None = None
        self._servers: list[uvicorn.Server] = []
        self._error: BaseException | None = None
        self._tmp: Path | None = None
        self.state_dir: Path = Path()
        self.port = 0
        self.plain_port = 0
        self.auth_port = 0  # the authorization server's own listener (split-origin variant); 0 = same as port
        self.idp_port = 0  # the identity provider's own listener (separate-idp-origin variant); 0 = none
        self.dataset: Dataset | None = None
        self.totp_secrets: dict[str, str] = {}  # username -> base32, enrolled at start (reference/idp.py)
        self.startup_seconds = 0.0

    # --- public API ------------------------------------------------------------------------------------------
    @property
    def origin(self) -> str:
        return f"https://{HOST}:{self.port}"

    @property
    def fhir_base_url(self) -> str:
        return self.origin + "/fhir"

    @property
    def auth_origin(self) -> str:
        """The authorization server's origin: the FHIR origin, or its own listener in the split-origin variant."""
        return f"https://{HOST}:{self.auth_port}" if self.auth_port else self.origin

    @property
    def idp_origin(self) -> str:
        """The identity provider's origin (separate-idp-origin), or "" when the sign-in pages are the server's."""
        return f"https://{HOST}:{self.idp_port}" if self.idp_port else ""

    @property
    def origins(self) -> tuple[str, ...]:
        """Every https origin the server answers on."""
        found = (self.origin, self.auth_origin) if self.auth_port else (self.origin,)
        return (*found, self.idp_origin) if self.idp_port else found

    @property
    def issuer(self) -> str:
        return self.auth_origin + "/auth"

    @property
    def ca_path(self) -> Path:
        return self.state_dir / "ca.pem"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting only this server's test CA."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    def target_env(self) -> dict[str, str]:
        """The variables fixtures/targets/reference.yaml interpolates."""
        assert self.dataset is not None, "the server is not running"
        clients = list(self.dataset.clients.values())
        members = self.dataset.members
        env = {
            "SMART_REFERENCE_FHIR_BASE_URL": self.fhir_base_url,
            "SMART_REFERENCE_CA_BUNDLE": str(self.ca_path),
            "SMART_REFERENCE_CLIENT_ID": clients[0].client_id,
            "SMART_REFERENCE_CLIENT_SECRET": clients[0].client_secret,
            "SMART_REFERENCE_OTHER_CLIENT_ID": clients[1].client_id,
            "SMART_REFERENCE_OTHER_CLIENT_SECRET": clients[1].client_secret,
            "SMART_REFERENCE_MEMBER_USERNAME": "alice",
            "SMART_REFERENCE_MEMBER_PASSWORD": members["alice"].password,
            "SMART_REFERENCE_OTHER_MEMBER_USERNAME": "bob",
            "SMART_REFERENCE_OTHER_MEMBER_PASSWORD": members["bob"].password,
            "SMART_REFERENCE_REP_USERNAME": "carol",
            "SMART_REFERENCE_REP_PASSWORD": members["carol"].password,
        }
        for name, username in (("MEMBER", "alice"), ("OTHER_MEMBER", "bob"), ("REP", "carol")):
            # each member's authenticator secret, as a file (the totp-mfa variant's target reads it as {file: ...})
            env[f"SMART_REFERENCE_{name}_TOTP_FILE"] = str(self.state_dir / f"totp-{username}.txt")
        if self.plain_port:
            env["SMART_REFERENCE_PLAIN_HTTP_PORT"] = str(self.plain_port)
        from smart_conformance.reference.backend import (
            BACKEND_CLIENT_ID,
            MEMBER,
            OTHER,
            OTHER_CLIENT_ID,
            P2P,
            P2P_CLIENT_ID,
            load_backend,
        )

        backend = load_backend(self.state_dir)  # the backend client's keys (generated into the state dir, 0600)
        env.update({"SMART_REFERENCE_BACKEND_CLIENT_ID": BACKEND_CLIENT_ID,
                    "SMART_REFERENCE_BACKEND_KEY_FILE": str(backend.key_files["RS384"]),
                    "SMART_REFERENCE_BACKEND_KID": backend.kids["RS384"],
                    "SMART_REFERENCE_BACKEND_ES384_KEY_FILE": str(backend.key_files["ES384"]),
                    "SMART_REFERENCE_BACKEND_ES384_KID": backend.kids["ES384"],
                    "SMART_REFERENCE_OTHER_BACKEND_CLIENT_ID": OTHER_CLIENT_ID,
                    "SMART_REFERENCE_OTHER_BACKEND_KEY_FILE": str(backend.key_files[OTHER]),
                    "SMART_REFERENCE_OTHER_BACKEND_KID": backend.kids[OTHER],
                    "SMART_REFERENCE_P2P_CLIENT_ID": P2P_CLIENT_ID,  # the requesting payer of Payer-to-Payer
                    "SMART_REFERENCE_P2P_KEY_FILE": str(backend.key_files[P2P]),
                    "SMART_REFERENCE_P2P_KID": backend.kids[P2P],
                    "SMART_REFERENCE_BACKEND_JWKS_URL": f"{self.origin}/clients/{BACKEND_CLIENT_ID}/jwks.json",
                    # the member-facing client's key, used under the member-client-private-key-jwt variant
                    "SMART_REFERENCE_MEMBER_KEY_FILE": str(backend.key_files[MEMBER]),
                    "SMART_REFERENCE_MEMBER_KID": backend.kids[MEMBER]})
        return env

    # --- lifecycle -------------------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        began = time.perf_counter()
        if self._state_arg is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="smart-reference-"))
            self.state_dir = self._tmp
        else:
            self.state_dir = self._state_arg
            self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start(began)
        except BaseException:
            self.stop()
            raise

    def _start(self, began: float) -> None:
        pki = certs.issue(self.state_dir, self.faults)
        tls = certs.server_context(pki, self.faults)
        secure_sock, plain_sock = _bind(self._port), _bind(self._plain_port)
        self.port, self.plain_port = secure_sock.getsockname()[1], plain_sock.getsockname()[1]
        split = self.variants.active(SPLIT_ORIGIN_AUTH_SERVER)
        auth_sock = _bind(0) if split else None
        self.auth_port = auth_sock.getsockname()[1] if auth_sock is not None else 0
        idp_sock = _bind(0) if self.variants.active(SEPARATE_IDP_ORIGIN) else None
        self.idp_port = idp_sock.getsockname()[1] if idp_sock is not None else 0
        self.dataset = load()
        store = Store(self.state_dir / "state.sqlite3")
        store.seed(self.dataset)
        self.totp_secrets = enrol_totp(self.state_dir, sorted(self.dataset.members))  # the totp-mfa variant's
        ctx = Context(origin=self.origin, faults=self.faults, store=store, keys=KeySet(self.state_dir),
                      data=self.dataset, cors_origins=self._cors, access_token_ttl=self.access_token_ttl,
                      variants=self.variants, auth_origin=self.auth_origin if split else "",
                      idp_origin=self.idp_origin)
        ctx.idp.totp = self.totp_secrets
        app = build_app(ctx, FHIR_API if split else BOTH)
        # keep-alive longer than the clients' (httpx drops an idle connection after 5 s): with the same 5 s on both
        # sides a request sent on a connection the server was just closing gets no answer, on a loaded machine.
        common = {"log_level": "warning", "access_log": False, "lifespan": "off", "timeout_graceful_shutdown": 2,
                  "timeout_keep_alive": 30,
                  "proxy_headers": False, "server_header": False, "date_header": not ctx.clock_skew()}
        secure = uvicorn.Server(uvicorn.Config(app, ssl_context_factory=lambda config, default: tls, **common))
        plain = uvicorn.Server(uvicorn.Config(build_plain_app(ctx, app), **common))
        listeners: list[tuple[uvicorn.Server, socket.socket]] = [(secure, secure_sock), (plain, plain_sock)]
        if auth_sock is not None:
            auth_app = build_app(ctx, AUTH_SERVER)
            listeners.append((uvicorn.Server(uvicorn.Config(auth_app, ssl_context_factory=lambda config, default: tls,
                                                            **common)), auth_sock))
        if idp_sock is not None:
            idp_app = build_app(ctx, IDENTITY_PROVIDER)
            listeners.append((uvicorn.Server(uvicorn.Config(idp_app, ssl_context_factory=lambda config, default: tls,
                                                            **common)), idp_sock))
        for server, _ in listeners:
            server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # the owner handles signals
        self._servers = [server for server, _ in listeners]
        self._thread = threading.Thread(target=self._run, args=([sock for _, sock in listeners],),
                                        name=f"reference-server-{self.port}", daemon=True)
        self._thread.start()
        self._wait_ready()
        self.startup_seconds = time.perf_counter() - began

    def _run(self, socks: list[socket.socket]) -> None:
        """Serve every listener (``self._servers[i]`` on ``socks[i]``) on one event loop until stopped."""
        async def all_listeners() -> None:
            await asyncio.gather(*(server.serve(sockets=[sock]) for server, sock in zip(self._servers, socks)))

        try:
            asyncio.run(all_listeners())
        except BaseException as exc:  # noqa: BLE001 - surfaced by _wait_ready / stop
            self._error = exc
        finally:
            for sock in socks:
                sock.close()

    def _wait_ready(self) -> None:
        """Poll until every uvicorn server reports started (or the thread died)."""
        assert self._thread is not None
        deadline = time.monotonic() + START_TIMEOUT
        while not all(s.started for s in self._servers):
            if not self._thread.is_alive() or self._error is not None:
                raise RuntimeError(f"reference server failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"reference server did not start within {START_TIMEOUT}s")
            self._thread.join(0.005)  # yields to the server thread; returns at once if it ends

    def stop(self) -> None:
        for server in self._servers:
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._servers = []
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def serve(port: int = 0, faults: Sequence[str] | None = None, state_dir: str | Path | None = None,
          plain_port: int = 0, variants: Sequence[str] | None = None) -> int:
    """Serve until Ctrl-C, printing what a target file or shell needs (the CLI's ``serve-reference``)."""
    server = ReferenceServer(faults=faults or (), state_dir=state_dir, port=port or 0, plain_port=plain_port,
                             variants=variants or ())
    with server:
        print(f"Reference payer FHIR base URL: {server.fhir_base_url}")
        if server.auth_port:
            print(f"Authorization server (issuer): {server.issuer}")
        if server.idp_port:
            print(f"Identity provider (sign-in):   {server.idp_origin}/idp/login")
        print(f"Test CA (trust this for TLS):   {server.ca_path}")
        print(f"Plain-http listener:            http://{HOST}:{server.plain_port}/"
              f"{'  (FAULT: serves data)' if server.faults.active(Fault.PLAINTEXT_HTTP_SERVED) else '  (redirects)'}")
        if server.faults.names:
            print(f"Faults on: {', '.join(sorted(server.faults.names))}")
        if server.variants.names:
            print(f"Variants on: {', '.join(sorted(server.variants.names))}")
            patch = server.variants.target_patch()
            if patch:
                print(f"A target file for this server also says: {json.dumps(patch)}")
        print(f"Started in {server.startup_seconds:.2f}s. Environment for fixtures/targets/reference.yaml:")
        for name, value in server.target_env().items():
            print(f"export {name}={value}")
        print("Serving until Ctrl-C.", flush=True)
        try:
            while server._thread is not None and server._thread.is_alive():
                server._thread.join(0.5)
        except KeyboardInterrupt:
            print("\nStopping.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m smart_conformance.reference",
                                     description="Serve the embedded reference payer server.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--plain-port", type=int, default=0)
    parser.add_argument("--fault", action="append", default=[], metavar="NAME")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME")
    parser.add_argument("--state-dir", default=None)
    args = parser.parse_args(argv)
    try:
        return serve(port=args.port, faults=args.fault, state_dir=args.state_dir, plain_port=args.plain_port,
                     variants=args.variant)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
