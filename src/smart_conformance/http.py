"""An httpx client that keeps the evidence: every exchange, every hop, redacted before anyone reads it.

Exchanges go to the client's own log and to the evidence collector of the test that is running (a context
variable the pytest plugin sets per test), so a session-wide client still attaches each request to the test that made it.
"""

from __future__ import annotations

import contextvars
import itertools
import shlex
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from smart_conformance import redact

_MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class Exchange:
    """One request and its response, already redacted."""

    method: str
    url: str
    request_headers: list[tuple[str, str]]
    request_body: str
    status: int
    reason: str
    response_headers: list[tuple[str, str]]
    response_body: str
    elapsed_ms: float
    tls_version: str | None
    started_at: str
    cacert: str | None = None  # the target's private CA bundle: curl must trust it too to reproduce the request
    insecure: bool = False  # the target is configured without certificate verification (tls.insecure)
    seq: int = 0  # order of recording in this process, so evidence inherited from fixtures reads in time order

    def header(self, name: str) -> str | None:
        for key, value in self.response_headers:
            if key.lower() == name.lower():
                return value
        return None

    def to_curl(self) -> str:
        """A curl command that runs as printed: secrets are left as shell variables (``$TOKEN``,
        ``$CLIENT_CREDENTIALS``) in double quotes so the shell expands them, and a private-CA target gets
        ``--cacert`` so curl trusts what the harness trusted."""
        parts = [shlex.quote(p) for p in ("curl", "-i", "-X", self.method)]
        if self.insecure:
            parts.append("-k")
        elif self.cacert:
            parts += ["--cacert", shlex.quote(self.cacert)]
        for name, value in self.request_headers:
            if name.lower() in {"host", "content-length", "accept-encoding", "connection", "user-agent"}:
                continue
            if name.lower() == "authorization":
                scheme = value.split(" ", 1)[0]
                variable = "$TOKEN" if scheme.lower() == "bearer" else "$CLIENT_CREDENTIALS"
                parts += ["-H", _double_quoted(f"{name}: {scheme} ", then_variable=variable)]
                continue
            parts += ["-H", shlex.quote(f"{name}: {value}")]
        if self.request_body:
            parts += ["--data-raw", shlex.quote(self.request_body)]
        parts.append(shlex.quote(self.url))
        return " ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "request": {"method": self.method, "url": self.url, "headers": self.request_headers,
                        "body": self.request_body},
            "response": {"status": self.status, "reason": self.reason, "headers": self.response_headers,
                         "body": self.response_body},
            "elapsed_ms": round(self.elapsed_ms, 1),
            "tls_version": self.tls_version,
            "curl": self.to_curl(),
        }

    def summary(self) -> str:
        return f"{self.method} {self.url} -> {self.status} {self.reason}".rstrip()


@dataclass
class Evidence:
    """What one test saw: its exchanges and any other artifacts (screenshots, traces)."""

    exchanges: list[Exchange] = field(default_factory=list)
    files: list[tuple[str, Path]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def last(self) -> Exchange | None:
        return self.exchanges[-1] if self.exchanges else None

    def inherit(self, *bundles: Evidence) -> None:
        """Add what shared (session) fixtures saw to this test's evidence, in the order it happened: a check that
        judges a document a fixture fetched shows that fetch, whichever test happened to make it first. Nothing is
        added twice."""
        exchanges: list[Exchange] = []
        files: list[tuple[str, Path]] = []
        notes: list[str] = []
        for bundle in bundles:
            exchanges += [e for e in bundle.exchanges if e not in exchanges and e not in self.exchanges]
            files += [f for f in bundle.files if f not in files and f not in self.files]
            notes += [n for n in bundle.notes if n not in notes and n not in self.notes]
        self.exchanges[:] = sorted(self.exchanges + exchanges, key=lambda e: e.seq)
        self.files += files
        self.notes += notes


_SEQUENCE = itertools.count(1)

_current: contextvars.ContextVar[Evidence | None] = contextvars.ContextVar("smart_conformance_evidence", default=None)


def current_evidence() -> Evidence | None:
    return _current.get()


@contextmanager
def collecting(evidence: Evidence) -> Iterator[Evidence]:
    token = _current.set(evidence)
    try:
        yield evidence
    finally:
        _current.reset(token)


def _double_quoted(text: str, *, then_variable: str = "") -> str:
    """``text`` in double quotes, everything the shell would interpret there escaped, followed by a shell variable
    left unescaped so it expands (``"Authorization: Bearer $TOKEN"``)."""
    escaped = "".join("\\" + ch if ch in '\\"$`' else ch for ch in text)
    return f'"{escaped}{then_variable}"'


def _decode(content: bytes, content_type: str | None) -> str:
    if not content:
        return ""
    snippet = content[:_MAX_BODY]
    try:
        decoded = snippet.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(content)} bytes of binary content>"
    body = redact.body(decoded, content_type)
    if len(content) > _MAX_BODY:
        body += f"\n… ({len(content) - _MAX_BODY} more bytes not recorded)"
    return body


def _raw(headers: httpx.Headers) -> list[tuple[str, str]]:
    """Headers as sent, original case kept (reads better in the evidence and in curl)."""
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers.raw]


def _learn_secrets(request: httpx.Request, response: httpx.Response) -> None:
    """Secrets first seen on the wire (tokens, codes, form secrets) are registered before anything is written."""
    if request.url.query:
        redact.learn(request.url.query.decode("ascii", "replace"))
    if request.content and "x-www-form-urlencoded" in request.headers.get("content-type", ""):
        redact.learn(request.content.decode("utf-8", "replace"))
    if "json" in response.headers.get("content-type", ""):
        try:
            redact.learn(response.json())
        except ValueError:
            pass
    location = response.headers.get("location")
    if location and "?" in location:
        redact.learn(location.split("?", 1)[1].split("#", 1)[0])


def _tls_version(response: httpx.Response) -> str | None:
    stream = response.extensions.get("network_stream")
    if stream is None:
        return None
    ssl_object = stream.get_extra_info("ssl_object")
    return ssl_object.version() if ssl_object is not None else None


def ssl_context(ca_bundle: Path | None = None, client_cert: Path | None = None,
                client_key: Path | None = None) -> ssl.SSLContext:
    """Trust the system store, or the target's own CA bundle; optional client certificate for mTLS targets."""
    ctx = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    if client_cert:
        ctx.load_cert_chain(str(client_cert), str(client_key) if client_key else None)
    return ctx


class RecordingClient(httpx.Client):
    """httpx.Client whose every hop is recorded as a redacted :class:`Exchange`."""

    def __init__(self, *, verify: ssl.SSLContext | bool = True, timeout: float = 15.0,
                 cacert: Path | str | None = None, **kwargs: Any) -> None:
        """``cacert``: the private CA bundle ``verify`` trusts, named in every curl so the reproduction trusts it."""
        self.log: list[Exchange] = []
        self.cacert = str(cacert) if cacert else None
        self.insecure = verify is False
        self._started: dict[int, tuple[float, str]] = {}
        super().__init__(verify=verify, timeout=timeout, follow_redirects=False,
                         event_hooks={"request": [self._on_request], "response": [self._on_response]},
                         headers={"User-Agent": "smart-payer-conformance/0.1"}, **kwargs)

    def _on_request(self, request: httpx.Request) -> None:
        self._started[id(request)] = (time.perf_counter(), datetime.now(UTC).isoformat(timespec="milliseconds"))

    def _on_response(self, response: httpx.Response) -> None:
        tls = _tls_version(response)
        response.read()
        request = response.request
        _learn_secrets(request, response)
        started, started_at = self._started.pop(id(request), (time.perf_counter(), ""))
        request_body = request.content.decode("utf-8", "replace") if request.content else ""
        exchange = Exchange(
            method=request.method,
            url=redact.url(str(request.url)),
            request_headers=redact.headers(_raw(request.headers)),
            request_body=redact.body(request_body, request.headers.get("content-type")) if request_body else "",
            status=response.status_code,
            reason=response.reason_phrase,
            response_headers=redact.headers(_raw(response.headers)),
            response_body=_decode(response.content, response.headers.get("content-type")),
            elapsed_ms=(time.perf_counter() - started) * 1000,
            tls_version=tls,
            started_at=started_at,
            cacert=self.cacert,
            insecure=self.insecure,
            seq=next(_SEQUENCE),
        )
        self.log.append(exchange)
        evidence = _current.get()
        if evidence is not None:
            evidence.exchanges.append(exchange)

    def exchange_for(self, response: httpx.Response) -> Exchange | None:
        """The recorded exchange of a response this client returned (matched by URL and status, newest first)."""
        wanted = redact.url(str(response.request.url))
        for exchange in reversed(self.log):
            if exchange.url == wanted and exchange.status == response.status_code \
                    and exchange.method == response.request.method:
                return exchange
        return None
