"""Running one recipe step on a page, and saying in one clause why a step could not proceed."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smart_conformance import redact
from smart_conformance.browser.recipe import (
    ACTIONS,
    SELECTOR_ACTIONS,
    RecipeError,
    Step,
    load_hook,
)


class LoginStepError(RuntimeError):
    """A recipe step that could not proceed on the payer's page, with the evidence to see why."""

    def __init__(self, index: int, step: str, where: str, url: str, title: str, reason: str,
                 screenshot: Path | None, trace: Path | None = None) -> None:
        self.index, self.step, self.where = index, step, where
        self.url, self.title, self.reason, self.screenshot, self.trace = url, title, reason, screenshot, trace
        shot = f"; screenshot: {screenshot}" if screenshot else ""
        super().__init__(f"login step {index} ({step}) could not proceed on {url} {json.dumps(title)}: "
                         f"{reason}{shot}")

    def __str__(self) -> str:
        """The trace is known only once the attempt has closed its context: named then, as the screenshot is."""
        return super().__str__() + (f"; trace: {self.trace}" if self.trace else "")


class SignInBlocked(LoginStepError):
    """The payer stopped the sign-in itself, not a step: ``kind`` is "lockout" (the member's account is locked: no
    further sign-in of that member is tried), "out-of-band" (a code sent by email or SMS is asked for) or
    "rate-limited" (429 / Retry-After beyond the recipe's back-off budget). The launch is could-not-check."""

    def __init__(self, kind: str, reason: str, *, index: int = 0, step: str = "sign-in", where: str = "login",
                 url: str = "", title: str = "", screenshot: Path | None = None) -> None:
        self.kind = kind
        super().__init__(index, step, where, url, title, reason, screenshot)
        if not url:  # stopped before any page was opened (a member already locked out)
            Exception.__init__(self, reason)


class RateLimited(Exception):
    """The sign-in answered 429 (or 503 with Retry-After): wait ``retry_after`` seconds (None: unsaid) and retry."""

    def __init__(self, status: int, retry_after: float | None, url: str) -> None:
        self.status, self.retry_after, self.url = status, retry_after, url
        super().__init__(f"HTTP {status} at {url} (Retry-After: {retry_after if retry_after is not None else 'none'})")


def _payer_totp() -> type:
    """pyotp's TOTP, taking secrets down to 80 bits: the harness does not choose the secret, the payer's identity
    provider did at enrolment, and 16-character (80-bit) secrets are still issued (pyotp's own floor is 112)."""
    import pyotp

    class PayerTotp(pyotp.TOTP):
        min_secret_length_bits = 80

    return PayerTotp


def totp_code(step: Step, at: float | None = None) -> str:
    """The RFC 6238 code of a ``totp`` step's (resolved) secret at ``at`` (now), computed by pyotp and registered as a
    secret before it is typed. A secret that is not base32 is a recipe error that never shows the secret."""
    options = step.totp
    assert options is not None and step.value is not None
    digest = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}[options.algorithm]
    try:
        code = _payer_totp()(step.value.replace(" ", "").upper(), digits=options.digits, digest=digest,
                          interval=options.period).at(time.time() if at is None else at)
    except Exception:  # noqa: BLE001 - binascii.Error and friends would quote the secret
        raise RecipeError(step.where, "totp.secret", "the secret is not base32 (RFC 4648) of at least 80 bits",
                          "give the secret shown (or encoded in the QR code's otpauth:// URI as 'secret=') when the "
                          "test member's authenticator was enrolled") from None
    redact.register_secret(code)
    return code


def run_totp(page: Any, step: Step, timeout: int) -> list[str]:
    """Type the current code; with ``submit``, press it and, if the code came back refused after the period rolled
    over, type the next period's code once (never more). Returns the codes typed (secrets, for the trace scrub)."""
    options = step.totp
    assert options is not None
    locator = page.locator(step.target)
    locator.wait_for(state="visible", timeout=timeout)
    made = time.time()
    codes = [totp_code(step, made)]
    locator.fill(codes[0], timeout=timeout)
    if options.submit is None:
        return codes
    page.locator(options.submit).click(timeout=timeout)
    settle(page)
    rolled = int(time.time() // options.period) != int(made // options.period)
    try:
        again = rolled and locator.is_visible()
    except Exception:  # noqa: BLE001 - the page navigated on: the code was taken
        again = False
    if again:
        codes.append(totp_code(step))
        locator.fill(codes[-1], timeout=timeout)
        page.locator(options.submit).click(timeout=timeout)
    return codes


def run_step(page: Any, step: Step, values: Mapping[str, str], default_timeout: int) -> list[str]:
    """Do what one step says on the page (waits included), with Playwright's own errors. Returns the one-time
    codes a ``totp`` step typed (nothing for the other steps)."""
    timeout = step.timeout_ms or default_timeout
    action = step.action
    if action == "totp":
        return run_totp(page, step, timeout)
    if action == "goto":
        page.goto(step.target, timeout=max(timeout, 1), wait_until="load")
    elif action in SELECTOR_ACTIONS:
        locator = page.locator(step.target)
        locator.wait_for(state="attached" if action in ("check", "uncheck", "select") else "visible",
                         timeout=timeout)
        if action == "fill":
            locator.fill(step.value or "", timeout=timeout)
        elif action == "click":
            locator.click(timeout=timeout)
        elif action == "check":
            locator.check(timeout=timeout)
        elif action == "uncheck":
            locator.uncheck(timeout=timeout)
        elif action == "select":
            locator.select_option(step.value, timeout=timeout)
        else:
            locator.press(step.value or "", timeout=timeout)
    elif action == "wait_for":
        if step.wait_kind == "url":
            page.wait_for_url(step.target, timeout=timeout, wait_until="commit")
        elif step.wait_kind == "text":
            page.get_by_text(step.target).first.wait_for(state="visible", timeout=timeout)
        else:
            page.locator(step.target).first.wait_for(state="visible", timeout=timeout)
    elif action == "expect_text":
        page.get_by_text(step.target).first.wait_for(state="visible", timeout=timeout)
    elif action == "hook":
        load_hook(step)(page, dict(values))
    else:  # parse_step admits nothing else
        raise RecipeError(step.where, action, "unknown action", "use one of: " + ", ".join(ACTIONS))
    return []


def step_locator(page: Any, step: Step) -> tuple[Any, str]:
    """The element a step waits for, and the state it waits for; (None, "") when the step waits for none."""
    if step.action in SELECTOR_ACTIONS:
        state = "attached" if step.action in ("check", "uncheck", "select") else "visible"
        return page.locator(step.target), state
    if step.action == "wait_for" and step.wait_kind == "selector":
        return page.locator(step.target).first, "visible"
    if (step.action == "wait_for" and step.wait_kind == "text") or step.action == "expect_text":
        return page.get_by_text(step.target).first, "visible"
    return None, ""


def not_found(step: Step, timeout_ms: int) -> str:
    if step.action == "expect_text" or step.wait_kind == "text":
        return f"text {step.target!r} not on the page within {seconds(timeout_ms)}"
    return f"selector not found within {seconds(timeout_ms)}"


def settle(page: Any) -> None:
    """Let a navigation a step started finish loading, so the next screenshot shows the new page."""
    try:
        page.wait_for_load_state("load", timeout=5_000)
    except Exception:  # noqa: BLE001, S110
        pass


def is_timeout(exc: BaseException) -> bool:
    try:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, PlaywrightTimeout)


def seconds(ms: int) -> str:
    return f"{ms / 1000:g}s"


def reason(exc: BaseException, timeout_ms: int, step: Step | None) -> str:
    """One clause: what stopped the step, without Playwright's multi-line call log."""
    if isinstance(exc, RecipeError):
        return str(exc)
    text = str(exc)
    first = text.split("\n", 1)[0].strip()
    first = re.sub(r"^\w+(\.\w+)*: ", "", first)  # "Locator.click: " / "Page.goto: "
    if is_timeout(exc):
        if step is None or step.action == "goto":
            return f"page did not load within {seconds(timeout_ms)}"
        if step.action in SELECTOR_ACTIONS or (step.action == "wait_for" and step.wait_kind == "selector"):
            if "resolved to" in text and "strict mode" not in text:
                return f"selector found but not actionable within {seconds(timeout_ms)} ({first})"
            return f"selector not found within {seconds(timeout_ms)}"
        if step.action in ("expect_text",) or step.wait_kind == "text":
            return f"text {step.target!r} not on the page within {seconds(timeout_ms)}"
        if step.wait_kind == "url":
            return f"URL never matched {step.target!r} within {seconds(timeout_ms)}"
        return f"timed out after {seconds(timeout_ms)}"
    if "strict mode violation" in text:
        count = re.search(r"resolved to (\d+) elements", text)
        return (f"selector matched {count.group(1) if count else 'several'} elements; make it match exactly one")
    if step is not None and step.action == "hook":
        return f"hook raised {type(exc).__name__}: {first}"
    return first or type(exc).__name__

