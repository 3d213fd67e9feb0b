"""What a reader calls an area, a group of checks and a check: words, never folder, module or function names.

One place for the titles every report shows, so the Allure tree, its findings page and the HTML report's fill-in for
checks that never started (a fixture failed first) name a check the same way:

- area: the first heading of ``suites/<area>/README.md`` ("Standalone launch");
- group: the first line of the test module's docstring ("The authorization request: who may be redirected, ...");
- check: the first sentence of the check's docstring (cut at a sentence or clause end, else at a word, when long),
  with the parametrized case in parentheses and the target in brackets ("The code is refused without the exact
  code_verifier of its own challenge (missing) [reference]"); its short name is the function's name in words
  ("Pkce verifier checked"), Allure's story, which the cases of one check share.

A missing docstring falls back to the name in words ("test_token_response" -> "Token response").
"""

from __future__ import annotations

import ast
import functools
import inspect
from dataclasses import dataclass
from pathlib import Path

from smart_conformance import paths

# Titles of the areas that are not suite folders (suite areas take theirs from suites/<area>/README.md).
OTHER_AREA_TITLES = {"safety_checklist": "FHIR Implementer's Safety Checklist"}


def in_words(name: str) -> str:
    """A module or function name read aloud: ``test_token_response`` -> ``Token response``."""
    words = name.removeprefix("test_").replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else name


def first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0].strip() if lines else ""


MAX_TITLE = 110


def headline(doc: str | None) -> str:
    """The docstring's first sentence: its first paragraph on one line, cut when longer than MAX_TITLE at the last
    sentence or clause end that leaves most of it, else at a word (with an ellipsis)."""
    paragraph = " ".join(inspect.cleandoc(doc or "").split("\n\n", 1)[0].split())
    if len(paragraph) <= MAX_TITLE:
        return paragraph
    head = paragraph[:MAX_TITLE + 1]
    for mark in (". ", "; ", " — "):
        cut = head.rfind(mark)
        if cut >= 40:
            return head[:cut + (1 if mark == ". " else 0)]
    return head[:head.rfind(" ")].rstrip(",;:") + "…"


@functools.cache
def _areas() -> dict[str, str]:
    return paths.suite_areas()


def area_title(area: str) -> str:
    return _areas().get(area) or OTHER_AREA_TITLES.get(area) or in_words(area)


def group_title(module_doc: str | None, module_stem: str) -> str:
    return first_line(module_doc) or in_words(module_stem)


def case_of(param_id: str, target: str) -> str:
    """The parametrized case of a test id without its target (``reference-no-accept`` -> ``no-accept``)."""
    if not param_id or param_id == target:
        return ""
    if target and param_id.startswith(f"{target}-"):
        return param_id[len(target) + 1:]
    if target and param_id.endswith(f"-{target}"):
        return param_id[:-len(target) - 1]
    return param_id


def param_id_of(nodeid: str) -> str:
    """``area/test_x.py::test_y[reference-json]`` -> ``reference-json``."""
    return nodeid[nodeid.index("[") + 1:-1] if nodeid.endswith("]") and "[" in nodeid else ""


def check_title(doc_line: str, check: str, case: str, target: str) -> str:
    """The check in words, its case in parentheses (so each parametrized case reads apart), the target in brackets."""
    text = (doc_line or in_words(check)).rstrip(".")
    if case:
        text = f"{text} ({case})"
    return f"{text} [{target}]" if target else text


@dataclass(frozen=True)
class CheckTitles:
    """Everything a report names a check by."""

    area: str  # "Standalone launch"
    group: str  # the module's docstring first line
    check: str  # the check's short name in words (its parametrized cases share it)
    title: str  # the check's first sentence + case + target


def for_check(area: str, module_doc: str | None, module_stem: str, check: str, check_doc: str | None,
              param_id: str, target: str) -> CheckTitles:
    line = headline(check_doc) or in_words(check)
    return CheckTitles(area=area_title(area), group=group_title(module_doc, module_stem), check=in_words(check),
                       title=check_title(line, check, case_of(param_id, target), target))


@functools.cache
def _module_docs(module_file: Path) -> tuple[str | None, dict[str, str | None]]:
    """A suite module's docstring and its functions' docstrings, read from the source (never imported)."""
    try:
        tree = ast.parse(module_file.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None, {}
    funcs = {node.name: ast.get_docstring(node) for node in ast.walk(tree)
             if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
    return ast.get_docstring(tree), funcs


def from_nodeid(nodeid: str, target: str, suites: Path | None = None) -> CheckTitles | None:
    """Titles for a pytest node id (``launch/test_x.py::test_y[reference-json]``), read from the suite's source."""
    path, _, name = nodeid.partition("::")
    parts = Path(path).with_suffix("").parts
    if not name or len(parts) < 2:
        return None
    return from_source(f"{parts[-2]}.{parts[-1]}#{name.split('[', 1)[0]}", param_id_of(nodeid), target, suites)


def from_source(full_name: str, param_id: str, target: str, suites: Path | None = None) -> CheckTitles | None:
    """Titles for an Allure ``fullName`` (``launch.test_authorization_request#test_x``), read from
    the suite's source: for a check whose fixture failed before it started, so nothing labelled it while it ran.
    None when the name is not a check of the suites' source."""
    module, _, check = full_name.partition("#")
    parts = module.split(".")
    if not check or len(parts) < 2:
        return None
    area, stem = parts[-2], parts[-1]
    module_file = (suites or paths.suites_dir()) / area / f"{stem}.py"
    module_doc, funcs = _module_docs(module_file) if module_file.is_file() else (None, {})
    if check not in funcs:
        return None
    return for_check(area, module_doc, stem, check, funcs[check], param_id, target)
