"""Login recipes: the YAML steps that drive a payer's sign-in and consent pages, parsed into typed :class:`Step`
objects with errors that name the step, the key and the fix, and composed per consent scenario."""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from smart_conformance import redact
from smart_conformance.redact import MASK, SecretValue

DEFAULT_STEP_TIMEOUT_MS = 10_000
# A 429 (or a Retry-After) on the sign-in pages is waited out at most this long in all, per authorization.
DEFAULT_MAX_BACKOFF_S = 30.0
TOTP_ALGORITHMS = ("SHA1", "SHA256", "SHA512")
# What hosted identity providers show when they stop a member signing in; matched case-insensitively in the page text.
DEFAULT_LOCKOUT_TEXTS = ("account is locked", "account has been locked", "account locked", "too many attempts",
                         "too many failed", "temporarily locked")
# What a sign-in asking for a code sent by email or SMS shows; consulted only when a step cannot find its element.
DEFAULT_OUT_OF_BAND_TEXTS = ("we sent a code", "we've sent a code", "we have sent a code", "code we sent",
                             "sent to your email", "sent to your phone", "text message with a code",
                             "check your email for a code", "enter the code sent")


class RecipeError(ValueError):
    """A login recipe that cannot be run, explained in one line: which step, which key, what is wrong, the fix."""

    def __init__(self, where: str, key: str, problem: str, fix: str) -> None:
        self.where, self.key, self.problem, self.fix = where, key, problem, fix
        super().__init__(f"login recipe {where}: {key}: {problem}. Fix: {fix}")


_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_HOOK = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
ACTIONS = ("goto", "fill", "click", "check", "uncheck", "select", "press", "wait_for", "expect_text", "hook", "totp")
MODIFIERS = ("timeout_ms", "optional")
SELECTOR_ACTIONS = {"fill", "click", "check", "uncheck", "select", "press", "totp"}
TOTP_KEYS = ("selector", "secret", "digits", "period", "algorithm", "submit")


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
    totp: TotpOptions | None = None  # the totp step's settings (its secret is ``value``)

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
        if isinstance(self.value, SecretValue):
            value = MASK  # read from ${ENV} or a file by the config loader: never shown
        if self.action in ("fill", "select"):
            body = f"{{selector: {self.target!r}, value: {value!r}}}"
        elif self.action == "totp":
            body = f"{{selector: {self.target!r}, secret: {value!r}}}"
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

        if isinstance(self.value, SecretValue) or self.value is None:
            value = self.value  # a secret read by the config loader: taken as it is, never templated
        else:
            value = sub(self.value, self.action)
            if self.action == "totp":
                value = SecretValue(value)
                redact.register_secret(value)
        return replace(self, target=sub(self.target, self.action), value=value)


@dataclass(frozen=True)
class TotpOptions:
    """RFC 6238 parameters of a ``totp`` step (the common defaults: 6 digits, 30 s, SHA-1), and the button that
    submits the code (``submit``): given, the step submits it itself and, if the code was refused because the period
    rolled over meanwhile, types the next one once."""

    digits: int = 6
    period: int = 30
    algorithm: str = "SHA1"
    submit: str | None = None


@dataclass(frozen=True)
class PageMarker:
    """How a page is recognised: any of ``texts`` (case-insensitive, in the page's text) or ``selectors``."""

    texts: tuple[str, ...] = ()
    selectors: tuple[str, ...] = ()

    def describe(self) -> str:
        return ", ".join([*(repr(t) for t in self.texts), *(f"selector {s!r}" for s in self.selectors)]) or "(none)"


@dataclass(frozen=True)
class SignInGuards:
    """What stops a sign-in rather than a step: a lockout page (every later sign-in of that member is stopped too), a
    page asking for a code sent by email or SMS, and how long a 429 / Retry-After on the sign-in is waited out."""

    lockout: PageMarker = PageMarker(DEFAULT_LOCKOUT_TEXTS)
    out_of_band: PageMarker = PageMarker(DEFAULT_OUT_OF_BAND_TEXTS)
    max_backoff_s: float = DEFAULT_MAX_BACKOFF_S


@dataclass(frozen=True)
class Recipe:
    """Sign-in ``steps`` plus ``consent`` scenarios (approve / deny / untick / any other name)."""

    steps: tuple[Step, ...]
    consent: Mapping[str, tuple[Step, ...]] = field(default_factory=dict)
    step_timeout_ms: int = DEFAULT_STEP_TIMEOUT_MS
    guards: SignInGuards = field(default_factory=lambda: SignInGuards())


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
    if action == "totp":
        return _parse_totp(arg, where, common)
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


_TOTP_EXAMPLE = "'totp: {selector: \"#otp\", secret: \"${member.totp_secret}\"}'"
_TOTP_FIX = ("give the secret as ${member.totp_secret} (members.<role>.totp_secret: ${SOME_ENV_VAR} or {file: path}), "
             "or as secret: ${SOME_ENV_VAR} or secret: {file: /path/to/secret}; a secret written in the file ends up "
             "in git")


def totp_secret_source(value: Any) -> str:
    """How a ``totp`` step's secret is given: "placeholder" (``${...}``, the whole value), "file" ({file: path}),
    "read" (already read by the config loader), "default" (absent: ``${member.totp_secret}``), else "literal"."""
    if value is None:
        return "default"
    if isinstance(value, SecretValue):
        return "read"
    if isinstance(value, Mapping) and set(value) == {"file"} and isinstance(value["file"], str) and value["file"]:
        return "file"
    if isinstance(value, str) and re.fullmatch(r"\$\{[^}]+\}", value.strip()):
        return "placeholder"
    return "literal"


def _parse_totp(arg: Any, where: str, common: dict[str, Any]) -> Step:
    m = _require_mapping(arg, where, "totp", ("selector",), _TOTP_EXAMPLE, optional=TOTP_KEYS[1:])
    if "selector" not in m:
        raise RecipeError(where, "totp.selector", "missing", "add 'selector: ...' (the one-time code's input)")
    selector = _require_str(m["selector"], where, "totp.selector", "a selector", "'#otp'")
    raw = m.get("secret")
    source = totp_secret_source(raw)
    if source == "literal":
        raise RecipeError(where, "totp.secret", "a TOTP secret may not be written in the recipe", _TOTP_FIX)
    if source == "file":
        path = raw["file"]
        try:
            text = open(path, encoding="utf-8").read().strip()  # noqa: SIM115
        except OSError as exc:
            raise RecipeError(where, "totp.secret.file", f"cannot read {path} ({exc.strerror})",
                              "point 'file' at a readable file holding only the base32 secret") from None
        secret: str = SecretValue(text)
        redact.register_secret(secret)
    elif source == "default":
        secret = "${member.totp_secret}"
    else:
        secret = raw if isinstance(raw, SecretValue) else str(raw).strip()
    digits, period = m.get("digits", 6), m.get("period", 30)
    if isinstance(digits, bool) or not isinstance(digits, int) or not 6 <= digits <= 10:
        raise RecipeError(where, "totp.digits", f"expected 6 to 10, got {digits!r}", "write e.g. 'digits: 6'")
    if isinstance(period, bool) or not isinstance(period, int) or not 1 <= period <= 300:
        raise RecipeError(where, "totp.period", f"expected seconds between 1 and 300, got {period!r}",
                          "write e.g. 'period: 30'")
    algorithm = str(m.get("algorithm", "SHA1")).upper().replace("-", "")
    if algorithm not in TOTP_ALGORITHMS:
        raise RecipeError(where, "totp.algorithm", f"{m.get('algorithm')!r} is not supported",
                          f"use one of {', '.join(TOTP_ALGORITHMS)} (RFC 6238 §1.2)")
    submit = m.get("submit")
    if submit is not None:
        submit = _require_str(submit, where, "totp.submit", "a selector", "'button[type=submit]'")
    return Step("totp", selector, value=secret, totp=TotpOptions(digits, period, algorithm, submit), **common)


def _marker(raw: Any, key: str, default: PageMarker) -> PageMarker:
    """``login.lockout`` / ``login.out_of_band_code``: {text: str | [str], selector: str | [str]}; texts given
    replace the defaults, ``false`` switches the detection off."""
    if raw is None:
        return default
    if raw is False:
        return PageMarker()
    example = f"'{key}: {{text: [\"account is locked\"], selector: \"#locked\"}}'"
    m = _require_mapping(raw, "login", key, (), example, optional=("text", "selector"))
    found: dict[str, tuple[str, ...]] = {}
    for name in ("text", "selector"):
        value = m.get(name, ())
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, Sequence) or not all(isinstance(i, str) and i.strip() for i in items):
            raise RecipeError("login", f"{key}.{name}", f"expected text or a list of texts, got {value!r}",
                              f"write it as {example}")
        found[name] = tuple(i.strip() for i in items)
    if not found["text"] and not found["selector"]:
        raise RecipeError("login", key, "neither text nor selector given", f"write it as {example} (or false)")
    return PageMarker(tuple(t.lower() for t in found["text"]), found["selector"])


def parse_guards(login: Mapping[str, Any]) -> SignInGuards:
    rate = login.get("rate_limit") or {}
    m = _require_mapping(rate, "login", "rate_limit", (), "'rate_limit: {max_wait_s: 30}'", optional=("max_wait_s",))
    wait = m.get("max_wait_s", DEFAULT_MAX_BACKOFF_S)
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= 600:
        raise RecipeError("login", "rate_limit.max_wait_s", f"expected seconds between 0 and 600, got {wait!r}",
                          "write e.g. 'max_wait_s: 30'")
    return SignInGuards(lockout=_marker(login.get("lockout"), "lockout", SignInGuards.lockout),
                        out_of_band=_marker(login.get("out_of_band_code"), "out_of_band_code",
                                            SignInGuards.out_of_band),
                        max_backoff_s=float(wait))


def parse_steps(raw: Any, where: str = "steps") -> tuple[Step, ...]:
    if raw is None:
        return ()
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence):
        raise RecipeError(where, "(list)", f"expected a list of steps, got {type(raw).__name__}",
                          "write the steps as a YAML list ('- click: \"#submit\"')")
    return tuple(parse_step(item, f"{where}[{i}]") for i, item in enumerate(raw))


LOGIN_KEYS = ("steps", "consent", "step_timeout_ms", "script_readable_cookies", "lockout", "out_of_band_code",
              "rate_limit")


def parse_recipe(login: Any) -> Recipe:
    """From the ``login`` mapping of a target (a dict, or the config loader's ``Login`` object)."""
    if isinstance(login, Recipe):
        return login
    if not isinstance(login, Mapping):
        login = {key: getattr(login, key, None) for key in LOGIN_KEYS}
    unknown = [k for k in login if k not in LOGIN_KEYS]
    if unknown:
        raise RecipeError("login", str(unknown[0]), "unknown key", f"use {', '.join(LOGIN_KEYS)}")
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
                  step_timeout_ms=timeout, guards=parse_guards(login))


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


def load_hook(step: Step) -> Callable[[Any, dict[str, str]], Any]:
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
