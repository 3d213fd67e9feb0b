"""The CMS-0057 payer API suites (provider_access, payer_to_payer) beyond the fault and variant matrices: a target
without their sections is not applicable with the reason, init-target's commented sections are a valid target once
filled in, and the reference's synthetic members are where the target file says."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from smart_conformance import config, init_target, paths
from smart_conformance.reference import pdex
from smart_conformance.reference.server import ReferenceServer
from tests.suite_runner import run_suites


def test_target_without_sections_is_not_applicable(tmp_path: Path) -> None:
    with ReferenceServer() as srv:
        doc = yaml.safe_load(paths.reference_target().read_text(encoding="utf-8"))
        for key in ("attestations", "provider_access", "payer_to_payer"):
            doc.pop(key, None)
        target = tmp_path / "reference.yaml"
        target.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        run = run_suites(["provider_access", "payer_to_payer"], tmp_path / "r", targets=(target,),
                         env=srv.target_env())
    totals = run.totals()
    assert totals.get("skipped", 0) == sum(totals.values()) > 20, run.output
    messages = [json.loads(f.read_text()).get("statusDetails", {}).get("message", "")
                for f in (tmp_path / "r" / "allure-results").glob("*-result.json")]
    messages = [m for m in messages if m.startswith("Skipped")]  # the checks (not the checklist page)
    assert all("not applicable: no provider_access section" in m or "not applicable: no payer_to_payer section" in m
               for m in messages) and len(messages) == sum(totals.values()), messages


def test_init_target_sections_validate_once_filled_in(tmp_path: Path) -> None:
    lines = init_target._payer_api_lines(frozenset({"member-match"}))
    assert any("lists $member-match" in line and "not listed: $bulk-member-match" in line for line in lines)
    section = "\n".join(line[2:] for line in lines if line.startswith("# ") and not line.startswith("# Provider")
                        and not line.startswith("# Payer"))
    key = tmp_path / "key.pem"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    base = yaml.safe_load(paths.reference_target().read_text(encoding="utf-8"))
    for k in ("attestations", "provider_access", "payer_to_payer", "backend_client", "bulk"):
        base.pop(k, None)
    filled = yaml.safe_load(section.replace("~/.secrets/backend-client.pem", str(key)))
    target = tmp_path / "t.yaml"
    target.write_text(yaml.safe_dump({**base, **filled}, sort_keys=False), encoding="utf-8")
    env = {name: "x" for name in ("SMART_TARGET_PA_ATTRIBUTED_ID", "SMART_TARGET_PA_ATTRIBUTED_SUB",
                                  "SMART_TARGET_PA_OPTED_OUT_ID", "SMART_TARGET_PA_OPTED_OUT_SUB",
                                  "SMART_TARGET_PA_NOT_ATTRIBUTED_ID", "SMART_TARGET_PA_NOT_ATTRIBUTED_SUB",
                                  "SMART_TARGET_P2P_CONSENTING_ID", "SMART_TARGET_P2P_CONSENTING_SUB",
                                  "SMART_TARGET_P2P_NOT_CONSENTING_ID", "SMART_TARGET_P2P_NOT_CONSENTING_SUB")}
    with ReferenceServer() as srv:
        loaded = config.load_target(target, env={**srv.target_env(), **env})
    assert loaded.provider_access is not None and set(loaded.provider_access.members) == {
        "attributed", "opted_out", "not_attributed"}
    assert loaded.payer_to_payer is not None and loaded.payer_to_payer.requesting_payer["value"] == "MY-PAYER-ID"
    assert loaded.payer_to_payer.retrieval == ("bulk-export",) and loaded.payer_to_payer.query_searches


def test_reference_target_names_the_synthetic_members() -> None:
    """fixtures/targets/reference.yaml and reference/pdex.py describe the same people (a drift would turn every
    Provider Access and Payer-to-Payer check into a false finding)."""
    doc = yaml.safe_load(paths.reference_target().read_text(encoding="utf-8"))
    for section in ("provider_access", "payer_to_payer"):
        for role, member in doc[section]["members"].items():
            known = pdex.MEMBERS[member["patient_id"]]
            assert (known.family, known.given, known.birth_date, known.gender, known.subscriber_id) == (
                member["family"], member["given"], str(member["birth_date"]), member["gender"],
                member["subscriber_id"]), (section, role)


def test_example_sections_follow_the_schema() -> None:
    """examples/targets/cms-payer-apis.yaml, pasted into a target, is valid (keys by file, secrets by ${ENV})."""
    base = yaml.safe_load(paths.reference_target().read_text(encoding="utf-8"))
    example = yaml.safe_load((paths.project_root() / "examples" / "targets" / "cms-payer-apis.yaml")
                             .read_text(encoding="utf-8"))
    assert set(example) == {"provider_access", "payer_to_payer"}
    assert config.first_schema_error({**base, **example}, config._schema()) is None
