"""Synthetic payer data and accounts, loaded from ``fixtures/data``.

Resources are read-only for the server's lifetime, so they live in memory; only security state (clients, codes,
tokens) goes to SQLite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from smart_conformance import paths

Resource = dict[str, Any]

# Resource types whose instances belong to one patient, and the element that names the patient.
PATIENT_LINK: dict[str, str] = {
    "Coverage": "beneficiary",
    "ExplanationOfBenefit": "patient",
    "RelatedPerson": "patient",
}
SHARED_TYPES = ("Organization", "Practitioner")
SUPPORTED_TYPES = ("Patient", "Coverage", "ExplanationOfBenefit", "Organization", "Practitioner", "RelatedPerson")


@dataclass(frozen=True)
class Client:
    client_id: str
    client_secret: str
    name: str
    redirect_uris: tuple[str, ...]


@dataclass(frozen=True)
class Member:
    username: str
    password: str
    display: str
    sub: str
    fhir_user: str
    patients: tuple[str, ...]


@dataclass
class Dataset:
    """Every resource by type and id, plus the accounts."""

    clients: dict[str, Client]
    members: dict[str, Member]
    resources: dict[str, dict[str, Resource]] = field(default_factory=dict)

    def get(self, rtype: str, rid: str) -> Resource | None:
        return self.resources.get(rtype, {}).get(rid)

    def all(self, rtype: str) -> list[Resource]:
        return list(self.resources.get(rtype, {}).values())

    def patient_of(self, resource: Resource) -> str | None:
        """The patient id a resource belongs to, or None for shared resources (organizations, practitioners)."""
        rtype = resource["resourceType"]
        if rtype == "Patient":
            return str(resource["id"])
        link = PATIENT_LINK.get(rtype)
        if link is None:
            return None
        ref = (resource.get(link) or {}).get("reference", "")
        return ref.split("/", 1)[1] if ref.startswith("Patient/") else ""


def data_dir() -> Path:
    return paths.fixtures_dir() / "data"


def load(directory: Path | None = None) -> Dataset:
    """Read members.yaml and resources.json."""
    directory = directory or data_dir()
    accounts = yaml.safe_load((directory / "members.yaml").read_text(encoding="utf-8"))
    clients = {c["client_id"]: Client(c["client_id"], c["client_secret"], c.get("name", c["client_id"]),
                                      tuple(c["redirect_uris"])) for c in accounts["clients"]}
    members = {name: Member(name, m["password"], m["display"], m["sub"], m["fhir_user"], tuple(m["patients"]))
               for name, m in accounts["members"].items()}
    dataset = Dataset(clients=clients, members=members)
    bundle = json.loads((directory / "resources.json").read_text(encoding="utf-8"))
    for resource in bundle["resources"]:
        dataset.resources.setdefault(resource["resourceType"], {})[resource["id"]] = resource
    return dataset
