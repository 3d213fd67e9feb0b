"""Evidence bundles a certifier can verify: one zip of a run's reports, its target files (secrets masked) and the
versions that produced it, with a manifest of every file's SHA-256 signed by a key the user supplies.

Why a signed manifest and not a signed zip: the certifier checks the signature over ``manifest.json`` and each file
against its hash with standard tools (openssl, sha256sum), trusting neither this harness nor the zip's own metadata;
``verify`` does the same and names every file added, removed or changed. Only Ed25519 and ECDSA P-256/P-384 sign:
short signatures, no padding choices to get wrong, verifiable with a stock OpenSSL.

Nothing here redacts on its own: the run's reports are already scrubbed (``tests/test_secret_scan.py`` proves it), and
target files pass through :mod:`smart_conformance.redact`, the one place that knows what is secret.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from smart_conformance import __version__, paths, redact
from smart_conformance.config import ConfigError, load_yaml, target_files

FORMAT = "smart-conformance-evidence-bundle/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
VERSIONS = "versions.json"
README = "README.txt"
DISTRIBUTION = "smart-payer-conformance"
REPORT_FILES = ("summary.json", "summary.md", "results.sarif", "junit.xml")
REPORT_FOLDERS = ("allure-results", "artifacts")  # every recorded exchange (Allure attachments) and screenshot
KEYGEN = "openssl genpkey -algorithm ed25519 -out signing-key.pem"

SigningKey = Ed25519PrivateKey | ec.EllipticCurvePrivateKey
VerifyingKey = Ed25519PublicKey | ec.EllipticCurvePublicKey

# The curve fixes the hash (as JOSE's ES256/ES384 do), so a manifest cannot talk a verifier into a weaker one.
_CURVES: dict[str, tuple[str, type[hashes.HashAlgorithm]]] = {
    "secp256r1": ("P-256", hashes.SHA256), "secp384r1": ("P-384", hashes.SHA384)}


class BundleError(Exception):
    """Input a bundle cannot be built or checked from, in one line: which file or option, what is wrong, the fix."""

    def __init__(self, where: Path | str, problem: str, fix: str) -> None:
        super().__init__(f"{where}: {problem}. Fix: {fix}")


# --- keys -------------------------------------------------------------------------------------------------------


def _read_pem(file: Path, option: str) -> bytes:
    try:
        return file.read_bytes()
    except FileNotFoundError:
        raise BundleError(file, "no such file", f"give {option} the path of a PEM key file") from None
    except OSError as exc:
        raise BundleError(file, f"cannot read the key ({exc.strerror})", "check the path and permissions") from None


def _kind(key: object) -> str:
    """Words for a key this module will not use."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "an RSA key"
    if isinstance(key, dsa.DSAPrivateKey | dsa.DSAPublicKey):
        return "a DSA key"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"an ECDSA key on curve {key.curve.name}"
    if isinstance(key, ed448.Ed448PrivateKey | ed448.Ed448PublicKey):
        return "an Ed448 key"
    if isinstance(key, x25519.X25519PrivateKey | x25519.X25519PublicKey | x448.X448PrivateKey | x448.X448PublicKey):
        return "a key-agreement (X25519/X448) key, which cannot sign"
    return f"a {type(key).__name__.lstrip('_')}"


def algorithm(key: SigningKey | VerifyingKey) -> str:
    """The signature algorithm a key signs with: 'Ed25519', 'ECDSA P-256 SHA-256' or 'ECDSA P-384 SHA-384'."""
    if isinstance(key, Ed25519PrivateKey | Ed25519PublicKey):
        return "Ed25519"
    curve, digest = _CURVES[key.curve.name]
    return f"ECDSA {curve} {digest.name.upper().replace('SHA', 'SHA-')}"


def _unusable(key: object, file: Path) -> BundleError:
    return BundleError(file, f"{_kind(key)}; bundles are signed with Ed25519 or ECDSA P-256/P-384 only",
                       f"make a signing key with: {KEYGEN} (or openssl genpkey -algorithm EC -pkeyopt "
                       "ec_paramgen_curve:P-256 -out signing-key.pem)")


def _signing_key(key: object, file: Path) -> SigningKey:
    return _usable(key, file, Ed25519PrivateKey, ec.EllipticCurvePrivateKey)  # type: ignore[return-value]


def _verifying_key(key: object, file: Path) -> VerifyingKey:
    return _usable(key, file, Ed25519PublicKey, ec.EllipticCurvePublicKey)  # type: ignore[return-value]


def _usable(key: object, file: Path, edwards: type, elliptic: type) -> object:
    """The key itself if it is Ed25519 or ECDSA on a curve bundles sign with; otherwise an error naming the fix."""
    if isinstance(key, edwards) or (isinstance(key, elliptic) and key.curve.name in _CURVES):  # type: ignore[attr-defined]
        return key
    raise _unusable(key, file)


def load_private_key(file: Path, password: bytes | None = None, *, password_env: str = "") -> SigningKey:
    """The signing key: a PEM Ed25519 or ECDSA P-256/P-384 private key, encrypted or not (``password`` read by the
    CLI from the environment variable ``password_env``, never from the command line)."""
    data = _read_pem(file, "--key")
    if b"PRIVATE KEY" not in data and (b"PUBLIC KEY" in data or b"CERTIFICATE" in data):
        raise BundleError(file, "a public key or certificate, not a private key",
                          "give --key the private key that signs; its public half goes to the certifier")
    encrypted = b"ENCRYPTED" in data
    try:
        key = serialization.load_pem_private_key(data, password)
    except TypeError:
        if password is None:
            raise BundleError(file, "the private key is encrypted",
                              "pass --key-password-env VAR, VAR naming an environment variable that holds its "
                              "password") from None
        raise BundleError(file, f"the private key is not encrypted, but --key-password-env {password_env} was given",
                          "drop --key-password-env") from None
    except ValueError:
        if encrypted and password is not None:
            raise BundleError(file, f"cannot decrypt the private key with the password in ${password_env}",
                              f"set {password_env} to the key's password") from None
        raise BundleError(file, "not a PEM private key", f"give --key a PEM private key, e.g. from: {KEYGEN}") from None
    except UnsupportedAlgorithm:
        raise BundleError(file, "a key type this Python's cryptography cannot read",
                          f"use an Ed25519 or ECDSA P-256/P-384 key, e.g. from: {KEYGEN}") from None
    return _signing_key(key, file)


def load_public_key(file: Path) -> VerifyingKey:
    """The verifying key: a PEM public key (or a certificate holding one), Ed25519 or ECDSA P-256/P-384."""
    data = _read_pem(file, "--public-key")
    if b"PRIVATE KEY" in data:
        raise BundleError(file, "a private key, not a public key",
                          f"give --public-key the public half: openssl pkey -in {file.name} -pubout -out public.pem "
                          "(and keep the private key to yourself)")
    try:
        if b"BEGIN CERTIFICATE" in data:
            key: object = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError:
        raise BundleError(file, "not a PEM public key",
                          "give --public-key the signer's public key: openssl pkey -in signing-key.pem -pubout") from None
    except UnsupportedAlgorithm:
        raise BundleError(file, "a key type this Python's cryptography cannot read",
                          "ask the signer for an Ed25519 or ECDSA P-256/P-384 public key") from None
    return _verifying_key(key, file)


def fingerprint(key: SigningKey | VerifyingKey) -> str:
    """SHA-256 of the DER public key: ``openssl pkey -pubin -in PUB.pem -outform DER | sha256sum`` gives the same."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey | ec.EllipticCurvePrivateKey) else key
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _sign(key: SigningKey, data: bytes) -> bytes:
    if isinstance(key, Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, ec.ECDSA(_CURVES[key.curve.name][1]()))  # DER, as openssl dgst -verify reads it


def _signature_verifies(key: VerifyingKey, signature: bytes, data: bytes) -> bool:
    try:
        if isinstance(key, Ed25519PublicKey):
            key.verify(signature, data)
        else:
            key.verify(signature, data, ec.ECDSA(_CURVES[key.curve.name][1]()))
    except InvalidSignature:
        return False
    return True


# --- what goes in -----------------------------------------------------------------------------------------------


def read_summary(reports: Path) -> dict[str, Any]:
    """The run's summary.json: a bundle is of a finished run, and its targets say which target files belong."""
    if not reports.is_dir():
        raise BundleError(reports, "no such folder",
                          "pass --reports the folder a run wrote (smart-conformance run --reports DIR)")
    file = reports / "summary.json"
    if not file.is_file():
        raise BundleError(reports, "no summary.json (the run did not finish, or this is not a reports folder)",
                          "bundle the reports folder of a finished run")
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(file, f"not a readable summary.json ({exc})", "rerun, or bundle another run's folder") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("targets"), dict):
        raise BundleError(file, "not a smart-conformance summary (no 'targets')", "pass a run's reports folder")
    return doc


def run_environment(reports: Path) -> dict[str, str]:
    """allure-results/environment.properties: whether the embedded reference server was the target, for a summary.json
    written before it recorded what was run (its ``run`` section, :func:`recorded_run`)."""
    file = reports / "allure-results" / "environment.properties"
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, sep, v in (line.partition("=") for line in lines) if sep}


def recorded_run(reports: Path, summary: Mapping[str, Any]) -> dict[str, Any]:
    """What was run, as summary.json records it (``run``: per target its file, or the embedded reference with its
    faults and variants); from environment.properties for an older summary (no target files then)."""
    run = summary.get("run")
    if isinstance(run, dict) and isinstance(run.get("targets"), dict):
        return run
    env = run_environment(reports)
    faults = [f for f in env.get("reference.faults", "").split(",") if f and f != "none"]
    return {"embedded_reference": env.get("embedded.reference") == "true", "faults": faults, "variants": [],
            "targets": {}}


@dataclass(frozen=True)
class TargetFile:
    """A target file the run used: the run's name for it, where it was read from, its YAML as parsed."""

    name: str
    source: Path
    doc: Any
    embedded: bool = False

    @property
    def arcname(self) -> str:
        return f"targets/{re.sub(r'[^A-Za-z0-9._-]+', '-', self.name)}.yaml"

    def masked(self) -> str:
        """The YAML with every secret masked by redact.py; re-serialized, so comments (which may quote a secret)
        are left out."""
        origin = ("the embedded reference server's target, fixtures/targets/reference.yaml of the harness"
                  if self.embedded else f"{self.source}")
        header = (f"# Target '{self.name}' as the run read it: {origin}.\n"
                  f"# Secrets masked ({redact.MASK}) by smart_conformance.redact; comments left out.\n")
        return header + yaml.safe_dump(redact.data(self.doc), sort_keys=False, allow_unicode=True, width=120)


def run_targets(reports: Path, summary: Mapping[str, Any], given: Sequence[Path] = ()) -> tuple[list[TargetFile],
                                                                                                list[Path]]:
    """The target files of the run, one per target of summary.json, and the given files no target of the run
    names (a shard's run checks some of a folder's targets). An embedded run's file is the package's own."""
    names = list(summary["targets"])
    run = recorded_run(reports, summary)
    if run.get("embedded_reference"):
        if given:
            raise BundleError("--target", f"the run in {reports} checked the embedded reference server, whose target "
                              "file comes with the harness", "drop --target")
        source = paths.reference_target()
        doc = _load_target_yaml(source)
        return [TargetFile(name, source, doc, embedded=True) for name in names], []
    if not given:  # the files summary.json records; --target overrides them (a run whose files have moved)
        recorded = {n: str((run["targets"].get(n) or {}).get("source") or "") for n in names}
        unknown = [n for n, file in recorded.items() if not file]
        if unknown:
            raise BundleError(reports, f"the run checked {', '.join(unknown)} from target files the reports do not "
                              "record", "name them with --target FILE_OR_DIR (the files given to run --target)")
        moved = [file for file in dict.fromkeys(recorded.values()) if not Path(file).is_file()]
        if moved:
            raise BundleError(moved[0], "the target file summary.json records is not there any more",
                              "name the run's target files with --target FILE_OR_DIR")
        given = [Path(file) for file in dict.fromkeys(recorded.values())]
    try:
        files = target_files(given)
    except ConfigError as exc:
        raise BundleError(exc.file, exc.problem, exc.fix) from None
    found: dict[str, tuple[Path, Any]] = {}
    for file in files:
        doc = _load_target_yaml(file)
        name = doc.get("name") if isinstance(doc, dict) else None
        if not isinstance(name, str) or not name:
            raise BundleError(file, "not a target file (no 'name')", "pass the target YAML files the run used")
        if name in found:
            raise BundleError(file, f"target name '{name}' is also in {found[name][0]}", "pass each target file once")
        found[name] = (file, doc)
    missing = [n for n in names if n not in found]
    if missing:
        raise BundleError("--target", f"no file names target(s) {', '.join(missing)} of {reports / 'summary.json'}",
                          "add the target files the run used")
    unused = [file for name, (file, _) in found.items() if name not in names]
    return [TargetFile(n, found[n][0], found[n][1]) for n in names], unused


def _load_target_yaml(file: Path) -> Any:
    """Read as written, without resolving ${ENV} references: the bundle must not need (or hold) the secrets."""
    try:
        return load_yaml(file, what="target file", missing_fix="give --target the target files the run used")
    except ConfigError as exc:
        raise BundleError(file, exc.problem, exc.fix) from None


def catalog_version() -> dict[str, Any]:
    """The requirement catalog has no version of its own, so it is identified by a SHA-256 over its files: that of
    the ``sha256sum *.yaml`` listing of fixtures/requirements/, so ``sha256sum *.yaml | sha256sum`` reproduces it."""
    folder = paths.fixtures_dir() / "requirements"
    files = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.glob("*.yaml"))}
    listing = "".join(f"{digest}  {name}\n" for name, digest in files.items())
    sources: dict[str, str] = {}
    for name in files:
        try:
            source = (yaml.safe_load((folder / name).read_text(encoding="utf-8")) or {}).get("source") or {}
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(source, dict) and source.get("id"):
            sources[str(source["id"])] = str(source.get("title", ""))
    return {"version": None,
            "sha256": hashlib.sha256(listing.encode()).hexdigest(),
            "how": "the catalog has no version of its own: SHA-256 of the output of `sha256sum *.yaml` run in "
                   "fixtures/requirements/ (reproduce: cd fixtures/requirements && sha256sum *.yaml | sha256sum)",
            "files": files, "sources": sources}


def _requirement_name(spec: str) -> str | None:
    if re.search(r"\bextra\s*==", spec):
        return None  # an optional extra (dev tools), not what a run uses
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec.strip())
    return match.group(0) if match else None


def versions(summary: Mapping[str, Any]) -> dict[str, Any]:
    """What produced the evidence: the harness, Python, the harness's dependencies and every installed distribution
    (importlib.metadata), and the requirement catalog."""
    installed: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            installed.setdefault(name, dist.version)
    try:
        declared = [n for n in map(_requirement_name, metadata.requires(DISTRIBUTION) or []) if n]
        harness = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        declared, harness = [], __version__
    lookup = {_normal(n): v for n, v in installed.items()}
    return {
        "harness": {"name": DISTRIBUTION, "version": harness, "run_by": summary.get("version")},
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation()},
        "platform": platform.platform(),
        "dependencies": {n: lookup.get(_normal(n), "not installed") for n in declared},
        "installed": dict(sorted(installed.items(), key=lambda kv: kv[0].lower())),
        "requirement_catalog": catalog_version(),
        "note": "dependency and catalog versions are those of the environment that built the bundle; build it where "
                "the run ran",
    }


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _readme(algo: str) -> str:
    check = ("openssl pkeyutl -verify -pubin -inkey PUB.pem -rawin -in manifest.json -sigfile manifest.sig"
             if algo == "Ed25519" else
             f"openssl dgst -{'sha384' if 'P-384' in algo else 'sha256'} -verify PUB.pem -signature manifest.sig "
             "manifest.json")
    return (
        "Evidence bundle of a smart-payer-conformance run.\n\n"
        "reports/       the run's reports: summary.md/.json, results.sarif, junit.xml, allure-results/ (each check\n"
        "               with its recorded HTTP exchanges and screenshots), artifacts/ (each browser launch)\n"
        "targets/       the run's target file(s), secrets masked\n"
        "versions.json  harness, Python and dependency versions, the requirement catalog's SHA-256\n"
        f"manifest.json  the SHA-256 of every other file; manifest.sig is its {algo} signature\n\n"
        "Check it:  smart-conformance verify THIS.zip --public-key PUB.pem\n"
        "or, unzipped, without the harness:\n"
        f"  {check}\n"
        "  jq -r '.files | to_entries[] | \"\\(.value)  \\(.key)\"' manifest.json | sha256sum -c -\n"
        "  and that the folder holds no file the manifest does not list, besides manifest.json and manifest.sig.\n"
    )


# --- build ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    """What ``build`` wrote, for the command's summary."""

    output: Path
    files: tuple[str, ...]  # every file the manifest lists
    algorithm: str
    fingerprint: str
    targets: tuple[TargetFile, ...]
    missing: tuple[str, ...] = ()  # report files a run writes that this folder lacks
    left_out: tuple[str, ...] = ()  # what the reports folder holds that is not this run's evidence
    unused_targets: tuple[Path, ...] = ()
    catalog_sha256: str = ""


def _report_files(reports: Path, exclude: set[Path]) -> Iterator[tuple[str, Path]]:
    """(name in the bundle, file) of the run's reports; symbolic links are not followed out of the folder."""
    for name in REPORT_FILES:
        file = reports / name
        if file.is_file() and not file.is_symlink():
            yield f"reports/{name}", file
    for folder in REPORT_FOLDERS:
        for root, dirs, names in os.walk(reports / folder):
            dirs.sort()
            for name in sorted(names):
                file = Path(root) / name
                if file.is_file() and not file.is_symlink() and file.resolve() not in exclude:
                    yield "reports/" + file.relative_to(reports).as_posix(), file


def _copy(source: IO[bytes], sink: IO[bytes]) -> str:
    """Stream a file into the zip, hashing the very bytes written (a file that changes meanwhile cannot differ from
    its hash)."""
    digest = hashlib.sha256()
    while chunk := source.read(1 << 20):
        digest.update(chunk)
        sink.write(chunk)
    return digest.hexdigest()


def _entry(name: str, stamp: tuple[int, int, int, int, int, int]) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=stamp)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def build(reports: Path, key: SigningKey, output: Path, *, targets: Sequence[Path] = ()) -> Built:
    """Write the bundle of the run in ``reports`` to ``output`` (atomically: a failure leaves no partial zip)."""
    summary = read_summary(reports)
    target_list, unused = run_targets(reports, summary, targets)
    if output.is_dir():
        raise BundleError("--output", f"{output} is a folder", "give the path of the .zip file to write")
    sources = list(_report_files(reports, {output.resolve()}))
    about = versions(summary)
    generated: dict[str, bytes] = {t.arcname: t.masked().encode() for t in target_list}
    generated[VERSIONS] = (json.dumps(about, indent=2, ensure_ascii=False) + "\n").encode()
    algo, signer = algorithm(key), fingerprint(key)
    generated[README] = _readme(algo).encode()
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
        os.close(handle)
    except OSError as exc:
        raise BundleError("--output", f"cannot write in {output.parent} ({exc.strerror})",
                          "give a writable location") from None
    stamp = datetime.now().timetuple()[:6]
    digests: dict[str, str] = {}
    try:
        with zipfile.ZipFile(temp, "w") as archive:
            for arcname, file in sources:
                with file.open("rb") as source, archive.open(_entry(arcname, stamp), "w",
                                                             force_zip64=file.stat().st_size > 1 << 30) as sink:
                    digests[arcname] = _copy(source, sink)
            for arcname, data in generated.items():
                archive.writestr(_entry(arcname, stamp), data)
                digests[arcname] = hashlib.sha256(data).hexdigest()
            manifest = _manifest(summary, reports, digests, algo, signer)
            archive.writestr(_entry(MANIFEST, stamp), manifest)
            archive.writestr(_entry(SIGNATURE, stamp), _sign(key, manifest))
        os.replace(temp, output)
    except OSError as exc:
        raise BundleError(exc.filename or output, f"cannot write the bundle ({exc.strerror or exc})",
                          "check the paths, permissions and free space") from None
    finally:
        Path(temp).unlink(missing_ok=True)
    bundled = {*REPORT_FILES, *REPORT_FOLDERS}
    left_out = sorted(p.name + ("/" if p.is_dir() else "") for p in reports.iterdir()
                      if p.name not in bundled and not p.name.startswith(".") and p.resolve() != output.resolve())
    return Built(output=output, files=tuple(sorted(digests)), algorithm=algo, fingerprint=signer,
                 targets=tuple(target_list), missing=tuple(n for n in REPORT_FILES if not (reports / n).is_file()),
                 left_out=tuple(left_out), unused_targets=tuple(unused),
                 catalog_sha256=about["requirement_catalog"]["sha256"])


def _manifest(summary: Mapping[str, Any], reports: Path, files: Mapping[str, str], algo: str,
              signer: str) -> bytes:
    """The signed document: every file's SHA-256, the signer's key, and the run it is evidence of."""
    recorded = recorded_run(reports, summary)
    run = {"generated_at": summary.get("generated_at"), "harness_version": summary.get("version"),
           "strict": summary.get("strict"), "exit_code": summary.get("exit_code"),
           "embedded_reference": bool(recorded.get("embedded_reference")),
           "reference_faults": list(recorded.get("faults") or []),
           "reference_variants": list(recorded.get("variants") or []),
           "targets": {name: (section or {}).get("verdict", "") for name, section in summary["targets"].items()}}
    doc = {"format": FORMAT, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
           "created_by": f"{DISTRIBUTION} {__version__}", "run": run,
           "signature": {"file": SIGNATURE, "algorithm": algo, "public_key": signer},
           "hash": "sha256", "files": dict(sorted(files.items()))}
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


# --- verify -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """The outcome of checking a bundle: ``ok`` only when the signature verifies and the file set and every hash
    equal the manifest's."""

    bundle: Path
    signature: str = ""  # what is wrong with the signature, "" when it verifies
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()  # the manifest itself unreadable, a duplicated entry
    checked: int = 0
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.signature or self.added or self.removed or self.changed or self.problems)

    def lines(self) -> list[str]:
        """Each problem on a line of its own, naming the file."""
        out = [f"signature: {self.signature}"] if self.signature else []
        out += self.problems
        out += [f"added: {name} (not in the manifest)" for name in self.added]
        out += [f"removed: {name} (in the manifest, not in the bundle)" for name in self.removed]
        out += [f"changed: {name}" for name in self.changed]
        return out


def _member_digest(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    digest = hashlib.sha256()
    with archive.open(info) as member:
        while chunk := member.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify(bundle: Path, key: VerifyingKey, *, key_file: Path | None = None) -> Verification:
    """Check a bundle against the signer's public key: the signature over manifest.json, then every file. Reads,
    never extracts."""
    if not bundle.is_file():
        raise BundleError(bundle, "no such file", "pass the .zip that smart-conformance bundle wrote")
    try:
        archive = zipfile.ZipFile(bundle)
    except (zipfile.BadZipFile, OSError, EOFError):
        raise BundleError(bundle, "not a zip archive", "pass the .zip that smart-conformance bundle wrote") from None
    with archive:
        by_name: dict[str, list[zipfile.ZipInfo]] = {}
        for info in archive.infolist():
            if not info.is_dir():
                by_name.setdefault(info.filename, []).append(info)
        problems = [f"added: {name} ({len(infos) - 1} more entr{'y' if len(infos) == 2 else 'ies'} of that name, "
                    "which an unzip tool may extract instead)" for name, infos in by_name.items() if len(infos) > 1]
        manifest_bytes = _read_member(archive, by_name, MANIFEST)
        if manifest_bytes is None:
            problems.append("removed: manifest.json (not an evidence bundle, or its manifest was taken out)")
            return Verification(bundle, signature="not checked: manifest.json is missing", problems=tuple(problems))
        manifest = _parse_manifest(manifest_bytes)
        signature = _signature_problem(key, _read_member(archive, by_name, SIGNATURE), manifest_bytes, manifest,
                                       key_file)
        if manifest is None:
            problems.append("changed: manifest.json (not a bundle manifest: no 'files' mapping names to SHA-256)")
            return Verification(bundle, signature=signature, problems=tuple(problems))
        listed: dict[str, str] = manifest["files"]
        present = set(by_name) - {MANIFEST, SIGNATURE}
        changed = []
        for name in sorted(present & set(listed)):
            try:
                digest = _member_digest(archive, by_name[name][-1])
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
                changed.append(f"{name} (unreadable: {exc})")
                continue
            if digest != listed[name].lower():
                changed.append(f"{name} (SHA-256 {digest[:16]}…, the manifest says {listed[name][:16]}…)")
        return Verification(bundle, signature=signature, problems=tuple(problems),
                            added=tuple(sorted(present - set(listed))), removed=tuple(sorted(set(listed) - present)),
                            changed=tuple(changed), checked=len(present & set(listed)), manifest=manifest)


def _signature_problem(key: VerifyingKey, signature: bytes | None, manifest_bytes: bytes,
                       manifest: Mapping[str, Any] | None, key_file: Path | None) -> str:
    """'' when manifest.sig verifies over manifest.json's exact bytes with ``key``; else what is wrong."""
    if signature is None:
        return "manifest.sig is missing: nothing vouches for manifest.json"
    if _signature_verifies(key, signature, manifest_bytes):
        return ""
    named = (manifest or {}).get("signature")
    signer = named.get("public_key") if isinstance(named, dict) else None
    mine = fingerprint(key)
    return (f"manifest.sig does not verify over manifest.json with {key_file or 'the public key'} ({mine}"
            + (f"; the manifest names signer {signer}" if signer and signer != mine else "")
            + "): the manifest was edited, the signature replaced, or this is not the signer's key")


def _read_member(archive: zipfile.ZipFile, by_name: Mapping[str, list[zipfile.ZipInfo]], name: str) -> bytes | None:
    infos = by_name.get(name)
    if not infos:
        return None
    try:
        return archive.read(infos[-1])
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError):
        return b""  # unreadable: the signature check then fails, naming it


def _parse_manifest(data: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        return None
    return doc


def describe_run(manifest: Mapping[str, Any]) -> str:
    """One line on the run a verified bundle is evidence of (from the signed manifest)."""
    run = manifest.get("run") if isinstance(manifest.get("run"), dict) else {}
    verdicts = "; ".join(f"{name}: {verdict}" for name, verdict in (run.get("targets") or {}).items())
    faults = run.get("reference_faults") or []
    return (f"run of {run.get('generated_at', '?')} by smart-payer-conformance {run.get('harness_version', '?')}"
            f"{' against the embedded reference server' if run.get('embedded_reference') else ''}"
            f"{' (faults on: ' + ', '.join(faults) + ')' if faults else ''}: {verdicts or 'no targets'}")
