"""The production profile: every check that writes, probes with write methods, types a wrong password, forges a
sign-in or starts a bulk job is declared ``@production_unsafe`` (found from the suites' source), and the profile
skips exactly those as not applicable with the reason "production profile: <why>"."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from smart_conformance import http as http_module
from smart_conformance import paths
from smart_conformance.http import RecordingClient
from smart_conformance.testplan import production_skip, production_unsafe

# What a check must not do in production, as it shows in the source (as ast.unparse writes it: single quotes) of
# the check or of what it calls.
UNSAFE = {
    "a write method": re.compile(r"[\"'](PUT|DELETE|PATCH|TRACE|PROPFIND)[\"']|\.(put|delete|patch)\("),
    "a wrong password": re.compile(r"[\"']member\.password[\"']:"),
    "a forged sign-in": re.compile(r"attacker\.post\("),
    "a bulk job": re.compile(r"\bkickoff\(|\bexport_job\b|post\(f?'[^']*\$(bulk-member-match|davinci-data-export)"),
    "a match that creates Groups": re.compile(r"\bprovider_match\b|post\(f?'[^']*\$provider-member-match"),
}


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def _declared(node: ast.FunctionDef, tree: ast.Module) -> bool:
    module_mark = any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)
                      and "production_unsafe" in ast.unparse(n.value) for n in tree.body)
    return module_mark or any("production_unsafe" in ast.unparse(d) for d in node.decorator_list)


def _reach(node: ast.FunctionDef, scopes: list[dict[str, ast.FunctionDef]]) -> str:
    """The source of the check and of every module helper or fixture it names, transitively (nearest scope wins)."""
    seen: set[str] = set()
    todo, out = [node], []
    while todo:
        current = todo.pop()
        if current.name in seen:
            continue
        seen.add(current.name)
        out.append(ast.unparse(current))
        names = {n.id for n in ast.walk(current) if isinstance(n, ast.Name)}
        names |= {a.arg for a in current.args.args}
        for name in names:
            found = next((scope[name] for scope in scopes if name in scope), None)
            if found is not None:
                todo.append(found)
    return "\n".join(out)


def unsafe_checks() -> dict[str, tuple[str, bool]]:
    """Per check that does something unsafe: what, and whether it is declared."""
    root = paths.suites_dir()
    found: dict[str, tuple[str, bool]] = {}
    for file in sorted(root.glob("*/test_*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        conftest = file.parent / "conftest.py"
        scopes = [_functions(tree)] + ([_functions(ast.parse(conftest.read_text(encoding="utf-8")))]
                                       if conftest.is_file() else [])
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                source = _reach(node, scopes)
                what = [label for label, pattern in UNSAFE.items() if pattern.search(source)]
                if what:
                    found[node.name] = (", ".join(what), _declared(node, tree))
    return found


def test_every_unsafe_check_is_declared() -> None:
    found = unsafe_checks()
    assert "test_wrong_password_refused" in found and "test_writes_refused_under_read_scopes" in found
    undeclared = {name: what for name, (what, declared) in found.items() if not declared}
    assert not undeclared, f"declare these @production_unsafe('why'): {undeclared}"


def _item(mark: Any) -> Any:
    return SimpleNamespace(get_closest_marker=lambda name: mark.mark if name == "production_unsafe" else None)


def test_the_profile_skips_with_the_reason_and_bulk_only_unless_asked() -> None:
    write = production_unsafe("sends write requests")
    bulk = production_unsafe("starts bulk exports", bulk=True)
    assert production_skip(_item(write), with_bulk=False) == "production profile: sends write requests"
    assert production_skip(_item(write), with_bulk=True) == "production profile: sends write requests"
    assert production_skip(_item(bulk), with_bulk=False) == "production profile: starts bulk exports"
    assert production_skip(_item(bulk), with_bulk=True) is None
    assert production_skip(SimpleNamespace(get_closest_marker=lambda name: None), with_bulk=False) is None
    with pytest.raises(ValueError):
        production_unsafe(" ")


def test_every_request_of_the_recording_client_is_paced(monkeypatch: pytest.MonkeyPatch) -> None:
    """--max-rps: the client asks the pace before each request (counted, not timed)."""
    asked: list[float] = []
    pace = http_module.Pace()
    pace.set(2)
    monkeypatch.setattr(pace, "wait", lambda: asked.append(pace.interval))
    monkeypatch.setattr(http_module, "PACE", pace)
    with RecordingClient(transport=httpx.MockTransport(lambda request: httpx.Response(200))) as client:
        for _ in range(3):
            client.get("https://fhir.example/metadata")
    assert asked == [0.5, 0.5, 0.5]
    pace.set(None)
    assert pace.interval == 0


def test_the_cli_passes_the_profile_to_pytest(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from smart_conformance import cli

    seen: list[list[str]] = []
    monkeypatch.setattr(pytest, "main", lambda args: seen.append(list(args)) or 0)
    cli.main(["run", "--reports", str(tmp_path), "--suite", "discovery", "--profile", "production", "--with-bulk",
              "--max-rps", "3"])
    assert {"--smart-profile=production", "--with-bulk", "--max-rps=3.0"} <= set(seen[0])
