"""One browser per pytest worker and target (:class:`BrowserSession`), a fresh context per authorization, so no cookie
or consent remembered by one launch leaks into the next, unless the caller asks for single sign-on: then the context
starts from the cookies of the member's last authorization that reached the app (the identity provider's session),
as a member's own browser would. The session owns the browser's lifetime, its TLS trust (which private-CA keys it was
started with) and those kept sessions, which never leave it; each authorization is an :class:`~.attempt.Attempt`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Self

from smart_conformance import tally
from smart_conformance.browser.artifacts import identity
from smart_conformance.browser.attempt import (
    Attempt,
    AuthorizationRequest,
    CertificateRejected,
)
from smart_conformance.browser.chromium import (
    ChromiumChoice,
    RemoteBrowser,
    acquire_playwright,
    find_chromium,
    release_playwright,
    remote_browser,
    start_browser,
)
from smart_conformance.browser.pages import AuthorizationResult
from smart_conformance.browser.pinning import Pins, TlsMode
from smart_conformance.browser.recipe import (
    DEFAULT_STEP_TIMEOUT_MS,
    SignInGuards,
    Step,
    load_hook,
)
from smart_conformance.browser.steps import LoginStepError, RateLimited, SignInBlocked
from smart_conformance.redact import secret_values


class BrowserSession:
    """One Chromium (per pytest worker), one fresh context per :meth:`authorize`.

    ``ca_bundle``: the target's private CA. Origins are verified against it in Python and their keys pinned in
    Chromium, by relaunching it when a new origin is first met; ``origins`` known in advance (the FHIR base, the
    authorization endpoint) are pinned at start.
    ``env``: where ``SMART_CONFORMANCE_BROWSER_WS`` / ``SMART_CONFORMANCE_CDP_URL`` (a remote browser) and
    ``SMART_CONFORMANCE_CHROMIUM`` are read (the process environment by default).
    """

    def __init__(self, *, ca_bundle: Path | str | None = None, headless: bool = True,
                 step_timeout_ms: int = DEFAULT_STEP_TIMEOUT_MS, tls_fallback: bool = True,
                 viewport: tuple[int, int] = (1000, 800), env: Mapping[str, str] | None = None,
                 origins: Iterable[str] = ()) -> None:
        self.ca_bundle = Path(ca_bundle) if ca_bundle else None
        self.origins = tuple(origins)  # known before the first launch: pinned at start, so no relaunch on first use
        self.headless = headless
        self.step_timeout_ms = step_timeout_ms
        self.tls_fallback = tls_fallback
        self.viewport = {"width": viewport[0], "height": viewport[1]}
        self.env = env
        self.choice: ChromiumChoice | None = None
        self.remote: RemoteBrowser | None = None
        self.pins = Pins(self.ca_bundle)
        self._playwright: Any = None
        self._browser: Any = None
        self._launches = 0
        # What stops a sign-in (lockout / out-of-band markers, the back-off budget): the launcher sets the recipe's.
        self.guards = SignInGuards()
        # Members whose account a lockout page was seen for (username → why): no further sign-in is tried for them.
        self.locked_out: dict[str, str] = {}
        self.backoffs: list[tuple[str, float]] = []  # (where, seconds waited) per 429 / Retry-After honoured
        self.tally_as: str | None = None  # the target whose run tally counts those waits (the launcher sets it)
        self._sessions: dict[str, Any] = {}  # per member: the storage state (cookies) after their last authorization

    # lifecycle -------------------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._playwright = acquire_playwright()  # first: find_chromium's managed-browser probe reuses this driver
        try:
            self.remote = remote_browser(self.env)
            if self.remote is None:
                self.choice = find_chromium(env=self.env)
            for origin in self.origins:
                self.pins.verify(origin)
            self._launch()
        except BaseException:
            self._playwright = None
            release_playwright()
            raise

    def close(self) -> None:
        if self._browser is not None:
            try:
                self._browser.close()  # a browser reached over CDP is only disconnected from, not closed
            finally:
                self._browser = None
        if self._playwright is not None:
            self._playwright = None
            release_playwright()

    @property
    def browser(self) -> Any:
        """The running Playwright ``Browser`` (for callers that need a page of their own)."""
        if self._browser is None:
            raise RuntimeError("BrowserSession is not started (use it as a context manager)")
        return self._browser

    @property
    def launches(self) -> int:
        """How many times Chromium was started (a relaunch happens when a new private-CA origin must be pinned)."""
        return self._launches

    def describe(self) -> str:
        """Which browser runs: the local Chromium chosen, or the remote endpoint."""
        where = self.remote or self.choice
        return where.describe() if where else "(not started)"

    def has_session(self, key: str) -> bool:
        """Whether an identity-provider session is kept for ``key`` (a member), to start an authorization from."""
        return key in self._sessions

    def forget_session(self, key: str) -> None:
        self._sessions.pop(key, None)

    @property
    def can_pin(self) -> bool:
        """Whether the private CA's key pins reach the browser (not for a Chromium reached over CDP)."""
        return self.remote is None or self.remote.can_pin

    def _launch(self) -> None:
        where = self.remote or self.choice
        assert where is not None and self._playwright is not None
        if self._browser is not None:
            self._browser.close()
        pins = self.pins.keys
        self._browser = start_browser(self._playwright, where, pins, self.headless)
        self.pins.launched = pins
        self._launches += 1

    def _trust(self, url: str) -> bool:
        verified = self.pins.verify(url)
        if verified and self.can_pin and self.pins.keys != self.pins.launched:
            self._launch()
        return verified

    def _pin_new(self, origins: set[str]) -> bool:
        """Pin origins whose certificate Chromium refused but which verify against the CA bundle; True if any."""
        for origin in origins:
            self.pins.verify(origin)
        if not self.can_pin or self.pins.keys <= self.pins.launched:
            return False
        self._launch()
        return True

    def _unpinnable(self) -> str:
        """For a remote browser: why a private-CA origin that verified in Python may still be refused, and the fix."""
        if self.remote is None:
            return ""
        if self.remote.kind == "cdp":
            return (f"the harness cannot pin a private CA in a browser it did not start ({self.remote.env}). Fix: "
                    "start that Chromium with --ignore-certificate-errors-spki-list={pins}, or add the CA to its "
                    "trust store")
        return (f"the browser behind {self.remote.env} did not apply the harness's pin. Fix: start 'playwright "
                "run-server' with --unsafe (it then applies the harness's launch arguments), or start the remote "
                "browser with --ignore-certificate-errors-spki-list={pins}, or add the CA to its trust store")

    # the authorization -----------------------------------------------------------------------------------------

    def authorize(self, url: str, *, redirect_uri: str, steps: Sequence[Step] = (),
                  values: Mapping[str, str] | None = None, artifacts_dir: Path | str,
                  expect_redirect: bool = True, method: Literal["GET", "POST"] = "GET",
                  form: Mapping[str, str] | None = None, keep_trace: bool = False,
                  step_timeout_ms: int | None = None, settle_ms: int = 500,
                  redact_url: Callable[[str], str] = identity, redact_text: Callable[[str], str] = identity,
                  secrets: Iterable[str | None] = (), name: str = "authorize", negative: bool = False,
                  control_pages: Sequence[str | None] | None = None, session_key: str | None = None,
                  reuse_session: bool = False, sign_in_steps: int = 0,
                  sign_in_refusal: str = "") -> AuthorizationResult:
        """Open ``url`` (or POST ``form`` to it) in a fresh context, run ``steps``, capture the redirect.

        ``expect_redirect=False`` is for negative tests: the result says whether the browser reached the
        redirect_uri anyway, with the final page's URL, HTTP status, title and a text snippet.
        The server's answer is taken as final as soon as it is: a redirect captured, or an error status (4xx/5xx,
        an empty body included) on a loaded page with no redirect. ``negative``: a step that does not match ends the
        authorization (``stopped_at``) instead of raising, early when the page is settled and is not the one the
        positive control ran that step on (``control_pages``, origin + path per step); the launch judges it.
        Otherwise a step that cannot proceed raises :class:`LoginStepError` (except before any step ran, when the
        authorization request itself was answered with an error status: that is the server's refusal, returned).

        Single sign-on: ``session_key`` (the member) keeps the context's cookies after an authorization that reached
        the redirect_uri; ``reuse_session`` starts from them, and the first ``sign_in_steps`` steps are skipped when
        the server goes straight on (decided by what shows first, not by a timeout). ``sign_in_refusal``: the sign-in
        page shown anyway may not be filled in (the sign-in budget is spent), and this says why.
        """
        if self._browser is None:
            raise RuntimeError("BrowserSession is not started (use it as a context manager)")
        values = dict(values or {})
        member = values.get("member.username", "")
        if member and member in self.locked_out:
            raise SignInBlocked("lockout", f"not signing in: {self.locked_out[member]}")
        resolved = [step.resolve(values) for step in steps]  # placeholder errors before any browsing
        secrets = [*secrets, *(step.value for step in resolved if step.action == "totp")]
        for step in resolved:
            if step.action == "hook":
                load_hook(step)
        directory = Path(artifacts_dir)
        request = AuthorizationRequest(
            url=url, redirect_uri=redirect_uri, written=list(steps), steps=resolved, values=values,
            directory=directory, expect_redirect=expect_redirect, method=method, form=form, keep_trace=keep_trace,
            timeout=step_timeout_ms or self.step_timeout_ms, settle_ms=settle_ms, redact_url=redact_url,
            redact_text=redact_text, hidden=secret_values(values, secrets), name=name, negative=negative,
            control_pages=list(control_pages or ()), guards=self.guards,
            storage_state=self._sessions.get(session_key) if session_key and reuse_session else None,
            sign_in_steps=sign_in_steps, sign_in_refusal=sign_in_refusal,
            keep_session=(lambda state: self._sessions.__setitem__(session_key, state)) if session_key else None)
        try:
            result = self._authorize(request, url, directory, name)
        except SignInBlocked as exc:
            if exc.kind == "lockout" and member:
                self.locked_out[member] = str(exc.reason)
            raise
        if result.blocked and member:
            self.locked_out[member] = result.blocked
        return result

    def _authorize(self, request: AuthorizationRequest, url: str, directory: Path, name: str) -> AuthorizationResult:
        """One authorization, run again after the back-off a 429 / Retry-After on the sign-in asked for (within the
        recipe's budget, ``guards.max_backoff_s``; beyond it the launch is stopped, naming the limit)."""
        waited = 0.0
        while True:
            try:
                return self._attempts(request, url, directory, name)
            except RateLimited as limited:
                budget = self.guards.max_backoff_s
                wait = limited.retry_after if limited.retry_after is not None else 1.0
                if waited + wait > budget:
                    raise SignInBlocked(
                        "rate-limited", f"the sign-in answered HTTP {limited.status} at {limited.url} (Retry-After: "
                        f"{limited.retry_after if limited.retry_after is not None else 'none'}) after {waited:g}s of "
                        f"back-off; waiting {wait:g}s more would pass the recipe's budget of {budget:g}s "
                        "(login.rate_limit.max_wait_s). Fix: run when the payer's sign-in is less busy, ask for a "
                        "higher limit for the test member, or raise max_wait_s") from None
                self.backoffs.append((limited.url, wait))
                if self.tally_as:
                    tally.rate_limited(self.tally_as, wait)
                time.sleep(wait)  # the server said when to come back (RFC 9110 §10.2.3); the budget bounds it
                waited += wait

    def _attempts(self, request: AuthorizationRequest, url: str, directory: Path, name: str) -> AuthorizationResult:
        pinned = self._trust(url)
        mode: TlsMode = "spki-pin" if pinned and self.can_pin else "system-trust"

        def attempt(tls_mode: TlsMode) -> AuthorizationResult:
            # The ignore-https-errors fallback is for a local Chromium only: a remote one must trust the CA itself.
            return Attempt(self._browser, self.viewport, self.pins, request, tls_mode,
                           fallback=self.tls_fallback and self.remote is None, unpinnable=self._unpinnable()).run()

        # An IdP may send the browser on to another origin of the private PKI (a separate login host): when a
        # certificate failed there, verify that origin in Python, pin it, and run the authorization again.
        for _ in range(4):
            self.pins.new_attempt()
            try:
                result = attempt(mode)
            except CertificateRejected:
                # Chromium did not honour the pin; the origin verified in Python against the configured CA, so
                # ignoring certificate errors in this one context trusts nothing Python did not check.
                return attempt("ignore-https-errors-after-python-verify")
            except LoginStepError:
                if self._pin_new(self.pins.cert_failures):
                    (directory / f"{name}-trace.zip").unlink(missing_ok=True)
                    continue
                raise
            if result.failed and self._pin_new(self.pins.cert_failures):
                (directory / f"{name}-trace.zip").unlink(missing_ok=True)
                continue
            return result
        return result
