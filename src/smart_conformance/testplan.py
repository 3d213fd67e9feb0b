"""The harness's own test plan, declared beside the checks and derived from them.

A check declares the reference faults that prove it can fail (``@proves(Fault.PKCE_PLAIN_ACCEPTED)``) and, where a
fixture cannot say it, what it cannot do without (``@needs(Needs.MEMBER_LAUNCH)``); fixtures declare their needs the
same way. A fault declares what it takes away (``takes_away`` in ``reference/faults.py``). From these the plan
derives, per fault, the checks that must fail (``caught_by``) and the checks that must honestly report *could not
check* (``blocks``): a check that needs what the fault takes away and is not one of its catchers. The reference
server names no suite test, and a new check with its fault touches only its suite module, the catalog and the
server's behaviour.

The plan is read from the suites' source (``ast``), not by importing or collecting them: it is exact for the forms
used here (decorators ``@proves(Fault.X, ...)``/``@needs(Needs.X, ...)``, fixtures requested as parameters) and takes
milliseconds, so the fault matrix can parametrize on it at collection.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TypeVar

import pytest

from smart_conformance import paths
from smart_conformance.reference.faults import FAULTS, Fault, Needs

__all__ = ["Fault", "Needs", "Plan", "needs", "plan", "production_unsafe", "proves", "warns_under"]

F = TypeVar("F", bound=Callable[..., object])


def proves(*faults: Fault) -> Callable[[F], F]:
    """This check fails when any of ``faults`` is on in the reference server (and passes when none is)."""
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        raise ValueError(f"@proves names faults that are not in the catalog: {unknown}")

    def mark(func: F) -> F:
        func.__smart_proves__ = tuple(faults)  # type: ignore[attr-defined]
        return pytest.mark.proves(*faults)(func)  # type: ignore[no-any-return]
    return mark


def needs(*what: Needs) -> Callable[[F], F]:
    """This check or fixture cannot judge anything without ``what``: a fault that takes it away blocks it."""
    def mark(func: F) -> F:
        func.__smart_needs__ = tuple(what)  # type: ignore[attr-defined]
        return func
    return mark


def warns_under(*variants: str) -> Callable[[F], F]:
    """This check rightly warns under these legitimate variants: they do not meet a SHOULD it checks, which the spec
    allows. The variant matrix expects exactly these warnings (and no failure) with the variant on."""
    from smart_conformance.reference.variants import VARIANTS

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"@warns_under names variants that are not in the catalog: {unknown}")

    def mark(func: F) -> F:
        func.__smart_warns_under__ = tuple(variants)  # type: ignore[attr-defined]
        return func
    return mark


def production_unsafe(why: str, *, bulk: bool = False) -> pytest.MarkDecorator:
    """This check is not harmless by construction (a write or write probe, a wrong password, revoking what is not
    the run's own, a bulk export): ``run --profile production`` skips it as not applicable, "production profile:
    <why>". ``bulk``: it runs under the profile when bulk exports are asked for (``--with-bulk``). A mark, so it
    also declares a whole module (``pytestmark = production_unsafe(...)``)."""
    if not why.strip():
        raise ValueError("@production_unsafe needs the reason the profile shows")
    return pytest.mark.production_unsafe(why=why, bulk=bulk)


PRODUCTION = "production"


def production_skip(item: pytest.Item, *, with_bulk: bool) -> str | None:
    """Why the production profile skips this check (the reason shown), or None when it runs."""
    mark = item.get_closest_marker("production_unsafe")
    if mark is None or (mark.kwargs.get("bulk") and with_bulk):
        return None
    return f"production profile: {mark.kwargs.get('why', '')}"


@dataclass(frozen=True)
class Check:
    name: str
    module: str  # relative to suites/, e.g. "tokens/test_token_request.py"
    proves: frozenset[Fault]
    needs: frozenset[Needs]
    warns_under: frozenset[str] = frozenset()


@dataclass
class Plan:
    checks: dict[str, Check] = field(default_factory=dict)

    def caught_by(self, fault: str) -> set[str]:
        """The checks that must fail (or warn) with ``fault`` on."""
        return {c.name for c in self.checks.values() if fault in c.proves}

    def blocks(self, fault: str) -> set[str]:
        """The checks that must report *could not check* with ``fault`` on: they need what it takes away."""
        gone = set(FAULTS[Fault(fault)].takes_away)
        return {c.name for c in self.checks.values() if c.needs & gone and fault not in c.proves}

    def warned(self, variant: str) -> set[str]:
        """The checks that rightly warn (and only warn) with ``variant`` on."""
        return {c.name for c in self.checks.values() if variant in c.warns_under}

    def modules(self, names: Iterable[str]) -> list[str]:
        return sorted({self.checks[n].module for n in names})

    def unproven(self) -> list[str]:
        return sorted(n for n, c in self.checks.items() if not c.proves)


def _enum_args(decorator: ast.expr, func_name: str, enum_name: str) -> list[str] | None:
    """``@func_name(Enum.A, Enum.B)`` → ["A", "B"]; anything else → None."""
    if not (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Name) and decorator.func.id == func_name):
        return None
    out = []
    for arg in decorator.args:
        if not (isinstance(arg, ast.Attribute) and isinstance(arg.value, ast.Name) and arg.value.id == enum_name):
            raise ValueError(f"@{func_name}(...) takes {enum_name}.NAME constants, got {ast.unparse(arg)}")
        out.append(arg.attr)
    return out


def _variant_args(decorator: ast.expr) -> list[str] | None:
    """``@warns_under(NAME, ...)`` with the constants of reference/variants.py → their values."""
    from smart_conformance.reference import variants

    if not (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Name)
            and decorator.func.id == "warns_under"):
        return None
    out = []
    for arg in decorator.args:
        value = getattr(variants, arg.id, None) if isinstance(arg, ast.Name) else None
        if not isinstance(value, str):
            raise TypeError(f"@warns_under(...) takes the variant constants of reference/variants.py, got "
                             f"{ast.unparse(arg)}")
        out.append(value)
    return out


def _is_fixture(node: ast.FunctionDef) -> bool:
    return any("fixture" in ast.unparse(d) for d in node.decorator_list)


def _declared_needs(node: ast.FunctionDef) -> set[Needs]:
    found: set[Needs] = set()
    for d in node.decorator_list:
        names = _enum_args(d, "needs", "Needs")
        if names:
            found |= {Needs[n] for n in names}
    return found


def _params(node: ast.FunctionDef) -> list[str]:
    return [a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)]


@dataclass
class _Fixture:
    params: list[str]
    needs: set[Needs]


def _fixtures(tree: ast.Module) -> dict[str, _Fixture]:
    return {n.name: _Fixture(_params(n), _declared_needs(n))
            for n in tree.body if isinstance(n, ast.FunctionDef) and _is_fixture(n)}


def _closure_needs(start: Iterable[str], scopes: list[dict[str, _Fixture]]) -> set[Needs]:
    """Needs of every fixture reachable from ``start`` (the nearest definition of a name wins, as in pytest)."""
    found: set[Needs] = set()
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        fixture = next((scope[name] for scope in scopes if name in scope), None)
        if fixture is not None:
            found |= fixture.needs
            todo.extend(fixture.params)
    return found


@cache
def plan(suites: Path | None = None) -> Plan:
    """The plan of every check in ``suites/`` (default: the bundled or checked-out suites)."""
    root = suites or paths.suites_dir()
    plugin = Path(__file__).with_name("plugin.py")
    base = [_fixtures(ast.parse(plugin.read_text(encoding="utf-8")))]
    top = root / "conftest.py"
    if top.is_file():
        base.insert(0, _fixtures(ast.parse(top.read_text(encoding="utf-8"))))
    out = Plan()
    for file in sorted(root.glob("*/test_*.py")):
        conftest = file.parent / "conftest.py"
        scopes = ([_fixtures(ast.parse(conftest.read_text(encoding="utf-8")))] if conftest.is_file() else []) + base
        tree = ast.parse(file.read_text(encoding="utf-8"))
        scopes = [_fixtures(tree), *scopes]
        for node in tree.body:
            if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
                continue
            proven: set[Fault] = set()
            warned: set[str] = set()
            for d in node.decorator_list:
                names = _enum_args(d, "proves", "Fault")
                if names:
                    proven |= {Fault[n] for n in names}
                warned |= set(_variant_args(d) or ())
            if node.name in out.checks:
                raise ValueError(f"check name {node.name} is used twice (suites/{out.checks[node.name].module} and "
                                 f"suites/{file.parent.name}/{file.name}); check names are unique across suites")
            out.checks[node.name] = Check(
                name=node.name, module=f"{file.parent.name}/{file.name}", proves=frozenset(proven),
                needs=frozenset(_declared_needs(node) | _closure_needs(_params(node), scopes)),
                warns_under=frozenset(warned))
    return out

