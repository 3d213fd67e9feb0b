"""What the browser saw, as records the checks read: the pages loaded on the way (:class:`PageDocument`), the final
page's forms (:class:`PageForm`), and the outcome of one authorization (:class:`AuthorizationResult`), with the
helpers that read them off a page and off the captured redirect."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from smart_conformance.browser.artifacts import Screenshot
from smart_conformance.browser.pinning import TlsMode

PROTECTIVE_HEADERS = ("x-frame-options", "content-security-policy", "content-type", "cache-control",
                      "referrer-policy")


@dataclass(frozen=True)
class PageDocument:
    """A page the browser loaded on the way (a main-frame document, redirects apart), with the headers that say
    whether another site may frame it, what script it may run, whether caches keep it and what its Referer gives
    away. Pages are what the member-page checks judge: a browser renders them, so a sign-in built by script or
    spread over several pages is seen as the member sees it."""

    url: str  # redacted
    status: int
    headers: Mapping[str, str]  # the PROTECTIVE_HEADERS present, lower-cased names


@dataclass(frozen=True)
class Hop:
    """A redirect the browser followed on the way: whether a form post was re-sent (307/308) or turned into a GET."""

    url: str  # origin and path of the redirecting response, redacted
    status: int
    method: str  # of the request that got the redirect


@dataclass(frozen=True)
class SetCookie:
    """A cookie the server set on the way, as its ``Set-Cookie`` header said it: the name and attributes the cookie
    checks judge, never the value (a session id is a secret)."""

    url: str  # origin and path of the response that set it, redacted
    name: str
    attributes: Mapping[str, str]  # lower-cased attribute names; flags (secure, httponly) map to ""

    @classmethod
    def parse(cls, url: str, header: str) -> SetCookie:
        pair, *rest = header.split(";")
        attributes: dict[str, str] = {}
        for part in rest:
            key, _, value = part.strip().partition("=")
            if key:
                attributes[key.strip().lower()] = value.strip()
        return cls(url, pair.partition("=")[0].strip(), attributes)

    @property
    def deleted(self) -> bool:
        """The header removes the cookie (Max-Age=0 or an expiry in the past): nothing is kept to protect."""
        max_age = self.attributes.get("max-age", "").strip()
        if max_age.lstrip("-").isdigit() and int(max_age) <= 0:
            return True
        try:
            expires = parsedate_to_datetime(self.attributes["expires"])
        except (KeyError, TypeError, ValueError, IndexError):
            return False
        return expires.timestamp() < time.time()


@dataclass(frozen=True)
class PageForm:
    """A form as the browser holds it (after any script built it): ``action`` resolved to an absolute URL."""

    action: str = field(repr=False)
    method: str
    inputs: tuple[Mapping[str, str], ...] = field(repr=False)  # tag, name, type, id; value only when hidden


_FORMS_JS = """() => Array.from(document.forms).map(f => ({
  action: f.action || document.location.href, method: (f.getAttribute('method') || 'get').toLowerCase(),
  inputs: Array.from(f.elements).map(e => ({tag: e.tagName.toLowerCase(), name: e.name || '',
    type: (e.type || '').toLowerCase(), id: e.id || '', value: e.type === 'hidden' ? e.value : ''}))}))"""


def page_forms(page: Any) -> tuple[PageForm, ...]:
    try:
        raw = page.evaluate(_FORMS_JS)
    except Exception:  # noqa: BLE001
        return ()
    return tuple(PageForm(str(f["action"]), str(f["method"]), tuple(dict(i) for i in f["inputs"])) for f in raw)



@dataclass
class AuthorizationResult:
    """What the browser saw. ``params`` are the raw redirect parameters (the caller needs the code): never log them."""

    redirected: bool
    redirect_url: str | None  # redacted
    params: dict[str, str] = field(repr=False)
    param_list: list[tuple[str, str]] = field(repr=False)
    page_url: str  # redacted
    title: str
    text_snippet: str
    screenshots: list[Screenshot]
    trace_path: Path | None
    tls_mode: TlsMode
    expect_redirect: bool
    steps_run: list[str]
    steps_skipped: list[str]
    seconds: float
    # What the server was seen to decide (typed launch outcomes, smart/launch.py):
    status: int | None = None  # HTTP status of the last main-frame document (3xx hops excluded)
    document_url: str = ""  # redacted URL of that document (an empty-body 4xx leaves the page on chrome-error://)
    steps_done: int = 0  # recipe steps completed (before the redirect, when there was one)
    stopped_at: int | None = None  # negative launches: the 1-based step that did not match
    stop_reason: str = ""
    settled: bool = False  # the final page had loaded and the network had gone quiet
    step_pages: list[str] = field(default_factory=list)  # origin + path where each completed step ran
    page_key: str = ""  # origin + path of the final page
    response_in: str = ""  # where the redirect's parameters were: query, fragment, query+fragment, form_post
    documents: list[PageDocument] = field(default_factory=list)  # every page loaded on the way, in order
    cookies: list[SetCookie] = field(default_factory=list)  # every Set-Cookie on the way (documents and fetches)
    hops: list[Hop] = field(default_factory=list)  # every main-frame redirect on the way, in order
    forms: tuple[PageForm, ...] = field(default=(), repr=False)  # the final page's forms (no redirect only)
    blocked: str = ""  # a lockout marker seen on the way (a negative launch): why later sign-ins are stopped
    # Single sign-on: the sign-in steps were skipped because the identity provider's session (kept from an earlier
    # sign-in of the same member) let the server go straight on; and whether this authorization submitted a password.
    session_reused: bool = False
    password_submitted: bool = False

    def _get(self, name: str) -> str | None:
        return self.params.get(name)

    @property
    def code(self) -> str | None:
        return self._get("code")

    @property
    def state(self) -> str | None:
        return self._get("state")

    @property
    def error(self) -> str | None:
        return self._get("error")

    @property
    def error_description(self) -> str | None:
        return self._get("error_description")

    @property
    def failed(self) -> bool:
        """The authorization did not end where it was expected to (redirect or no redirect)."""
        return self.redirected != self.expect_redirect


def page_key(url: str) -> str:
    """Origin and path: which page this is, whatever per-request query (a session id) it carries."""
    parts = urlsplit(url)
    if not parts.scheme.startswith("http"):
        return f"{parts.scheme}:"
    return f"{parts.scheme}://{parts.netloc.lower()}{parts.path or '/'}"


def response_params(url: str, post_data: str | None = None,
                     fragment: str | None = None) -> list[tuple[str, str]]:
    """Authorization response parameters: a form_post body, else the query *and* the fragment.

    The code flow answers in the query (RFC 6749 §4.1.2), the implicit flow, its errors included, in the fragment
    (§4.2.2.1): both are read. The query comes first, so where both name a parameter the query's value is the one
    ``params`` keeps; the fragment is only read when it looks like parameters (``#/route`` is an app's, not ours).
    """
    return [(k, v) for k, v, _ in response_params_located(url, post_data, fragment)]


def response_params_located(url: str, post_data: str | None = None,
                             fragment: str | None = None) -> list[tuple[str, str, str]]:
    if post_data:
        return [(k, v, "form_post") for k, v in parse_qsl(post_data, keep_blank_values=True)]
    parts = urlsplit(url)
    frag = parts.fragment or (fragment or "").lstrip("#")
    out = [(k, v, "query") for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    if "=" in frag:
        out += [(k, v, "fragment") for k, v in parse_qsl(frag, keep_blank_values=True)]
    return out


RESPONSE_KEYS = frozenset({"code", "state", "error", "error_description", "error_uri", "iss", "access_token",
                            "id_token", "token_type", "expires_in", "scope"})


def response_location(located: Sequence[tuple[str, str, str]]) -> str:
    """Where the OAuth response parameters came (the redirect_uri's own query parameters do not count)."""
    places = [where for where in ("query", "fragment", "form_post")
              if any(k in RESPONSE_KEYS and w == where for k, _, w in located)]
    return "+".join(places)


def safe_url(page: Any) -> str:
    try:
        return str(page.url)
    except Exception:  # noqa: BLE001
        return "(unknown page)"


def safe_title(page: Any) -> str:
    try:
        return str(page.title())
    except Exception:  # noqa: BLE001
        return ""


def text_snippet(page: Any, limit: int = 500) -> str:
    try:
        text = page.inner_text("body", timeout=2_000)
    except Exception:  # noqa: BLE001
        return ""
    return re.sub(r"\s+", " ", text).strip()[:limit]
