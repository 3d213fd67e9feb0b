"""The test plan is derived from what checks and fixtures declare, never listed beside the faults."""

from __future__ import annotations

from pathlib import Path

import pytest

from smart_conformance import paths
from smart_conformance.reference.faults import FAULTS, Fault, Needs
from smart_conformance.testplan import plan

CONFTEST = '''
import pytest
from smart_conformance.testplan import Needs, needs

@pytest.fixture
@needs(Needs.CAPABILITY_STATEMENT)
def statement():
    return {}

@pytest.fixture
def wrapped(statement):
    return statement
'''

CHECKS = '''
from smart_conformance.testplan import Fault, Needs, needs, proves

@proves(Fault.METADATA_REQUIRES_TOKEN)
def test_public(statement):
    pass

def test_version(wrapped):
    pass

@needs(Needs.MEMBER_LAUNCH)
@proves(Fault.PKCE_PLAIN_ACCEPTED)
def test_plain_refused():
    pass

def test_unrelated(other):
    pass
'''


def _suites(tmp_path: Path, checks: str = CHECKS) -> Path:
    area = tmp_path / "suites" / "area"
    area.mkdir(parents=True)
    (area / "conftest.py").write_text(CONFTEST)
    (area / "test_things.py").write_text(checks)
    return tmp_path / "suites"


def test_caught_by_comes_from_proves(tmp_path: Path) -> None:
    derived = plan(_suites(tmp_path))
    assert derived.caught_by(Fault.METADATA_REQUIRES_TOKEN) == {"test_public"}
    assert derived.caught_by(Fault.PKCE_PLAIN_ACCEPTED) == {"test_plain_refused"}
    assert derived.unproven() == ["test_unrelated", "test_version"]


def test_blocks_follow_fixture_needs_transitively_and_spare_the_catchers(tmp_path: Path) -> None:
    """metadata-requires-token takes away the CapabilityStatement: test_version needs it through `wrapped`;
    test_public needs it too but is the check that catches the fault, so it must fail, not be blocked."""
    derived = plan(_suites(tmp_path))
    assert Needs.CAPABILITY_STATEMENT in FAULTS[Fault.METADATA_REQUIRES_TOKEN].takes_away
    assert derived.blocks(Fault.METADATA_REQUIRES_TOKEN) == {"test_version"}
    assert derived.blocks(Fault.CODE_EXPIRES_IMMEDIATELY) == {"test_plain_refused"}
    assert derived.modules(["test_version"]) == ["area/test_things.py"]


def test_a_string_instead_of_a_constant_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"Fault\.NAME constants"):
        plan(_suites(tmp_path, "from smart_conformance.testplan import proves\n\n"
                               "@proves('pkce-plain-accepted')\ndef test_x():\n    pass\n"))


def test_the_real_plan_names_only_catalogued_faults_and_no_server_names_a_check() -> None:
    derived = plan()
    assert len(derived.checks) > 100
    source = "\n".join(p.read_text(encoding="utf-8") for p in (paths.project_root() / "src").rglob("*.py")
                       if paths.project_root().name != "_bundled")
    named = sorted(name for name in derived.checks if name in source)
    assert not named, f"src/ names suite checks (derive them instead): {named}"


def test_suite_areas_are_the_folders_with_their_readme_titles() -> None:
    areas = paths.suite_areas()
    folders = {p.name for p in paths.suites_dir().iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    assert set(areas) == folders
    assert areas["tls"] == "Transport security (TLS)"
    missing = sorted(a for a in folders if not (paths.suites_dir() / a / "README.md").is_file())
    assert not missing, f"suite areas without a README.md title: {missing}"
