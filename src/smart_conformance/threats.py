"""The threat model as data: attack classes × surfaces, each cell decided, rendered as THREATS.md.

A conformance harness catches what someone thought to write a check for. ``fixtures/threats/threat-model.yaml`` lists
every attack class of the security catalogues a payer's API answers to (RFC 9700, RFC 6819, OpenID Connect,
SMART, FHIR security and safety, OWASP ASVS), and for each surface says which checks cover it, or that a check is
missing (a gap), or why a black box cannot see it, or why it does not arise there. The completeness test
(``tests/unit/test_threat_map.py``) keeps it honest as checks come and go; this module only reads and renders it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import jsonschema
import yaml

from smart_conformance import paths

Decision = Literal["checks", "gap", "untestable", "not_applicable"]
DECISIONS: tuple[Decision, ...] = ("checks", "gap", "untestable", "not_applicable")
LABELS: dict[Decision, str] = {"checks": "covered", "gap": "gap", "untestable": "untestable",
                               "not_applicable": "not applicable"}
SYMBOLS: dict[Decision, str] = {"checks": "✔", "gap": "**✘**", "untestable": "?", "not_applicable": "–"}


class ThreatModelError(Exception):
    """The YAML is unreadable or breaks its schema: names the file and the key path."""


@dataclass(frozen=True)
class Surface:
    id: str
    title: str
    what: str


@dataclass(frozen=True)
class Section:
    source: str
    id: str
    title: str

    @property
    def ref(self) -> str:
        return f"{self.source}:{self.id}"


@dataclass(frozen=True)
class Source:
    id: str
    title: str
    url: str
    sections: tuple[Section, ...]


@dataclass(frozen=True)
class Cell:
    """One class on one surface. ``inherited`` cells come from the class's ``otherwise``."""

    decision: Decision
    checks: tuple[str, ...] = ()
    reason: str = ""  # the gap, untestable or not-applicable text; for covered cells, the optional note
    inherited: bool = False


@dataclass(frozen=True)
class ThreatClass:
    id: str
    title: str
    sources: tuple[str, ...]
    threat: str
    cells: dict[str, Cell]  # every surface the class decides, in the model's surface order


@dataclass(frozen=True)
class Counts:
    classes: int
    surfaces: int
    covered: int
    gap: int
    untestable: int
    not_applicable: int

    @property
    def cells(self) -> int:
        return self.covered + self.gap + self.untestable + self.not_applicable

    def line(self) -> str:
        return (f"{self.classes} classes × {self.surfaces} surfaces = {self.cells} cells: {self.covered} covered by checks, "
                f"{self.gap} gaps (testable, no check yet), {self.untestable} untestable from outside, "
                f"{self.not_applicable} not applicable")


@dataclass(frozen=True)
class ThreatModel:
    surfaces: tuple[Surface, ...]
    sources: tuple[Source, ...]
    classes: tuple[ThreatClass, ...]

    def sections(self) -> dict[str, Section]:
        return {s.ref: s for source in self.sources for s in source.sections}

    def cells(self) -> Iterable[tuple[ThreatClass, str, Cell]]:
        for threat in self.classes:
            for surface, cell in threat.cells.items():
                yield threat, surface, cell

    def checks(self) -> set[str]:
        """Every check name a cell relies on."""
        return {name for _, _, cell in self.cells() for name in cell.checks}

    # What tests/unit/test_threat_map.py holds the model to; each returns the offenders, empty when all is well.

    def undecided(self) -> list[str]:
        """``class/surface`` for every cell neither named nor covered by ``otherwise``."""
        return [f"{t.id}/{s.id}" for t in self.classes for s in self.surfaces if s.id not in t.cells]

    def unknown_checks(self, known: Iterable[str]) -> list[str]:
        """``class/surface: check`` for every check a cell names that is not in ``known``."""
        have = set(known)
        return [f"{t.id}/{s}: {n}" for t, s, c in self.cells() for n in c.checks if n not in have]

    def unknown_citations(self) -> list[str]:
        """``class: ref`` for every citation that names no listed section."""
        listed = self.sections()
        return [f"{t.id}: {ref}" for t in self.classes for ref in t.sources if ref not in listed]

    def uncited_sections(self) -> list[str]:
        """Every listed section no class cites: an attack class of that catalogue left out."""
        cited = {ref for t in self.classes for ref in t.sources}
        return [ref for ref in self.sections() if ref not in cited]

    def duplicate_ids(self) -> list[str]:
        """Class, surface, source and section ids given more than once."""
        ids = [f"class {t.id}" for t in self.classes] + [f"surface {s.id}" for s in self.surfaces]
        ids += [f"source {s.id}" for s in self.sources]
        ids += [f"section {x.ref}" for s in self.sources for x in s.sections]
        return sorted(i for i, n in Counter(ids).items() if n > 1)

    def counts(self) -> Counts:
        tally = Counter(cell.decision for _, _, cell in self.cells())
        return Counts(len(self.classes), len(self.surfaces), tally["checks"], tally["gap"], tally["untestable"], tally["not_applicable"])


def default_path() -> Path:
    return paths.fixtures_dir() / "threats" / "threat-model.yaml"


def _cell(raw: dict[str, Any], *, inherited: bool = False) -> Cell:
    if "checks" in raw:
        return Cell("checks", checks=tuple(raw["checks"]), reason=raw.get("note", ""), inherited=inherited)
    decision: Decision = next(d for d in DECISIONS if d in raw)
    return Cell(decision, reason=raw[decision], inherited=inherited)


def _threat_class(raw: dict[str, Any], surfaces: tuple[Surface, ...]) -> ThreatClass:
    named = raw.get("cells") or {}
    otherwise = raw.get("otherwise")
    cells: dict[str, Cell] = {}
    for surface in surfaces:  # the model's column order; an undecided surface is simply absent
        if surface.id in named:
            cells[surface.id] = _cell(named[surface.id])
        elif otherwise is not None:
            cells[surface.id] = _cell(otherwise, inherited=True)
    return ThreatClass(raw["id"], raw["title"], tuple(raw["sources"]), raw["threat"], cells)


def parse(doc: Any, where: str = "threat model") -> ThreatModel:
    """A validated model from the YAML document (``where`` names it in errors)."""
    schema = json.loads(paths.schema_path("threats.schema.json").read_text(encoding="utf-8"))
    try:
        jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
    except jsonschema.ValidationError as exc:
        at = "/".join(str(p) for p in exc.absolute_path) or "(top)"
        raise ThreatModelError(f"{where}: {at}: {exc.message}") from None
    surfaces = tuple(Surface(s["id"], s["title"], s["what"]) for s in doc["surfaces"])
    sources = tuple(Source(s["id"], s["title"], s["url"],
                           tuple(Section(s["id"], x["id"], x["title"]) for x in s["sections"]))
                    for s in doc["sources"])
    return ThreatModel(surfaces, sources, tuple(_threat_class(c, surfaces) for c in doc["classes"]))


@cache
def load(path: Path | None = None) -> ThreatModel:
    file = path or default_path()
    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ThreatModelError(f"{file}: {exc}") from None
    return parse(doc, str(file))


def counts(model: ThreatModel | None = None) -> Counts:
    """Covered / gap / untestable / not-applicable cells (and the number of classes) of the shipped model."""
    return (model or load()).counts()


# --- rendering ---------------------------------------------------------------------------------------------------

def _checks(names: Iterable[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _matrix(model: ThreatModel) -> list[str]:
    head = "| class | " + " | ".join(f"`{s.id}`" for s in model.surfaces) + " |"
    rule = "|---|" + "---|" * len(model.surfaces)
    rows = []
    for threat in model.classes:
        marks = []
        for surface in model.surfaces:
            cell = threat.cells.get(surface.id)
            if cell is None:
                marks.append("")
            elif cell.decision == "checks":
                marks.append(f"✔ {len(cell.checks)}")
            else:
                marks.append(SYMBOLS[cell.decision])
        rows.append(f"| [{threat.id}](#{threat.id}) | " + " | ".join(marks) + " |")
    return [head, rule, *rows]


def _decisions(model: ThreatModel, threat: ThreatClass) -> list[str]:
    """One line per cell; surfaces that share the class's ``otherwise`` share one line."""
    lines = []
    inherited = [s for s in model.surfaces if s.id in threat.cells and threat.cells[s.id].inherited]
    for surface in model.surfaces:
        cell = threat.cells.get(surface.id)
        if cell is None or cell.inherited:
            continue
        if cell.decision == "checks":
            note = f" ({cell.reason})" if cell.reason else ""
            lines.append(f"- `{surface.id}`: **covered** by {_checks(cell.checks)}{note}")
        else:
            lines.append(f"- `{surface.id}`: **{LABELS[cell.decision]}**: {cell.reason}")
    if inherited:
        cell = threat.cells[inherited[0].id]
        names = ", ".join(f"`{s.id}`" for s in inherited)
        lines.append(f"- {names}: **{LABELS[cell.decision]}**: {cell.reason}")
    return lines


def _gaps(model: ThreatModel) -> list[str]:
    found = [(t, s, c) for t, s, c in model.cells() if c.decision == "gap"]
    if not found:
        return ["None: every testable cell has a check."]
    return [f"- [{t.id}](#{t.id}) / `{s}`: {c.reason}" for t, s, c in found]


def _sources(model: ThreatModel) -> list[str]:
    citing: dict[str, list[str]] = {}
    for threat in model.classes:
        for ref in threat.sources:
            citing.setdefault(ref, []).append(f"[{threat.id}](#{threat.id})")
    lines: list[str] = []
    for source in model.sources:
        lines += ["", f"### {source.title}", "", f"<{source.url}>", ""]
        lines += [f"- `{s.ref}` {s.title}: {', '.join(citing.get(s.ref, [])) or '**not cited**'}"
                  for s in source.sections]
    return lines


GENERATED = ("<!-- Generated from fixtures/threats/threat-model.yaml by `smart-conformance threats > THREATS.md`; "
             "do not edit by hand (tests/unit/test_threat_map.py compares the two). -->")
READING = ("Each row is an attack class from the catalogues listed under *Sources*; each column a surface of a payer's "
           "API. A cell is covered by the checks named (the number of them in the matrix), a **gap** (testable from "
           "outside, no check yet), untestable from outside, or not applicable, always with the reason. "
           "`smart-conformance threats --counts` prints the counts.")
LEGEND = (f"Legend: ✔ *n* covered by *n* checks · {SYMBOLS['gap']} gap · {SYMBOLS['untestable']} untestable · "
          f"{SYMBOLS['not_applicable']} not applicable.")


def render(model: ThreatModel | None = None) -> str:
    """THREATS.md: the counts, the matrix, the gaps, every class with the reason for each cell, the sources."""
    model = model or load()
    lines = ["# Threat model: what this harness looks for, and what it cannot", "", GENERATED, "",
             f"**{model.counts().line()}.**", "", READING, "", LEGEND, "", "## Surfaces", "",
             *(f"- `{s.id}` ({s.title}): {s.what}" for s in model.surfaces), "", "## Matrix", "", *_matrix(model),
             "", "## Gaps", "", *_gaps(model), "", "## Classes"]
    for threat in model.classes:
        lines += ["", f'<a id="{threat.id}"></a>', "", f"### {threat.title} (`{threat.id}`)", "",
                  threat.threat, "", f"Sources: {', '.join(f'`{ref}`' for ref in threat.sources)}", "",
                  *_decisions(model, threat)]
    lines += ["", "## Sources", *_sources(model)]
    return "\n".join(lines) + "\n"
