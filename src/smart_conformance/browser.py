"""Drive a payer's own sign-in and consent pages in headless Chromium, from a recipe in the target YAML.

Why it looks like this:

* One Chromium per worker (:class:`BrowserSession`), a fresh context per authorization, so no cookie or consent
  remembered by one launch leaks into the next.
* The redirect to the app is captured *inside* the browser (a CDP ``Fetch`` interception on the redirect_uri), so
  no callback listener, public host or port is needed, and the code never leaves the browser for the network.
  Playwright's own ``route`` is not used for this: it is not consulted for the target of an HTTP redirect.
* Every page is screenshotted with password inputs masked; a failing step says which step, on which page, why, and
  where its screenshot is, in one line.
* A private CA (``tls.ca_bundle``) is trusted by verifying the origin's leaf in Python first (chain and hostname) and
  then pinning exactly that key in Chromium (``--ignore-certificate-errors-spki-list``). TLS errors are never ignored
  wholesale for targets on the public web PKI.
"""

from __future__ import annotations

import argparse
import base64
import difflib
import hashlib
import html
import importlib
import io
import json
import os
import re
import socket
import ssl
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

# Playwright is imported lazily (inside functions) so recipe parsing works, and its errors read well, without it.

SYSTEM_CHROMIUM_PATHS: tuple[str, ...] = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_ENV = "SMART_CONFORMANCE_CHROMIUM"
# A distribution Chromium runs as root in containers and CI: no sandbox, no GPU, no background chatter.
SYSTEM_CHROMIUM_ARGS: tuple[str, ...] = ("--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                         "--disable-component-update", "--no-first-run")
DEFAULT_STEP_TIMEOUT_MS = 10_000
SECRET_VALUE_KEY = re.compile(r"(?i)password|passwd|secret|otp|token|passcode|\bpin\b")
MASK = "***"
CAPTURED_PAGE = b"<!doctype html><title>redirect captured</title><p>smart-conformance captured the redirect.</p>"

ChromiumKind = Literal["managed", "system", "env", "explicit"]
TlsMode = Literal["system-trust", "spki-pin", "ignore-https-errors-after-python-verify"]


# ----------------------------------------------------------------------------------------------------------------
# Errors


class BrowserUnavailable(RuntimeError):
    """No Chromium that Playwright can drive: the message says how to get one."""


class RecipeError(ValueError):
    """A login recipe that cannot be run, explained in one line: which step, which key, what is wrong, the fix."""

    def __init__(self, where: str, key: str, problem: str, fix: str) -> None:
        self.where, self.key, self.problem, self.fix = where, key, problem, fix
        super().__init__(f"login recipe {where}: {key}: {problem}. Fix: {fix}")


class LoginStepError(RuntimeError):
    """A recipe step that could not proceed on the payer's page, with the evidence to see why."""

    def __init__(self, index: int, step: str, where: str, url: str, title: str, reason: str,
                 screenshot: Path | None, trace: Path | None = None) -> None:
        self.index, self.step, self.where = index, step, where
        self.url, self.title, self.reason, self.screenshot, self.trace = url, title, reason, screenshot, trace
        shot = f"; screenshot: {screenshot}" if screenshot else ""
        super().__init__(f"login step {index} ({step}) could not proceed on {url} {json.dumps(title)}: "
                         f"{reason}{shot}")


# ----------------------------------------------------------------------------------------------------------------
# Finding a Chromium


@dataclass(frozen=True)
class ChromiumChoice:
    """Which Chromium will run. ``path`` None means "Playwright's managed build, at its default place"."""

    path: str | None
    kind: ChromiumKind

    @property
    def launch_args(self) -> tuple[str, ...]:
        return () if self.kind == "managed" else SYSTEM_CHROMIUM_ARGS


# Playwright's sync API allows one driver per thread at a time: sessions in the same thread share it (ref-counted).
_drivers: dict[int, list[Any]] = {}
_drivers_lock = threading.Lock()


def _acquire_playwright() -> Any:
    from playwright.sync_api import sync_playwright

    key = threading.get_ident()
    with _drivers_lock:
        entry = _drivers.get(key)
        if entry is None:
            manager = sync_playwright()
            entry = _drivers[key] = [manager, manager.start(), 0]
        entry[2] += 1
        return entry[1]


def _release_playwright() -> None:
    key = threading.get_ident()
    with _drivers_lock:
        entry = _drivers.get(key)
        if entry is None:
            return
        entry[2] -= 1
        if entry[2] <= 0:
            del _drivers[key]
            entry[0].__exit__(None, None, None)


def _managed_executable() -> str | None:
    """Where Playwright's own Chromium lives, if it was installed (``playwright install chromium``)."""
    try:
        playwright = _acquire_playwright()
    except Exception:  # no or broken driver install: "no managed browser", reported by the caller
        return None
    try:
        path = playwright.chromium.executable_path
    except Exception:
        path = None
    finally:
        _release_playwright()
    return path if path and os.path.isfile(path) else None


def unavailable_message(extra: str = "") -> str:
    return ("no Chromium for the headless SMART launch" + (f" ({extra})" if extra else "") + ". Fix: "
            "run 'python -m playwright install chromium' where downloads are possible; otherwise install your "
            "distribution's Chromium ('apt-get install -y chromium') or set "
            f"{CHROMIUM_ENV}=/path/to/chromium")


def find_chromium(explicit: str | None = None, *, env: Mapping[str, str] | None = None) -> ChromiumChoice:
    """An explicit path or ``$SMART_CONFORMANCE_CHROMIUM`` wins; then Playwright's managed build; then the system's."""
    env = os.environ if env is None else env
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise BrowserUnavailable(unavailable_message(f"the configured browser {explicit} is not an executable"))
        return ChromiumChoice(explicit, "explicit")
    from_env = env.get(CHROMIUM_ENV)
    if from_env:
        if not os.access(from_env, os.X_OK):
            raise BrowserUnavailable(unavailable_message(f"{CHROMIUM_ENV}={from_env} is not an executable"))
        return ChromiumChoice(from_env, "env")
    managed = _managed_executable()
    if managed:
        return ChromiumChoice(managed, "managed")
    for candidate in SYSTEM_CHROMIUM_PATHS:
        if os.access(candidate, os.X_OK):
            return ChromiumChoice(candidate, "system")
    raise BrowserUnavailable(unavailable_message(
        "neither Playwright's managed Chromium nor one of " + ", ".join(SYSTEM_CHROMIUM_PATHS) + " is installed"))


# ----------------------------------------------------------------------------------------------------------------
# Recipes

_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_HOOK = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
ACTIONS = ("goto", "fill", "click", "check", "uncheck", "select", "press", "wait_for", "expect_text", "hook")
MODIFIERS = ("timeout_ms", "optional")
_SELECTOR_ACTIONS = {"fill", "click", "check", "uncheck", "select", "press"}


@dataclass(frozen=True)
class Step:
    """One recipe step. ``bound`` holds values fixed at composition time (``${scope}`` of an untick step)."""

    action: str
    target: str  # selector / URL / text / "module:function" / wait_for's value
    value: str | None = None  # fill/select value, press key
    wait_kind: str | None = None  # wait_for: selector | url | text
    timeout_ms: int | None = None
    optional: bool = False
    where: str = "steps[?]"
    bound: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """Short, secret-free: the step as written (selectors and templates only, never a filled value)."""
        if self.action == "wait_for":
            text = f"wait_for {self.wait_kind} {self.target!r}"
        elif self.action == "press":
            text = f"press {self.value!r} in {self.target!r}"
        else:
            text = f"{self.action} {self.target!r}"
        for name, value in self.bound.items():
            text += f" [{name}={value}]"
        return text

    def as_written(self, secrets: Iterable[str] = ()) -> str:
        """The step as it appears in the YAML, with any literal secret value masked."""
        hidden = {s for s in secrets if s}
        value = MASK if self.value is not None and self.value in hidden else self.value
        if self.action in ("fill", "select"):
            body = f"{{selector: {self.target!r}, value: {value!r}}}"
        elif self.action == "press":
            body = f"{{selector: {self.target!r}, key: {value!r}}}"
        elif self.action == "wait_for":
            body = f"{{{self.wait_kind}: {self.target!r}}}"
        else:
            body = repr(self.target)
        return f"{self.action}: {body}"

    def resolve(self, values: Mapping[str, str]) -> Step:
        """Substitute ``${name}`` placeholders; an unknown name is a recipe error (naming the known ones)."""
        merged = {**values, **self.bound}

        def sub(text: str, key: str) -> str:
            def one(match: re.Match[str]) -> str:
                name = match.group(1).strip()
                if name not in merged:
                    known = ", ".join(sorted(merged)) or "none"
                    close = difflib.get_close_matches(name, list(merged), n=1)
                    hint = f"did you mean '${{{close[0]}}}'? " if close else ""
                    raise RecipeError(self.where, key, f"unknown placeholder '${{{name}}}'",
                                      f"{hint}placeholders available here: {known} (environment variables are "
                                      "interpolated by the config loader, before the recipe runs)")
                return merged[name]
            return _PLACEHOLDER.sub(one, text)

        return replace(self, target=sub(self.target, self.action),
                       value=None if self.value is None else sub(self.value, self.action))


@dataclass(frozen=True)
class Recipe:
    """Sign-in ``steps`` plus ``consent`` scenarios (approve / deny / untick / any other name)."""

    steps: tuple[Step, ...]
    consent: Mapping[str, tuple[Step, ...]] = field(default_factory=dict)
    step_timeout_ms: int = DEFAULT_STEP_TIMEOUT_MS


def _require_str(value: Any, where: str, key: str, what: str, example: str) -> str:
    if not isinstance(value, str) or not value:
        raise RecipeError(where, key, f"expected {what}, got {type(value).__name__} {value!r}",
                          f"write it as {example}")
    return value


def _require_mapping(value: Any, where: str, action: str, keys: Sequence[str], example: str,
                     optional: Sequence[str] = ()) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise RecipeError(where, action, f"expected a mapping with {', '.join(keys)}, got {value!r}",
                          f"write it as {example}")
    unknown = [k for k in value if k not in (*keys, *optional)]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), [*keys, *optional], n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join([*keys, *optional])}"
        raise RecipeError(where, f"{action}.{unknown[0]}", "unknown key", hint)
    return dict(value)


def parse_step(raw: Any, where: str) -> Step:
    """One YAML step (a one-action mapping, plus optional ``timeout_ms`` / ``optional``) to a typed :class:`Step`."""
    if not isinstance(raw, Mapping):
        raise RecipeError(where, "(step)", f"expected a mapping like {{click: '#submit'}}, got {raw!r}",
                          "write each step as '- action: argument'")
    for key in raw:
        if key not in ACTIONS and key not in MODIFIERS:
            close = difflib.get_close_matches(str(key), [*ACTIONS, *MODIFIERS], n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"use one of: {', '.join(ACTIONS)}"
            raise RecipeError(where, str(key), "unknown step action", hint)
    actions = [k for k in raw if k in ACTIONS]
    if len(actions) != 1:
        problem = "no action" if not actions else f"more than one action ({', '.join(actions)})"
        raise RecipeError(where, "(step)", problem, "give exactly one action per step; split it into several steps")
    action = actions[0]
    arg = raw[action]
    timeout = raw.get("timeout_ms")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or not
                                0 < timeout <= 600_000):
        raise RecipeError(where, "timeout_ms", f"expected milliseconds between 1 and 600000, got {timeout!r}",
                          "write e.g. 'timeout_ms: 5000'")
    optional = raw.get("optional", False)
    if not isinstance(optional, bool):
        raise RecipeError(where, "optional", f"expected true or false, got {optional!r}", "write 'optional: true'")
    common = {"timeout_ms": timeout, "optional": optional, "where": where}

    if action in ("goto", "click", "check", "uncheck", "expect_text"):
        what = {"goto": "a URL", "expect_text": "the text to find"}.get(action, "a selector")
        return Step(action, _require_str(arg, where, action, what, f"'{action}: \"...\"'"), **common)
    if action == "hook":
        target = _require_str(arg, where, action, "'module:function'", "'hook: \"my_hooks:answer_totp\"'")
        if not _HOOK.match(target):
            raise RecipeError(where, action, f"{target!r} is not 'module:function'",
                              "name an importable module and a function in it, e.g. 'my_hooks:answer_totp'")
        return Step(action, target, **common)
    if action in ("fill", "select"):
        example = f"'{action}: {{selector: \"#id\", value: \"...\"}}'"
        m = _require_mapping(arg, where, action, ("selector", "value"), example)
        for key in ("selector", "value"):
            if key not in m:
                raise RecipeError(where, f"{action}.{key}", "missing", f"add '{key}: ...'")
        value = m["value"]
        if not isinstance(value, str):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)
            else:
                raise RecipeError(where, f"{action}.value", f"expected text, got {value!r}", "quote the value")
        return Step(action, _require_str(m["selector"], where, f"{action}.selector", "a selector", "'#id'"),
                    value=value, **common)
    if action == "press":
        m = _require_mapping(arg, where, action, ("selector", "key"), "'press: {selector: \"#otp\", key: Enter}'")
        for key in ("selector", "key"):
            if key not in m:
                raise RecipeError(where, f"press.{key}", "missing", f"add '{key}: ...'")
        return Step(action, _require_str(m["selector"], where, "press.selector", "a selector", "'#id'"),
                    value=_require_str(m["key"], where, "press.key", "a key name", "'Enter'"), **common)
    # wait_for
    m = _require_mapping(arg, where, action, ("selector", "url", "text"), "'wait_for: {url: \"**/mfa**\"}'",
                         optional=("timeout_ms",))
    kinds = [k for k in ("selector", "url", "text") if k in m]
    if len(kinds) != 1:
        raise RecipeError(where, action, f"expected exactly one of selector, url, text; got {kinds or 'none'}",
                          "write e.g. 'wait_for: {selector: \"#otp\"}'")
    kind = kinds[0]
    inner_timeout = m.get("timeout_ms")
    if inner_timeout is not None:
        if isinstance(inner_timeout, bool) or not isinstance(inner_timeout, int) or not 0 < inner_timeout <= 600_000:
            raise RecipeError(where, "wait_for.timeout_ms", f"expected milliseconds, got {inner_timeout!r}",
                              "write e.g. 'timeout_ms: 5000'")
        common["timeout_ms"] = inner_timeout
    return Step(action, _require_str(m[kind], where, f"wait_for.{kind}", "text", "'...'"), wait_kind=kind, **common)


def parse_steps(raw: Any, where: str = "steps") -> tuple[Step, ...]:
    if raw is None:
        return ()
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence):
        raise RecipeError(where, "(list)", f"expected a list of steps, got {type(raw).__name__}",
                          "write the steps as a YAML list ('- click: \"#submit\"')")
    return tuple(parse_step(item, f"{where}[{i}]") for i, item in enumerate(raw))


def parse_recipe(login: Any) -> Recipe:
    """From the ``login`` mapping of a target (a dict, or the config loader's ``Login`` object)."""
    if isinstance(login, Recipe):
        return login
    if not isinstance(login, Mapping):
        login = {"steps": getattr(login, "steps", None), "consent": getattr(login, "consent", None),
                 "step_timeout_ms": getattr(login, "step_timeout_ms", None)}
    unknown = [k for k in login if k not in ("steps", "consent", "step_timeout_ms")]
    if unknown:
        raise RecipeError("login", str(unknown[0]), "unknown key", "use steps, consent, step_timeout_ms")
    consent_raw = login.get("consent") or {}
    if not isinstance(consent_raw, Mapping):
        raise RecipeError("login", "consent", "expected a mapping of scenario name to steps",
                          "write 'consent: {approve: [...], deny: [...]}'")
    timeout = login.get("step_timeout_ms") or DEFAULT_STEP_TIMEOUT_MS
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
        raise RecipeError("login", "step_timeout_ms", f"expected milliseconds, got {timeout!r}",
                          "write e.g. 'step_timeout_ms: 10000'")
    return Recipe(steps=parse_steps(login.get("steps"), "login.steps"),
                  consent={str(name): parse_steps(steps, f"login.consent.{name}")
                           for name, steps in consent_raw.items()},
                  step_timeout_ms=timeout)


Scenario = str | tuple[str, Sequence[str]]


def compose_steps(recipe: Recipe, scenario: Scenario = "approve") -> list[Step]:
    """Sign-in steps, then the consent steps of ``scenario``.

    ``("untick", scopes)`` runs the ``untick`` steps once per scope (``${scope}`` bound to it), then ``approve``.
    A target with no consent page may leave ``approve`` out; every other scenario it is asked for must exist.
    """
    steps = list(recipe.steps)
    if isinstance(scenario, tuple):
        name, scopes = scenario
        if name != "untick":
            raise RecipeError("login.consent", name, "only 'untick' takes a list of scopes",
                              "pass ('untick', [scopes]) or a plain scenario name")
        untick = _scenario_steps(recipe, "untick")
        for scope in scopes:
            steps += [replace(step, bound={**step.bound, "scope": scope}) for step in untick]
        return steps + list(recipe.consent.get("approve", ()))
    if scenario == "approve":
        return steps + list(recipe.consent.get("approve", ()))
    return steps + list(_scenario_steps(recipe, scenario))


def _scenario_steps(recipe: Recipe, name: str) -> tuple[Step, ...]:
    if name not in recipe.consent:
        have = ", ".join(recipe.consent) or "none"
        raise RecipeError("login.consent", name, f"no '{name}' scenario in the recipe (have: {have})",
                          f"add 'login.consent.{name}' steps that drive your consent page")
    return recipe.consent[name]


def secret_values(values: Mapping[str, str], extra: Iterable[str | None] = ()) -> set[str]:
    """Values that must never appear in a message or artifact: by key name (password, secret, otp...) plus extra."""
    out = {v for k, v in values.items() if v and SECRET_VALUE_KEY.search(k)}
    return out | {v for v in extra if v}


# ----------------------------------------------------------------------------------------------------------------
# TLS: trusting a private CA in Chromium without ignoring TLS errors


class OriginNotVerified(RuntimeError):
    """The origin's certificate does not verify against the configured CA bundle (chain or hostname)."""


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname or "", port


def verified_spki_sha256(host: str, port: int, ca_bundle: Path | str, timeout: float = 10.0) -> str:
    """Fetch the origin's leaf, verifying chain and hostname against ``ca_bundle``; return its SPKI sha256 (base64).

    That hash is what Chromium's ``--ignore-certificate-errors-spki-list`` pins: only this key is accepted.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ctx = ssl.create_default_context(cafile=str(ca_bundle))
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock, \
                ctx.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise OriginNotVerified(f"https://{host}:{port} does not verify against {ca_bundle}: {exc}") from exc
    if not der:
        raise OriginNotVerified(f"https://{host}:{port} presented no certificate")
    spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


# ----------------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Screenshot:
    path: Path
    url: str  # redacted
    title: str


PROTECTIVE_HEADERS = ("x-frame-options", "content-security-policy", "content-type")


@dataclass(frozen=True)
class PageDocument:
    """A page the browser loaded on the way (a main-frame document, redirects apart), with the headers that say
    whether another site may frame it. Pages are what the member-page checks judge: a browser renders them, so
    a sign-in built by script or spread over several pages is seen as the member sees it."""

    url: str  # redacted
    status: int
    headers: Mapping[str, str]  # the PROTECTIVE_HEADERS present, lower-cased names


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


def _page_forms(page: Any) -> tuple[PageForm, ...]:
    try:
        raw = page.evaluate(_FORMS_JS)
    except Exception:
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
    forms: tuple[PageForm, ...] = field(default=(), repr=False)  # the final page's forms (no redirect only)

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
    def iss(self) -> str | None:
        return self._get("iss")

    @property
    def failed(self) -> bool:
        """The authorization did not end where it was expected to (redirect or no redirect)."""
        return self.redirected != self.expect_redirect


def _identity(value: str) -> str:
    return value


def _slug(text: str, limit: int = 60) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:limit] or "page"


def take_screenshot(page: Any, directory: Path, name: str, redact_url: Callable[[str], str] = _identity,
                    *, mask_passwords: bool = True) -> Screenshot:
    """A PNG of the viewport, password inputs painted over. The URL recorded is redacted (it may carry a code)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    mask = [page.locator("input[type=password]")] if mask_passwords else []
    page.screenshot(path=str(path), mask=mask, animations="disabled", caret="hide", timeout=10_000)
    try:
        title = page.title()
    except Exception:
        title = ""
    return Screenshot(path=path, url=redact_url(page.url), title=title)


def _secret_forms(secret: str) -> set[bytes]:
    forms = {secret, quote_plus(secret), quote(secret, safe=""), json.dumps(secret)[1:-1],
             html.escape(secret, quote=True)}
    return {f.encode("utf-8") for f in forms if len(f) >= 4}


def scrub_trace(path: Path, secrets: Iterable[str]) -> None:
    """Rewrite a trace zip with every known secret (password, code...) masked in every member, in any encoding.

    A Playwright trace records fill() arguments, DOM snapshots with input values and request bodies, so a kept
    trace would otherwise hold the member's password.
    """
    patterns = sorted({form for s in secrets if s for form in _secret_forms(s)}, key=len, reverse=True)
    if not patterns:
        return
    buffer = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            for pattern in patterns:
                data = data.replace(pattern, MASK.encode())
            dst.writestr(info, data)
    path.write_bytes(buffer.getvalue())


# ----------------------------------------------------------------------------------------------------------------
# The session


class _CertificateRejected(Exception):
    """Chromium refused a certificate that Python verified: try the ignore-https-errors fallback."""


@dataclass
class _Capture:
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


def _cdp_pattern(redirect_uri: str) -> str:
    base = redirect_uri.split("?", 1)[0].split("#", 1)[0]
    return re.sub(r"([*?\\])", r"\\\1", base) + "*"


class BrowserSession:
    """One Chromium (per pytest worker), one fresh context per :meth:`authorize`.

    ``ca_bundle``: the target's private CA. Origins are verified against it in Python and their keys pinned in
    Chromium; ``trust_origins`` lists origins to pin at launch (others are pinned, by relaunching, when first met).
    """

    def __init__(self, *, ca_bundle: Path | str | None = None, executable: str | None = None,
                 headless: bool = True, step_timeout_ms: int = DEFAULT_STEP_TIMEOUT_MS,
                 trust_origins: Iterable[str] = (), tls_fallback: bool = True,
                 viewport: tuple[int, int] = (1000, 800)) -> None:
        self.ca_bundle = Path(ca_bundle) if ca_bundle else None
        self.executable = executable
        self.headless = headless
        self.step_timeout_ms = step_timeout_ms
        self.tls_fallback = tls_fallback
        self.viewport = {"width": viewport[0], "height": viewport[1]}
        self.choice: ChromiumChoice | None = None
        self._initial_origins = list(trust_origins)
        self._verified: dict[tuple[str, int], str] = {}  # (host, port) -> spki
        self._verify_errors: dict[tuple[str, int], str] = {}
        self._cert_failures: set[str] = set()
        self._blocked: set[str] = set()
        self._launched_pins: frozenset[str] = frozenset()
        self._playwright: Any = None
        self._browser: Any = None
        self._launches = 0

    # lifecycle -------------------------------------------------------------------------------------------------

    def __enter__(self) -> BrowserSession:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._playwright = _acquire_playwright()  # first: find_chromium's managed-browser probe reuses this driver
        try:
            self.choice = find_chromium(self.executable)
            for origin in self._initial_origins:
                self._verify(origin)
            self._launch()
        except BaseException:
            self._playwright = None
            _release_playwright()
            raise

    def close(self) -> None:
        if self._browser is not None:
            try:
                self._browser.close()
            finally:
                self._browser = None
        if self._playwright is not None:
            self._playwright = None
            _release_playwright()

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

    def _launch(self) -> None:
        assert self.choice is not None and self._playwright is not None
        if self._browser is not None:
            self._browser.close()
        pins = frozenset(self._verified.values())
        args = list(self.choice.launch_args)
        if pins:
            args.append("--ignore-certificate-errors-spki-list=" + ",".join(sorted(pins)))
        executable = None if self.choice.kind == "managed" else self.choice.path
        try:
            self._browser = self._playwright.chromium.launch(executable_path=executable, headless=self.headless,
                                                             args=args)
        except Exception as exc:
            raise BrowserUnavailable(unavailable_message(
                f"{self.choice.kind} Chromium {self.choice.path or ''} did not start: {str(exc).splitlines()[0]}"
            )) from exc
        self._launched_pins = pins
        self._launches += 1

    def _verify(self, url: str) -> bool:
        """Verify (once) an https origin against the CA bundle; True when it verified and is pinned."""
        scheme, host, port = _origin(url)
        if scheme != "https" or self.ca_bundle is None or not host:
            return False
        if (host, port) not in self._verified:
            try:
                self._verified[(host, port)] = verified_spki_sha256(host, port, self.ca_bundle)
            except (OriginNotVerified, OSError) as exc:
                self._verify_errors[(host, port)] = str(exc)
                return False  # not pinned: Chromium will refuse it, and say so
        return True

    def _trust(self, url: str) -> bool:
        verified = self._verify(url)
        if verified and frozenset(self._verified.values()) != self._launched_pins:
            self._launch()
        return verified

    # the authorization -----------------------------------------------------------------------------------------

    def authorize(self, url: str, *, redirect_uri: str, steps: Sequence[Step] = (),
                  values: Mapping[str, str] | None = None, artifacts_dir: Path | str,
                  expect_redirect: bool = True, method: Literal["GET", "POST"] = "GET",
                  form: Mapping[str, str] | None = None, keep_trace: bool = False,
                  step_timeout_ms: int | None = None, settle_ms: int = 500,
                  redact_url: Callable[[str], str] = _identity, redact_text: Callable[[str], str] = _identity,
                  secrets: Iterable[str | None] = (), name: str = "authorize", negative: bool = False,
                  control_pages: Sequence[str | None] | None = None) -> AuthorizationResult:
        """Open ``url`` (or POST ``form`` to it) in a fresh context, run ``steps``, capture the redirect.

        ``expect_redirect=False`` is for negative tests: the result says whether the browser reached the
        redirect_uri anyway, with the final page's URL, HTTP status, title and a text snippet.
        The server's answer is taken as final as soon as it is: a redirect captured, or an error status (4xx/5xx,
        an empty body included) on a loaded page with no redirect. ``negative``: a step that does not match ends the
        authorization (``stopped_at``) instead of raising, early when the page is settled and is not the one the
        positive control ran that step on (``control_pages``, origin + path per step); the launch judges it.
        Otherwise a step that cannot proceed raises :class:`LoginStepError` (except before any step ran, when the
        authorization request itself was answered with an error status: that is the server's refusal, returned).
        """
        if self._browser is None:
            raise RuntimeError("BrowserSession is not started (use it as a context manager)")
        values = dict(values or {})
        resolved = [step.resolve(values) for step in steps]  # placeholder errors before any browsing
        for step in resolved:
            if step.action == "hook":
                _load_hook(step)
        hidden = secret_values(values, secrets)
        directory = Path(artifacts_dir)
        timeout = step_timeout_ms or self.step_timeout_ms
        pinned = self._trust(url)
        mode: TlsMode = "spki-pin" if pinned else "system-trust"

        def attempt(tls_mode: TlsMode) -> AuthorizationResult:
            return self._attempt(url, redirect_uri, list(steps), resolved, values, directory, expect_redirect,
                                 method, form, keep_trace, timeout, settle_ms, redact_url, redact_text, hidden,
                                 name, tls_mode, negative, list(control_pages or ()))

        # An IdP may send the browser on to another origin of the private PKI (a separate login host): when a
        # certificate failed there, verify that origin in Python, pin it, and run the authorization again.
        for _ in range(4):
            self._cert_failures, self._blocked = set(), set()
            try:
                result = attempt(mode)
            except _CertificateRejected:
                # Chromium did not honour the pin; the origin verified in Python against the configured CA, so
                # ignoring certificate errors in this one context trusts nothing Python did not check.
                return attempt("ignore-https-errors-after-python-verify")
            except LoginStepError:
                if self._pin_new(self._cert_failures):
                    (directory / f"{name}-trace.zip").unlink(missing_ok=True)
                    continue
                raise
            if result.failed and self._pin_new(self._cert_failures):
                (directory / f"{name}-trace.zip").unlink(missing_ok=True)
                continue
            return result
        return result

    def _pin_new(self, origins: set[str]) -> bool:
        """Pin origins whose certificate Chromium refused but which verify against the CA bundle; True if any."""
        for origin in origins:
            self._verify(origin)
        if frozenset(self._verified.values()) <= self._launched_pins:
            return False
        self._launch()
        return True

    def _attempt(self, url: str, redirect_uri: str, written: list[Step], steps: list[Step],
                 values: Mapping[str, str], directory: Path, expect_redirect: bool, method: str,
                 form: Mapping[str, str] | None, keep_trace: bool, timeout: int, settle_ms: int,
                 redact_url: Callable[[str], str], redact_text: Callable[[str], str], hidden: set[str], name: str,
                 mode: TlsMode, negative: bool = False,
                 control_pages: Sequence[str | None] = ()) -> AuthorizationResult:
        started = time.perf_counter()
        context = self._browser.new_context(ignore_https_errors=(mode == "ignore-https-errors-after-python-verify"),
                                            viewport=self.viewport)
        context.set_default_timeout(timeout)
        context.set_default_navigation_timeout(max(timeout, 15_000))
        context.tracing.start(screenshots=True, snapshots=True, sources=False)
        capture = _Capture(redirect_uri)
        net = _Network()

        def requested(request: Any) -> None:
            capture.see(request.url)
            net.begin()

        context.on("request", requested)

        def request_failed(request: Any) -> None:
            net.end()
            if "ERR_CERT" in (request.failure or ""):
                parts = urlsplit(request.url)
                self._cert_failures.add(f"{parts.scheme}://{parts.netloc}")

        context.on("requestfailed", request_failed)
        context.on("requestfinished", lambda request: net.end())
        page = context.new_page()
        fallback = mode == "ignore-https-errors-after-python-verify"
        self._intercept(context, page, capture, guard=self._verify if fallback else None)
        navigations = [0]
        document: dict[str, Any] = {"status": None, "url": ""}
        documents: list[PageDocument] = []
        forms: tuple[PageForm, ...] = ()

        def navigated(frame: Any) -> None:
            if frame == page.main_frame:
                navigations[0] += 1

        def responded(response: Any) -> None:
            """The main frame's document status: how a server that answers without a redirect says no."""
            try:
                if not response.request.is_navigation_request() or response.frame != page.main_frame:
                    return
                status = int(response.status)
            except Exception:
                return
            if not 300 <= status < 400:
                document["status"], document["url"] = status, response.url
                if not capture.matches(response.url):
                    headers = response.headers
                    documents.append(PageDocument(redact_url(response.url), status,
                                                  {k: headers[k] for k in PROTECTIVE_HEADERS if k in headers}))

        page.on("framenavigated", navigated)
        page.on("response", responded)
        shots: list[Screenshot] = []
        shot_at = [-1]
        run: list[str] = []
        skipped: list[str] = []
        step_pages: list[str] = []
        failure: LoginStepError | None = None
        trace_path: Path | None = None
        completed = False
        retrying = False
        page_url = title = snippet = ""
        last_done = 0
        stopped_at: int | None = None
        stop_reason = ""
        undecided = False  # stopped by a step that timed out, not by an answer of the server: keep the trace

        def shoot(label: str, force: bool = False) -> Screenshot | None:
            if capture.url is not None and not force:
                return None  # the captured redirect is our own placeholder page
            if not force and shot_at[0] == navigations[0]:
                return None
            shot_at[0] = navigations[0]
            try:
                shot = take_screenshot(page, directory, f"{name}-{len(shots) + 1:02d}-{_slug(label)}", redact_url)
            except Exception:
                return None  # evidence is best effort; never hide the real outcome behind a screenshot error
            shots.append(shot)
            return shot

        def loaded() -> bool:
            if _safe_url(page).startswith("chrome-error:"):
                return True  # Chromium's own page for a body-less error status: nothing more will load
            try:
                return page.evaluate("document.readyState") == "complete"
            except Exception:
                return False  # navigating

        def settled(quiet: float = 0.5) -> bool:
            return loaded() and net.quiet_for() >= quiet

        def refused_status() -> bool:
            status = document["status"]
            return status is not None and status >= 400 and capture.url is None and loaded()

        def off_path(number: int) -> bool:
            """The page is not where the positive control ran this step (only known on a negative launch)."""
            if not negative or number > len(control_pages) or not control_pages[number - 1]:
                return False
            return _page_key(_safe_url(page)) != control_pages[number - 1]

        def await_target(step: Step, number: int) -> tuple[str, bool] | None:
            """Wait for the step's element, watching for the server's answer meanwhile.

            None: it is there (or the step has no element to wait for). Otherwise why the wait ended, and whether
            that was the server deciding (an error status, another page than the control's) or just time running out.
            """
            locator, state = _step_locator(page, step)
            if locator is None:
                return None
            limit = step.timeout_ms or timeout
            deadline = time.monotonic() + limit / 1000
            grace: float | None = None
            while True:
                if capture.url is not None:
                    return "the redirect was captured", True
                if refused_status():
                    return f"the server answered HTTP {document['status']} without a redirect", True
                if off_path(number) and settled():
                    grace = grace or time.monotonic() + 1.0
                    if time.monotonic() >= grace:
                        return ("the page settled elsewhere than where the positive control found this step "
                                f"({control_pages[number - 1]})"), True
                else:
                    grace = None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return _not_found(step, limit), False
                try:
                    locator.wait_for(state=state, timeout=max(1, int(min(0.25, remaining) * 1000)))
                    return None
                except Exception as exc:
                    if not _is_timeout(exc):
                        return None  # e.g. several matches: the step itself raises it with the usual words

        try:
            try:
                self._open(page, url, method, form, mode)
            except _CertificateRejected:
                retrying = True
                raise
            except Exception as exc:
                status = document["status"]
                if not (status is not None and status >= 400 and capture.url is None):
                    shot = shoot("open-failed", force=True)
                    reason = _reason(exc, timeout, None) + self._tls_note()
                    failure = LoginStepError(0, f"open the authorization "
                                             f"{'form POST' if method == 'POST' else 'URL'}", "authorize",
                                             redact_url(url), redact_text(_safe_title(page)), reason,
                                             shot.path if shot else None)
                    raise failure from None
                # An error status with no body makes Chromium raise: the server refused, and that is the answer.
            for number, (as_written, step) in enumerate(zip(written, steps, strict=True), start=1):
                if capture.url is not None:
                    skipped.append(step.describe() + " (redirect already captured)")
                    step_pages.append("")
                    continue
                shoot(f"before-{number}-{step.action}")
                waited = await_target(step, number)
                if capture.url is not None:
                    skipped.append(step.describe() + " (redirect already captured)")
                    step_pages.append("")
                    continue
                if waited is not None:
                    problem, decided = waited
                    if step.optional and not decided:
                        skipped.append(step.describe() + " (optional, not present)")
                        step_pages.append("")
                        continue
                    if negative or (decided and last_done == 0 and document["status"] is not None
                                    and document["status"] >= 400):
                        stopped_at, stop_reason, undecided = number, problem, not decided
                        shoot(f"stopped-{number}-{step.action}", force=True)
                        break
                    shot = shoot(f"failed-{number}-{step.action}", force=True)
                    failure = LoginStepError(
                        number, f"{step.where}: {as_written.as_written(hidden)}", step.where,
                        redact_url(_safe_url(page)), redact_text(_safe_title(page)), problem + self._tls_note(),
                        shot.path if shot else None)
                    raise failure from None
                here = _page_key(_safe_url(page))
                try:
                    self._run_step(page, step, values, timeout)
                    run.append(step.describe())
                    step_pages.append(redact_url(here))
                    last_done = number
                    _settle(page)
                except Exception as exc:
                    if capture.url is not None:
                        run.append(step.describe())  # the step's own action led to the redirect
                        step_pages.append(redact_url(here))
                        last_done = number
                        continue
                    if step.optional and _is_timeout(exc):
                        skipped.append(step.describe() + " (optional, not present)")
                        step_pages.append("")
                        continue
                    if negative:
                        stopped_at, stop_reason = number, _reason(exc, step.timeout_ms or timeout, step)
                        undecided = True
                        shoot(f"stopped-{number}-{step.action}", force=True)
                        break
                    shot = shoot(f"failed-{number}-{step.action}", force=True)
                    failure = LoginStepError(
                        number, f"{step.where}: {as_written.as_written(hidden)}", step.where,
                        redact_url(_safe_url(page)), redact_text(_safe_title(page)),
                        _reason(exc, step.timeout_ms or timeout, step) + self._tls_note(),
                        shot.path if shot else None)
                    raise failure from None
            if stopped_at is None:
                deadline = time.monotonic() + timeout / 1000
                last_page = control_pages[len(steps) - 1] if negative and len(control_pages) >= len(steps) \
                    and steps else None
                while capture.url is None and time.monotonic() < deadline and not refused_status():
                    if not expect_redirect and settled(settle_ms / 1000):
                        here = _page_key(_safe_url(page))
                        if not last_page or here != last_page:
                            break  # nothing more is coming: the server showed its answer
                    page.wait_for_timeout(50)
            if capture.url is None:
                shoot("final")
            completed = True
        finally:
            redirected = capture.url is not None
            located = _response_params_located(capture.url, capture.post_data, capture.fragment) \
                if capture.url else []
            params = [(k, v) for k, v, _ in located]
            failed = failure is not None or not completed or redirected != expect_redirect or undecided
            if (failed or keep_trace) and not retrying:
                directory.mkdir(parents=True, exist_ok=True)
                trace_path = directory / f"{name}-trace.zip"
                try:
                    context.tracing.stop(path=str(trace_path))
                    scrub_trace(trace_path, hidden | {v for k, v in params if k in ("code", "access_token",
                                                                                     "id_token")})
                except Exception:
                    trace_path = None
            else:
                try:
                    context.tracing.stop()
                except Exception:
                    pass
            if failure is not None:
                failure.trace = trace_path
            is_settled = False
            final_key = ""
            if completed:
                page_url = redact_url(_safe_url(page))
                title = redact_text(_safe_title(page))
                snippet = "" if redirected else redact_text(_text_snippet(page))
                forms = () if redirected else _page_forms(page)
                is_settled = redirected or settled(0.0)
                final_key = redact_url(_page_key(_safe_url(page)))
            context.close()
        capture_url = capture.url
        if capture_url and capture.fragment and "#" not in capture_url:
            capture_url = f"{capture_url}#{capture.fragment}"
        return AuthorizationResult(
            redirected=redirected, redirect_url=redact_url(capture_url) if capture_url else None,
            params=dict(reversed(params)), param_list=params, page_url=page_url, title=title,
            text_snippet=snippet, screenshots=shots, trace_path=trace_path, tls_mode=mode,
            expect_redirect=expect_redirect, steps_run=run, steps_skipped=skipped,
            seconds=time.perf_counter() - started, status=document["status"],
            document_url=redact_url(_page_key(document["url"])) if document["url"] else "", steps_done=last_done,
            stopped_at=stopped_at, stop_reason=stop_reason, settled=is_settled, step_pages=step_pages,
            page_key=final_key, response_in=_response_location(located), documents=documents, forms=forms)

    def _intercept(self, context: Any, page: Any, capture: _Capture,
                   guard: Callable[[str], bool] | None = None) -> None:
        """Stop the request to the redirect_uri inside Chromium and answer it with a placeholder page.

        CDP ``Fetch`` sees the target of an HTTP redirect (Playwright's ``route`` does not), so the code is captured
        whether the server redirects with 302/303, a meta refresh, a script or a form post.
        ``guard`` (the ignore-https-errors fallback only): every https request must go to an origin that verified
        against the CA bundle in Python; any other is failed before it leaves the browser.
        """
        cdp = context.new_cdp_session(page)
        body = base64.b64encode(CAPTURED_PAGE).decode("ascii")
        patterns = [{"urlPattern": _cdp_pattern(capture.redirect_uri), "requestStage": "Request"}]
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
                    parts = urlsplit(request["url"])
                    self._blocked.add(f"{parts.scheme}://{parts.netloc}")
                    cdp.send("Fetch.failRequest", {"requestId": request_id, "errorReason": "AccessDenied"})
                else:
                    cdp.send("Fetch.continueRequest", {"requestId": request_id})
            except Exception:
                pass  # the page or context is closing

        cdp.on("Fetch.requestPaused", paused)
        cdp.send("Fetch.enable", {"patterns": patterns})

    def _open(self, page: Any, url: str, method: str, form: Mapping[str, str] | None, mode: TlsMode) -> None:
        try:
            if method.upper() == "POST":
                inputs = "".join(f'<input type="hidden" name="{html.escape(k, quote=True)}" '
                                 f'value="{html.escape(v, quote=True)}">' for k, v in (form or {}).items())
                page.set_content(f'<!doctype html><title>authorize (POST)</title><form method="post" '
                                 f'action="{html.escape(url, quote=True)}" '
                                 f'enctype="application/x-www-form-urlencoded">{inputs}</form>')
                with page.expect_navigation(wait_until="load"):
                    page.evaluate("document.forms[0].submit()")
            else:
                page.goto(url, wait_until="load")
        except Exception as exc:
            if "ERR_CERT" in str(exc) and mode == "spki-pin" and self.tls_fallback and self._pins_ignored():
                raise _CertificateRejected() from exc
            raise

    def _tls_note(self) -> str:
        """Why TLS may be behind a failure: origins Chromium refused (with the Python-side verdict) or we blocked."""
        notes = []
        for origin in sorted(self._cert_failures):
            problem = self._verify_errors.get(_origin(origin)[1:])
            notes.append(f"Chromium refused the certificate of {origin}" + (f"; {problem}" if problem else ""))
        for origin in sorted(self._blocked):
            notes.append(f"blocked {origin}: it does not verify against the CA bundle")
        return f" ({'; '.join(notes)})" if notes else ""

    def _pins_ignored(self) -> bool:
        """Chromium refused only origins we verified and pinned: its pinning, not the target, is at fault."""
        failed = self._cert_failures
        return bool(failed) and all(self._verify(o) and self._verified[_origin(o)[1:]] in self._launched_pins
                                    for o in failed)

    def _run_step(self, page: Any, step: Step, values: Mapping[str, str], default_timeout: int) -> None:
        timeout = step.timeout_ms or default_timeout
        action = step.action
        if action == "goto":
            page.goto(step.target, timeout=max(timeout, 1), wait_until="load")
        elif action in _SELECTOR_ACTIONS:
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
            _load_hook(step)(page, dict(values))
        else:  # parse_step admits nothing else
            raise RecipeError(step.where, action, "unknown action", "use one of: " + ", ".join(ACTIONS))


class _Network:
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


def _page_key(url: str) -> str:
    """Origin and path: which page this is, whatever per-request query (a session id) it carries."""
    parts = urlsplit(url)
    if not parts.scheme.startswith("http"):
        return f"{parts.scheme}:"
    return f"{parts.scheme}://{parts.netloc.lower()}{parts.path or '/'}"


def _step_locator(page: Any, step: Step) -> tuple[Any, str]:
    """The element a step waits for, and the state it waits for; (None, "") when the step waits for none."""
    if step.action in _SELECTOR_ACTIONS:
        state = "attached" if step.action in ("check", "uncheck", "select") else "visible"
        return page.locator(step.target), state
    if step.action == "wait_for" and step.wait_kind == "selector":
        return page.locator(step.target).first, "visible"
    if (step.action == "wait_for" and step.wait_kind == "text") or step.action == "expect_text":
        return page.get_by_text(step.target).first, "visible"
    return None, ""


def _not_found(step: Step, timeout_ms: int) -> str:
    if step.action == "expect_text" or step.wait_kind == "text":
        return f"text {step.target!r} not on the page within {_seconds(timeout_ms)}"
    return f"selector not found within {_seconds(timeout_ms)}"


def _settle(page: Any) -> None:
    """Let a navigation a step started finish loading, so the next screenshot shows the new page."""
    try:
        page.wait_for_load_state("load", timeout=5_000)
    except Exception:
        pass


def _load_hook(step: Step) -> Callable[[Any, dict[str, str]], Any]:
    module_name, _, function = step.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RecipeError(step.where, "hook", f"cannot import module '{module_name}' ({exc})",
                          "put the module on PYTHONPATH (or next to the target file) and check its name") from None
    fn = getattr(module, function, None)
    if not callable(fn):
        raise RecipeError(step.where, "hook", f"module '{module_name}' has no function '{function}'",
                          "name a function taking (page, values)")
    return fn


def _response_params(url: str, post_data: str | None = None,
                     fragment: str | None = None) -> list[tuple[str, str]]:
    """Authorization response parameters: a form_post body, else the query *and* the fragment.

    The code flow answers in the query (RFC 6749 §4.1.2), the implicit flow, its errors included, in the fragment
    (§4.2.2.1): both are read. The query comes first, so where both name a parameter the query's value is the one
    ``params`` keeps; the fragment is only read when it looks like parameters (``#/route`` is an app's, not ours).
    """
    return [(k, v) for k, v, _ in _response_params_located(url, post_data, fragment)]


def _response_params_located(url: str, post_data: str | None = None,
                             fragment: str | None = None) -> list[tuple[str, str, str]]:
    if post_data:
        return [(k, v, "form_post") for k, v in parse_qsl(post_data, keep_blank_values=True)]
    parts = urlsplit(url)
    frag = parts.fragment or (fragment or "").lstrip("#")
    out = [(k, v, "query") for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    if "=" in frag:
        out += [(k, v, "fragment") for k, v in parse_qsl(frag, keep_blank_values=True)]
    return out


_RESPONSE_KEYS = frozenset({"code", "state", "error", "error_description", "error_uri", "iss", "access_token",
                            "id_token", "token_type", "expires_in", "scope"})


def _response_location(located: Sequence[tuple[str, str, str]]) -> str:
    """Where the OAuth response parameters came (the redirect_uri's own query parameters do not count)."""
    places = [where for where in ("query", "fragment", "form_post")
              if any(k in _RESPONSE_KEYS and w == where for k, _, w in located)]
    return "+".join(places)


def _is_timeout(exc: BaseException) -> bool:
    try:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, PlaywrightTimeout)


def _seconds(ms: int) -> str:
    return f"{ms / 1000:g}s"


def _reason(exc: BaseException, timeout_ms: int, step: Step | None) -> str:
    """One clause: what stopped the step, without Playwright's multi-line call log."""
    if isinstance(exc, RecipeError):
        return str(exc)
    text = str(exc)
    first = text.split("\n", 1)[0].strip()
    first = re.sub(r"^\w+(\.\w+)*: ", "", first)  # "Locator.click: " / "Page.goto: "
    if _is_timeout(exc):
        if step is None or step.action == "goto":
            return f"page did not load within {_seconds(timeout_ms)}"
        if step.action in _SELECTOR_ACTIONS or (step.action == "wait_for" and step.wait_kind == "selector"):
            if "resolved to" in text and "strict mode" not in text:
                return f"selector found but not actionable within {_seconds(timeout_ms)} ({first})"
            return f"selector not found within {_seconds(timeout_ms)}"
        if step.action in ("expect_text",) or step.wait_kind == "text":
            return f"text {step.target!r} not on the page within {_seconds(timeout_ms)}"
        if step.wait_kind == "url":
            return f"URL never matched {step.target!r} within {_seconds(timeout_ms)}"
        return f"timed out after {_seconds(timeout_ms)}"
    if "strict mode violation" in text:
        count = re.search(r"resolved to (\d+) elements", text)
        return (f"selector matched {count.group(1) if count else 'several'} elements; make it match exactly one")
    if step is not None and step.action == "hook":
        return f"hook raised {type(exc).__name__}: {first}"
    return first or type(exc).__name__


def _safe_url(page: Any) -> str:
    try:
        return str(page.url)
    except Exception:
        return "(unknown page)"


def _safe_title(page: Any) -> str:
    try:
        return str(page.title())
    except Exception:
        return ""


def _text_snippet(page: Any, limit: int = 500) -> str:
    try:
        text = page.inner_text("body", timeout=2_000)
    except Exception:
        return ""
    return re.sub(r"\s+", " ", text).strip()[:limit]


# ----------------------------------------------------------------------------------------------------------------
# ``python -m smart_conformance.browser --check``: used by scripts/bootstrap


def _check() -> int:
    try:
        choice = find_chromium()
        with BrowserSession() as session:
            page = session.browser.new_page()
            page.set_content("<title>ok</title>")
            page.close()
    except BrowserUnavailable as exc:
        print(f"smart-conformance: {exc}", file=sys.stderr)
        return 2
    print(f"chromium: {choice.kind} {choice.path or '(playwright default)'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m smart_conformance.browser")
    parser.add_argument("--check", action="store_true", help="find and start a Chromium; exit 2 with the fix if none")
    args = parser.parse_args(argv)
    if args.check:
        return _check()
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "AuthorizationResult", "BrowserSession", "BrowserUnavailable", "ChromiumChoice", "LoginStepError",
    "OriginNotVerified", "PageDocument", "PageForm", "Recipe", "RecipeError", "Screenshot", "Step", "compose_steps",
    "find_chromium", "parse_recipe", "parse_step", "parse_steps", "scrub_trace", "secret_values", "take_screenshot",
    "verified_spki_sha256",
]
