"""Parallel members launching against one server do not interfere (separate processes share only the server)."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from smart_conformance.reference.server import ReferenceServer
from tests.reference.launcher import Launcher

MEMBER_PATIENT = {"alice": "pat-alice", "bob": "pat-bob", "carol": "pat-dylan"}


def _one(launcher: Launcher, member: str) -> tuple[str, str, str, int]:
    run = launcher.launch(member=member)
    token = run.tokens["access_token"]
    own = launcher.fhir(f"/Patient/{run.tokens['patient']}", token).status_code
    eobs = launcher.fhir("/ExplanationOfBenefit", token).json()
    owners = {e["resource"]["patient"]["reference"] for e in eobs["entry"]}
    assert owners == {f"Patient/{MEMBER_PATIENT[member]}"}, owners
    return member, run.tokens["patient"], token, own


def test_concurrent_threads(launcher: Launcher) -> None:
    members = ["alice", "bob", "carol"] * 4
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda m: _one(launcher, m), members))
    assert all(status == 200 for *_, status in results)
    assert all(patient == MEMBER_PATIENT[member] for member, patient, _, _ in results)
    assert len({token for _, _, token, _ in results}) == len(results)


_WORKER = """
import json, sys
sys.path[:0] = [{src!r}, {root!r}]
from tests.reference.launcher import Launcher
from tests.reference.test_concurrency import _one

class Srv:  # the parts of ReferenceServer the launcher uses, rebuilt from the parent's values
    def __init__(self, d):
        self.__dict__.update(d)
    def ssl_context(self):
        import ssl
        return ssl.create_default_context(cafile=self.ca_path)
    def target_env(self):
        return self.env

srv = Srv(json.loads(sys.argv[1]))
print(json.dumps([_one(Launcher(srv), m) for m in sys.argv[2].split(",")]))
"""


def test_concurrent_processes(server: ReferenceServer) -> None:
    root = Path(__file__).resolve().parents[2]
    info = json.dumps({"origin": server.origin, "issuer": server.issuer, "fhir_base_url": server.fhir_base_url,
                       "ca_path": str(server.ca_path), "state_dir": str(server.state_dir),
                       "env": server.target_env()})
    code = _WORKER.format(src=str(root / "src"), root=str(root))
    procs = [subprocess.Popen([sys.executable, "-c", code, info, members], stdout=subprocess.PIPE, text=True)
             for members in ("alice,bob,carol", "bob,carol,alice")]
    outputs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    results = [r for out in outputs for r in out]
    assert len(results) == 6 and len({r[2] for r in results}) == 6
    assert all(patient == MEMBER_PATIENT[member] and status == 200 for member, patient, _, status in results)
