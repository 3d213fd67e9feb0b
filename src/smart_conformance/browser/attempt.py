"""One authorization attempt in a fresh browser context: open the authorization URL (or POST to it), run the recipe
steps, and stop as soon as the server's answer is final (a redirect captured, an error status on a loaded page, a
page that settled elsewhere than where the positive control ran a step).

The redirect to the app is captured *inside* the browser (a CDP ``Fetch`` interception on the redirect_uri), so no
callback listener, public host or port is needed, and the code never leaves the browser for the network.
Playwright's own ``route`` is not used for this: it is not consulted for the target of an HTTP redirect.
"""

from __future__ import annotations

import base64
import html
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from smart_conformance import redact
from smart_conformance.browser.artifacts import (
    Screenshot,
    scrub_trace,
    slug,
    take_screenshot,
)
from smart_conformance.browser.pages import (
    PROTECTIVE_HEADERS,
    AuthorizationResult,
    Hop,
    PageDocument,
    PageForm,
    SetCookie,
    page_forms,
    page_key,
    response_location,
    response_params_located,
    safe_title,
    safe_url,
    text_snippet,
)
from smart_conformance.browser.pinning import Pins, TlsMode, origin_of
from smart_conformance.browser.recipe import SignInGuards, Step
from smart_conformance.browser.steps import (
    LoginStepError,
    RateLimited,
    SignInBlocked,
    is_timeout,
    not_found,
    reason,
    run_step,
    seconds,
    settle,
    step_locator,
)
from smart_conformance.http import retry_after_seconds  # the one Retry-After reader (RFC 9110 §10.2.3)

# Responses whose Set-Cookie headers are recorded: pages and the script fetches of a sign-in built by script.
COOKIE_CARRIERS = ("document", "xhr", "fetch")
# An optional step whose element is not there is skipped as soon as a later step's element shows, the redirect is
# captured, or the page has loaded and the network stayed quiet this long (never by waiting out its timeout).
OPTIONAL_QUIET_S = 1.0
OPTIONAL_SAME_PAGE_QUIET_S = 3.0
# How long a page must have been quiet before its text is read for a lockout / out-of-band marker.
MARKER_QUIET_S = 1.0
CAPTURED_PAGE = b"<!doctype html><title>redirect captured</title><p>smart-conformance captured the redirect.</p>"


class CertificateRejected(Exception):
    """Chromium refused a certificate that Python verified: try the ignore-https-errors fallback."""


@dataclass(frozen=True)
class AuthorizationRequest:
    """What one authorization is asked to do, as :meth:`BrowserSession.authorize` was called (steps resolved)."""

    url: str
    redirect_uri: str
    written: Sequence[Step]  # the steps as written (for messages: placeholders, never the filled values)
    steps: Sequence[Step]  # the same steps, placeholders resolved
    values: Mapping[str, str] = field(repr=False)
    directory: Path
    expect_redirect: bool
    method: str
    form: Mapping[str, str] | None = field(repr=False)
    keep_trace: bool
    timeout: int
    settle_ms: int
    redact_url: Callable[[str], str]
    redact_text: Callable[[str], str]
    hidden: set[str] = field(repr=False)
    name: str
    negative: bool
    control_pages: Sequence[str | None]
    guards: SignInGuards = field(default_factory=SignInGuards)
    # Single sign-on (see BrowserSession.authorize): the cookies to start from, the number of leading sign-in steps
    # the server may let the member skip, why no password may be typed (the sign-in budget), where to keep the session.
    storage_state: Any = field(default=None, repr=False)
    sign_in_steps: int = 0
    sign_in_refusal: str = ""
    keep_session: Callable[[Any], None] | None = field(default=None, repr=False)


@dataclass
class Capture:
    redirect_uri: str
    url: str | None = None
    post_data: str | None = None  # response_mode=form_post: the response is in the body
    fragment: str | None = None  # Chromium never sends the fragment; CDP reports it as urlFragment

    def matches(self, url: str) -> bool:
        """Same scheme, host, port and path as the redirect_uri; any query (the response) is accepted."""
        want, got = urlsplit(self.redirect_uri), urlsplit(url)
        return (want.scheme, want.netloc.lower(), want.path or "/") == (got.scheme, got.netloc.lower(),
                                                                         got.path or "/")

    def see(self, url: str) -> bool:
        if self.url is None and self.matches(url):
            self.url = url
        return self.matches(url)


def _present(locator: Any, state: str) -> bool:
    """Is the element there now (visible, or attached for a checkbox)? A check that never waits."""
    try:
        return bool(locator.first.is_visible()) if state == "visible" else locator.count() > 0
    except Exception:  # noqa: BLE001
        return False  # navigating


def cdp_pattern(redirect_uri: str) -> str:
    base = redirect_uri.split("?", 1)[0].split("#", 1)[0]
    return re.sub(r"([*?\\])", r"\\\1", base) + "*"


class Network:
    """Requests in flight in one browser context, and when the last one started or ended: a page is settled
    when it has loaded and nothing has moved on the network for a moment (a script-rendered form still fetching
    is not settled)."""

    def __init__(self) -> None:
        self.inflight = 0
        self.last = time.monotonic()
        self._lock = threading.Lock()

    def begin(self) -> None:
        with self._lock:
            self.inflight += 1
            self.last = time.monotonic()

    def end(self) -> None:
        with self._lock:
            self.inflight = max(0, self.inflight - 1)
            self.last = time.monotonic()

    def quiet_for(self) -> float:
        with self._lock:
            return 0.0 if self.inflight > 0 else time.monotonic() - self.last


class Attempt:
    """The state of one authorization while it runs: the page and what was seen on it (documents, screenshots,
    steps run or skipped, where it stopped), then one :class:`AuthorizationResult`. Used once, by :meth:`run`.

    ``fallback`` (the session's ``tls_fallback``): a certificate Chromium refused although Python verified and
    pinned it raises :class:`CertificateRejected`, for the caller's ignore-https-errors retry.
    ``unpinnable``: the fix named when the browser runs elsewhere and could not be given the pins.
    """

    def __init__(self, browser: Any, viewport: Mapping[str, int], pins: Pins, request: AuthorizationRequest,
                 mode: TlsMode, *, fallback: bool, unpinnable: str = "") -> None:
        self.browser, self.viewport, self.pins, self.req, self.mode = browser, viewport, pins, request, mode
        self.fallback, self.unpinnable = fallback, unpinnable
        self.capture = Capture(request.redirect_uri)
        self.net = Network()
        self.navigations = 0
        self._navigations_at_done = 0  # main-frame navigations when the last step ran (see _absent)
        self.status: int | None = None  # the last main-frame document that was not a redirect
        self.document_url = ""
        self.documents: list[PageDocument] = []
        self.cookies: list[SetCookie] = []
        self.hops: list[Hop] = []
        self.forms: tuple[PageForm, ...] = ()
        self.shots: list[Screenshot] = []
        self.shot_at = -1
        self.run_steps: list[str] = []
        self.skipped: list[str] = []
        self.step_pages: list[str] = []
        self.failure: LoginStepError | None = None
        self.trace_path: Path | None = None
        self.completed = False
        self.retrying = False
        self.page_url = self.title = self.snippet = ""
        self.last_done = 0
        self.stopped_at: int | None = None
        self.stop_reason = ""
        self.undecided = False  # stopped by a step that timed out, not by an answer of the server: keep the trace
        self.is_settled = False
        self.final_key = ""
        self.located: list[tuple[str, str, str]] = []
        self.redirected = False
        self.context: Any = None
        self.page: Any = None
        self.retry_after: str | None = None  # the last document's Retry-After header
        self.blocked = ""  # a lockout marker seen (on a negative launch, which still returns)
        self._marker_key: tuple[int, float] | None = None
        self._marker_seen: tuple[str, str] | None = None
        self.optional_skips = 0  # optional steps decided absent without waiting out their timeout
        self.session_reused = False
        self.sign_in_shown = False  # single sign-on was tried and the server showed the sign-in page anyway
        self.passed_over: set[int] = set()  # required one-time-code steps the server went on without asking for

    # the run -------------------------------------------------------------------------------------------------

    def run(self) -> AuthorizationResult:
        started = time.perf_counter()
        self._open_context()
        try:
            self._open_authorization()
            self._run_steps()
            if self.stopped_at is None:
                self._await_answer()
            if self.capture.url is None:
                self._shoot("final")
            self.completed = True
        except RateLimited:
            self.retrying = True  # the session waits and runs the authorization again: no trace of this one
            raise
        finally:
            self._finish()
        return self._result(time.perf_counter() - started)

    def _open_context(self) -> None:
        req = self.req
        fallback = self.mode == "ignore-https-errors-after-python-verify"
        self.context = context = self.browser.new_context(ignore_https_errors=fallback, viewport=self.viewport,
                                                          storage_state=req.storage_state)
        context.set_default_timeout(req.timeout)
        context.set_default_navigation_timeout(max(req.timeout, 15_000))
        # DOM snapshots only: the trace is read when a step fails; a screencast of every launch cost time and the
        # steps are screenshotted anyway.
        context.tracing.start(screenshots=False, snapshots=True, sources=False)
        context.on("request", self._requested)
        context.on("requestfailed", self._request_failed)
        context.on("requestfinished", lambda request: self.net.end())
        self.page = context.new_page()
        self._intercept(guard=self.pins.verify if fallback else None)
        self.page.on("framenavigated", self._navigated)
        self.page.on("response", self._responded)

    def _open_authorization(self) -> None:
        req = self.req
        try:
            self._open()
        except CertificateRejected:
            self.retrying = True
            raise
        except Exception as exc:  # noqa: BLE001
            if not (self.status is not None and self.status >= 400 and self.capture.url is None):
                shot = self._shoot("open-failed", force=True)
                why = reason(exc, req.timeout, None) + self._tls_note()
                self.failure = LoginStepError(0, f"open the authorization "
                                              f"{'form POST' if req.method == 'POST' else 'URL'}", "authorize",
                                              req.redact_url(req.url), req.redact_text(safe_title(self.page)), why,
                                              shot.path if shot else None)
                raise self.failure from None
            # An error status with no body makes Chromium raise: the server refused, and that is the answer.

    def _run_steps(self) -> None:
        skip = self._signed_in_already()
        for number, (as_written, step) in enumerate(zip(self.req.written, self.req.steps, strict=True), start=1):
            if self._skip_if_captured(step):
                continue
            if number <= skip:
                self._skip(step, "signed in already: the identity provider's session")
                continue
            if number == 1 and self.sign_in_shown and self.req.sign_in_refusal:
                # The sign-in page is shown but no password may be typed (the sign-in budget is spent).
                if self.req.negative:
                    self._stop(number, step, self.req.sign_in_refusal, undecided=True)
                    return
                self._fail(number, as_written, step, self.req.sign_in_refusal)
            self._shoot(f"before-{number}-{step.action}")
            waited = self._await_target(step, number)
            if self._skip_if_captured(step):
                continue
            if waited is not None:
                problem, decided = waited
                if step.optional and not decided:
                    self._skip(step, f"optional, not present: {problem}")
                    continue
                if number in self.passed_over:  # judged by the check of the second factor, not a broken launch
                    self._skip(step, f"not asked for: {problem}")
                    continue
                if self.req.negative or (decided and self.last_done == 0 and self.status is not None
                                         and self.status >= 400):
                    self._stop(number, step, problem, undecided=not decided)
                    return
                self._fail(number, as_written, step, problem)
            if not self._do(number, as_written, step):
                return

    def _do(self, number: int, as_written: Step, step: Step) -> bool:
        """Run one step; False when the (negative) authorization stops here."""
        req = self.req
        here = page_key(safe_url(self.page))
        try:
            req.hidden.update(run_step(self.page, step, req.values, req.timeout))  # one-time codes typed
            self._done(number, step, here)
            settle(self.page)
        except Exception as exc:  # noqa: BLE001
            if self.capture.url is not None:
                self._done(number, step, here)  # the step's own action led to the redirect
                return True
            if step.optional and is_timeout(exc):
                self._skip(step, "optional, not present")
                return True
            why = reason(exc, step.timeout_ms or req.timeout, step)
            if req.negative:
                self._stop(number, step, why, undecided=True)
                return False
            self._fail(number, as_written, step, why)
        return True

    def _signed_in_already(self) -> int:
        """Single sign-on: with the identity provider's session in the context (``storage_state``), the server may go
        straight to consent or back to the app. Whichever shows first decides (an element of the sign-in steps, an
        element of a later step, the redirect), never a timeout running out. How many leading steps to skip."""
        req = self.req
        count = req.sign_in_steps
        if req.storage_state is None or count <= 0:
            return 0
        sign_in = next((found for s in req.steps[:count] if (found := step_locator(self.page, s))[0] is not None),
                       None)
        if sign_in is None:
            return 0  # no element to recognise the sign-in page by: run the steps as written
        later = next((found for s in req.steps[count:] if (found := step_locator(self.page, s))[0] is not None),
                     None)
        deadline = time.monotonic() + req.timeout / 1000
        while time.monotonic() < deadline:
            if self.capture.url is not None or (later is not None and _present(*later)):
                self.session_reused = True
                return count
            if _present(*sign_in):
                self.sign_in_shown = True
                return 0
            if self._refused_status() or self._settled(1.0):
                return 0  # the sign-in page, or an answer the steps judge as they always do
            self.page.wait_for_timeout(50)
        return 0

    def _await_answer(self) -> None:
        """After the last step: wait for the redirect, or (no redirect expected) for the page to settle."""
        req = self.req
        deadline = time.monotonic() + req.timeout / 1000
        steps, control = req.steps, req.control_pages
        last_page = control[len(steps) - 1] if req.negative and len(control) >= len(steps) and steps else None
        while self.capture.url is None and time.monotonic() < deadline and not self._refused_status():
            self._check_marker(len(req.steps), None)
            if not req.expect_redirect and self._settled(req.settle_ms / 1000):
                here = page_key(safe_url(self.page))
                if not last_page or here != last_page:
                    break  # nothing more is coming: the server showed its answer
            self.page.wait_for_timeout(50)

    # step bookkeeping ----------------------------------------------------------------------------------------

    def _skip_if_captured(self, step: Step) -> bool:
        if self.capture.url is None:
            return False
        self._skip(step, "redirect already captured")
        return True

    def _skip(self, step: Step, why: str) -> None:
        self.skipped.append(f"{step.describe()} ({why})")
        self.step_pages.append("")

    def _done(self, number: int, step: Step, here: str) -> None:
        self.run_steps.append(step.describe())
        self.step_pages.append(self.req.redact_url(here))
        self.last_done = number
        self._navigations_at_done = self.navigations

    def _stop(self, number: int, step: Step, why: str, *, undecided: bool) -> None:
        self.stopped_at, self.stop_reason, self.undecided = number, why, undecided
        self._shoot(f"stopped-{number}-{step.action}", force=True)

    def _fail(self, number: int, as_written: Step, step: Step, why: str) -> NoReturn:
        req = self.req
        shot = self._shoot(f"failed-{number}-{step.action}", force=True)
        self.failure = LoginStepError(
            number, f"{step.where}: {as_written.as_written(req.hidden)}", step.where,
            req.redact_url(safe_url(self.page)), req.redact_text(safe_title(self.page)), why + self._tls_note(),
            shot.path if shot else None)
        raise self.failure from None

    # watching the page ---------------------------------------------------------------------------------------

    def _requested(self, request: Any) -> None:
        self.capture.see(request.url)
        self.net.begin()

    def _request_failed(self, request: Any) -> None:
        self.net.end()
        if "ERR_CERT" in (request.failure or ""):
            self.pins.cert_failures.add(origin_of(request.url))

    def _navigated(self, frame: Any) -> None:
        if frame == self.page.main_frame:
            self.navigations += 1

    def _responded(self, response: Any) -> None:
        """The main frame's document status: how a server that answers without a redirect says no. And every cookie
        the server sets on the way, for the cookie checks (names and attributes only). The status is recorded first:
        reading the cookies is a round trip, and a body-less error makes the navigation raise meanwhile."""
        try:
            if not response.request.is_navigation_request() or response.frame != self.page.main_frame:
                self._set_cookies(response)
                return
            status = int(response.status)
        except Exception:  # noqa: BLE001
            return
        self._document(response, status)
        self._set_cookies(response)

    def _document(self, response: Any, status: int) -> None:
        if 300 <= status < 400:
            self.hops.append(Hop(self.req.redact_url(page_key(response.url)), status, response.request.method))
        else:
            self.status, self.document_url = status, response.url
            try:
                self.retry_after = response.headers.get("retry-after")
            except Exception:  # noqa: BLE001
                self.retry_after = None
            if not self.capture.matches(response.url):
                headers = response.headers
                self.documents.append(PageDocument(self.req.redact_url(response.url), status,
                                                   {k: headers[k] for k in PROTECTIVE_HEADERS if k in headers}))

    def _set_cookies(self, response: Any) -> None:
        try:
            if self.capture.matches(response.url) or response.request.resource_type not in COOKIE_CARRIERS:
                return
            headers = response.header_values("set-cookie")  # response.headers leaves cookies out
        except Exception:  # noqa: BLE001
            return  # the page navigated away meanwhile: evidence is best effort
        where = self.req.redact_url(page_key(response.url))
        self.cookies += [SetCookie.parse(where, header) for header in headers]

    def _shoot(self, label: str, force: bool = False) -> Screenshot | None:
        if self.capture.url is not None and not force:
            return None  # the captured redirect is our own placeholder page
        if not force and self.shot_at == self.navigations:
            return None
        self.shot_at = self.navigations
        name = f"{self.req.name}-{len(self.shots) + 1:02d}-{slug(label)}"
        try:
            shot = take_screenshot(self.page, self.req.directory, name, self.req.redact_url)
        except Exception:  # noqa: BLE001
            return None  # evidence is best effort; never hide the real outcome behind a screenshot error
        self.shots.append(shot)
        return shot

    def _loaded(self) -> bool:
        if safe_url(self.page).startswith("chrome-error:"):
            return True  # Chromium's own page for a body-less error status: nothing more will load
        try:
            return self.page.evaluate("document.readyState") == "complete"
        except Exception:  # noqa: BLE001
            return False  # navigating

    def _settled(self, quiet: float = 0.5) -> bool:
        return self._loaded() and self.net.quiet_for() >= quiet

    def _refused_status(self) -> bool:
        self._check_rate_limit()
        return self.status is not None and self.status >= 400 and self.capture.url is None and self._loaded()

    def _check_rate_limit(self) -> None:
        """A 429 (or a 503 with Retry-After) on a sign-in page is never the server's answer: the session backs off."""
        status = self.status
        if self.capture.url is None and (status == 429 or (status == 503 and self.retry_after)):
            raise RateLimited(status, retry_after_seconds(self.retry_after),
                              self.req.redact_url(page_key(self.document_url or safe_url(self.page))))

    def _marker(self) -> tuple[str, str] | None:
        """A lockout or out-of-band marker on the settled page: (kind, what matched); read once per page state."""
        key = (self.navigations, round(self.net.last, 3))
        if key == self._marker_key:
            return self._marker_seen
        self._marker_key, self._marker_seen = key, None
        guards = self.req.guards
        try:
            text = self.page.inner_text("body", timeout=1_000).lower()
            for kind, marker in (("lockout", guards.lockout), ("out-of-band", guards.out_of_band)):
                found = next((repr(t) for t in marker.texts if t in text), None) or next(
                    (f"selector {s!r}" for s in marker.selectors if self.page.locator(s).count()), None)
                if found:
                    self._marker_seen = (kind, found)
                    break
        except Exception:  # noqa: BLE001 - navigating: read again when the page is quiet
            self._marker_key = None
        return self._marker_seen

    def _check_marker(self, number: int, step: Step | None, quiet: float = MARKER_QUIET_S) -> str | None:
        """Stop at once on a lockout or out-of-band page: a positive launch raises :class:`SignInBlocked`; a negative
        one records a lockout (the session stops that member's later sign-ins) and returns why, to stop there."""
        if not self._settled(quiet):
            return None
        seen = self._marker()
        if seen is None:
            return None
        kind, found = seen
        if kind == "lockout":
            why = (f"the sign-in showed the recipe's lockout marker ({found}): the account is locked; no further "
                   "sign-in of this member is tried in this run. Fix: unlock the test member (or wait out the "
                   "lock) and check that the run's wrong-password check stays under the payer's lockout threshold")
            self.blocked = why
        else:
            why = (f"the sign-in asks for a one-time code sent by email or SMS ({found}), which the harness cannot "
                   "read. Fix: enrol a TOTP authenticator for the test member and give the recipe a 'totp' step "
                   "(README: one-time codes)")
        if self.req.negative:
            return why
        shot = self._shoot(f"blocked-{kind}", force=True)
        label = f"{step.where}: {step.describe()}" if step is not None else "after the last step"
        self.failure = SignInBlocked(kind, why, index=number, step=label, where=step.where if step else "login",
                                     url=self.req.redact_url(safe_url(self.page)),
                                     title=self.req.redact_text(safe_title(self.page)),
                                     screenshot=shot.path if shot else None)
        raise self.failure

    def _absent(self, number: int) -> str | None:
        """An optional step's element is not here and will not come: a later step's element is on the page, or the
        page has settled without it."""
        for later in self.req.steps[number:]:
            locator, state = step_locator(self.page, later)
            try:
                if locator is not None and (locator.first.is_visible() if state == "visible"
                                            else locator.count() > 0):
                    return f"the element of {later.describe()} came first"
            except Exception:  # noqa: BLE001, S110 - navigating
                pass
            if not later.optional:
                break
        # A quiet page decides only once the last step's action has led somewhere: right after a click that submits,
        # the old page is still loaded and quiet until the browser sends the form, which on a loaded machine can take
        # longer than a second. A page the last step did not leave gets a longer quiet (a script may still add it).
        moved = self.navigations != self._navigations_at_done
        quiet = OPTIONAL_QUIET_S if moved else OPTIONAL_SAME_PAGE_QUIET_S
        if self._settled(quiet):
            return f"the page settled without it ({seconds(quiet * 1000)} quiet)"
        return None

    def _factor_passed_over(self, number: int, step: Step) -> str | None:
        """A required one-time-code step the server did not ask for: after the previous step the browser settled on
        another page, without the code field, showing a later step's element (the consent page, say). The launch goes
        on (the check of the second factor judges it) instead of waiting out the step's timeout. None: not so, or not
        yet. A page that stays where the previous step ran never counts: the code page may still be coming."""
        if step.action != "totp" or step.optional or self.last_done == 0 or not self._settled():
            return None
        here = self.req.redact_url(page_key(safe_url(self.page)))
        if here == self.step_pages[self.last_done - 1]:
            return None
        locator, state = step_locator(self.page, step)
        if locator is not None and _present(locator, state):
            return None
        for later in self.req.steps[number:]:
            found = step_locator(self.page, later)
            if found[0] is not None and _present(*found):
                return f"the server went on to {here} and its element of {later.describe()} without the code page"
            if not later.optional:
                break
        return None

    def _off_path(self, number: int) -> bool:
        """The page is not where the positive control ran this step (only known on a negative launch)."""
        control = self.req.control_pages
        if not self.req.negative or number > len(control) or not control[number - 1]:
            return False
        return page_key(safe_url(self.page)) != control[number - 1]

    def _await_target(self, step: Step, number: int) -> tuple[str, bool] | None:
        """Wait for the step's element, watching for the server's answer meanwhile.

        None: it is there (or the step has no element to wait for). Otherwise why the wait ended, and whether
        that was the server deciding (an error status, another page than the control's) or just time running out.
        """
        locator, state = step_locator(self.page, step)
        if locator is None:
            return None
        limit = step.timeout_ms or self.req.timeout
        deadline = time.monotonic() + limit / 1000
        grace: float | None = None
        while True:
            if self.capture.url is not None:
                return "the redirect was captured", True
            if self._refused_status():
                self._check_marker(number, step, quiet=0.0)  # a lockout page answered with an error status
                return f"the server answered HTTP {self.status} without a redirect", True
            stopped = self._check_marker(number, step)
            if stopped is not None:
                return stopped, self.blocked != ""
            if step.optional:
                absent = self._absent(number)
                if absent is not None:
                    self.optional_skips += 1
                    return absent, False
            passed = self._factor_passed_over(number, step)
            if passed is not None:
                self.passed_over.add(number)
                return passed, False
            if self._off_path(number) and self._settled():
                grace = grace or time.monotonic() + 1.0
                if time.monotonic() >= grace:
                    return ("the page settled elsewhere than where the positive control found this step "
                            f"({self.req.control_pages[number - 1]})"), True
            else:
                grace = None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return not_found(step, limit), False
            try:
                locator.wait_for(state=state, timeout=max(1, int(min(0.25, remaining) * 1000)))
                return None
            except Exception as exc:  # noqa: BLE001
                if not is_timeout(exc):
                    return None  # e.g. several matches: the step itself raises it with the usual words

    # opening, intercepting, finishing ------------------------------------------------------------------------

    def _intercept(self, guard: Callable[[str], bool] | None = None) -> None:
        """Stop the request to the redirect_uri inside Chromium and answer it with a placeholder page.

        CDP ``Fetch`` sees the target of an HTTP redirect (Playwright's ``route`` does not), so the code is captured
        whether the server redirects with 302/303, a meta refresh, a script or a form post.
        ``guard`` (the ignore-https-errors fallback only): every https request must go to an origin that verified
        against the CA bundle in Python; any other is failed before it leaves the browser.
        """
        cdp = self.context.new_cdp_session(self.page)
        capture, blocked = self.capture, self.pins.blocked
        body = base64.b64encode(CAPTURED_PAGE).decode("ascii")
        patterns = [{"urlPattern": cdp_pattern(capture.redirect_uri), "requestStage": "Request"}]
        if guard is not None:
            patterns.append({"urlPattern": "https://*", "requestStage": "Request"})

        def paused(event: dict[str, Any]) -> None:
            request_id = event["requestId"]
            try:
                request = event["request"]
                if capture.see(request["url"]):
                    if capture.fragment is None and request.get("urlFragment"):
                        capture.fragment = str(request["urlFragment"]).lstrip("#")
                    if request.get("method") == "POST" and capture.post_data is None:
                        capture.post_data = request.get("postData") or ""
                    cdp.send("Fetch.fulfillRequest", {
                        "requestId": request_id, "responseCode": 200, "body": body,
                        "responseHeaders": [{"name": "Content-Type", "value": "text/html; charset=utf-8"},
                                            {"name": "Cache-Control", "value": "no-store"}]})
                elif guard is not None and request["url"].startswith("https://") and not guard(request["url"]):
                    blocked.add(origin_of(request["url"]))
                    cdp.send("Fetch.failRequest", {"requestId": request_id, "errorReason": "AccessDenied"})
                else:
                    cdp.send("Fetch.continueRequest", {"requestId": request_id})
            except Exception:  # noqa: BLE001, S110
                pass  # the page or context is closing

        cdp.on("Fetch.requestPaused", paused)
        cdp.send("Fetch.enable", {"patterns": patterns})

    def _open(self) -> None:
        req, page = self.req, self.page
        try:
            if req.method.upper() == "POST":
                inputs = "".join(f'<input type="hidden" name="{html.escape(k, quote=True)}" '
                                 f'value="{html.escape(v, quote=True)}">' for k, v in (req.form or {}).items())
                page.set_content(f'<!doctype html><title>authorize (POST)</title><form method="post" '
                                 f'action="{html.escape(req.url, quote=True)}" '
                                 f'enctype="application/x-www-form-urlencoded">{inputs}</form>')
                with page.expect_navigation(wait_until="load"):
                    page.evaluate("document.forms[0].submit()")
            else:
                page.goto(req.url, wait_until="load")
        except Exception as exc:
            if "ERR_CERT" in str(exc) and self.mode == "spki-pin" and self.fallback and self.pins.pins_ignored():
                raise CertificateRejected() from exc
            raise

    def _tls_note(self) -> str:
        return self.pins.note(self.unpinnable)

    def _finish(self) -> None:
        """Keep the trace when it is evidence (a failure, or asked for), read the final page, close the context."""
        req, capture = self.req, self.capture
        self.redirected = redirected = capture.url is not None
        self.located = response_params_located(capture.url, capture.post_data, capture.fragment) \
            if capture.url else []
        failed = self.failure is not None or not self.completed or redirected != req.expect_redirect \
            or self.undecided
        signed_in = self.session_reused or self._password_submitted()
        if redirected and signed_in and req.keep_session is not None and self.failure is None:
            try:  # the identity provider's session (cookies) for the member's next authorization
                req.keep_session(self.context.storage_state())
            except Exception:  # noqa: BLE001, S110
                pass  # no session kept: the next authorization signs in again
        if (failed or req.keep_trace) and not self.retrying:
            self._keep_trace()
        else:
            try:
                self.context.tracing.stop()
            except Exception:  # noqa: BLE001, S110
                pass
        if self.failure is not None:
            self.failure.trace = self.trace_path
        if self.completed:
            page = self.page
            self.page_url = req.redact_url(safe_url(page))
            self.title = req.redact_text(safe_title(page))
            self.snippet = "" if redirected else req.redact_text(text_snippet(page))
            self.forms = () if redirected else page_forms(page)
            self.is_settled = redirected or self._settled(0.0)
            self.final_key = req.redact_url(page_key(safe_url(page)))
        self.context.close()

    def _keep_trace(self) -> None:
        req = self.req
        req.directory.mkdir(parents=True, exist_ok=True)
        self.trace_path = req.directory / f"{req.name}-trace.zip"
        codes = {v for k, v, _ in self.located if redact.is_secret_field(k)}
        try:
            self.context.tracing.stop(path=str(self.trace_path))
            scrub_trace(self.trace_path, req.hidden | codes)
        except Exception:  # noqa: BLE001
            self.trace_path = None

    def _result(self, seconds: float) -> AuthorizationResult:
        req, capture = self.req, self.capture
        params = [(k, v) for k, v, _ in self.located]
        capture_url = capture.url
        if capture_url and capture.fragment and "#" not in capture_url:
            capture_url = f"{capture_url}#{capture.fragment}"
        return AuthorizationResult(
            redirected=self.redirected, redirect_url=req.redact_url(capture_url) if capture_url else None,
            params=dict(reversed(params)), param_list=params, page_url=self.page_url, title=self.title,
            text_snippet=self.snippet, screenshots=self.shots, trace_path=self.trace_path, tls_mode=self.mode,
            expect_redirect=req.expect_redirect, steps_run=self.run_steps, steps_skipped=self.skipped,
            seconds=seconds, status=self.status,
            document_url=req.redact_url(page_key(self.document_url)) if self.document_url else "",
            steps_done=self.last_done, stopped_at=self.stopped_at, stop_reason=self.stop_reason,
            settled=self.is_settled, step_pages=self.step_pages, page_key=self.final_key, blocked=self.blocked,
            response_in=response_location(self.located), documents=self.documents, forms=self.forms,
            cookies=self.cookies, hops=self.hops, session_reused=self.session_reused,
            password_submitted=self._password_submitted())

    def _password_submitted(self) -> bool:
        """The last required sign-in step before any one-time code ran: the member's password went to the server
        (right or wrong), whether or not a code page came after it."""
        required = [n for n, step in enumerate(self.req.steps[:self.req.sign_in_steps])
                    if not step.optional and step.action != "totp"]
        return bool(required) and len(self.step_pages) > required[-1] and bool(self.step_pages[required[-1]])
