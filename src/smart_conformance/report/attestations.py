"""Attestations: a payer's signed-off answers for requirements a black-box harness cannot check.

A versioned YAML file per target (``fixtures/schemas/attestations.schema.json``), referenced from the target file's
``attestations`` key. Loading validates it and raises :class:`AttestationError` (one line: file, key, problem, fix,
like :class:`smart_conformance.config.ConfigError`); answers older than ``max_age_days`` are flagged stale and ids the
catalog lacks are flagged unknown (both reported, neither fatal).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from smart_conformance import paths, requirements
from smart_conformance.config import (
    ConfigError,
    first_schema_error,
    key_path,
    load_yaml,
)

DEFAULT_MAX_AGE_DAYS = 365
SCHEMA = "attestations.schema.json"


class AttestationError(ConfigError):
    """An attestation file that cannot be used: file, key, what is wrong, how to fix it."""


@dataclass(frozen=True)
class Attestation:
    requirement: str
    answer: str
    by: str
    date: dt.date
    evidence: str
    note: str = ""
    stale: bool = False
    known: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"requirement": self.requirement, "answer": self.answer, "by": self.by, "date": self.date.isoformat(),
                "evidence": self.evidence, "note": self.note, "stale": self.stale}


@dataclass(frozen=True)
class Attestations:
    file: Path
    target: str
    max_age_days: int
    items: dict[str, Attestation] = field(default_factory=dict)

    @property
    def stale(self) -> list[str]:
        return [i for i, a in self.items.items() if a.stale]

    @property
    def unknown(self) -> list[str]:
        return [i for i, a in self.items.items() if not a.known]


@cache
def _schema() -> dict[str, Any]:
    return json.loads(paths.schema_path(SCHEMA).read_text(encoding="utf-8"))


def _schema_error(file: Path, exc: jsonschema.ValidationError) -> AttestationError:
    key = key_path(exc.absolute_path)
    if exc.validator == "additionalProperties":
        allowed = sorted(exc.schema.get("properties", {}))
        extra = min(set(exc.instance) - set(allowed)) if isinstance(exc.instance, dict) else "?"
        return AttestationError(file, key_path([*exc.absolute_path, extra]), f"unknown key '{extra}'",
                                f"allowed keys here: {', '.join(allowed)}")
    if exc.validator == "required":
        name = exc.message.split("'")[1] if "'" in exc.message else "?"
        return AttestationError(file, key_path([*exc.absolute_path, name]), "required key is missing",
                                f"add '{name}' (see fixtures/attestations/reference.yaml)")
    if exc.validator == "enum" and isinstance(exc.instance, bool):
        return AttestationError(file, key, f"YAML read the bare word as {exc.instance!r}",
                                'quote it: answer: "yes" / answer: "no"')
    if exc.validator == "enum":
        return AttestationError(file, key, f"{exc.instance!r} is not allowed",
                                f"use one of {', '.join(str(v) for v in exc.validator_value)}")
    if exc.validator == "const":
        return AttestationError(file, key, f"{exc.instance!r} is not a known format version", "write 'version: 1'")
    if exc.validator == "pattern" and key.endswith(".date"):
        return AttestationError(file, key, f"{exc.instance!r} is not a date", "write the date as YYYY-MM-DD")
    return AttestationError(file, key, exc.message, f"correct the value; the schema is fixtures/schemas/{SCHEMA}")


def load(file: Path | str, *, target: str | None = None, today: dt.date | None = None,
         catalog: dict[str, requirements.Requirement] | None = None) -> Attestations:
    """Read and validate one attestation file. ``target``: the name it must be about. Raises AttestationError only."""
    file = Path(file)
    today = today or dt.date.today()
    raw = load_yaml(file, what="attestation file", error=AttestationError,
                    missing_fix="fix the target's 'attestations' path (relative to the target file)")
    if not isinstance(raw, dict):
        raise AttestationError(file, "", "the file does not hold a mapping",
                               "start from fixtures/attestations/reference.yaml")
    error = first_schema_error(raw, _schema())
    if error is not None:
        raise _schema_error(file, error)
    if target is not None and raw["target"] != target:
        raise AttestationError(file, "target", f"the answers are about '{raw['target']}', not '{target}'",
                               f"write 'target: {target}' or point the target at its own attestation file")
    known = requirements.catalog() if catalog is None else catalog
    max_age = int(raw.get("max_age_days", DEFAULT_MAX_AGE_DAYS))
    items: dict[str, Attestation] = {}
    for i, entry in enumerate(raw["attestations"]):
        key = f"attestations[{i}]"
        try:
            when = dt.date.fromisoformat(entry["date"])
        except ValueError:
            raise AttestationError(file, f"{key}.date", f"{entry['date']!r} is not a calendar date",
                                   "write a real date as YYYY-MM-DD") from None
        if when > today:
            raise AttestationError(file, f"{key}.date", f"{when.isoformat()} is in the future",
                                   "date the answer when it was given")
        rid = entry["requirement"]
        if rid in items:
            raise AttestationError(file, f"{key}.requirement", f"{rid} is answered twice", "keep one answer per id")
        items[rid] = Attestation(requirement=rid, answer=entry["answer"], by=entry["by"], date=when,
                                 evidence=entry["evidence"], note=entry.get("note", ""),
                                 stale=(today - when).days > max_age, known=rid in known)
    return Attestations(file=file, target=raw["target"], max_age_days=max_age, items=items)


def reference_attestations_path() -> Path | None:
    """The embedded reference target's attestation file, read from the raw YAML key (no ${ENV} interpolation needed:
    the controller process never starts the reference server, so it has no target object for it)."""
    file = paths.reference_target()
    try:
        raw = load_yaml(file, what="reference target file", missing_fix="reinstall the harness")
    except ConfigError:
        return None
    value = raw.get("attestations") if isinstance(raw, dict) else None
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else (file.parent / path).resolve()
