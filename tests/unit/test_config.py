"""Target YAML: validated, interpolated, and every mistake explained in one line (file, key, fix)."""

from __future__ import annotations

from pathlib import Path

import pytest

from smart_conformance import paths, redact
from smart_conformance.config import ConfigError, load_target, load_targets

MINIMAL = """
name: acme
fhir_base_url: https://fhir.acme.example/r4/
client:
  client_id: app
  client_secret: ${ACME_SECRET}
  redirect_uri: http://127.0.0.1:8765/callback
members:
  primary:
    username: member1
    password: ${ACME_PASSWORD}
    patient_id: "123"
  other:
    username: member2
    password: {file: pw.txt}
    patient_id: "456"
scopes:
  full: launch/patient patient/*.read
"""

ENV = {"ACME_SECRET": "s3cret-value-1", "ACME_PASSWORD": "member-pass-1"}


def write(tmp_path: Path, text: str, name: str = "acme.yaml") -> Path:
    (tmp_path / "pw.txt").write_text("other-member-pass\n")
    file = tmp_path / name
    file.write_text(text)
    return file


def test_minimal_target_loads_with_defaults(tmp_path: Path) -> None:
    target = load_target(write(tmp_path, MINIMAL), ENV)
    assert target.name == "acme"
    assert target.fhir_base_url == "https://fhir.acme.example/r4"
    assert target.client.client_secret == "s3cret-value-1"
    assert target.members["other"].password == "other-member-pass"
    assert target.other_patient_ids == ("456",)
    assert target.unauthorized_statuses == (401, 403, 404)
    assert target.smart_version == "auto"


def test_secrets_are_registered_for_redaction(tmp_path: Path) -> None:
    load_target(write(tmp_path, MINIMAL), ENV)
    assert redact.text("secret is s3cret-value-1") == "secret is ***"
    assert "other-member-pass" in redact.known_secrets()


def test_missing_env_var_names_file_key_and_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_target(write(tmp_path, MINIMAL), {"ACME_SECRET": "x" * 8})
    message = str(err.value)
    assert "acme.yaml" in message and "members.primary.password" in message
    assert "ACME_PASSWORD is not set" in message and "export ACME_PASSWORD=" in message
    assert "\n" not in message


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_target(write(tmp_path, MINIMAL.replace("fhir_base_url", "fhir_base_uri")), ENV)
    assert "unknown key 'fhir_base_uri'" in str(err.value)
    assert "did you mean 'fhir_base_url'" in str(err.value)


def test_nested_unknown_key_has_full_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_target(write(tmp_path, MINIMAL.replace("redirect_uri:", "redirect_url:")), ENV)
    assert "client.redirect_url" in str(err.value) and "did you mean 'redirect_uri'" in str(err.value)


def test_literal_secret_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_target(write(tmp_path, MINIMAL.replace("${ACME_SECRET}", "hunter22")), ENV)
    assert "client.client_secret" in str(err.value) and "may not be written in the file" in str(err.value)
    assert "hunter22" not in str(err.value)


def test_bad_yaml_gives_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_target(write(tmp_path, "name: [unclosed\nfhir_base_url: x\n"), ENV)
    assert "not valid YAML at line" in str(err.value)


def test_wrong_type_and_enum(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_target(write(tmp_path, MINIMAL + "smart_version: '3'\n"), ENV)
    assert "smart_version" in str(err.value) and "'3' is not allowed" in str(err.value)


def test_unknown_login_step(tmp_path: Path) -> None:
    text = MINIMAL + "login:\n  steps:\n    - tap: '#go'\n"
    with pytest.raises(ConfigError) as err:
        load_target(write(tmp_path, text), ENV)
    assert "login.steps[0]" in str(err.value) and "unknown login step" in str(err.value)


def test_missing_file_and_missing_ca_bundle(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_target(tmp_path / "nope.yaml", ENV)
    with pytest.raises(ConfigError, match="tls.ca_bundle"):
        load_target(write(tmp_path, MINIMAL + "tls:\n  ca_bundle: missing-ca.pem\n"), ENV)


def test_folder_of_targets_and_duplicate_names(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL, "a.yaml")
    write(tmp_path, MINIMAL.replace("name: acme", "name: beta"), "b.yaml")
    assert [t.name for t in load_targets([tmp_path], ENV)] == ["acme", "beta"]
    write(tmp_path, MINIMAL, "c.yaml")
    with pytest.raises(ConfigError, match="also used by"):
        load_targets([tmp_path], ENV)


def test_shipped_targets_are_valid(tmp_path: Path) -> None:
    """The reference target and the commented template both validate (with placeholder environment)."""
    ca = tmp_path / "ca.pem"
    ca.write_text("placeholder")
    env = {k: "value-for-test" for k in (
        "SMART_REFERENCE_FHIR_BASE_URL", "SMART_REFERENCE_CLIENT_ID", "SMART_REFERENCE_CLIENT_SECRET",
        "SMART_REFERENCE_OTHER_CLIENT_ID", "SMART_REFERENCE_OTHER_CLIENT_SECRET", "SMART_REFERENCE_MEMBER_USERNAME",
        "SMART_REFERENCE_MEMBER_PASSWORD", "SMART_REFERENCE_OTHER_MEMBER_USERNAME",
        "SMART_REFERENCE_OTHER_MEMBER_PASSWORD", "SMART_REFERENCE_REP_USERNAME", "SMART_REFERENCE_REP_PASSWORD")}
    env.update(SMART_REFERENCE_FHIR_BASE_URL="https://127.0.0.1:1/fhir", SMART_REFERENCE_CA_BUNDLE=str(ca))
    from smart_conformance.reference.backend import OTHER, P2P, load_backend

    keys = load_backend(tmp_path)  # the backend clients' key files, as the reference server writes them
    env.update(SMART_REFERENCE_BACKEND_CLIENT_ID="backend", SMART_REFERENCE_BACKEND_KEY_FILE=str(keys.key_files["RS384"]),
               SMART_REFERENCE_BACKEND_KID="kid", SMART_REFERENCE_OTHER_BACKEND_CLIENT_ID="other",
               SMART_REFERENCE_OTHER_BACKEND_KEY_FILE=str(keys.key_files[OTHER]), SMART_REFERENCE_OTHER_BACKEND_KID="k",
               SMART_REFERENCE_P2P_CLIENT_ID="p2p", SMART_REFERENCE_P2P_KEY_FILE=str(keys.key_files[P2P]),
               SMART_REFERENCE_P2P_KID="p")
    target = load_target(paths.reference_target(), env)
    assert target.name == "reference" and target.login is not None
    for template in (paths.fixtures_dir() / "targets").glob("example-*.yaml"):
        with pytest.raises(ConfigError, match="is not set"):
            load_target(template, {})


def test_target_attestation_and_baseline_files_share_one_yaml_path(tmp_path: Path) -> None:
    """One loader, one wording: file, line and column, the parser's complaint, and the fix; never a traceback."""
    from smart_conformance.report import attestations, baseline

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: acme\nitems: [unclosed\n", encoding="utf-8")
    loaders = [(lambda f: load_target(f, ENV), ConfigError, "YAML"),
               (attestations.load, attestations.AttestationError, "YAML"),
               (baseline.load, baseline.BaselineError, "YAML/JSON")]
    for load, error, syntax in loaders:
        with pytest.raises(error) as err:
            load(bad)
        message = str(err.value)
        assert message.startswith(f"{bad}: (top level): not valid {syntax} at line 3, column 1: "), message
        assert "\n" not in message and f"Fix: fix the {syntax} syntax" in message
        with pytest.raises(error, match=r"file not found\. Fix: "):
            load(tmp_path / "missing.yaml")


def test_other_patient_ids_name_other_members_only(tmp_path: Path) -> None:
    target = load_target(write(tmp_path, MINIMAL + "isolation:\n  other_patient_ids: ['456', '789']\n"), ENV)
    assert target.other_patient_ids == ("456", "789")
    with pytest.raises(ConfigError) as err:
        load_target(write(tmp_path, MINIMAL + "isolation:\n  other_patient_ids: ['123']\n"), ENV)
    assert "isolation.other_patient_ids" in str(err.value) and "primary member's own patient" in str(err.value)
