"""Login recipes: the YAML steps that drive a payer's sign-in and consent pages, parsed into typed :class:`Step`
objects with errors that name the step, the key and the fix, and composed per consent scenario."""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from smart_conformance.redact import MASK

DEFAULT_STEP_TIMEOUT_MS = 10_000


class RecipeError(ValueError):
    """A login recipe that cannot be run, explained in one line: which step, which key, what is wrong, the fix."""

    def __init__(self, where: str, key: str, problem: str, fix: str) -> None:
        self.where, self.key, self.problem, self.fix = where, key, problem, fix
        super().__init__(f"login recipe {where}: {key}: {problem}. Fix: {fix}")


_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_HOOK = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
ACTIONS = ("goto", "fill", "click", "check", "uncheck", "select", "press", "wait_for", "expect_text", "hook")
MODIFIERS = ("timeout_ms", "optional")
SELECTOR_ACTIONS = {"fill", "click", "check", "uncheck", "select", "press"}


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
