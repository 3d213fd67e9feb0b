"""Running one recipe step on a page, and saying in one clause why a step could not proceed."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


def run_step(page: Any, step: Step, values: Mapping[str, str], default_timeout: int) -> None:
    """Do what one step says on the page (waits included), with Playwright's own errors."""
    timeout = step.timeout_ms or default_timeout
    action = step.action
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

