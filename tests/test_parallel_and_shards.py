"""Many targets, many machines: a parallel run, and a run split into CI shards then merged, give the serial verdicts.

Two reference servers stand in for two payers (``payer-a``, ``payer-b``: two target files, each with its own
credentials). A cheap slice of the suites (discovery, and the token-response checks that use the shared sign-in) runs
against both: serially, with ``-n 2`` (one work unit per target: each target's checks on one worker, which signs in
to it once), and as shards ``1/2`` and ``2/2`` folded by ``smart-conformance merge``. Every check's outcome per target
must be the same, and so must the totals and the exit status. Four small suite runs: about 25 s of CPU in all.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from smart_conformance import cli
from smart_conformance.distribution import parse_shard, shard_targets, target_scope
from smart_conformance.reference.server import ReferenceServer
from smart_conformance.report import merge as merge_mod
from smart_conformance.report import summary as summary_mod
from tests.suite_runner import SuiteRun, reference_target_file, run_suites

SUITES = ["discovery", "tokens/test_token_response.py"]
PAYERS = ("payer-a", "payer-b")


@pytest.fixture(scope="module")
def payers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[tuple[Path, ...], dict[str, str]]]:
    """Two running reference servers as two payers' target files, and the variables those files read."""
    folder = tmp_path_factory.mktemp("payers")
    files: list[Path] = []
    env: dict[str, str] = {}
    with ExitStack() as stack:
        for name in PAYERS:
            srv = stack.enter_context(ReferenceServer())
            prefix = name.upper().replace("-", "_") + "_"
            own = folder / name
            own.mkdir()
            text = reference_target_file(own, name=name).read_text(encoding="utf-8")
            target = own / f"{name}.yaml"
            target.write_text(text.replace("SMART_REFERENCE_", prefix), encoding="utf-8")
            files.append(target)
            env.update({k.replace("SMART_REFERENCE_", prefix): v for k, v in srv.target_env().items()})
        yield tuple(files), env


def _run(payers: tuple[tuple[Path, ...], dict[str, str]], reports: Path, *extra: str) -> SuiteRun:
    files, env = payers
    return run_suites(SUITES, reports, targets=files, env=env,
                      extra=(f"--junitxml={reports / 'junit.xml'}", *extra))


@pytest.fixture(scope="module")
def serial(payers: tuple[tuple[Path, ...], dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> SuiteRun:
    run = _run(payers, tmp_path_factory.mktemp("serial") / "r", "-n", "0")
    assert set(run.summary["targets"]) == set(PAYERS), run.output
    assert run.returncode == 0 and run.summary["exit_code"] == 0, run.output
    return run


def _per_target(doc: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on how the run was spread: every check's outcome, the totals and the verdict."""
    return {name: {"results": t["results"], "totals": t["totals"], "areas": t["areas"], "verdict": t["verdict"],
                   "findings": sorted((f["check"], f["outcome"]) for f in t["findings"])}
            for name, t in doc["targets"].items()}


def test_parallel_run_gives_the_serial_outcomes(payers: tuple[tuple[Path, ...], dict[str, str]], serial: SuiteRun,
                                                tmp_path: Path) -> None:
    parallel = _run(payers, tmp_path / "r", "-n", "2")
    assert _per_target(parallel.summary) == _per_target(serial.summary)
    assert (parallel.returncode, parallel.summary["exit_code"]) == (serial.returncode, serial.summary["exit_code"])
    for name in PAYERS:  # each target's launches were made by one worker: its checks were grouped there
        workers = sorted(p.name for p in (tmp_path / "r" / "artifacts" / name).iterdir())
        assert len(workers) == 1 and workers[0].startswith("gw"), (name, workers)


def test_shards_merged_equal_the_unsharded_run(payers: tuple[tuple[Path, ...], dict[str, str]], serial: SuiteRun,
                                               tmp_path: Path) -> None:
    shards = [_run(payers, tmp_path / f"shard{i}", "-n", "0", f"--shard={i}/2") for i in (1, 2)]
    assert [sorted(s.summary["targets"]) for s in shards] == [["payer-a"], ["payer-b"]]  # by sorted name
    code = cli.main(["merge", str(tmp_path / "shard1"), str(tmp_path / "shard2"), "--output", str(tmp_path / "all")])
    merged = json.loads((tmp_path / "all" / "summary.json").read_text(encoding="utf-8"))
    assert _per_target(merged) == _per_target(serial.summary)
    assert code == merged["exit_code"] == serial.summary["exit_code"]
    assert "payer-a" in (tmp_path / "all" / "summary.md").read_text(encoding="utf-8")

    def testcases(folder: Path) -> list[str]:
        root = ET.parse(folder / "junit.xml").getroot()
        return sorted(f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase"))

    assert testcases(tmp_path / "all") == testcases(serial.reports)
    assert int(ET.parse(tmp_path / "all" / "junit.xml").getroot().get("tests", "0")) == len(testcases(serial.reports))

    def allure_results(folder: Path) -> int:
        return len(list((folder / "allure-results").glob("*-result.json")))

    assert allure_results(tmp_path / "all") == allure_results(serial.reports) > 0
    env = (tmp_path / "all" / "allure-results" / "environment.properties").read_text(encoding="utf-8")
    assert "targets=payer-a,payer-b\n" in env
    if (serial.reports / "results.sarif").is_file():
        sarif = json.loads((tmp_path / "all" / "results.sarif").read_text(encoding="utf-8"))["runs"][0]
        expected = json.loads((serial.reports / "results.sarif").read_text(encoding="utf-8"))["runs"][0]
        assert [r["id"] for r in sarif["tool"]["driver"]["rules"]] == \
            [r["id"] for r in expected["tool"]["driver"]["rules"]]
        assert sarif["properties"]["targets"] == list(PAYERS)
    assert sorted(p.name for p in (tmp_path / "all" / "artifacts").iterdir()) == list(PAYERS)


# --- the pieces, without servers -----------------------------------------------------------------------------------

def test_shards_split_targets_deterministically() -> None:
    names = ["zeta", "acme", "beta", "delta", "gamma"]
    split = [shard_targets(names, (i, 3)) for i in (1, 2, 3)]
    assert split == [["acme", "gamma"], ["beta", "zeta"], ["delta"]]
    assert split == [shard_targets(list(reversed(names)), (i, 3)) for i in (1, 2, 3)]  # order given does not matter
    assert sorted(n for part in split for n in part) == sorted(names)
    assert shard_targets(["reference"], (2, 2)) == [] and shard_targets(names, None) == names
    assert parse_shard(" 2/3 ") == (2, 3)
    for bad in ("0/2", "3/2", "1", "a/b", "1/0", ""):
        with pytest.raises(ValueError, match="i/n"):
            parse_shard(bad)


def test_bad_shard_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["run", "--shard", "3/2", "--reports", str(tmp_path)]) == summary_mod.EXIT_USAGE
    assert "--shard '3/2': write i/n" in capsys.readouterr().err


def test_a_target_is_one_work_unit() -> None:
    targets = ["acme", "acme-staging", "reference"]
    assert target_scope("tokens/test_x.py::test_y[acme-staging]", targets) == "acme-staging"
    assert target_scope("tokens/test_x.py::test_y[acme]", targets) == "acme"
    assert target_scope("discovery/test_s.py::test_json[reference-no-accept]", targets) == "reference"
    assert target_scope("discovery/test_s.py::test_json[text-html-acme]", targets) == "acme"
    assert target_scope("tokens/test_x.py::test_y[acme]@acme", targets) == "acme"  # xdist's own suffix, if set
    assert target_scope("tokens/test_x.py::test_plain", targets) == "tokens/test_x.py::test_plain"


def _row(target: str, check: str, outcome: str) -> dict[str, Any]:
    return {"target": target, "area": "tokens", "check": check, "nodeid": f"tokens/test_x.py::{check}[{target}]",
            "requirements": ["SMART-TOKEN-1"], "violated": ["SMART-TOKEN-1"], "outcome": outcome,
            "message": f"{outcome} message", "doc": ""}


def _shard(folder: Path, rows: list[dict[str, Any]], **kwargs: Any) -> Path:
    folder.mkdir(parents=True)
    doc = summary_mod.build(rows, strict=kwargs.pop("strict", False), **kwargs)
    (folder / "summary.json").write_text(json.dumps(doc), encoding="utf-8")
    return folder


@pytest.mark.parametrize(("second", "code"), [
    ("passed", summary_mod.EXIT_OK), ("failed", summary_mod.EXIT_FAILED), ("broken", summary_mod.EXIT_BROKEN),
    ("warning", summary_mod.EXIT_OK), ("skipped", summary_mod.EXIT_OK)])
def test_merged_exit_status_is_recomputed(tmp_path: Path, second: str, code: int) -> None:
    a = _shard(tmp_path / "a", [_row("payer-a", "test_one", "passed")])
    b = _shard(tmp_path / "b", [_row("payer-b", "test_one", second), _row("payer-b", "test_two", "passed")])
    merged = merge_mod.merge([a, b], tmp_path / "out")
    single = summary_mod.build([_row("payer-a", "test_one", "passed"), _row("payer-b", "test_one", second),
                                _row("payer-b", "test_two", "passed")], strict=False)
    assert merged.exit_code == single["exit_code"] == code
    assert merged.summary["targets"]["payer-b"]["totals"] == single["targets"]["payer-b"]["totals"]


def test_strict_merge_fails_on_warnings(tmp_path: Path) -> None:
    a = _shard(tmp_path / "a", [_row("payer-a", "test_one", "warning")], strict=True)
    b = _shard(tmp_path / "b", [_row("payer-b", "test_one", "passed")], strict=True)
    assert merge_mod.merge([a, b], tmp_path / "out").exit_code == summary_mod.EXIT_FAILED


def test_baselined_failure_does_not_gate_the_merge(tmp_path: Path) -> None:
    from smart_conformance.report.baseline import Baseline, Entry

    baseline = Baseline(file=tmp_path / "baseline.yaml", entries=(Entry("payer-b", "test_one", "TICKET-1"),))
    a = _shard(tmp_path / "a", [_row("payer-a", "test_one", "passed")], baseline=baseline)
    b = _shard(tmp_path / "b", [_row("payer-b", "test_one", "failed")], baseline=baseline)
    merged = merge_mod.merge([a, b], tmp_path / "out")
    assert merged.exit_code == summary_mod.EXIT_OK
    assert merged.summary["baseline"]["expected_failures"] == 1


def test_merge_refuses_what_is_not_a_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _shard(tmp_path / "a", [_row("payer-a", "test_one", "passed")])
    again = _shard(tmp_path / "again", [_row("payer-a", "test_one", "passed")])
    with pytest.raises(merge_mod.MergeError, match="target 'payer-a' is in both"):
        merge_mod.merge([a, again], tmp_path / "out")
    strict = _shard(tmp_path / "strict", [_row("payer-b", "test_one", "passed")], strict=True)
    assert cli.main(["merge", str(a), str(strict), "--output", str(tmp_path / "out")]) == summary_mod.EXIT_USAGE
    assert "different --strict settings" in capsys.readouterr().err


def test_a_shard_that_did_not_finish_leaves_the_merge_incomplete(tmp_path: Path) -> None:
    a = _shard(tmp_path / "a", [_row("payer-a", "test_one", "passed")])
    (tmp_path / "b").mkdir()  # the job died before writing its summary
    merged = merge_mod.merge([a, tmp_path / "b"], tmp_path / "out")
    assert merged.exit_code == summary_mod.EXIT_BROKEN and merged.missing == [tmp_path / "b"]
    assert "did not finish" in (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert os.path.isfile(tmp_path / "out" / "summary.json")


def test_merged_findings_point_at_the_merged_screenshots(tmp_path: Path) -> None:
    row = _row("payer-b", "test_one", "failed")
    row["message"] = "Expected: x\nActual: y\nscreenshot: /runner/job-2/reports-2/artifacts/payer-b/gw0/launch-01/s.png"
    b = _shard(tmp_path / "b", [row])
    (b / "artifacts" / "payer-b" / "gw0" / "launch-01").mkdir(parents=True)
    (b / "artifacts" / "payer-b" / "gw0" / "launch-01" / "s.png").write_bytes(b"png")
    merged = merge_mod.merge([b], tmp_path / "out")
    message = merged.summary["targets"]["payer-b"]["findings"][0]["message"]
    shot = (tmp_path / "out" / "artifacts" / "payer-b" / "gw0" / "launch-01" / "s.png").resolve()
    assert f"screenshot: {shot.as_posix()}" in message and shot.is_file()
