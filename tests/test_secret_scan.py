"""Secrets never leave the harness: a real run, with failures, searched for every secret it held.

One `smart-conformance run` of the launch, tokens and backend services suites (every kind of secret: client secrets,
member passwords, the members' TOTP secrets, the backend client's private key, and the access, refresh and id tokens,
authorization codes and client assertions the run obtained) against a reference server with two faults and the
totp-mfa variant on (every sign-in types a one-time code from a secret read with {file: ...}), so failure texts, curl commands,
screenshots and traces are written too. Every file under the reports folder (each member of a trace zip included),
stdout and stderr are then searched for every one of those secrets, raw and in the encodings a leak takes (URL
encoding, base64 as in a Basic header or a trace, JSON escaping, the PEM body lines of the key, a JWT's signature).

The secrets the run obtained are known from ``$SMART_CONFORMANCE_SECRET_LOG`` (redact.py appends each secret it
registers to that file, kept outside the reports), and that list is itself checked against the server's own store:
every code, refresh token and access token the server issued must be in it, so a secret the harness failed to
register cannot slip past the scan unnoticed. A structural scan (anything shaped like a live token or a secret
field) runs on the same files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import quote, quote_plus

import jwt
import pytest
import yaml

from smart_conformance import paths
from smart_conformance.config import merge
from smart_conformance.reference.server import ReferenceServer
from smart_conformance.reference.variants import TOTP_MFA, ActiveVariants

FAULTS = ("token-no-store-missing", "backend-refresh-token-issued")
SUITES = ("launch", "tokens", "backend_services")


JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
SECRET_FIELD = re.compile(rb'"(access_token|refresh_token|id_token|client_secret|password|code_verifier)"\s*:\s*"(?!\*\*\*)[^"]+"')
SECRET_PARAM = re.compile(rb"[?&#](code|access_token|refresh_token|client_secret|code_verifier)=(?!\*|%2A)[^&\s\"']+")


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


def encodings(secret: str) -> set[str]:
    """The forms a secret takes when it leaks: as is, URL-encoded, JSON-escaped, and base64 (standard and url-safe,
    at each of the three alignments it can have inside a longer base64 text, edge characters dropped)."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
    raw = secret.encode()
    if len(raw) >= 12:
        for shift in range(3):
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                text = encode(b"\0" * shift + raw).decode().rstrip("=")
                start = (shift * 8 + 5) // 6 + 1 if shift else 0
                forms.add(text[start:-2])
    return {f for f in forms if len(f) >= 8}


IMAGES = (".png", ".jpeg", ".jpg")  # pixels, not text: screenshots are masked by the browser module instead


class Needles:
    """Thousands of literals found in one pass: a regex (a trie, each branch starting with its own byte) finds where
    any needle's first 8 bytes occur, and only there are whole needles compared."""

    PREFIX = 8

    def __init__(self, needles: dict[str, str]) -> None:
        self.labels = {n.encode(): label for n, label in needles.items()}
        self.by_prefix: dict[bytes, list[bytes]] = {}
        for needle in sorted(self.labels, key=len, reverse=True):
            self.by_prefix.setdefault(needle[:self.PREFIX], []).append(needle)
        trie: dict[int, dict] = {}
        for prefix in self.by_prefix:
            node = trie
            for byte in prefix:
                node = node.setdefault(byte, {})
        self.pattern = re.compile(b"(?=(" + self._regex(trie) + b"))")

    def _regex(self, node: dict[int, dict]) -> bytes:
        branches = [re.escape(bytes([b])) + self._regex(child) for b, child in sorted(node.items())]
        if len(branches) <= 1:
            return branches[0] if branches else b""
        return b"(?:" + b"|".join(branches) + b")"

    def find(self, content: bytes) -> list[tuple[int, str]]:
        """(offset, label) of every needle in ``content``."""
        found = []
        for match in self.pattern.finditer(content):
            for needle in self.by_prefix[match.group(1)]:
                if content.startswith(needle, match.start()):
                    found.append((match.start(), self.labels[needle]))
                    break
        return found


def pem_fragments(pem: str) -> set[str]:
    """The body lines of a PEM (each 64 characters of the key) and the whole body joined."""
    body = [line.strip() for line in pem.splitlines() if line.strip() and not line.startswith("-----")]
    return {line for line in body if len(line) >= 16} | {"".join(body)}


def run_secrets(log: Path, env: dict[str, str]) -> set[str]:
    """Every secret of the run: what the harness registered, plus the reference's own configuration secrets."""
    logged = {json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line}
    configured = {v for k, v in env.items() if k.endswith(("_SECRET", "_PASSWORD"))}
    totp = {Path(v).read_text(encoding="utf-8").strip() for k, v in env.items() if k.endswith("_TOTP_FILE")}
    return logged | configured | totp


def mfa_target(folder: Path) -> Path:
    """The reference's target file as a payer with TOTP two-step verification writes it (the totp-mfa variant)."""
    doc = yaml.safe_load(paths.reference_target().read_text(encoding="utf-8"))
    doc.pop("attestations", None)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "reference-mfa.yaml"
    out.write_text(yaml.safe_dump(merge(doc, ActiveVariants([TOTP_MFA]).target_patch()), sort_keys=False))
    return out


def test_no_secret_of_the_run_anywhere_in_its_output(tmp_path: Path) -> None:
    reports, log = tmp_path / "reports", tmp_path / "secrets.jsonl"
    with ReferenceServer(faults=list(FAULTS), state_dir=tmp_path / "server", variants=[TOTP_MFA]) as server:
        env = server.target_env()
        args = [sys.executable, "-m", "smart_conformance.cli", "run", "--target", str(mfa_target(tmp_path / "t")),
                "--reports", str(reports), *[a for s in SUITES for a in ("--suite", s)], "--", "--keep-traces"]
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
        proc = subprocess.run(args, check=False, capture_output=True, text=True, timeout=900,
                              env={**clean, **env, "SMART_CONFORMANCE_SECRET_LOG": str(log)})
        issued = _issued(server.state_dir / "state.sqlite3")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-6000:]  # the faults made checks fail: failure texts were written
    summary = json.loads((reports / "summary.json").read_text())
    assert summary["targets"]["reference"]["totals"]["failed"] > 0
    secrets = run_secrets(log, env)
    _assert_log_is_complete(secrets, issued)
    files = [f for f in reports.rglob("*") if f.is_file()]
    # Launch screenshots and (scrubbed) traces are kept under <reports>/artifacts/, so the scan covers them.
    kept = [f for f in files if "artifacts" in f.relative_to(reports).parts]
    assert any(f.suffix == ".png" for f in kept) and any(f.name.endswith("-trace.zip") for f in kept), kept
    texts = [("stdout", proc.stdout.encode()), ("stderr", proc.stderr.encode())] + [
        (f"{f.relative_to(reports)}{name}", data) for f in files if f.suffix not in IMAGES
        for name, data in contents(f) if not name.endswith(IMAGES)]
    secrets -= not_secret(secrets, texts) - set(env.values())  # configured secrets are always searched

    key_file = Path(env["SMART_REFERENCE_BACKEND_KEY_FILE"])
    needles: dict[str, str] = {}  # form -> a short label for the message (never the secret itself)
    for i, secret in enumerate(sorted(secrets)):
        for form in encodings(secret):
            needles.setdefault(form, f"secret #{i} ({len(secret)} chars)")
        if secret.count(".") == 2 and secret.startswith("eyJ"):
            needles.setdefault(secret.rsplit(".", 1)[1], f"signature of JWT #{i}")
    for other in ("SMART_REFERENCE_OTHER_BACKEND_KEY_FILE", "SMART_REFERENCE_BACKEND_KEY_FILE",
                  "SMART_REFERENCE_P2P_KEY_FILE"):
        for fragment in pem_fragments(Path(env[other]).read_text()):
            needles.setdefault(fragment, f"a line of {Path(env[other]).name}")
    assert key_file.read_text().strip() in secrets, "the backend private key should have been registered"
    totp_secret = Path(env["SMART_REFERENCE_MEMBER_TOTP_FILE"]).read_text(encoding="utf-8").strip()
    assert totp_secret in json.dumps([json.loads(line) for line in log.read_text().splitlines()]), \
        "the member's TOTP secret should have been registered"
    # The one-time codes typed are registered (and masked) too; at 6 digits they are too short to search for here
    # without matching unrelated digits, as encodings() leaves out every form under 8 characters.
    search = Needles(needles)

    problems: list[str] = []
    for where, content in texts:
        problems += [f"{where}: {label} at byte {offset}" for offset, label in search.find(content)]
        problems += scan(where, content, [])  # shaped like a token or a secret field
    assert not problems, "\n".join(dict.fromkeys(problems))


CHALLENGE = re.compile(rb'code_challenge(?:=|","value":")([A-Za-z0-9_-]{43})')


def not_secret(registered: set[str], texts: list[tuple[str, bytes]]) -> set[str]:
    """Values redact.py registered that are no secret of the run: constants written in the harness's own source (a
    deliberately unknown code, a wrong verifier), and PKCE challenges, which are public, registered when a negative
    check sends one as the code_verifier."""
    source = "\n".join(f.read_text(encoding="utf-8") for root in (paths.suites_dir(), Path(__file__).parents[1] / "src")
                       for f in root.rglob("*.py"))
    challenges = {m.decode() for _, content in texts for m in CHALLENGE.findall(content)}
    return {s for s in registered if s in source or s in challenges}


def _issued(database: Path) -> dict[str, set[str]]:
    """What the server handed out, as it stores it: code and refresh-token digests, access-token ids."""
    with sqlite3.connect(database) as db:
        return {"code": {r[0] for r in db.execute("SELECT code_hash FROM codes")},
                "refresh token": {r[0] for r in db.execute("SELECT token_hash FROM refresh_tokens")},
                "access token": {r[0] for r in db.execute("SELECT jti FROM access_tokens")}}


def _assert_log_is_complete(secrets: set[str], issued: dict[str, set[str]]) -> None:
    digests = {hashlib.sha256(s.encode()).hexdigest() for s in secrets}
    jtis = set(secrets)
    for secret in secrets:
        try:
            jtis.add(str(jwt.decode(secret, options={"verify_signature": False}).get("jti")))
        except jwt.PyJWTError:
            pass
    assert issued["code"] and issued["refresh token"] and issued["access token"], issued
    missing = {kind: len(values - (jtis if kind == "access token" else digests)) for kind, values in issued.items()}
    assert not any(missing.values()), f"issued by the server but never registered as secrets: {missing}"


@pytest.mark.parametrize("secret", ["s3cr3t-value-that-is-long", "a/b+c=d&e f"])
def test_encodings_cover_the_common_leak_forms(secret: str) -> None:
    """The scan's own control: a secret hidden in a Basic header or a longer base64 text is found."""
    forms = encodings(secret)
    assert quote(secret, safe="") in forms
    if len(secret) >= 12:
        for prefix in ("", "a", "ab", "client:"):
            blob = base64.b64encode((prefix + secret + "-tail").encode()).decode()
            assert any(f in blob for f in forms), prefix


def test_needles_find_every_occurrence_and_nothing_else() -> None:
    search = Needles({"refresh-token-value-1": "refresh", "refresh-token-value-2": "other", "abcdefgh": "short"})
    content = b'{"refresh_token": "refresh-token-value-2"} ... xabcdefghx ... refresh-token-value-3'
    assert search.find(content) == [(19, "other"), (content.index(b"abcdefgh"), "short")]
