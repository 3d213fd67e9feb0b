"""The threat model stays complete: every attack class decided on every surface, every check real, every catalogue
section cited, and THREATS.md rendered from the YAML as it is now."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from smart_conformance import cli, paths, threats
from smart_conformance.testplan import plan

SURFACES = ("authorize", "member_pages", "token", "revocation", "introspection", "discovery", "fhir_read",
            "fhir_search", "fhir_paging", "fhir_include", "fhir_operations", "bulk", "cors")
CATALOGUES = {"rfc9700", "rfc6819", "oidc", "smart", "fhir", "safety", "asvs"}
THREATS_MD = paths.project_root() / "THREATS.md"


@pytest.fixture(scope="module")
def model() -> threats.ThreatModel:
    return threats.load()


def test_yaml_validates_against_its_schema() -> None:
    doc = yaml.safe_load(threats.default_path().read_text(encoding="utf-8"))
    schema = json.loads(paths.schema_path("threats.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)]
    assert errors == []


def test_surfaces_are_the_agreed_columns(model: threats.ThreatModel) -> None:
    assert tuple(s.id for s in model.surfaces) == SURFACES


def test_every_cell_is_decided(model: threats.ThreatModel) -> None:
    assert model.undecided() == []
    empty = [f"{t.id}/{s}" for t, s, c in model.cells() if not (c.checks if c.decision == "checks" else c.reason.strip())]
    assert empty == [], "a decision without a check or a reason"


def test_otherwise_never_stands_for_checks(model: threats.ThreatModel) -> None:
    assert [f"{t.id}/{s}" for t, s, c in model.cells() if c.inherited and c.decision in ("checks", "gap")] == []


def test_every_check_named_exists(model: threats.ThreatModel) -> None:
    assert model.unknown_checks(plan().checks) == []


def test_every_section_is_cited_and_every_citation_listed(model: threats.ThreatModel) -> None:
    assert {s.id for s in model.sources} == CATALOGUES
    assert model.unknown_citations() == []
    assert model.uncited_sections() == [], "an attack class of a catalogue is missing from the model"


def test_ids_are_unique(model: threats.ThreatModel) -> None:
    assert model.duplicate_ids() == []


def test_catalogue_section_lists_are_whole(model: threats.ThreatModel) -> None:
    """The section lists the citations are checked against are the catalogues' own, not a convenient subset."""
    sections = {s.id: {x.id for x in s.sections} for s in model.sources}
    assert sections["rfc9700"] == {f"4.{n}" for n in range(1, 18)}
    assert sections["oidc"] == {f"16.{n}" for n in range(1, 22)}
    assert len(sections["rfc6819"]) == 51
    assert sections["asvs"] == {*(f"V3.{n}" for n in range(1, 8)), *(f"V5.{n}" for n in range(1, 6)),
                                *(f"V8.{n}" for n in range(1, 4)), *(f"V13.{n}" for n in range(1, 5)),
                                *(f"V14.{n}" for n in range(1, 6))}


def test_counts_add_up(model: threats.ThreatModel) -> None:
    counts = threats.counts(model)
    assert counts.classes == len(model.classes)
    assert counts.cells == len(model.classes) * len(SURFACES)
    assert counts.covered and counts.untestable and counts.not_applicable


def test_threats_md_is_the_rendering(model: threats.ThreatModel) -> None:
    assert THREATS_MD.read_text(encoding="utf-8") == threats.render(model), (
        "THREATS.md is stale: regenerate it with `.venv/bin/smart-conformance threats > THREATS.md`")


def test_rendering_gives_a_reason_for_every_cell(model: threats.ThreatModel) -> None:
    text = threats.render(model)
    for threat in model.classes:
        for cell in threat.cells.values():
            assert cell.reason in text and all(f"`{n}`" in text for n in cell.checks)
    assert threats.counts(model).line() in text


def test_cli_prints_the_matrix_and_the_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["threats"]) == 0
    assert capsys.readouterr().out == threats.render()
    assert cli.main(["threats", "--counts"]) == 0
    assert capsys.readouterr().out == threats.counts().line() + "\n"


def test_schema_refuses_checks_in_otherwise_and_a_cell_with_two_decisions() -> None:
    doc = yaml.safe_load(threats.default_path().read_text(encoding="utf-8"))
    first = doc["classes"][0]
    for broken in ({**first, "otherwise": {"checks": ["test_code_single_use"]}},
                   {**first, "cells": {"token": {"gap": "x", "untestable": "y"}}}):
        with pytest.raises(threats.ThreatModelError):
            threats.parse({**doc, "classes": [broken]})
