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


@cache
def suite_areas() -> dict[str, str]:
    """Every suite area (a folder of ``suites/`` holding ``test_*.py``) with its title: the first heading of the
    folder's README.md. A new area is a new folder; packaging, the CLI and the reports find it here."""
    areas: dict[str, str] = {}
    for folder in sorted(p for p in suites_dir().iterdir() if p.is_dir() and any(p.glob("test_*.py"))):
        readme = folder / "README.md"
        heading = ""
        if readme.is_file():
            heading = next((line[2:].strip() for line in readme.read_text(encoding="utf-8").splitlines()
                            if line.startswith("# ")), "")
        areas[folder.name] = heading or folder.name.replace("_", " ").capitalize()
    return areas
