"""The requirement catalog: every id a test may cite, with its level, spec link and a line in our own words.

Tests cite ids with ``@pytest.mark.requirement("SMART-DISC-01", ...)``; the plugin refuses to collect a test that cites
none or an id the catalog lacks, so every verdict can be traced to a spec section.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jsonschema
import yaml

from smart_conformance import paths

WARNING_LEVELS = frozenset({"SHOULD", "SHOULD NOT", "MAY"})
LEVEL_RANK = {"SHALL": 0, "SHALL NOT": 0, "SHOULD": 1, "SHOULD NOT": 1, "MAY": 2}


@dataclass(frozen=True)
class Requirement:
    id: str
    level: str
    url: str
    section: str
    text: str
    verification: str
    area: str
    source: str
    checklist_item: str | None = None
    evidenced_by: tuple[str, ...] = ()  # SAFETY-* only: other ids whose checks evidence this item

    @property
    def is_warning_level(self) -> bool:
        """SHOULD and MAY findings are warnings, not conformance failures (unless the run is --strict)."""
        return self.level in WARNING_LEVELS

    def cite(self) -> str:
        return f"{self.id} ({self.level}): {self.text}"


class CatalogError(Exception):
    pass


@cache
def catalog(folder: Path | None = None) -> dict[str, Requirement]:
    folder = folder or paths.fixtures_dir() / "requirements"
    schema = json.loads(paths.schema_path("requirements.schema.json").read_text())
    found: dict[str, Requirement] = {}
    for file in sorted(folder.glob("*.yaml")):
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
        try:
            jsonschema.validate(doc, schema)
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(top)"
            raise CatalogError(f"{file}: {where}: {exc.message}") from None
        source = doc["source"]["id"]
        for entry in doc["requirements"]:
            if entry["id"] in found:
                raise CatalogError(f"{file}: requirement id {entry['id']} is defined twice")
            found[entry["id"]] = Requirement(
                id=entry["id"], level=entry["level"], url=entry["url"], section=entry.get("section", ""),
                text=entry["text"], verification=entry["verification"], area=entry.get("area", ""),
                source=source, checklist_item=entry.get("checklist_item"),
                evidenced_by=tuple(entry.get("evidenced_by") or ()),
            )
    for req in found.values():
        unknown = [i for i in req.evidenced_by if i not in found]
        if unknown:
            raise CatalogError(f"{req.id}: evidenced_by names ids the catalog does not know: {', '.join(unknown)}")
    return found


def lookup(ids: tuple[str, ...] | list[str]) -> list[Requirement]:
    known = catalog()
    return [known[i] for i in ids if i in known]


def strongest(reqs: list[Requirement]) -> Requirement | None:
    return min(reqs, key=lambda r: LEVEL_RANK.get(r.level, 9)) if reqs else None
