"""``smart-conformance``: run the suites, serve the reference payer, build reports.

Exit codes of ``run``: 0 all checks passed, 1 conformance failures, 2 usage or configuration error, 3 could not check.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from smart_conformance import paths
from smart_conformance.config import ConfigError, Target, load_targets
from smart_conformance.report.summary import EXIT_BROKEN, EXIT_USAGE

SUITES = ("discovery", "launch", "tokens", "scopes", "fhir_security", "payer_data", "tls", "backend_services",
          "bulk_export")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smart-conformance", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the conformance suites (default target: the embedded reference server)",
                         description="Run the suites. Arguments after -- go to pytest (e.g. -- -n 2 -k pkce).")
    run.add_argument("--target", action="append", default=[], metavar="FILE_OR_DIR",
                     help="target YAML file or folder (repeatable); none: the embedded reference server")
    run.add_argument("--suite", action="append", default=[], choices=SUITES, help="only these suites (repeatable)")
    run.add_argument("--reference-fault", action="append", default=[], metavar="NAME",
                     help="switch on a fault in the embedded reference server (see serve-reference --list-faults)")
    run.add_argument("--reference-variant", action="append", default=[], metavar="NAME",
                     help="switch on a legitimate variant in the embedded reference server (see serve-reference "
                          "--list-variants)")
    run.add_argument("--reports", default="reports", metavar="DIR", help="output folder (default: reports)")
    run.add_argument("--strict", action="store_true", help="SHOULD-level findings fail the run too")
    run.add_argument("--baseline", default=None, metavar="FILE",
                     help="YAML/JSON list of known failures {target, check, reason}: reported as expected, not gating; "
                          "a baselined failure that no longer happens fails the run")
    run.add_argument("--html", action="store_true", help="build the Allure HTML report (DIR/html) at the end")
    run.add_argument("pytest_args", nargs=argparse.REMAINDER, help="-- then arguments for pytest")

    report = sub.add_parser("report", help="build the Allure HTML report from a run's results",
                            description="Build DIR/html/index.html from DIR/allure-results with the Allure CLI "
                                        "(Allure 3 from npm, or Allure 2 on Java).")
    report.add_argument("--reports", default="reports", metavar="DIR", help="the run's output folder (default: reports)")
    report.add_argument("--single-file", action="store_true", help="one self-contained index.html")

    serve = sub.add_parser("serve-reference", help="serve the embedded reference payer server until stopped")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--fault", action="append", default=[], metavar="NAME")
    serve.add_argument("--variant", action="append", default=[], metavar="NAME")
    serve.add_argument("--state-dir", default=None)
    serve.add_argument("--list-faults", action="store_true", help="list the faults and the requirements they break")
    serve.add_argument("--list-variants", action="store_true",
                       help="list the legitimate variants and the spec text that allows each")
    return parser


def _suite_paths(selected: Sequence[str]) -> list[str]:
    root = paths.suites_dir()
    names = selected or [d.name for d in sorted(root.iterdir()) if d.is_dir() and any(d.glob("test_*.py"))]
    return [str(root / name) for name in names if (root / name).is_dir()]


def run(args: argparse.Namespace) -> int:
    if args.target:
        try:
            _check_attestations(load_targets(args.target))
        except ConfigError as exc:
            print(f"smart-conformance: configuration error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.baseline:
        from smart_conformance.report import baseline

        try:
            baseline.load(args.baseline)
        except ConfigError as exc:
            print(f"smart-conformance: configuration error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    reports = Path(args.reports)
    allure_dir = reports / "allure-results"
    shutil.rmtree(allure_dir, ignore_errors=True)  # cleaned here, once, not by each xdist worker
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "previous-summary.json").unlink(missing_ok=True)
    if (reports / "summary.json").is_file():  # kept for "changed since previous run"
        (reports / "summary.json").replace(reports / "previous-summary.json")
    for stale in ("summary.json", "summary.md", "junit.xml", "results.sarif"):
        (reports / stale).unlink(missing_ok=True)
    suite_paths = _suite_paths(args.suite)
    if not suite_paths:
        print("smart-conformance: no suites found", file=sys.stderr)
        return EXIT_USAGE
    extra = [a for a in args.pytest_args if a != "--"]
    pytest_args = [*suite_paths, f"--rootdir={paths.suites_dir()}", f"--alluredir={allure_dir}",
                   f"--junitxml={reports / 'junit.xml'}", f"--smart-reports={reports}", "-p", "no:cacheprovider",
                   "-q", "-rN", "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    pytest_args += [f"--target={t}" for t in args.target]
    pytest_args += [f"--reference-fault={f}" for f in args.reference_fault]
    pytest_args += [f"--reference-variant={v}" for v in args.reference_variant]
    if args.strict:
        pytest_args.append("--smart-strict")
    if args.baseline:
        pytest_args.append(f"--smart-baseline={args.baseline}")
    import pytest

    code = int(pytest.main([*pytest_args, *extra]))
    summary_file = reports / "summary.json"
    if code in (2, 3, 4) or not summary_file.exists():
        return EXIT_USAGE if code in (2, 4) else EXIT_BROKEN
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    print(f"\nSummary: {reports / 'summary.md'}   Allure results: {allure_dir}   JUnit: {reports / 'junit.xml'}"
          f"   SARIF: {reports / 'results.sarif'}")
    if args.html:
        html_code = _build_html(reports, single_file=False)  # built whatever the verdict: failures need it most
        return int(summary["exit_code"]) or html_code
    return int(summary["exit_code"])


def _check_attestations(targets: Sequence[Target]) -> None:
    """Each target's attestation file, validated up front (raises AttestationError, a ConfigError). A file that is
    not there only warns (a target file copied elsewhere keeps its relative path): the checklist then shows the
    items open, and the summary says why."""
    from smart_conformance.report.attestations import load

    for target in targets:
        if target.attestations is None:
            continue
        if not target.attestations.is_file():
            print(f"smart-conformance: warning: {target.source}: attestations: {target.attestations} does not exist; "
                  "the Safety Checklist is reported without attestations", file=sys.stderr)
            continue
        load(target.attestations, target=target.name)


def _build_html(reports: Path, *, single_file: bool) -> int:
    from smart_conformance.report import html

    try:
        index = html.build(reports, single_file=single_file)
    except html.AllureUnavailable as exc:
        print(f"smart-conformance: cannot build the HTML report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except html.ReportError as exc:
        print(f"smart-conformance: cannot build the HTML report: {exc}", file=sys.stderr)
        return EXIT_BROKEN
    print(f"HTML report: {index}")
    return 0


def report(args: argparse.Namespace) -> int:
    return _build_html(Path(args.reports), single_file=args.single_file)


def serve_reference(args: argparse.Namespace) -> int:
    from smart_conformance.reference import faults as fault_catalog

    if args.list_faults:
        for fault in fault_catalog.FAULTS.values():
            print(f"{fault.name:38} {fault.area:16} breaks {', '.join(fault.breaks)}\n{'':38} {fault.summary}")
        return 0
    if args.list_variants:
        from smart_conformance.reference.variants import VARIANTS

        for variant in VARIANTS.values():
            print(f"{variant.name}\n  {variant.summary}\n  allowed by: {variant.allowed_by}\n  {variant.spec}")
        return 0
    from smart_conformance.reference.server import serve

    try:
        return serve(port=args.port, faults=args.fault, state_dir=args.state_dir, variants=args.variant)
    except ValueError as exc:
        print(f"smart-conformance: {exc}", file=sys.stderr)
        return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        return run(args)
    if args.command == "serve-reference":
        return serve_reference(args)
    if args.command == "report":
        return report(args)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
