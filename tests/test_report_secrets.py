"""Secrets never reach a report.

A real run (discovery, launch and token suites against the reference server, with a fault switched on so failure
messages, curl commands and screenshots are produced too) writes its reports; then every file produced is scanned for
every secret the run used — client secrets, member passwords — and for anything shaped like a live token.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import yaml

from smart_conformance import paths
from tests.suite_runner import run_suites

JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
SECRET_FIELD = re.compile(rb'"(access_token|refresh_token|id_token|client_secret|password|code_verifier)"\s*:\s*"(?!\*\*\*)[^"]+"')
SECRET_PARAM = re.compile(rb"[?&#](code|access_token|refresh_token|client_secret|code_verifier)=(?!\*|%2A)[^&\s\"']+")


def reference_secrets() -> list[bytes]:
    data = yaml.safe_load((paths.fixtures_dir() / "data" / "members.yaml").read_text())
    found = [c["client_secret"] for c in data["clients"]] + [m["password"] for m in data["members"].values()]
    return [s.encode() for s in found]


def test_no_secret_in_any_report_file(tmp_path: Path) -> None:
    # token-no-store-missing makes token checks fail, so failure texts carry token-endpoint exchanges and curls.
    run = run_suites(["discovery", "launch/test_standalone_launch.py", "tokens/test_token_response.py"], tmp_path,
                     faults=("token-no-store-missing",), extra=("--keep-traces",))
    assert run.totals().get("failed", 0) > 0, run.output  # the fault produced failure reports to scan
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert any(f.suffix == ".png" for f in files), "screenshots were expected among the Allure attachments"
    # Launch screenshots and (scrubbed) traces are kept under <reports>/artifacts/, so the scan below covers them.
    kept = [f for f in files if "artifacts" in f.relative_to(tmp_path).parts]
    assert any(f.suffix == ".png" for f in kept) and any(f.name.endswith("-trace.zip") for f in kept), kept
    assert any(f.name.endswith("-result.json") for f in files)
    problems = []
    secrets = reference_secrets()
    for file in files:
        for name, content in contents(file):
            problems += scan(f"{file.name}{name}", content, secrets)
    assert not problems, "\n".join(problems)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["targets"]["reference"]["findings"], "the summary should list the findings"


def contents(file: Path) -> list[tuple[str, bytes]]:
    """A file's bytes, or each member of a zip (Playwright traces are zips of JSON and HTML snapshots)."""
    if zipfile.is_zipfile(file):
        with zipfile.ZipFile(file) as archive:
            return [(f"!{member}", archive.read(member)) for member in archive.namelist()]
    return [("", file.read_bytes())]


def scan(where: str, content: bytes, secrets: list[bytes]) -> list[str]:
    problems = []
    for secret in secrets:
        if secret in content:
            problems.append(f"{where}: contains a reference secret ({secret[:4].decode()}…)")
    for pattern in (JWT, SECRET_FIELD, SECRET_PARAM):
        match = pattern.search(content)
        if match:
            problems.append(f"{where}: {match.group(0)[:60]!r}")
    return problems
