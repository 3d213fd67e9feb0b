"""Where the suites and fixtures live: beside the package in a checkout, inside it in an installed wheel."""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@cache
def project_root() -> Path:
    """The folder that holds ``suites/`` and ``fixtures/``."""
    checkout = _PACKAGE.parent.parent
    if (checkout / "suites").is_dir() and (checkout / "fixtures").is_dir():
        return checkout
    return _PACKAGE / "_bundled"


def suites_dir() -> Path:
    return project_root() / "suites"


def fixtures_dir() -> Path:
    return project_root() / "fixtures"


def schema_path(name: str) -> Path:
    return fixtures_dir() / "schemas" / name


def reference_target() -> Path:
    return fixtures_dir() / "targets" / "reference.yaml"
