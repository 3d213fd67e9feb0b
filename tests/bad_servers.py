"""Deliberately bad payer servers, for proving the harness gives one clear verdict on each way a target can misbehave.

Every server listens on 127.0.0.1 on a free port and is stopped by the context manager that started it (no sleeps:
readiness is polled). The TLS ones present a leaf from a local test CA (``tests.tls_servers.Pki``), so a target file
either trusts that CA through ``tls.ca_bundle`` or, to reproduce a payer's private CA left unconfigured, does not.

Loaded as a pytest plugin (``-p tests.bad_servers``) into a suite run against the embedded reference server, this
module also switches the reference to issuing a malformed (non-JWT) id_token: the one bad answer that needs a
server able to run a whole SMART launch first.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.tls_servers import Pki, server_context, wait_listening

LOCAL = "127.0.0.1"
HUGE_BYTES = 50 * 1024 * 1024
MALFORMED_ID_TOKEN = "not-a-jwt"


class _Handler(BaseHTTPRequestHandler):
    """Answers every GET/POST with the server's ``answer``."""

    server: BadServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.answer(self)

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str,
         headers: tuple[tuple[str, str], ...] = ()) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in headers:
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


# --- answers -----------------------------------------------------------------------------------------------------

def html_page(handler: BaseHTTPRequestHandler) -> None:
    """A web page where JSON is due (a portal's catch-all route, a login wall in front of the API)."""
    send(handler, 200, b"<!doctype html><html><body><h1>Welcome to the member portal</h1></body></html>",
         "text/html; charset=utf-8")


def broken_json(handler: BaseHTTPRequestHandler) -> None:
    """Declared JSON, but cut short."""
    send(handler, 200, b'{"issuer": "https://127.0.0.1/auth", "capabilities": [', "application/json")


def server_error(handler: BaseHTTPRequestHandler) -> None:
    send(handler, 500, b"Internal Server Error", "text/plain")


def redirect_loop(handler: BaseHTTPRequestHandler) -> None:
    """Every path redirects to itself."""
    send(handler, 302, b"", "text/plain", (("Location", handler.path),))


def huge_body(handler: BaseHTTPRequestHandler, *, declared: bool = True) -> None:
    """A 50 MB JSON-typed body, streamed, never held in memory here (the client is expected to hang up early).
    ``declared=False``: no Content-Length, the body ends when the connection closes (the client cannot know ahead)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    if declared:
        handler.send_header("Content-Length", str(HUGE_BYTES))
    else:
        handler.send_header("Connection", "close")
        handler.close_connection = True
    handler.end_headers()
    chunk = b" " * 65536
    sent = 0
    try:
        while sent < HUGE_BYTES:
            handler.wfile.write(chunk)
            sent += len(chunk)
    except OSError:
        handler.close_connection = True


def huge_undeclared_body(handler: BaseHTTPRequestHandler) -> None:
    huge_body(handler, declared=False)


def never_answers(handler: BaseHTTPRequestHandler) -> None:
    """Reads the request, then says nothing until the server is stopped."""
    assert isinstance(handler.server, BadServer)
    handler.server.stopping.wait()
    handler.close_connection = True


def json_ok(handler: BaseHTTPRequestHandler) -> None:
    """A well-formed JSON answer: for the servers whose fault is in the transport, not in what they say."""
    send(handler, 200, b'{"resourceType": "CapabilityStatement", "status": "active"}', "application/json")


# --- servers -----------------------------------------------------------------------------------------------------

class BadServer(ThreadingHTTPServer):
    """A threaded HTTP(S) server answering everything with ``answer``; TLS handshakes run in the connection thread."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, answer: Callable[[BaseHTTPRequestHandler], None], context: ssl.SSLContext | None) -> None:
        super().__init__((LOCAL, 0), _Handler)
        self.answer = answer
        self.context = context
        self.stopping = threading.Event()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.context is None:
            super().finish_request(request, client_address)
            return
        try:
            conn = self.context.wrap_socket(request, server_side=True)
        except (OSError, ValueError):
            return  # a client that refuses our certificate (the private-CA case): its verdict is the point
        try:
            self.RequestHandlerClass(conn, client_address, self)
        except OSError:
            pass
        finally:
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@contextmanager
def serving(answer: Callable[[BaseHTTPRequestHandler], None], context: ssl.SSLContext | None = None) -> Iterator[int]:
    """Serve ``answer`` (over TLS when ``context`` is given) until the block ends; yields the port."""
    server = BadServer(answer, context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        wait_listening(server.port)
        yield server.port
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def resetting() -> Iterator[int]:
    """Accepts TCP connections and resets each at once (RST), before any TLS is spoken: a broken TLS terminator."""
    listener = socket.socket()
    listener.bind((LOCAL, 0))
    listener.listen(16)
    listener.settimeout(0.05)
    stopping = threading.Event()

    def loop() -> None:
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stopping.set()
        thread.join(timeout=5)
        listener.close()


class TestPki:
    """One local CA and a leaf for 127.0.0.1, shared by the TLS bad servers of a test module."""

    __test__ = False  # not a test class, whatever pytest's naming rules think

    def __init__(self, directory: Path) -> None:
        self.pki = Pki(directory)
        self.ca_path = self.pki.ca_path
        self.leaf = self.pki.issue(LOCAL)

    def context(self) -> ssl.SSLContext:
        return server_context(self.leaf)


# --- a pytest plugin for the embedded reference: a malformed id_token ---------------------------------------------

def pytest_configure(config: pytest.Config) -> None:
    """Make the embedded reference server (started later, in this process) issue ``not-a-jwt`` as its id_token."""
    from smart_conformance.reference import token_endpoint

    token_endpoint._id_token = lambda *args, **kwargs: MALFORMED_ID_TOKEN  # type: ignore[attr-defined]
