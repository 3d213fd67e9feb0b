"""The speed benchmark (issue 12): the harness against the protocol floor, wall time against targets, memory, phases.

    .venv/bin/python benchmarks/run.py            # full: every suite; 1, 2 and 4 targets, serial and -n 2
    .venv/bin/python benchmarks/run.py --quick    # discovery + launch only; 1 and 2 targets (2-3 minutes idle)
    .venv/bin/python benchmarks/run.py --curve-suites discovery,launch   # the curve on fewer suites
    .venv/bin/python benchmarks/run.py --render WORK                     # the report again from kept measurements

``--work DIR`` keeps the measurements there; run again with the same DIR to resume an interrupted benchmark (runs
already measured are kept). Outside the test suite: pytest's ``testpaths`` is ``tests`` and nothing here is named
``test_*``.

Reference servers run in processes of their own (``refserver.py``), so the harness process holds only the harness
and the servers log every request from their side. In one run it measures:

1. the harness (``smart-conformance run`` with the suites, one target, ``-n 0``) and, right after, the floor
   (``floor.py``): the same requests replayed by a bare Playwright + httpx + sslyze script; the ratio of wall times,
   and how closely the floor's requests, connections and launches match the harness's (counted at the server);
2. the curve: 1, 2 (and 4) reference servers as targets, serial and with ``-n 2``;
3. peak RSS of the harness process and its xdist workers, Chromium (and Playwright's node driver) apart, sampled
   from /proc every 0.2 s over the process tree;
4. the per-phase split of the one-target serial run, from what the run recorded (see ``phases``).

Writes ``benchmarks/results.md`` (and prints it). Figures are from one run on a shared, noisy machine: read them as
ratios within the run.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
QUICK_SUITES = ("discovery", "launch")
NO_SSO = "no-sign-in-session"  # the reference variant without an identity-provider session
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- reference servers --------------------------------------------------------------------------------------------
class Server:
    """One refserver.py process."""

    def __init__(self, variants: tuple[str, ...] = ()) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "refserver.py"), *variants], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the reference server did not start")
        self.env: dict[str, str] = json.loads(line)

    def dump(self, file: Path) -> list[dict[str, Any]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"dump {file}\n")
        self.proc.stdin.flush()
        self.proc.stdout.readline()
        return json.loads(file.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def target_file(folder: Path, index: int, server: Server) -> tuple[Path, dict[str, str]]:
    """fixtures/targets/reference.yaml as target ``ref{index}``, its ${ENV} names made its own."""
    text = (ROOT / "fixtures" / "targets" / "reference.yaml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^name: reference$", f"name: ref{index}", text)
    text = re.sub(r"(?m)^attestations:.*$", "", text)
    text = text.replace("SMART_REFERENCE_", f"BENCH{index}_")
    path = folder / f"ref{index}.yaml"
    path.write_text(text, encoding="utf-8")
    return path, {k.replace("SMART_REFERENCE_", f"BENCH{index}_"): v for k, v in server.env.items()}


# --- process-tree sampling ----------------------------------------------------------------------------------------
def _pss(pid: int, fallback: int) -> int:
    """Proportional set size: shared pages split between the processes that share them, so sums do not count
    Chromium's shared libraries once per process."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return fallback


def _procs() -> dict[int, tuple[int, str, str, int]]:
    """pid -> (ppid, comm, cmdline, rss bytes) of every process we can read."""
    out: dict[int, tuple[int, str, str, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("latin-1")
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("latin-1")
            out[int(entry)] = (int(fields[1]), comm, cmd, int(fields[21]) * PAGE)
        except (OSError, ValueError, IndexError):
            continue
    return out


@dataclass
class Sampler:
    """Peak RSS of the harness tree, split: the harness process, its python workers, Chromium + node driver."""

    root: int
    peak_main: int = 0
    peak_python: int = 0
    peak_browser: int = 0
    chromium_mains: set[int] = field(default_factory=set)
    workers: set[int] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            procs = _procs()
            tree = {self.root}
            changed = True
            while changed:
                changed = False
                for pid, (ppid, *_rest) in procs.items():
                    if ppid in tree and pid not in tree:
                        tree.add(pid)
                        changed = True
            python = browser = 0
            drivers = {pid for pid in tree if pid in procs and procs[pid][1].startswith("node")}
            for pid in tree:
                if pid not in procs:
                    continue
                _ppid, comm, cmd, rss = procs[pid]
                pss = _pss(pid, rss)
                if "chrom" in comm or "headless" in comm or "node" in comm or "playwright" in cmd.split(" ")[0]:
                    browser += pss
                    if "chrom" in comm and procs[pid][0] in drivers:  # a browser Playwright started
                        self.chromium_mains.add(pid)
                else:
                    python += pss
                    if pid != self.root and "python" in cmd:
                        self.workers.add(pid)
                if pid == self.root:
                    self.peak_main = max(self.peak_main, rss)
            self.peak_python = max(self.peak_python, python)
            self.peak_browser = max(self.peak_browser, browser)
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Timed:
    """One timed process: wall time, exit code, and the sampled peaks of its process tree."""

    wall: float
    code: int
    started: float
    ended: float
    output: str
    peak_main: int = 0
    peak_python: int = 0
    peak_browser: int = 0
    chromium_starts: int = 0
    workers: int = 0

    def save(self, file: Path) -> None:
        file.write_text(json.dumps(self.__dict__, indent=1))

    @classmethod
    def load(cls, file: Path) -> Timed:
        return cls(**json.loads(file.read_text()))


def timed(cmd: list[str], env: dict[str, str], log: Path) -> Timed:
    started = time.time()
    began = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        sampler = Sampler(proc.pid)
        thread = threading.Thread(target=sampler.run, daemon=True)
        thread.start()
        code = proc.wait()
    wall = time.perf_counter() - began
    sampler.stop()
    thread.join()
    return Timed(wall, code, started, time.time(), log.read_text(errors="replace")[-3000:], sampler.peak_main,
                 sampler.peak_python, sampler.peak_browser, len(sampler.chromium_mains), len(sampler.workers))


# --- the harness --------------------------------------------------------------------------------------------------
@dataclass
class HarnessRun:
    targets: int
    workers: int
    timing: Timed
    reports: Path
    logs: list[list[dict[str, Any]]]

    def totals(self) -> Counter[str]:
        summary = json.loads((self.reports / "summary.json").read_text())
        out: Counter[str] = Counter()
        for results in summary["targets"].values():
            out.update(results["totals"])
        return out


def run_harness(servers: list[Server], n: int, workers: int, suites: tuple[str, ...], work: Path,
                prefix: str = "h") -> HarnessRun:
    folder = work / f"{prefix}-{n}t-n{workers}"
    if (folder / "timing.json").is_file():  # measured by an earlier, interrupted invocation on this --work folder
        print(f"  harness: {n} target(s), -n {workers}: kept from {folder}", flush=True)
        return load_harness(folder)
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "targets").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
    files = []
    for i, server in enumerate(servers[:n], start=1):
        path, extra = target_file(folder / "targets", i, server)
        files.append(path)
        env.update(extra)
    for i, server in enumerate(servers[:n]):
        server.dump(folder / f"discard-{i}.json")  # whatever came before is not this run's
    cmd = [str(BIN / "smart-conformance"), "run", *[f"--target={f}" for f in files], f"--reports={folder / 'r'}",
           *[f"--suite={s}" for s in suites], "--", "-n", str(workers)]
    print(f"  harness: {n} target(s), -n {workers} ...", flush=True)
    timing = timed(cmd, env, folder / "harness.log")
    logs = [server.dump(folder / f"server-{i}.json") for i, server in enumerate(servers[:n])]
    timing.save(folder / "timing.json")
    print(f"    {timing.wall:.1f}s exit {timing.code}", flush=True)
    return HarnessRun(n, workers, timing, folder / "r", logs)


def load_harness(folder: Path) -> HarnessRun:
    """A run measured before (for --render)."""
    match = re.fullmatch(r"[hcs]-(\d+)t-n(\d+)", folder.name)
    assert match, folder
    n = int(match.group(1))
    logs = [json.loads((folder / f"server-{i}.json").read_text()) for i in range(n)]
    return HarnessRun(n, int(match.group(2)), Timed.load(folder / "timing.json"), folder / "r", logs)


# --- counting what was done ---------------------------------------------------------------------------------------
def path_class(path: str) -> str:
    parts = path.split("/")
    if len(parts) > 2 and parts[1] == "fhir":
        head = parts[2]
        return "/fhir/" + ("{bulk}" if head.startswith("bulk-") else head if head.startswith(("$", ".")) or
                           head[:1].isupper() else "…")
    return path


def counts(log: list[dict[str, Any]]) -> dict[str, Any]:
    """What a server saw: requests and connections by client kind, launches (browser authorization requests)."""
    by_kind = Counter(r["kind"] for r in log)
    conns = Counter(kind for kind, _conn in {(r["kind"], r["conn"]) for r in log})
    launches = sum(1 for r in log if r["kind"] == "browser" and r["path"] == "/auth/authorize")
    signins = sum(1 for r in log if r["kind"] == "browser" and r["path"] == "/auth/login" and r["method"] == "POST")
    consents = sum(1 for r in log if r["kind"] == "browser" and r["path"] == "/auth/consent" and r["method"] == "POST")
    tokens = sum(1 for r in log if r["kind"] != "browser" and r["path"] == "/auth/token")
    fhir = sum(1 for r in log if r["kind"] != "browser" and r["path"].startswith("/fhir"))
    return {"requests": dict(by_kind), "connections": dict(conns), "launches": launches, "sign-ins": signins,
            "consents": consents, "token requests": tokens, "FHIR requests": fhir,
            "statuses": Counter(f"{r['kind']} {r['method']} {path_class(r['path'])} {r['status']}" for r in log)}


def launch_spans(log: list[dict[str, Any]]) -> list[tuple[str, float, float]]:
    """Each browser launch the server saw, in order: (kind, server-side span from the authorization request to the
    last browser request's answer, gap from that answer to the client's next request of any kind)."""
    ordered = sorted(log, key=lambda r: r["t"])
    launches: list[list[dict[str, Any]]] = []
    for record in ordered:
        if record["kind"] == "browser":
            if record["path"] == "/auth/authorize" or not launches:
                launches.append([record])
            else:
                launches[-1].append(record)
    out: list[tuple[str, float, float]] = []
    for records in launches:
        posts = [r["path"].rsplit("/", 1)[1] for r in records if r["method"] == "POST" and r["path"] != "/auth/authorize"]
        last = records[-1]
        where = last.get("location")
        if where and any(item[0] == "code" for item in where[1]):
            end = "code"
        elif where and any(item[0] == "error" for item in where[1]):
            end = "error redirect"
        else:
            end = f"page {last['path']} HTTP {last['status']}"
        kind = " + ".join(["authorize", *posts]) + " → " + end
        done = max(r["done"] for r in records)
        following = next((r["t"] for r in ordered if r["t"] > done and r not in records), done)
        out.append((kind, done - records[0]["t"], following - done))
    return out


# --- phases -------------------------------------------------------------------------------------------------------
def phases(run: HarnessRun) -> dict[str, Any]:
    """Per-phase split of a run, from its allure-results:

    - browser: the launches' own "browser N.NNs" figures (launch notes, each launch once);
    - HTTP: the recorded exchanges' elapsed_ms (each exchange once; the harness's grant checks are not recorded);
    - TLS scan: the setup time of the ``tls_scans`` fixture (its allure container);
    - startup: process start to the first test's start (imports, collection, target loading, discovery probe);
    - reporting (end of run): the last test's end to process exit (summary, SARIF, JUnit, allure extras);
    - the rest: pytest, fixtures, the harness's own logic and the per-test evidence attachments, by difference.
    """
    results = run.reports / "allure-results"
    launches: dict[tuple[str, str], float] = {}
    outcomes: dict[tuple[str, str], str] = {}
    exchanges: dict[tuple[Any, ...], float] = {}
    first, last = float("inf"), 0.0
    for file in glob.glob(str(results / "*-result.json")):
        doc = json.loads(Path(file).read_text())
        first, last = min(first, doc.get("start", first)), max(last, doc.get("stop", 0))
        thread = next((lbl["value"] for lbl in doc.get("labels", []) if lbl["name"] == "thread"), "")
        for att in doc.get("attachments", []):
            source = results / att["source"]
            if att["name"] == "notes":
                for line in source.read_text(errors="replace").splitlines():
                    match = re.match(r"(launch-\d+): browser ([\d.]+)s.*; outcome: ([^(]+)", line)
                    if match:
                        launches[(thread.split("-")[0], match.group(1))] = float(match.group(2))
                        outcomes[(thread.split("-")[0], match.group(1))] = match.group(3).strip()
            elif att["name"].startswith("HTTP exchanges"):
                for ex in json.loads(source.read_text()):
                    key = (ex["started_at"], ex["request"]["method"], ex["request"]["url"], ex["elapsed_ms"])
                    exchanges[key] = ex["elapsed_ms"] / 1000
    scan = 0.0
    for file in glob.glob(str(results / "*-container.json")):
        doc = json.loads(Path(file).read_text())
        for before in doc.get("befores", []):
            if before.get("name") == "tls_scans" and "stop" in before:
                scan += (before["stop"] - before["start"]) / 1000
    wall = run.timing.wall
    startup = first / 1000 - run.timing.started if first != float("inf") else 0.0
    reporting = run.timing.ended - last / 1000 if last else 0.0
    browser, http = sum(launches.values()), sum(exchanges.values())
    rest = wall - startup - reporting - browser - http - scan
    ordered = [(outcomes[k], launches[k]) for k in sorted(launches)]
    return {"per_launch": ordered, "wall": wall, "browser": browser, "launches": len(launches), "http": http, "exchanges": len(exchanges),
            "tls_scan": scan, "startup": startup, "reporting": reporting, "rest": rest}


# --- the floor ----------------------------------------------------------------------------------------------------
def run_floor(server: Server, harness_log: list[dict[str, Any]], chromium_starts: int, work: Path) -> dict[str, Any]:
    folder = work / "floor"
    if (folder / "timing.json").is_file():
        print(f"  floor: kept from {folder}", flush=True)
        return load_floor(folder)
    folder.mkdir(exist_ok=True)
    (folder / "harness-log.json").write_text(json.dumps(harness_log))
    (folder / "env.json").write_text(json.dumps(server.env))
    server.dump(folder / "discard.json")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "floor.py"), f"--log={folder / 'harness-log.json'}",
           f"--env={folder / 'env.json'}", f"--out={folder / 'stats.json'}", f"--chromium-starts={chromium_starts}"]
    print("  floor: 1 target ...", flush=True)
    timing = timed(cmd, dict(os.environ), folder / "floor.log")
    server.dump(folder / "server.json")
    timing.save(folder / "timing.json")
    print(f"    {timing.wall:.1f}s exit {timing.code}", flush=True)
    if timing.code != 0:
        raise RuntimeError(f"the floor script failed:\n{timing.output}")
    return load_floor(folder)


def load_floor(folder: Path) -> dict[str, Any]:
    return {"timing": Timed.load(folder / "timing.json"), "stats": json.loads((folder / "stats.json").read_text()),
            "log": json.loads((folder / "server.json").read_text())}


# --- the report ---------------------------------------------------------------------------------------------------
def mb(value: int) -> str:
    return f"{value / 2**20:.0f} MB"


def report(args: argparse.Namespace, suites: tuple[str, ...], base: HarnessRun, floor: dict[str, Any],
           curve: list[HarnessRun], curve_suites: tuple[str, ...], every: HarnessRun | None = None) -> str:
    h, f = counts(base.logs[0]), counts(floor["log"])
    ratio = base.timing.wall / floor["timing"].wall
    replayed = every if every is not None else base  # the run the floor replayed
    totals = base.totals()
    lines = [(f"Benchmark of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {'quick' if args.quick else 'full'} mode, suites: "
             f"{', '.join(suites)}; {os.cpu_count()} CPUs, load average at the start "
             f"{args.load_at_start}, Python {platform.python_version()}. One run on a shared machine: the figures "
             "are noisy, compare them as ratios within this run."), "",
             (f"Command: `.venv/bin/python benchmarks/run.py{' --quick' if args.quick else ''}"
             f"{' --curve-suites ' + args.curve_suites if args.curve_suites else ''}`"), "",
             "### Harness against the protocol floor (1 target, serial)", "",
             ("| | wall time | checks | requests (browser / harness httpx / other httpx / sslyze) | connections "
             "(same) | launches | sign-ins | consents | token requests | FHIR requests |"),
             "|---|---|---|---|---|---|---|---|---|---|"]

    def row(name: str, wall: float, c: dict[str, Any], checks: str) -> str:
        kinds = ("browser", "harness-httpx", "aux-httpx", "other")
        req = " / ".join(str(c["requests"].get(k, 0)) for k in kinds)
        con = " / ".join(str(c["connections"].get(k, 0)) for k in kinds)
        return (f"| {name} | {wall:.1f} s | {checks} | {req} | {con} | {c['launches']} | {c['sign-ins']} | "
                f"{c['consents']} | {c['token requests']} | {c['FHIR requests']} |")

    lines.append(row("harness (`smart-conformance run`)", base.timing.wall, h,
                     f"{sum(totals.values())} ({totals.get('passed', 0)} passed)"))
    if every is not None:
        e_totals = every.totals()
        lines.append(row(f"harness, every launch signing in (variant `{NO_SSO}`)", every.timing.wall,
                         counts(every.logs[0]), f"{sum(e_totals.values())} ({e_totals.get('passed', 0)} passed)"))
    lines.append(row("floor (`benchmarks/floor.py`)", floor["timing"].wall, f, "–"))
    stats = floor["stats"]
    same = stats["status_same"]
    if every is not None:
        lines += ["", (f"**Ratio harness (single sign-on) / floor: {ratio:.2f}×** (goal ≤ 0.8×); without single "
                       f"sign-on (every launch signing in, the run the floor replays): "
                       f"{every.timing.wall / floor['timing'].wall:.2f}× (goal ≤ 1.3×).")]
    lead = "" if every is not None else f"**Ratio harness / floor: {ratio:.2f}×** (goal ≤ 1.3×). "
    lines += ["", f"{lead}The floor replayed "
              f"{stats['launches']} launches and {stats['http']} httpx requests; {same} of {stats['http']} got the "
              f"same status as the harness's" + ("" if same == stats["http"] else
                                                 " (the others are negatives whose exact credential a replay cannot "
              "rebuild, e.g. a replayed jti or a tampered signature: same request shape, same cost)") + ". Chromium "
              f"started {replayed.timing.chromium_starts} time(s) in the "
              f"harness, {stats['chromium_starts']} in the floor. Python TLS handshakes of the floor (pinning): "
              f"{stats['seconds']['python_handshakes']:.2f} s.", ""]
    problems = [d for d in stats["status_differs"] if "harness" not in d]
    if problems:
        lines += [f"Replay problems in the floor ({len(problems)}): " + "; ".join(problems[:8]), ""]
    lines += ["Request counts by endpoint where harness and floor differ (kind method path status: harness / floor):",
              ""]
    r = counts(replayed.logs[0])
    diffs = [(k, r["statuses"].get(k, 0), f["statuses"].get(k, 0)) for k in sorted(set(r["statuses"]) |
                                                                                     set(f["statuses"]))]
    diffs = [d for d in diffs if d[1] != d[2]]
    lines += [f"- {k}: {a} / {b}" for k, a, b in diffs[:25]] or ["- none"]
    if len(diffs) > 25:
        lines.append(f"- … {len(diffs) - 25} more")
    p = phases(replayed)
    hs, fl = launch_spans(replayed.logs[0]), launch_spans(floor["log"])
    kinds: dict[str, list[list[float]]] = {}
    for i, (kind, span, gap) in enumerate(hs):
        entry = kinds.setdefault(kind, [[], [], [], []])
        entry[0].append(span)
        entry[1].append(gap)
        if i < len(fl):
            entry[2].append(fl[i][1])
        if i < len(stats["launch_seconds"]):
            entry[3].append(stats["launch_seconds"][i])

    def mean(values: list[float]) -> str:
        return f"{sum(values) / len(values):.2f} s" if values else "–"

    by_outcome: dict[str, list[float]] = {}
    for outcome, seconds in p["per_launch"]:
        by_outcome.setdefault(outcome, []).append(seconds)
    lines += ["", "### Launches by kind (1 target, serial; the harness run the floor replays: every launch signing in)", "",
              ("What the server saw of each launch (browser requests from the authorization request on) and, for the "
              "harness, the time from the launch's last answer to its next request of any kind (judging the "
              "outcome, screenshots, trace, the next test's setup)."), "",
              ("| launch (server's view) | n | harness: span at the server | harness: gap to next request | floor: "
              "span at the server | floor: whole launch (context to close) |"), "|---|---|---|---|---|---|"]
    for kind, (spans, gaps, fspans, fwhole) in sorted(kinds.items(), key=lambda kv: -sum(kv[1][0]) - sum(kv[1][1])):
        lines.append(f"| {kind} | {len(spans)} | {mean(spans)} | {mean(gaps)} | {mean(fspans)} | {mean(fwhole)} |")
    lines += ["", "The harness's own figure per launch (`browser N.NNs` in its notes), by outcome: " + "; ".join(
        f"{name}: {len(v)} × {sum(v) / len(v):.2f} s" for name, v in sorted(by_outcome.items()))]
    fs = stats["seconds"]
    lines += ["", "### Where the time goes (1 target, serial; the harness run the floor replays: every launch signing in)", "",
              "| phase | harness | floor | how the harness figure is derived |", "|---|---|---|---|",
              (f"| browser | {p['browser']:.1f} s ({p['launches']} launches) | {fs['browser']:.1f} s (+ "
              f"{fs['chromium_start']:.1f} s Chromium start) | sum of each launch's `browser N.NNs` note "
              "(allure notes attachments, each launch once) |"),
              (f"| HTTP | {p['http']:.1f} s ({p['exchanges']} exchanges) | {fs['http']:.1f} s | sum of elapsed_ms of the "
              "recorded exchanges (allure `HTTP exchanges` attachments, deduplicated; grant checks are not recorded) |"),
              (f"| TLS scan | {p['tls_scan']:.1f} s | {fs['tls_scan']:.1f} s | setup time of the `tls_scans` fixture "
              "(allure container) |"),
              (f"| startup | {p['startup']:.1f} s | – | process start → first test start (imports, collection, "
              "targets, discovery probe) |"),
              (f"| reporting (end of run) | {p['reporting']:.1f} s | – | last test end → process exit (summary, SARIF, "
              "JUnit) |"),
              (f"| the rest | {p['rest']:.1f} s | – | by difference: pytest, fixtures, harness logic, per-test "
              "evidence attachments, waits inside checks |"),
              (f"| total | {p['wall']:.1f} s | {floor['timing'].wall:.1f} s | wall time of the process (the "
              f"floor's startup, interpreter and imports: {floor['timing'].wall - stats['wall_seconds']:.1f} s) |")]
    lines += ["", "### Wall time against targets" + ("" if curve_suites == suites else
                                                     f" (suites: {', '.join(curve_suites)})"), "",
              ("| targets | workers | wall time | per target | checks | exit | peak RSS harness process | peak PSS "
              "harness + workers | peak PSS Chromium + driver | Chromium starts |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for run in curve:
        s = run.timing
        lines.append(f"| {run.targets} | {run.workers or 'serial'} | {run.timing.wall:.1f} s | "
                     f"{run.timing.wall / run.targets:.1f} s | {sum(run.totals().values())} | {run.timing.code} | "
                     f"{mb(s.peak_main)} | {mb(s.peak_python)} ({s.workers} worker(s)) | {mb(s.peak_browser)} | "
                     f"{s.chromium_starts} |")
    lines += ["", ("Memory: sampled every 0.2 s from /proc over the harness's process tree. The harness process: its "
              "RSS. \"Harness + workers\": the sum of the Python processes' PSS (proportional set size, so shared "
              "pages count once), the harness and its xdist workers; Chromium (every process of it) and Playwright's "
              "node driver are summed apart. The reference servers run in processes of their own and are in none "
              "of these. \"-n 2\" with one target: the run keeps one target's checks on one worker, so the second "
              "worker has nothing to do."), ""]
    return "\n".join(lines)


def measure(args: argparse.Namespace) -> str:
    every = tuple(sorted(d.name for d in (ROOT / "suites").iterdir() if d.is_dir() and any(d.glob("test_*.py"))))
    suites = QUICK_SUITES if args.quick else every
    curve_suites = tuple(args.curve_suites.split(",")) if args.curve_suites else suites
    prefix = "h" if curve_suites == suites else "c"
    sizes = (1, 2) if args.quick else (1, 2, 4)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="smart-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    meta_file = work / "meta.json"
    if meta_file.is_file():  # resuming: the load figure of the first invocation stays
        args.load_at_start = json.loads(meta_file.read_text())["load_at_start"]
    else:
        args.load_at_start = " ".join(f"{x:.1f}" for x in os.getloadavg())
    meta_file.write_text(json.dumps({"quick": args.quick, "load_at_start": args.load_at_start, "suites": suites,
                                     "curve_suites": curve_suites}))
    print(f"scratch: {work} (report again from it with --render {work})", flush=True)
    servers: list[Server] = []
    try:
        # The floor replays a run in which every launch signs in with a password (the reference without an
        # identity-provider session: 46 launches, 46 sign-ins, the shape of the harness before single sign-on), so
        # the harness's single sign-on shows as a gain against a floor that stays the same.
        servers.append(Server(variants=(NO_SSO,)))
        every = run_harness(servers, 1, 0, suites, work, prefix="s")
        floor = run_floor(servers[0], every.logs[0], every.timing.chromium_starts or 1, work)
        servers[0].stop()
        servers.clear()
        for _ in range(max(sizes)):
            servers.append(Server())
        base = run_harness(servers, 1, 0, suites, work)
        if base.timing.code not in (0, 1):
            print(base.timing.output, file=sys.stderr)
        curve = [base] if prefix == "h" else []
        # the costliest run last: if it must be cut short, --render reports the others
        # --quick leaves out one target with -n 2: one target's checks stay on one worker, so it says little
        order = sorted(((n, w) for n in sizes for w in (0, args.workers)
                        if (n, w, prefix) != (1, 0, "h") and not (args.quick and n == 1 and w)),
                       key=lambda nw: (nw[0] * (2 if nw[1] == 0 else 1), nw[0]))
        for n, workers in order if not args.no_curve else []:
            curve.append(run_harness(servers, n, workers, curve_suites, work, prefix))
        curve.sort(key=lambda r: (r.targets, r.workers))
        return report(args, suites, base, floor, curve, curve_suites, every)
    finally:
        for server in servers:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="discovery + launch suites; 1 target and the floor, then 2 targets serial and -n 2")
    parser.add_argument("--work", default=None, help="scratch folder (default: a new temporary one, kept)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results.md"))
    parser.add_argument("--workers", type=int, default=2, help="xdist workers for the parallel runs (default 2)")
    parser.add_argument("--curve-suites", default=None, metavar="A,B",
                        help="suites for the targets curve (default: the same as the floor comparison)")
    parser.add_argument("--no-curve", action="store_true", help="only the harness against the floor")
    parser.add_argument("--render", default=None, metavar="WORK",
                        help="only write the report again from the measurements kept in WORK")
    args = parser.parse_args(argv)
    if args.render:
        work = Path(args.render)
        meta = json.loads((work / "meta.json").read_text())
        args.quick, args.load_at_start, suites = meta["quick"], meta["load_at_start"], tuple(meta["suites"])
        curve_suites = tuple(meta.get("curve_suites", suites))
        args.curve_suites = ",".join(curve_suites) if curve_suites != suites else None
        base = load_harness(work / "h-1t-n0")
        prefix = "h" if curve_suites == suites else "c"
        runs = sorted((load_harness(d) for d in work.glob(f"{prefix}-*t-n*") if (d / "timing.json").is_file()),
                      key=lambda r: (r.targets, r.workers))
        every = load_harness(work / "s-1t-n0") if (work / "s-1t-n0" / "timing.json").is_file() else None
        text = report(args, suites, base, load_floor(work / "floor"), runs, curve_suites, every)
    else:
        text = measure(args)
    Path(args.output).write_text(text + "\n", encoding="utf-8")
    print("\n" + text)
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
