"""An httpx client that keeps the evidence: every exchange, every hop, redacted before anyone reads it.

Exchanges go to the client's own log and to the evidence collector of the test that is running (a context
variable the pytest plugin sets per test), so a session-wide client still attaches each request to the test that made it.

It also waits out the target's rate limits (:class:`Backoff`): a 429, or a 503 with Retry-After, is the server
saying "not now", not an answer to judge, so the same request is sent again when Retry-After says, within a budget
per request. Every answer, the 429 and the retry, stays recorded.
"""

from __future__ import annotations

import contextvars
import itertools
import shlex
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from smart_conformance import redact, tally

_MAX_BODY = 64 * 1024
MAX_RESPONSE_BYTES = 32 * 1024 * 1024  # a whole answer is read (and kept) at most up to this size


class ResponseTooLarge(httpx.TransportError):
    """An answer past MAX_RESPONSE_BYTES: the harness stops reading, so its memory stays bounded, and cannot judge it."""


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
    # The positive controls taken in this check (fhir.control): each is taken beside the negatives it backs and never
    # vouches for another check's verdict, however recent (a gateway may start refusing everyone mid-run).
    controls: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

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


def _read_capped(response: httpx.Response) -> None:
    """Read the body as httpx would, but never more than MAX_RESPONSE_BYTES (declared or actually sent)."""
    limit = MAX_RESPONSE_BYTES // (1024 * 1024)
    where = f"{response.request.method} {redact.url(str(response.request.url))}"
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        raise ResponseTooLarge(f"the answer to {where} declares {int(declared)} bytes (Content-Length), more than "
                               f"the {limit} MB the harness reads", request=response.request)
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise ResponseTooLarge(f"the answer to {where} is larger than the {limit} MB the harness reads",
                                   request=response.request)
        chunks.append(chunk)
    response._content = b"".join(chunks)  # what Response.read() would have stored


def transport_problem(exc: httpx.TransportError, url: str, config_file: Path | str | None = None) -> str:
    """What a failed request says to the person running the harness: the cause (DNS, refused, an untrusted
    certificate, a failed TLS handshake, silence, an oversized answer), and what to change. Worded to follow
    ``target 'NAME' ``."""
    where = config_file or "the target file"
    host = httpx.URL(url).host
    port = httpx.URL(url).port or (443 if url.startswith("https:") else 80)
    causes = _causes(exc)
    try:
        waited = exc.request.extensions.get("timeout", {})
    except RuntimeError:  # no request attached
        waited = {}
    reason = _first_line(next((c for c in causes if isinstance(c, OSError)), exc))
    if isinstance(exc, ResponseTooLarge):
        return f"could not be checked: {exc}; check that the URLs in {where} name the FHIR API and its SMART endpoints"
    if isinstance(exc, httpx.ConnectTimeout):
        return (f"is unreachable: no connection to {host}:{port} within {waited.get('connect')} s ({url}); check "
                "the host and port of fhir_base_url, and any firewall or proxy between this machine and the server")
    if isinstance(exc, httpx.TimeoutException):
        return (f"accepted the connection but sent no answer to {exc.request.method} {url} within "
                f"{waited.get('read')} s; the server (or a proxy in front of it) hangs")
    verify = next((c for c in causes if isinstance(c, ssl.SSLCertVerificationError)), None)
    if verify is not None:
        detail = verify.verify_message or reason
        if verify.verify_code in _UNKNOWN_ISSUER:
            return (f"presents a TLS certificate this machine does not trust at {url} ({detail}). If the payer uses "
                    f"a private or internal CA, set tls.ca_bundle in {where} to that CA's PEM bundle")
        return f"presents a TLS certificate that fails verification at {url} ({detail}); fix the server's certificate"
    if any(isinstance(c, socket.gaierror) for c in causes):
        return (f"is unreachable: the host name {host!r} does not resolve ({reason}); check the host of "
                f"fhir_base_url in {where}, or this machine's DNS and proxy settings")
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return (f"is unreachable: {host}:{port} refused the connection ({url}); check the host and port of "
                "fhir_base_url, and that the server is up")
    if url.startswith("https:") and any(isinstance(c, ssl.SSLError | ConnectionResetError) for c in causes):
        return (f"failed the TLS handshake at {host}:{port} ({reason}); check that this port serves HTTPS (not "
                "plain HTTP) with TLS 1.2 or later, and that no proxy cuts the connection")
    return f"could not be reached at {url}: {reason}"


_UNKNOWN_ISSUER = (2, 18, 19, 20, 21)  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT(_LOCALLY), self-signed (in chain), ...


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps (httpx wraps httpcore, which wraps the socket or ssl error)."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def _first_line(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).split("\n")[0]


def ssl_context(ca_bundle: Path | None = None, client_cert: Path | None = None,
                client_key: Path | None = None) -> ssl.SSLContext:
    """Trust the system store, or the target's own CA bundle; optional client certificate for mTLS targets."""
    ctx = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    if client_cert:
        ctx.load_cert_chain(str(client_cert), str(client_key) if client_key else None)
    return ctx


class Pace:
    """``--max-rps``: at most this many requests a second from this process's clients. Pacing the harness's own
    requests (a payer's production limit), not waiting for a server."""

    def __init__(self) -> None:
        self.interval = 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def set(self, max_rps: float | None) -> None:
        self.interval = 1.0 / max_rps if max_rps and max_rps > 0 else 0.0

    def wait(self) -> None:
        if self.interval <= 0:
            return
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next)
            self._next = at + self.interval
        if at > now:
            time.sleep(at - now)


PACE = Pace()


DEFAULT_RATE_LIMIT_WAIT_S = 30.0  # per request, when the target file says nothing (rate_limit.max_wait_s)
MIN_WAIT_S = 1.0  # also when Retry-After is absent, 0 or a date already past: a retry sooner is no back-off at all
_BACKOFF_KEY = "smart_conformance_backoff"
# ``extensions=NO_BACKOFF`` on a request whose 429 (or 503) is what its caller judges or handles itself: Bulk Data
# status polling (429 is an in-progress answer there, smart/bulk.py), the member's pages probed for server errors.
NO_BACKOFF: dict[str, Any] = {_BACKOFF_KEY: False}
# Idempotent methods (RFC 9110 §9.2.2): the only ones sent again after a 503 (see RecordingClient._wait_for).
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After (RFC 9110 §10.2.3) in seconds from ``now``: delay-seconds or an HTTP-date (0 when that date is
    past); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


@dataclass(frozen=True)
class Backoff:
    """How a client waits out the target's rate limits: at most ``max_wait_s`` seconds of waiting per request (0:
    never), counted in the run's tally for target ``tally_as``; ``source`` is the target file the give-up message
    names, with the key to raise."""

    max_wait_s: float = DEFAULT_RATE_LIMIT_WAIT_S
    tally_as: str | None = None
    source: str = "the target file"


_GAVE_UP_KEY = "smart_conformance_rate_limited"


def rate_limit_note(response: httpx.Response | None) -> str:
    """Why a 429 (or 503) a check got was not waited out further (the budget, and how to raise it), as
    ``"; ..."`` to append to a could-not-check message; "" when the client did not give up on this response."""
    note = response.extensions.get(_GAVE_UP_KEY) if response is not None else None
    return f"; {note}" if isinstance(note, str) else ""


class RecordingClient(httpx.Client):
    """httpx.Client whose every hop is recorded as a redacted :class:`Exchange`, and which waits out the target's
    rate limits when given a :class:`Backoff`."""

    def __init__(self, *, verify: ssl.SSLContext | bool = True, timeout: float = 15.0,
                 cacert: Path | str | None = None, backoff: Backoff | None = None,
                 sleep: Callable[[float], None] = time.sleep, **kwargs: Any) -> None:
        """``cacert``: the private CA bundle ``verify`` trusts, named in every curl so the reproduction trusts it.
        ``backoff``: wait out 429 / Retry-After answers within its budget (None: hand every answer back as is).
        ``sleep``: how a wait is made (tests pass a fake one)."""
        self.log: list[Exchange] = []
        self.cacert = str(cacert) if cacert else None
        self.insecure = verify is False
        self.backoff = backoff
        self._sleep = sleep
        self._started: dict[int, tuple[float, str]] = {}
        super().__init__(verify=verify, timeout=timeout, follow_redirects=False,
                         event_hooks={"request": [self._on_request], "response": [self._on_response]},
                         headers={"User-Agent": "smart-payer-conformance/0.1"}, **kwargs)

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        PACE.wait()
        response = super().send(request, **kwargs)
        if self.backoff is None or request.extensions.get(_BACKOFF_KEY) is False:
            return response
        return self._back_off(request, response, **kwargs)

    def _back_off(self, request: httpx.Request, response: httpx.Response, **kwargs: Any) -> httpx.Response:
        """Send ``request`` again, unchanged, for as long as the server answers "not now" and the budget allows.

        The very same request, also when it cannot be repeated (a one-time authorization code, a refresh token a
        rotating server retires on use, an assertion's jti): a 429 says the server refused to process it (RFC 6585
        §4, too many requests), so the code or token is unspent and the retry is the first request the server
        handles. A 503 is retried only for idempotent methods (RFC 9110 §9.2.2): a gateway may answer it after
        the server behind it took the request, and a repeated code exchange would then be refused as a replay.
        Both answers stay in the evidence, so a reader sees the wait either way."""
        assert self.backoff is not None
        limit, waited = self.backoff, 0.0
        while (wait := self._wait_for(response)) is not None:
            said = response.headers.get("retry-after")
            seen = (f"HTTP {response.status_code} (Retry-After: {said if said is not None else 'none'}) from "
                    f"{request.method} {redact.url(str(request.url))}")
            if waited + wait > limit.max_wait_s:
                note = (f"{seen} was not waited out: {wait:g} s more after {waited:g} s would pass the budget of "
                        f"{limit.max_wait_s:g} s per request (rate_limit.max_wait_s in {limit.source}). Fix: run "
                        "when the payer is less busy, ask it for a higher limit for the test client, or raise "
                        "max_wait_s")
                response.extensions = {**response.extensions, _GAVE_UP_KEY: note}
                _note(note)
                return response
            _note(f"{seen}: waited {wait:g} s and sent the same request again (rate_limit.max_wait_s)")
            self._sleep(wait)  # the server said when to come back (RFC 9110 §10.2.3); the budget bounds it
            waited += wait
            if limit.tally_as:
                tally.rate_limited(limit.tally_as, wait)
            PACE.wait()
            response = super().send(request, **kwargs)
        return response

    @staticmethod
    def _wait_for(response: httpx.Response) -> float | None:
        """Seconds to wait before sending the request again, or None when the answer is the server's decision."""
        status = response.status_code
        said = retry_after_seconds(response.headers.get("retry-after"))
        if status == 429 or (status == 503 and said is not None and response.request.method in _IDEMPOTENT):
            return max(said or 0.0, MIN_WAIT_S)
        return None

    def _on_request(self, request: httpx.Request) -> None:
        self._started[id(request)] = (time.perf_counter(), datetime.now(UTC).isoformat(timespec="milliseconds"))

    def _on_response(self, response: httpx.Response) -> None:
        tls = _tls_version(response)
        _read_capped(response)
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
        response.extensions = {**response.extensions, _EXCHANGE_KEY: exchange}  # its own evidence: see exchange_of
        evidence = _current.get()
        if evidence is not None:
            evidence.exchanges.append(exchange)

    def exchange_for(self, response: httpx.Response) -> Exchange | None:
        """The recorded exchange of a response this client returned (kept for its callers; :func:`exchange_of`)."""
        return exchange_of(response)


_EXCHANGE_KEY = "smart_conformance_exchange"


def _note(text: str) -> None:
    """A line on the running test's evidence (shown beside its exchanges in the report)."""
    evidence = _current.get()
    if evidence is not None:
        evidence.notes.append(text)


def exchange_of(response: httpx.Response | None) -> Exchange | None:
    """The exchange a :class:`RecordingClient` recorded for this very response, or None (no response, or one no
    recording client returned). Read off the response itself, so two requests to the same URL with the same status
    are never confused, as matching the log by URL would."""
    if response is None:
        return None
    found = response.extensions.get(_EXCHANGE_KEY)
    return found if isinstance(found, Exchange) else None
