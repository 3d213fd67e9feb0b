"""Evidence bundles (report/bundle.py) through the command line, on a reports folder built here: Ed25519 and ECDSA
round trips, every way of tampering with a bundle, bad input as one line with exit 2, masked target files."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from smart_conformance import __version__, cli, paths
from smart_conformance.report import bundle

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
EXCHANGE = [{"request": {"method": "GET", "url": "https://payer.example/fhir/metadata", "headers": []},
             "response": {"status": 200, "headers": [], "body": "{}"}}]
SECRET = "literal-client-secret-4f1c9"  # a target file may carry one as an ${ENV:-default}


def _trace() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("trace.trace", '{"type":"before","params":{"value":"***"}}\n')
    return out.getvalue()


def make_reports(folder: Path, *, embedded: bool = True, target: str = "reference") -> Path:
    """A reports folder as a run leaves it (summary, SARIF, JUnit, Allure results, a launch's artifacts), plus what
    a bundle leaves out (the previous run's summary, the HTML report)."""
    reports = folder / "reports"
    allure = reports / "allure-results"
    launch = reports / "artifacts" / target / "gw0" / "launch-01"
    allure.mkdir(parents=True)
    launch.mkdir(parents=True)
    summary = {"tool": "smart-payer-conformance", "version": __version__, "generated_at": "2026-06-01T10:00:00+00:00",
               "strict": False, "exit_code": 0,
               "targets": {target: {"verdict": "CONFORMANT (for the checks run)", "totals": {"passed": 1}}}}
    (reports / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    (reports / "summary.md").write_text("# SMART payer conformance summary\n", encoding="utf-8")
    (reports / "results.sarif").write_text('{"version": "2.1.0", "runs": []}', encoding="utf-8")
    (reports / "junit.xml").write_text('<testsuites><testsuite name="pytest" tests="1"/></testsuites>',
                                       encoding="utf-8")
    (allure / "a1-result.json").write_text('{"name": "check", "status": "passed"}', encoding="utf-8")
    (allure / "a1-attachment.json").write_text(json.dumps(EXCHANGE), encoding="utf-8")
    (allure / "a2-attachment.png").write_bytes(PNG)
    (allure / "environment.properties").write_text(
        f"harness.version={__version__}\ntargets={target}\nembedded.reference={str(embedded).lower()}\n"
        "reference.faults=none\n", encoding="utf-8")
    (launch / "01-sign-in.png").write_bytes(PNG)
    (launch / "launch-trace.zip").write_bytes(_trace())
    (reports / "previous-summary.json").write_text(json.dumps(summary), encoding="utf-8")
    (reports / "html").mkdir()
    (reports / "html" / "index.html").write_text("<html></html>", encoding="utf-8")
    return reports


def _private(kind: str) -> PrivateKeyTypes:
    if kind == "ed25519":
        return Ed25519PrivateKey.generate()
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ed448":
        return ed448.Ed448PrivateKey.generate()
    return ec.generate_private_key({"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1()}[kind])


def write_key(folder: Path, kind: str, *, password: bytes | None = None) -> tuple[Path, Path]:
    """A private key PEM (PKCS#8, encrypted when ``password``) and its public key PEM."""
    key = _private(kind)
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    private = folder / f"{kind}{'-enc' if password else ''}.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    public = folder / f"{kind}{'-enc' if password else ''}.pub.pem"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def signed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path, Path]:
    """(bundle, public key, reports) of an embedded run, signed with Ed25519."""
    reports = make_reports(tmp_path)
    private, public = write_key(tmp_path, "ed25519")
    out = tmp_path / "evidence.zip"
    code, _, err = run_cli(capsys, "bundle", "--reports", str(reports), "--key", str(private), "--output", str(out))
    assert code == 0, err
    return out, public, reports


def rewrite(source: Path, out: Path, *, drop: tuple[str, ...] = (), replace: dict[str, bytes] | None = None,
            add: dict[str, bytes] | None = None) -> Path:
    """A copy of a bundle with entries dropped, replaced or added, as someone tampering with it would make."""
    replace, add = replace or {}, add or {}
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            if info.filename not in drop:
                new.writestr(info.filename, replace.get(info.filename, old.read(info)))
        for name, data in add.items():
            new.writestr(name, data)
    return out


def read(zip_file: Path, name: str) -> bytes:
    with zipfile.ZipFile(zip_file) as archive:
        return archive.read(name)


# --- round trips ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ed25519", "p256", "p384"])
def test_bundle_round_trips_and_holds_the_run(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reports = make_reports(tmp_path)
    private, public = write_key(tmp_path, kind)
    out = tmp_path / "out" / "evidence.zip"  # a folder that does not exist yet
    code, stdout, err = run_cli(capsys, "bundle", "--reports", str(reports), "--key", str(private),
                                "--output", str(out))
    assert code == 0 and not err, err
    assert f"wrote {out}" in stdout and "left out (not this run's evidence): html/, previous-summary.json" in stdout

    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read(bundle.MANIFEST))
        originals = {f"reports/{p.relative_to(reports).as_posix()}": p.read_bytes() for p in reports.rglob("*")
                     if p.is_file() and p.relative_to(reports).parts[0] not in ("html", "previous-summary.json")}
        assert {n: archive.read(n) for n in originals} == originals  # byte for byte: exchanges, screenshots, trace
    assert names == {*originals, "targets/reference.yaml", "versions.json", "README.txt", "manifest.json",
                     "manifest.sig"}
    assert "reports/allure-results/a1-attachment.json" in names and "reports/artifacts/reference/gw0/launch-01/" \
        "01-sign-in.png" in names
    assert set(manifest["files"]) == names - {"manifest.json", "manifest.sig"}
    assert manifest["signature"]["algorithm"] == {"ed25519": "Ed25519", "p256": "ECDSA P-256 SHA-256",
                                                  "p384": "ECDSA P-384 SHA-384"}[kind]
    assert manifest["run"]["targets"] == {"reference": "CONFORMANT (for the checks run)"}
    assert manifest["run"]["embedded_reference"] is True

    code, stdout, err = run_cli(capsys, "verify", str(out), "--public-key", str(public))
    assert code == 0, stdout + err
    assert stdout.startswith(f"{out}: VERIFIED") and f"all {len(names) - 2} files match" in stdout
    assert "reference: CONFORMANT (for the checks run)" in stdout


def test_a_certificate_holding_the_public_key_verifies_too(signed: tuple[Path, Path, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out, _, reports = signed
    key = Ed25519PrivateKey.generate()
    private = tmp_path / "signer.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "QA signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)).sign(key, None))
    (tmp_path / "signer.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    run_cli(capsys, "bundle", "--reports", str(reports), "--key", str(private), "--output", str(out))
    code, stdout, _ = run_cli(capsys, "verify", str(out), "--public-key", str(tmp_path / "signer.crt"))
    assert code == 0 and "VERIFIED" in stdout


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl on PATH")
@pytest.mark.parametrize("kind", ["ed25519", "p384"])
def test_openssl_verifies_the_manifest_as_the_readme_says(kind: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A certifier needs no harness: the command in the bundle's README.txt checks the signature."""
    reports = make_reports(tmp_path)
    private, public = write_key(tmp_path, kind)
    out = tmp_path / "evidence.zip"
    assert run_cli(capsys, "bundle", "--reports", str(reports), "--key", str(private), "--output", str(out))[0] == 0
    unzipped = tmp_path / "unzipped"
    with zipfile.ZipFile(out) as archive:
        archive.extractall(unzipped)
    command = next(line.strip() for line in (unzipped / "README.txt").read_text().splitlines()
                   if line.strip().startswith("openssl "))
    proc = subprocess.run(command.replace("PUB.pem", str(public)), shell=True, cwd=unzipped, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((unzipped / "manifest.json").read_text())
    assert all(hashlib.sha256((unzipped / n).read_bytes()).hexdigest() == h for n, h in manifest["files"].items())


def test_versions_name_the_harness_its_dependencies_and_the_catalog_hash(signed: tuple[Path, Path, Path]) -> None:
    out, _, _ = signed
    about = json.loads(read(out, "versions.json"))
    assert about["harness"]["version"] == __version__ and about["harness"]["run_by"] == __version__
    assert about["dependencies"]["cryptography"] == about["installed"]["cryptography"]
    assert "ruff" not in about["dependencies"]  # a dev extra, not what a run uses
    catalog = about["requirement_catalog"]
    folder = paths.fixtures_dir() / "requirements"
    listing = "".join(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.name}\n"
                      for f in sorted(folder.glob("*.yaml")))  # what `sha256sum *.yaml` prints
    assert catalog["version"] is None and "no version of its own" in catalog["how"]
    assert catalog["sha256"] == hashlib.sha256(listing.encode()).hexdigest()


def test_bundle_written_into_the_reports_folder_does_not_hold_itself(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    reports = make_reports(tmp_path)
    private, public = write_key(tmp_path, "ed25519")
    for out in (reports / "evidence.zip", reports / "artifacts" / "evidence.zip"):
        for _ in range(2):  # the second build finds the first bundle where it writes
            code, stdout, err = run_cli(capsys, "bundle", "--reports", str(reports), "--key", str(private),
                                        "--output", str(out))
            assert code == 0, err
            assert "evidence.zip" not in "".join(line for line in stdout.splitlines() if "left out" in line)
        names = zipfile.ZipFile(out).namelist()
        assert not any(n.endswith("evidence.zip") for n in names), names
        assert run_cli(capsys, "verify", str(out), "--public-key", str(public))[0] == 0
        out.unlink()


# --- tampering --------------------------------------------------------------------------------------------------


def _edit_manifest(edit: Callable[[dict], None]) -> Callable[[Path, Path, Path], Path]:
    def tamper(out: Path, tmp: Path, reports: Path) -> Path:
        manifest = json.loads(read(out, bundle.MANIFEST))
        edit(manifest)
        return rewrite(out, tmp / "t.zip", replace={bundle.MANIFEST: json.dumps(manifest, indent=2).encode()})
    return tamper


def _changed_and_rehashed(out: Path, tmp: Path, reports: Path) -> Path:
    """summary.json changed and its hash in the manifest updated to match: only the signature catches it."""
    forged = b'{"targets": {"reference": {"verdict": "CONFORMANT"}}}'
    manifest = json.loads(read(out, bundle.MANIFEST))
    manifest["files"]["reports/summary.json"] = hashlib.sha256(forged).hexdigest()
    return rewrite(out, tmp / "t.zip", replace={"reports/summary.json": forged,
                                                bundle.MANIFEST: json.dumps(manifest, indent=2).encode()})


def _signature_of_another_bundle(out: Path, tmp: Path, reports: Path) -> Path:
    (reports / "summary.md").write_text("# another run\n", encoding="utf-8")
    private = tmp / "ed25519.pem"  # the same signer: a valid signature, over another manifest
    assert cli.main(["bundle", "--reports", str(reports), "--key", str(private), "--output", str(tmp / "b.zip")]) == 0
    return rewrite(out, tmp / "t.zip", replace={bundle.SIGNATURE: read(tmp / "b.zip", bundle.SIGNATURE)})


def _duplicate(out: Path, tmp: Path, reports: Path) -> Path:
    with zipfile.ZipFile(shutil.copy(out, tmp / "t.zip"), "a") as archive, pytest.warns(UserWarning):
        archive.writestr("reports/summary.json", b'{"targets": {}}')
    return tmp / "t.zip"


TAMPERING: dict[str, tuple[Callable[[Path, Path, Path], Path], list[str]]] = {
    "file added": (lambda out, tmp, r: rewrite(out, tmp / "t.zip", add={"reports/extra.png": PNG}),
                   ["added: reports/extra.png"]),
    "file removed": (lambda out, tmp, r: rewrite(out, tmp / "t.zip", drop=("reports/allure-results/a1-attachment.json",)),
                     ["removed: reports/allure-results/a1-attachment.json"]),
    "file changed": (lambda out, tmp, r: rewrite(out, tmp / "t.zip", replace={"reports/summary.md": b"# fine\n"}),
                     ["changed: reports/summary.md"]),
    "manifest edited": (_edit_manifest(lambda m: m["run"]["targets"].update(reference="CONFORMANT")),
                        ["signature: manifest.sig does not verify"]),
    "file changed and rehashed in the manifest": (_changed_and_rehashed,
                                                  ["signature: manifest.sig does not verify"]),
    "file dropped from the manifest": (_edit_manifest(lambda m: m["files"].pop("reports/junit.xml")),
                                       ["signature: manifest.sig does not verify", "added: reports/junit.xml"]),
    "signature swapped": (_signature_of_another_bundle, ["signature: manifest.sig does not verify"]),
    "signature removed": (lambda out, tmp, r: rewrite(out, tmp / "t.zip", drop=(bundle.SIGNATURE,)),
                          ["signature: manifest.sig is missing"]),
    "manifest removed": (lambda out, tmp, r: rewrite(out, tmp / "t.zip", drop=(bundle.MANIFEST,)),
                         ["signature: not checked", "removed: manifest.json"]),
    "manifest not JSON": (lambda out, tmp, r: rewrite(out, tmp / "t.zip", replace={bundle.MANIFEST: b"{oops"}),
                          ["signature: manifest.sig does not verify", "changed: manifest.json"]),
    "second entry of the same name": (_duplicate, ["added: reports/summary.json (1 more entry of that name",
                                                   "changed: reports/summary.json"]),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_every_tampering_fails_verify_naming_what_is_wrong(case: str, signed: tuple[Path, Path, Path],
                                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, public, reports = signed
    tamper, expected = TAMPERING[case]
    tampered = tamper(out, tmp_path, reports)
    capsys.readouterr()
    code, stdout, err = run_cli(capsys, "verify", str(tampered), "--public-key", str(public))
    assert code == 1, stdout + err
    assert stdout.startswith(f"{tampered}: NOT VERIFIED")
    lines = [line.strip() for line in stdout.splitlines()[1:]]
    for item in expected:
        assert any(line.startswith(item) for line in lines), (item, stdout)
    assert len(lines) == len(expected), stdout  # nothing else blamed


def test_a_wrong_public_key_fails_naming_the_signer(signed: tuple[Path, Path, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out, public, _ = signed
    for kind in ("ed25519", "p256"):
        folder = tmp_path / kind
        folder.mkdir()
        _, other = write_key(folder, kind)
        code, stdout, _ = run_cli(capsys, "verify", str(out), "--public-key", str(other))
        assert code == 1
        signer = bundle.fingerprint(bundle.load_public_key(public))
        assert f"signature: manifest.sig does not verify over manifest.json with {other}" in stdout
        assert f"the manifest names signer {signer}" in stdout
        assert len(stdout.strip().splitlines()) == 2  # the files themselves are intact


def test_a_corrupted_member_is_changed_not_a_crash(signed: tuple[Path, Path, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Bytes flipped inside the archive (the CRC no longer matches): named as changed, never a traceback."""
    out, public, _ = signed
    data = bytearray(out.read_bytes())
    with zipfile.ZipFile(out) as archive:
        info = archive.getinfo("reports/summary.md")
    local = info.header_offset  # the local header: 30 bytes, then the name and the extra field
    start = local + 30 + int.from_bytes(data[local + 26:local + 28], "little") + int.from_bytes(
        data[local + 28:local + 30], "little")
    data[start + 2] ^= 0xFF
    broken = tmp_path / "broken.zip"
    broken.write_bytes(bytes(data))
    code, stdout, _ = run_cli(capsys, "verify", str(broken), "--public-key", str(public))
    assert code == 1 and "changed: reports/summary.md" in stdout


# --- target files -----------------------------------------------------------------------------------------------


TARGET = f"""# acme's staging payer; the old secret was hunter2-in-a-comment
name: acme
fhir_base_url: https://fhir.acme.example/r4
client:
  client_id: ${{ACME_CLIENT_ID}}
  client_secret: ${{ACME_CLIENT_SECRET:-{SECRET}}}
  redirect_uri: http://127.0.0.1:8765/callback
members:
  primary:
    username: ${{ACME_USER}}
    password: ${{ACME_PASSWORD}}
    patient_id: "123"
backend_client:
  client_id: backend
  private_key: {{file: /run/secrets/backend.pem}}
"""


def test_target_files_are_masked_and_only_the_runs_are_bundled(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    reports = make_reports(tmp_path, embedded=False, target="acme")
    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "acme.yaml").write_text(TARGET, encoding="utf-8")
    (targets / "other.yaml").write_text("name: other\nfhir_base_url: https://x.example/fhir\n", encoding="utf-8")
    private, public = write_key(tmp_path, "p256")
    out = tmp_path / "evidence.zip"

    code, stdout, err = run_cli(capsys, "bundle", "--reports", str(reports), "--key", str(private), "--output",
                                str(out), "--target", str(targets))
    assert code == 0, err
    assert f"left out: {targets / 'other.yaml'} (its target is not in this run)" in stdout
    names = zipfile.ZipFile(out).namelist()
    assert [n for n in names if n.startswith("targets/")] == ["targets/acme.yaml"]
    masked = read(out, "targets/acme.yaml").decode()
    assert SECRET not in masked and "hunter2" not in masked  # comments are not carried over
    assert "client_secret: '***'" in masked and "password: '***'" in masked
    assert "client_id: ${ACME_CLIENT_ID}" in masked and "file: /run/secrets/backend.pem" in masked
    assert f"as the run read it: {targets / 'acme.yaml'}" in masked
    assert run_cli(capsys, "verify", str(out), "--public-key", str(public))[0] == 0


def test_the_target_file_summary_json_records_is_bundled_without_target(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """summary.json records what was run (its ``run`` section); --target is then only an override."""
    reports = make_reports(tmp_path, embedded=False, target="acme")
    (tmp_path / "acme.yaml").write_text(TARGET, encoding="utf-8")
    summary = json.loads((reports / "summary.json").read_text())
    summary["run"] = {"embedded_reference": False, "targets": {"acme": {"source": str(tmp_path / "acme.yaml")}}}
    (reports / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    private, public = write_key(tmp_path, "ed25519")
    out = tmp_path / "evidence.zip"
    code, _, err = run_cli(capsys, "bundle", "--reports", str(reports), "--key", str(private), "--output", str(out))
    assert code == 0, err
    masked = read(out, "targets/acme.yaml").decode()
    assert SECRET not in masked and f"as the run read it: {tmp_path / 'acme.yaml'}" in masked
    assert run_cli(capsys, "verify", str(out), "--public-key", str(public))[0] == 0
    (tmp_path / "acme.yaml").unlink()
    code, _, err = run_cli(capsys, "bundle", "--reports", str(reports), "--key", str(private), "--output", str(out))
    assert code == 2 and "not there any more" in err and "--target" in err


def test_summary_json_records_what_was_run(tmp_path: Path) -> None:
    from smart_conformance.report import summary as summary_mod
    from smart_conformance.results import RunResults

    embedded = RunResults(results=(), targets={"reference": ""}, embedded=True, faults=("pkce-plain",),
                          variants=("smart-v1-discovery-only",))
    assert summary_mod.what_was_run(embedded)["targets"] == {"reference": {
        "source": "embedded reference", "faults": ["pkce-plain"], "variants": ["smart-v1-discovery-only"]}}
    files = RunResults(results=(), targets={"acme": ""}, target_files={"acme": "targets/acme.yaml"})
    recorded = summary_mod.what_was_run(files)
    assert recorded["embedded_reference"] is False
    assert recorded["targets"]["acme"]["source"] == str((Path("targets") / "acme.yaml").resolve())


def test_embedded_runs_bundle_the_packaged_reference_target(signed: tuple[Path, Path, Path]) -> None:
    out, _, _ = signed
    masked = read(out, "targets/reference.yaml").decode()
    assert "fixtures/targets/reference.yaml of the harness" in masked
    assert "client_secret: '***'" in masked and "${SMART_REFERENCE_CLIENT_SECRET}" not in masked
    assert "client_id: ${SMART_REFERENCE_CLIENT_ID}" in masked


# --- bad input: one line, exit 2 --------------------------------------------------------------------------------


def _bad_bundle_args(tmp: Path) -> tuple[list[str], dict[str, tuple[list[str], str]]]:
    """Arguments that work, and per case the arguments that replace some of them and the message expected."""
    reports = make_reports(tmp)
    ed, ed_pub = write_key(tmp, "ed25519")
    rsa_key, _ = write_key(tmp, "rsa")
    p521, _ = write_key(tmp, "p521")
    ed448_key, _ = write_key(tmp, "ed448")
    (tmp / "empty").mkdir()
    (tmp / "garbage.pem").write_text("not a key\n")
    remote = make_reports(tmp / "remote", embedded=False, target="acme")
    defaults = ["--reports", str(reports), "--output", str(tmp / "b.zip")]
    return defaults, {
        "RSA key": (["--key", str(rsa_key)], f"{rsa_key}: an RSA key; bundles are signed with Ed25519 or ECDSA"),
        "P-521 key": (["--key", str(p521)], "an ECDSA key on curve secp521r1; bundles are signed with"),
        "Ed448 key": (["--key", str(ed448_key)], "an Ed448 key; bundles are signed with"),
        "missing key": (["--key", str(tmp / "nope.pem")], f"{tmp / 'nope.pem'}: no such file"),
        "not a key": (["--key", str(tmp / "garbage.pem")], "garbage.pem: not a PEM private key"),
        "public key as --key": (["--key", str(ed_pub)], "a public key or certificate, not a private key"),
        "missing reports": (["--key", str(ed), "--reports", str(tmp / "nowhere")], f"{tmp / 'nowhere'}: no such folder"),
        "reports without a summary": (["--key", str(ed), "--reports", str(tmp / "empty")], "no summary.json"),
        "run on target files, none given": (["--key", str(ed), "--reports", str(remote)],
                                            "name them with --target FILE_OR_DIR"),
        "target file of another run": (["--key", str(ed), "--reports", str(remote), "--target",
                                        str(paths.reference_target())], "no file names target(s) acme"),
        "target given for an embedded run": (["--key", str(ed), "--target", str(paths.reference_target())],
                                             "checked the embedded reference server"),
        "output is a folder": (["--key", str(ed), "--output", str(tmp / "empty")], "is a folder"),
    }


def test_bad_bundle_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    defaults, cases = _bad_bundle_args(tmp_path)
    for case, (args, message) in cases.items():
        merged = [*defaults, *args]  # argparse: the last --reports/--output wins
        code, stdout, err = run_cli(capsys, "bundle", *merged)
        assert code == 2, (case, stdout, err)
        assert err.startswith("smart-conformance: bundle: ") and err.count("\n") == 1, (case, err)
        assert message in err and "Fix: " in err, (case, err)
        assert not (tmp_path / "b.zip").exists(), case
    assert not list(tmp_path.glob(".b.zip.*")), "a failed build left its temporary file"


def test_encrypted_keys_take_their_password_from_the_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    reports = make_reports(tmp_path)
    private, public = write_key(tmp_path, "p384", password=b"correct horse")
    plain, _ = write_key(tmp_path, "ed25519")
    args = ["bundle", "--reports", str(reports), "--output", str(tmp_path / "b.zip")]
    monkeypatch.delenv("BUNDLE_KEY_PW", raising=False)
    checks = [
        ([*args, "--key", str(private)], "the private key is encrypted", "--key-password-env VAR"),
        ([*args, "--key", str(private), "--key-password-env", "BUNDLE_KEY_PW"],
         "--key-password-env BUNDLE_KEY_PW: the environment variable is not set", "export BUNDLE_KEY_PW="),
    ]
    for argv, problem, fix in checks:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and problem in err and fix in err and err.count("\n") == 1, err
    monkeypatch.setenv("BUNDLE_KEY_PW", "wrong horse")
    code, _, err = run_cli(capsys, *args, "--key", str(private), "--key-password-env", "BUNDLE_KEY_PW")
    assert code == 2 and "cannot decrypt the private key with the password in $BUNDLE_KEY_PW" in err
    assert "wrong horse" not in err
    code, _, err = run_cli(capsys, *args, "--key", str(plain), "--key-password-env", "BUNDLE_KEY_PW")
    assert code == 2 and "not encrypted" in err and "drop --key-password-env" in err
    monkeypatch.setenv("BUNDLE_KEY_PW", "correct horse")
    code, stdout, err = run_cli(capsys, *args, "--key", str(private), "--key-password-env", "BUNDLE_KEY_PW")
    assert code == 0, err
    assert "correct horse" not in stdout and b"correct horse" not in (tmp_path / "b.zip").read_bytes()
    assert run_cli(capsys, "verify", str(tmp_path / "b.zip"), "--public-key", str(public))[0] == 0


def test_bad_verify_input_is_one_line_and_exit_2(signed: tuple[Path, Path, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out, public, _ = signed
    _, rsa_pub = write_key(tmp_path, "rsa")
    ed, _ = write_key(tmp_path, "ed25519")
    (tmp_path / "notes.zip").write_text("not a zip")
    cases = [
        ([str(tmp_path / "notes.zip"), "--public-key", str(public)], "notes.zip: not a zip archive"),
        ([str(tmp_path / "missing.zip"), "--public-key", str(public)], "missing.zip: no such file"),
        ([str(out), "--public-key", str(tmp_path / "nope.pem")], "nope.pem: no such file"),
        ([str(out), "--public-key", str(rsa_pub)], "an RSA key; bundles are signed with Ed25519 or ECDSA"),
        ([str(out), "--public-key", str(ed)], "a private key, not a public key"),
        ([str(out), "--public-key", str(tmp_path / "notes.zip")], "notes.zip: not a PEM public key"),
    ]
    for args, message in cases:
        code, stdout, err = run_cli(capsys, "verify", *args)
        assert code == 2, (args, stdout, err)
        assert err.startswith("smart-conformance: verify: ") and err.count("\n") == 1 and message in err, err
        assert "Fix: " in err
