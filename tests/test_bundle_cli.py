"""Secrets never enter an evidence bundle: a real run, bundled and verified through the command line, then every
file in the zip (each member of a nested zip too) searched for every secret the run held, as test_secret_scan.py
searches the reports.

One small run (the discovery suite) against the reference server, on a payer-style target file whose client secret
and member password are written into it as ``${UNSET_VAR:-value}`` defaults: the loader accepts that, so the file
itself holds two live secrets, and only the bundle's masking keeps them out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from smart_conformance import paths
from smart_conformance.reference.server import ReferenceServer
from tests.test_secret_scan import Needles, contents, encodings, not_secret, pem_fragments, run_secrets, scan


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
    return subprocess.run([sys.executable, "-m", "smart_conformance.cli", *args], check=False, capture_output=True,
                          text=True, timeout=300, env={**clean, **(env or {})})


def payer_target(folder: Path, env: dict[str, str]) -> Path:
    """fixtures/targets/reference.yaml as a payer's own file, two secrets written in as defaults."""
    doc = yaml.safe_load(paths.reference_target().read_text(encoding="utf-8"))
    doc.pop("attestations", None)
    doc["client"]["client_secret"] = "${BUNDLE_TEST_UNSET_SECRET:-" + env["SMART_REFERENCE_CLIENT_SECRET"] + "}"
    doc["members"]["primary"]["password"] = ("${BUNDLE_TEST_UNSET_PASSWORD:-"
                                             + env["SMART_REFERENCE_MEMBER_PASSWORD"] + "}")
    out = folder / "payer.yaml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return out


def test_a_real_runs_bundle_verifies_and_holds_no_secret(tmp_path: Path) -> None:
    reports, log = tmp_path / "reports", tmp_path / "secrets.jsonl"
    key = Ed25519PrivateKey.generate()
    private, public = tmp_path / "signing-key.pem", tmp_path / "public.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    with ReferenceServer(state_dir=tmp_path / "server") as server:
        env = server.target_env()
        target = payer_target(tmp_path, env)
        assert env["SMART_REFERENCE_CLIENT_SECRET"] in target.read_text()  # the file itself holds a secret
        run = cli("run", "--target", str(target), "--suite", "discovery", "--reports", str(reports),
                  env={**env, "SMART_CONFORMANCE_SECRET_LOG": str(log)})
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]

    out = tmp_path / "evidence.zip"
    built = cli("bundle", "--reports", str(reports), "--key", str(private), "--output", str(out), "--target",
                str(target))
    assert built.returncode == 0, built.stdout + built.stderr
    checked = cli("verify", str(out), "--public-key", str(public))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "VERIFIED" in checked.stdout and "reference: CONFORMANT" in checked.stdout

    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        members = {name: archive.read(name) for name in names}
    kept = [p for p in reports.rglob("*") if p.is_file() and p.name != "previous-summary.json"]
    assert {f"reports/{p.relative_to(reports).as_posix()}" for p in kept} <= set(names)  # the whole run
    assert any(n.startswith("reports/allure-results/") and n.endswith("-attachment.json") for n in names)
    masked = members["targets/reference.yaml"].decode()
    assert "client_secret: '***'" in masked and "password: '***'" in masked

    texts: list[tuple[str, bytes]] = []
    for name, data in members.items():
        (tmp_path / "member").write_bytes(data)
        texts += [(f"{name}{inner}", body) for inner, body in contents(tmp_path / "member")]
    secrets = run_secrets(log, env)
    secrets -= not_secret(secrets, texts) - set(env.values())  # configured secrets are always searched
    needles: dict[str, str] = {}
    for i, secret in enumerate(sorted(secrets)):
        for form in encodings(secret):
            needles.setdefault(form, f"secret #{i} ({len(secret)} chars)")
    for variable in ("SMART_REFERENCE_BACKEND_KEY_FILE", "SMART_REFERENCE_OTHER_BACKEND_KEY_FILE",
                     "SMART_REFERENCE_P2P_KEY_FILE"):
        for fragment in pem_fragments(Path(env[variable]).read_text()):
            needles.setdefault(fragment, f"a line of {Path(env[variable]).name}")
    for fragment in pem_fragments(private.read_text()):  # the signing key itself
        needles.setdefault(fragment, "a line of the signing key")
    search = Needles(needles)
    problems: list[str] = []
    for where, content in texts:
        problems += [f"{where}: {label} at byte {offset}" for offset, label in search.find(content)]
        problems += scan(where, content, [])
    assert not problems, "\n".join(dict.fromkeys(problems))
    assert json.loads(members["manifest.json"])["run"]["embedded_reference"] is False
