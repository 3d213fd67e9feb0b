"""A finding takes the level of the requirement it actually broke (issue 10, class 5).

SHALL fails, SHOULD warns, MAY is never a violation. A check may cite ids of several levels; an expectation in such a
check that does not say which id it breaks (``requirement=``) must not borrow the strongest cited level, as the CORS
check once turned a SHOULD NOT into a SHALL failure. It is refused with a clear error instead, at fail time, and a
static scan of the suites keeps such expectations from being written.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from smart_conformance import checks, paths, requirements
from smart_conformance.checks import ConformanceFailure, MixedLevels, expect

SHALL, SHOULD_NOT, MAY = "SMART-SEC-01", "HTTP-HYG-03", "RFC6750-02"


def test_catalog_levels_used_here() -> None:
    levels = {r.id: r.level for r in requirements.lookup([SHALL, SHOULD_NOT, MAY])}
    assert levels == {SHALL: "SHALL", SHOULD_NOT: "SHOULD NOT", MAY: "MAY"}


def test_unnarrowed_expectation_in_mixed_level_check_is_refused() -> None:
    with checks.citing(SHALL, SHOULD_NOT), pytest.raises(MixedLevels, match="requirement="):
        expect(False, expected="x", actual="y")


def test_mixed_levels_error_is_not_a_finding() -> None:
    """The plugin classifies it as broken (could not check), never failed or warning."""
    assert not issubclass(MixedLevels, AssertionError)


def test_narrowed_to_should_not_is_a_warning_at_that_level() -> None:
    with checks.citing(SHALL, SHOULD_NOT), pytest.raises(ConformanceFailure) as caught:
        expect(False, expected="x", actual="y", requirement=SHOULD_NOT)
    assert caught.value.warning and caught.value.level == "SHOULD NOT"
    assert caught.value.requirement_ids == (SHOULD_NOT,)
    assert str(caught.value).startswith("[SHOULD NOT] HTTP-HYG-03")


def test_may_finding_is_advice_tagged_may() -> None:
    with checks.citing(MAY), pytest.raises(ConformanceFailure) as caught:
        expect(False, expected="x", actual="y")
    assert caught.value.warning and caught.value.level == "MAY"
    assert str(caught.value).startswith("[MAY] ")


def test_same_level_citations_need_no_narrowing() -> None:
    with checks.citing(SHALL, "SMART-FHIR-01"), pytest.raises(ConformanceFailure) as caught:
        expect(False, expected="x", actual="y")
    assert not caught.value.warning and caught.value.level == "SHALL"


def test_explicitly_named_ids_take_the_strongest_level() -> None:
    """Naming both ids says both are broken: the finding is then rightly at the stronger level."""
    with checks.citing(SHALL, SHOULD_NOT), pytest.raises(ConformanceFailure) as caught:
        expect(False, expected="x", actual="y", requirement=(SHALL, SHOULD_NOT))
    assert caught.value.level == "SHALL" and not caught.value.warning


def _unnarrowed_in_mixed_checks() -> list[str]:
    """expect()/fail() calls without requirement= reachable (through module helpers) from checks citing mixed levels."""
    known = requirements.catalog()
    found: list[str] = []
    for file in sorted(paths.suites_dir().glob("*/test_*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}

        def calls(fn: ast.FunctionDef, seen: set[str], funcs: dict[str, ast.FunctionDef] = funcs) -> list[int]:
            out: list[int] = []
            for node in ast.walk(fn):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):  # check.expect(...)
                    if node.func.attr in ("expect", "fail") and not any(k.arg == "requirement"
                                                                        for k in node.keywords):
                        out.append(node.lineno)
                elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    if node.func.id in ("expect", "fail"):
                        if not any(k.arg == "requirement" for k in node.keywords):
                            out.append(node.lineno)
                    elif node.func.id in funcs and node.func.id not in seen:
                        seen.add(node.func.id)
                        out += calls(funcs[node.func.id], seen)
            return out

        for name, fn in funcs.items():
            ids = [a.value for d in fn.decorator_list if isinstance(d, ast.Call)
                   and getattr(d.func, "attr", "") == "requirement" for a in d.args if isinstance(a, ast.Constant)]
            if name.startswith("test_") and len({requirements.LEVEL_RANK[known[i].level] for i in ids
                                                 if i in known}) > 1:
                found += [f"{Path(file).parent.name}/{file.name}:{line} (in {name})" for line in calls(fn, {name})]
    return found


def test_suites_narrow_every_expectation_of_mixed_level_checks() -> None:
    assert _unnarrowed_in_mixed_checks() == []
