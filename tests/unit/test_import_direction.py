"""Writers depend on results, never the reverse: nothing ``results.py`` imports (at module level, inside a function or
for type checking only), directly or through other modules of the package, is a report writer or the plugin."""

from __future__ import annotations

import ast
from pathlib import Path

import smart_conformance

PACKAGE = Path(smart_conformance.__file__).parent


def _module_file(name: str) -> Path | None:
    parts = name.split(".")[1:]
    if not parts:
        return PACKAGE / "__init__.py"
    rel = Path(*parts)
    for candidate in (PACKAGE / rel.with_suffix(".py"), PACKAGE / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(name: str) -> set[str]:
    """The package's modules that module ``name`` imports anywhere in its source."""
    file = _module_file(name)
    if file is None:
        return set()
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("smart_conformance")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("smart_conformance"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if _module_file(f"{node.module}.{a.name}")}
    return found


def import_graph(root: str) -> set[str]:
    seen: set[str] = set()
    todo = [root]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_imports(name) - seen)
    return seen


def test_results_does_not_depend_on_the_report_writers_or_the_plugin() -> None:
    graph = import_graph("smart_conformance.results")
    offending = sorted(m for m in graph if m.startswith("smart_conformance.report") or m == "smart_conformance.plugin")
    assert offending == [], f"results.py reaches {offending}: writers depend on results, never the reverse"
    assert {"smart_conformance.checks", "smart_conformance.root_causes", "smart_conformance.baseline"} <= graph


def test_the_graph_walk_sees_function_level_imports() -> None:
    """The check above is only worth something if it would have seen the old lazy imports."""
    assert "smart_conformance.report.writers" in import_graph("smart_conformance.plugin")
