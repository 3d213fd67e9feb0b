"""Playwright codegen output turned into a target's login recipe.

A payer's QA engineer records their sign-in once with ``python -m playwright codegen --target python`` (or
``python-async`` / ``python-pytest``) and hands the script to ``smart-conformance init-target --from-codegen FILE``.
The script is parsed, never run. Each recorded action becomes one recipe step, and each locator becomes the selector
string Playwright itself builds for it, so ``page.locator(selector)`` in the harness finds the same element:

=====================================================  ==========================================================
codegen                                                recipe step
=====================================================  ==========================================================
``page.goto(url)`` (before the first action)           dropped: the harness opens the authorize URL itself
``X.fill(v)`` / ``page.fill(sel, v)``                  ``fill: {selector, value}`` (member values as placeholders)
``X.click()`` / ``page.click(sel)`` / ``dblclick``     ``click: selector`` (a click just before a fill of the same
                                                       field is dropped)
``X.check()`` / ``X.uncheck()``                        ``check`` / ``uncheck`` (an untick of a scope becomes the
                                                       ``consent.untick`` step, with ``${scope}``)
``X.select_option(v)``                                 ``select: {selector, value}``
``X.press(key)`` / ``page.press(sel, key)``            ``press: {selector, key}``
``page.wait_for_url(u)`` / ``expect(page).to_have_url``  ``wait_for: {url}``
``expect(X).to_be_visible()`` / ``X.wait_for()``       ``wait_for: {selector}``
``expect(X).to_contain_text(t)`` / ``to_have_text``    ``expect_text: t``
=====================================================  ==========================================================

Locators: ``page.locator(s)`` → ``s``; ``get_by_role(r, name=n)`` → ``internal:role=r[name="n"i]`` (``s`` with
``exact=True``); ``get_by_label`` → ``internal:label="…"i``; ``get_by_placeholder`` / ``get_by_title`` /
``get_by_alt_text`` → ``internal:attr=[placeholder="…"i]``…; ``get_by_text`` → ``internal:text="…"i``;
``get_by_test_id`` → ``internal:testid=[data-testid="…"s]``; ``.first`` / ``.last`` / ``.nth(i)`` → ``>> nth=…``;
``.filter(has_text=t)`` → ``>> internal:has-text="t"i``; chained locators join with ``>>``.

Typed values never stay in the recipe when they are the member's: a fill of a password-like field (or, without
one, the second field typed into) becomes ``${member.password}``, the first other fill ``${member.username}``; a
one-time code is dropped (it needs a hook step). The steps up to the click (or key press) that
submits the password are the sign-in; the rest are the consent page's ``approve`` steps.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_PASSWORD = re.compile(r"(?i)pass(word|code|wd)?|\bpw\b|pwd|secret|\bpin\b")
_ONE_TIME = re.compile(r"(?i)\botp\b|totp|one[- ]?time|verification|mfa|2fa|security code")
_SCOPE = re.compile(r"(?:patient|user|system)/[A-Za-z*]+\.(?:[cruds]+|read|write|\*)(?:\?[^\"'\]\s]*)?"
                    r"|launch/patient|offline_access|online_access|fhirUser|openid")
_GET_BY_ATTR = {"get_by_placeholder": "placeholder", "get_by_title": "title", "get_by_alt_text": "alt"}
_ROLE_FLAGS = ("checked", "disabled", "expanded", "include_hidden", "level", "pressed", "selected")


class CodegenError(ValueError):
    """A codegen file that cannot be converted, in one line: file, line, problem, fix."""

    def __init__(self, file: str, line: int | None, problem: str, fix: str) -> None:
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {problem}. Fix: {fix}")


class _Unsupported(Exception):
    """A recorded construct the recipe has no step for (noted, then skipped)."""


@dataclass
class Recipe:
    """The converted recording: sign-in steps, consent scenarios, and what the user should look at."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    approve: list[dict[str, Any]] = field(default_factory=list)
    untick: list[dict[str, Any]] = field(default_factory=list)
    deny: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --- locators -------------------------------------------------------------------------------------------------------

def _quoted(text: str, exact: bool) -> str:
    """Playwright's quoting for text and attribute selectors: a JSON string, then ``s`` (exact) or ``i``."""
    return json.dumps(text, ensure_ascii=False) + ("s" if exact else "i")


def _const(node: ast.AST | None, what: str) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    raise _Unsupported(f"{what} is not a literal ({ast.unparse(node) if node is not None else 'missing'})")


def _kwargs(call: ast.Call) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise _Unsupported("**kwargs")
        out[kw.arg] = _const(kw.value, f"the {kw.arg}= argument")
    return out


def _text_arg(call: ast.Call, name: str) -> str:
    if not call.args:
        raise _Unsupported(f"{name}() without an argument")
    value = call.args[0]
    if isinstance(value, ast.Call) and ast.unparse(value.func) in ("re.compile", "compile"):
        raise _Unsupported(f"{name}() with a regular expression: write a CSS or text selector for this step")
    text = _const(value, f"the argument of {name}()")
    if not isinstance(text, str):
        raise _Unsupported(f"{name}() with a non-text argument")
    return text


def _join(base: str, selector: str) -> str:
    return f"{base} >> {selector}" if base else selector


def selector_of(node: ast.AST) -> str:
    """The Playwright selector string of a locator expression (``""`` for the page itself)."""
    if isinstance(node, ast.Name):
        return ""
    if isinstance(node, ast.Attribute) and node.attr in ("first", "last"):
        return _join(selector_of(node.value), "nth=0" if node.attr == "first" else "nth=-1")
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        raise _Unsupported(f"locator {ast.unparse(node)!r}")
    base, name = selector_of(node.func.value), node.func.attr
    kwargs = _kwargs(node)
    exact = bool(kwargs.get("exact", False))
    if name == "locator":
        selector = _text_arg(node, name)
        if "has_text" in kwargs:
            selector += f" >> internal:has-text={_quoted(str(kwargs['has_text']), False)}"
        return _join(base, selector)
    if name == "get_by_role":
        role = _text_arg(node, name)
        props = ""
        if "name" in kwargs:
            props += f"[name={_quoted(str(kwargs['name']), exact)}]"
        for flag in _ROLE_FLAGS:
            if flag in kwargs:
                value = kwargs[flag]
                props += f"[{flag.replace('_', '-')}={str(value).lower() if isinstance(value, bool) else value}]"
        return _join(base, f"internal:role={role}{props}")
    if name == "get_by_label":
        return _join(base, f"internal:label={_quoted(_text_arg(node, name), exact)}")
    if name == "get_by_text":
        return _join(base, f"internal:text={_quoted(_text_arg(node, name), exact)}")
    if name in _GET_BY_ATTR:
        return _join(base, f"internal:attr=[{_GET_BY_ATTR[name]}={_quoted(_text_arg(node, name), exact)}]")
    if name == "get_by_test_id":
        return _join(base, f"internal:testid=[data-testid={_quoted(_text_arg(node, name), True)}]")
    if name == "nth":
        return _join(base, f"nth={int(_const(node.args[0] if node.args else None, 'the index of nth()'))}")
    if name == "filter":
        if set(kwargs) - {"has_text", "has_not_text"}:
            raise _Unsupported("filter() other than has_text / has_not_text")
        out = base
        for key, engine in (("has_text", "has-text"), ("has_not_text", "has-not-text")):
            if key in kwargs:
                out = _join(out, f"internal:{engine}={_quoted(str(kwargs[key]), False)}")
        return out
    raise _Unsupported(f"{name}() (frames, popups and other pages are not recipe steps; use a hook step)")


# --- actions --------------------------------------------------------------------------------------------------------

_PAGE_ACTIONS = {"fill", "click", "dblclick", "check", "uncheck", "select_option", "press", "type"}
_IGNORED = {"close", "new_page", "new_context", "launch", "set_default_timeout", "storage_state", "run", "stop",
            "start", "set_viewport_size", "bring_to_front"}


def _step_of(call: ast.Call) -> dict[str, Any] | None:
    """One recorded call as a recipe step; None for the set-up and tear-down calls codegen writes around them."""
    if not isinstance(call.func, ast.Attribute):
        return None
    action, owner = call.func.attr, call.func.value
    if isinstance(owner, ast.Call) and ast.unparse(owner.func) == "expect":
        return _assertion(action, owner, call)
    if action in _IGNORED or action.startswith("expect_"):
        return None
    if isinstance(owner, ast.Name) and action in _PAGE_ACTIONS:  # the older page.fill(selector, value) style
        selector = _text_arg(call, action)
        rest = ast.Call(func=call.func, args=call.args[1:], keywords=call.keywords)
        return _action(action, selector, rest)
    if isinstance(owner, ast.Name):
        if action == "goto":
            return {"goto": _text_arg(call, action)}
        if action == "wait_for_url":
            return {"wait_for": {"url": _text_arg(call, action)}}
        if action == "wait_for_selector":
            return {"wait_for": {"selector": _text_arg(call, action)}}
        if action in ("wait_for_load_state", "wait_for_timeout"):
            return None
        if isinstance(owner, ast.Name) and owner.id in ("browser", "context", "playwright"):
            return None
        raise _Unsupported(f"page.{action}()")
    if isinstance(owner, ast.Attribute) and owner.attr in ("keyboard", "mouse"):
        raise _Unsupported(f"{owner.attr}.{action}() (give the field: X.press(key) or X.fill(value))")
    if isinstance(owner, ast.Attribute) and not isinstance(owner.value, ast.Call) and owner.attr not in ("first",
                                                                                                        "last"):
        return None  # playwright.chromium.launch(...) and the like
    if action == "wait_for":
        return {"wait_for": {"selector": selector_of(owner)}}
    if action in _PAGE_ACTIONS:
        return _action(action, selector_of(owner), call)
    if action == "hover":
        return None
    raise _Unsupported(f"{action}()")


def _action(action: str, selector: str, call: ast.Call) -> dict[str, Any]:
    if action in ("click", "dblclick", "check", "uncheck"):
        return {"click" if action == "dblclick" else action: selector}
    if action in ("fill", "type"):
        return {"fill": {"selector": selector, "value": str(_const(call.args[0] if call.args else None, "the value"))}}
    if action == "press":
        return {"press": {"selector": selector, "key": _text_arg(call, action)}}
    value = call.args[0] if call.args else None
    if isinstance(value, (ast.List, ast.Tuple)) and len(value.elts) == 1:
        value = value.elts[0]
    return {"select": {"selector": selector, "value": str(_const(value, "the option"))}}


def _assertion(action: str, expect_call: ast.Call, call: ast.Call) -> dict[str, Any] | None:
    subject = expect_call.args[0] if expect_call.args else None
    if subject is None:
        return None
    if isinstance(subject, ast.Name):
        if action == "to_have_url":
            return {"wait_for": {"url": _text_arg(call, action)}}
        raise _Unsupported(f"expect(page).{action}()")
    if action in ("to_be_visible", "to_be_attached", "to_be_enabled"):
        return {"wait_for": {"selector": selector_of(subject)}}
    if action in ("to_contain_text", "to_have_text"):
        return {"expect_text": _text_arg(call, action)}
    raise _Unsupported(f"expect(...).{action}()")


def _calls(tree: ast.AST) -> list[ast.Call]:
    """The recorded calls, in source order: each expression statement's call (awaited or not)."""
    out: list[ast.Call] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr):
            value = node.value.value if isinstance(node.value, ast.Await) else node.value
            if isinstance(value, ast.Call):
                out.append(value)
    return sorted(out, key=lambda c: (c.lineno, c.col_offset))


def _root_name(node: ast.AST) -> str | None:
    """The variable a call chain starts from (``page`` in ``page.get_by_role(...).click()``)."""
    while True:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "expect" and node.args:
                node = node.args[0]
            else:
                node = node.func
        elif isinstance(node, ast.Attribute):
            node = node.value
        else:
            return None


# --- the recipe -----------------------------------------------------------------------------------------------------

def _selector(step: dict[str, Any]) -> str:
    ((_, arg),) = step.items()
    return str(arg.get("selector", "")) if isinstance(arg, dict) else str(arg)


def _member_values(steps: list[tuple[int, dict[str, Any]]], notes: list[str]) -> int | None:
    """Put placeholders in for the member's typed values; returns the index of the password fill (None if none)."""
    password_at: int | None = None
    username_done = False
    secrets: set[str] = set()
    for i, (line, step) in enumerate(steps):
        if "fill" not in step:
            continue
        fill = step["fill"]
        if _ONE_TIME.search(fill["selector"]):
            notes.append(f"line {line}: a one-time code typed into {fill['selector']!r} is kept out of the recipe; "
                         "answer it with a hook step (login.steps: '- hook: my_hooks:answer_totp')")
            fill["value"] = None
        elif _PASSWORD.search(fill["selector"]) or fill["value"] in secrets:
            secrets.add(fill["value"])
            fill["value"] = "${member.password}"
            password_at = i if password_at is None else password_at
        elif not username_done:
            fill["value"], username_done = "${member.username}", True
        elif password_at is None:  # a second field before any password-like one: a recorded value never stays
            secrets.add(fill["value"])
            fill["value"], password_at = "${member.password}", i
            notes.append(f"line {line}: {fill['selector']!r} is taken for the password field (the second field "
                         "typed into); check it")
        else:
            notes.append(f"line {line}: the value typed into {fill['selector']!r} is kept as recorded; use "
                         "${member.username} or ${member.password} if it is the member's")
    steps[:] = [(line, s) for line, s in steps if not ("fill" in s and s["fill"]["value"] is None)]
    return password_at


def _untick_template(step: dict[str, Any]) -> dict[str, Any] | None:
    """An uncheck of a box named by a scope string: the per-scope ``untick`` step, the scope as ``${scope}``."""
    selector = step.get("uncheck")
    match = _SCOPE.search(selector) if isinstance(selector, str) else None
    if match is None:
        return None
    return {"uncheck": selector.replace(match.group(0), "${scope}")}


def convert(source: str, file: str = "codegen.py") -> Recipe:
    """Convert a Python codegen script (sync, async or pytest flavour) to recipe steps."""
    try:
        tree = ast.parse(source, filename=file)
    except SyntaxError as exc:
        raise CodegenError(file, exc.lineno, f"not Python ({exc.msg})",
                           "record with 'python -m playwright codegen --target python -o FILE' and pass that "
                           "file") from None
    recipe = Recipe()
    recorded: list[tuple[int, dict[str, Any]]] = []
    page_name: str | None = None
    for call in _calls(tree):
        try:
            step = _step_of(call)
        except _Unsupported as exc:
            recipe.notes.append(f"line {call.lineno}: skipped {exc}")
            continue
        if step is None:
            continue
        root = _root_name(call)
        page_name = page_name or root
        if root != page_name:
            recipe.notes.append(f"line {call.lineno}: skipped an action on {root}, another page than {page_name} "
                                "(a popup or new tab): the recipe drives one page; use a hook step")
            continue
        if "goto" in step and not any("goto" not in s for _, s in recorded):
            continue  # codegen's start page (the authorize URL): the harness navigates there itself
        recorded.append((call.lineno, step))
    # A click into a field right before typing into it is how codegen records focusing it: not a step of its own.
    recorded = [(line, s) for i, (line, s) in enumerate(recorded)
                if not ("click" in s and i + 1 < len(recorded) and "fill" in recorded[i + 1][1]
                        and _selector(recorded[i + 1][1]) == s["click"])]
    if not recorded:
        raise CodegenError(file, None, "no page actions found",
                           "record the sign-in and consent with 'python -m playwright codegen --target python "
                           "-o FILE AUTHORIZE_URL', sign in, approve, then close the browser")
    password_at = _member_values(recorded, recipe.notes)
    if password_at is None:
        recipe.notes.append("no password field recognised: every recorded step is taken as sign-in; move the "
                            "consent page's steps to login.consent.approve")
        end = len(recorded)
    else:
        submit = next((i for i in range(password_at, len(recorded))
                       if {"click", "press"} & set(recorded[i][1])), len(recorded) - 1)
        end = submit + 1
    recipe.steps = [s for _, s in recorded[:end]]
    for line, step in recorded[end:]:
        template = _untick_template(step)
        if template is not None:
            if not recipe.untick:
                recipe.untick.append(template)
            recipe.notes.append(f"line {line}: the recorded untick of a scope became login.consent.untick (run "
                                "per scope by the checks that withhold one), not an approve step")
            continue
        recipe.approve.append(step)
    recipe.notes.sort(key=lambda note: int(m.group(1)) if (m := re.match(r"line (\d+)", note)) else 0)
    return recipe


def convert_file(path: Path | str) -> Recipe:
    path = Path(path)
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CodegenError(str(path), None, f"cannot read the file ({exc.strerror})",
                           "pass the file written by 'playwright codegen -o FILE'") from None
    return convert(source, str(path))


def flow(value: Any) -> str:
    """One YAML flow value (JSON scalars are valid YAML)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str) and '"' in value and "'" not in value and value.isprintable():
        return f"'{value}'"  # YAML single quotes: Playwright's quoted selectors stay readable
    return json.dumps(value, ensure_ascii=False)


def step_lines(steps: list[dict[str, Any]], indent: str) -> list[str]:
    return [f"{indent}- {action}: {flow(arg)}" for step in steps for action, arg in step.items()]
