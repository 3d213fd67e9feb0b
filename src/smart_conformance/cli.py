"""``smart-conformance``: run the suites, serve the reference payer, build reports, onboard a payer.

Exit codes of ``run``: 0 all checks passed, 1 conformance failures, 2 usage or configuration error, 3 could not check.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from smart_conformance import paths
from smart_conformance.config import ConfigError, Target, load_targets
from smart_conformance.results import ExitCode

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BROKEN = ExitCode.OK, ExitCode.FAILED, ExitCode.USAGE, ExitCode.BROKEN


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smart-conformance", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the conformance suites (default target: the embedded reference server)",
                         description="Run the suites. Arguments after -- go to pytest (e.g. -- -n 2 -k pkce).")
    run.add_argument("--target", action="append", default=[], metavar="FILE_OR_DIR",
                     help="target YAML file or folder (repeatable); none: the embedded reference server")
    run.add_argument("--suite", action="append", default=[], choices=list(paths.suite_areas()),
                     help="only these suites (repeatable; the folders of suites/)")
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
    run.add_argument("--shard", default=None, metavar="I/N",
                     help="run only the I-th of N shares of the targets (by sorted target name), one per CI job; "
                          "then fold the jobs' report folders with: smart-conformance merge")
    run.add_argument("--profile", choices=("default", "production"), default="default",
                     help="production: only checks harmless by construction (no wrong password, no writes or write "
                          "probes, no revocation but of the run's own tokens, no bulk export unless --with-bulk), "
                          "the fewest password sign-ins, and --max-rps 2 unless given; the checks left out show as "
                          "not applicable ('production profile: ...')")
    run.add_argument("--with-bulk", action="store_true", help="with --profile production: run bulk exports too")
    run.add_argument("--max-rps", type=float, default=None, metavar="N",
                     help="at most N HTTP requests a second from the harness (default: no cap; 2 with --profile "
                          "production)")
    run.add_argument("pytest_args", nargs=argparse.REMAINDER, help="-- then arguments for pytest")

    report = sub.add_parser("report", help="build the Allure HTML report from a run's results",
                            description="Build DIR/html/index.html from DIR/allure-results with the Allure CLI "
                                        "(Allure 3 from npm, or Allure 2 on Java).")
    report.add_argument("--reports", default="reports", metavar="DIR", help="the run's output folder (default: reports)")
    report.add_argument("--single-file", action="store_true", help="one self-contained index.html")

    _onboarding_parsers(sub)

    merge = sub.add_parser("merge", help="fold the report folders of CI shards (run --shard i/n) into one report",
                           description="Union of the shards' summary.json, allure-results, junit.xml, results.sarif "
                                       "and artifacts; the exit status is recomputed as one run would give it.")
    merge.add_argument("folders", nargs="+", metavar="DIR", help="each shard's reports folder")
    merge.add_argument("--output", "-o", required=True, metavar="DIR", help="where to write the merged report")
    _evidence_parsers(sub)

    threats = sub.add_parser("threats", help="print the threat model: attack classes x surfaces, as Markdown",
                             description="What this harness looks for, and what it cannot: every attack class of "
                                         "fixtures/threats/threat-model.yaml on every surface, covered by checks, a "
                                         "gap, untestable or not applicable (the text of THREATS.md).")
    threats.add_argument("--counts", action="store_true",
                         help="print only the counts: classes, covered, gap, untestable and not-applicable cells")

    serve = sub.add_parser("serve-reference", help="serve the embedded reference payer server until stopped")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--fault", action="append", default=[], metavar="NAME")
    serve.add_argument("--variant", action="append", default=[], metavar="NAME")
    serve.add_argument("--state-dir", default=None)
    serve.add_argument("--list-faults", action="store_true", help="list the faults and the requirements they break")
    serve.add_argument("--list-variants", action="store_true",
                       help="list the legitimate variants and the spec text that allows each")
    return parser


def _evidence_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bundle = sub.add_parser("bundle", help="one signed zip of a run's evidence, for a certifier",
                            description="Zip the run's summary, SARIF, JUnit, Allure results (the recorded exchanges) "
                                        "and screenshots, its target file(s) with secrets masked and the versions, "
                                        "with a manifest of SHA-256 hashes signed by KEY (Ed25519 or ECDSA "
                                        "P-256/P-384 PEM).")
    bundle.add_argument("--reports", default="reports", metavar="DIR", help="the run's output folder (default: reports)")
    bundle.add_argument("--key", required=True, metavar="KEY.pem",
                        help="PEM private key that signs the manifest: Ed25519 or ECDSA P-256/P-384")
    bundle.add_argument("--key-password-env", default=None, metavar="VAR",
                        help="the environment variable holding the password of an encrypted KEY.pem")
    bundle.add_argument("--output", "-o", required=True, metavar="FILE.zip", help="the bundle to write")
    bundle.add_argument("--target", action="append", default=[], metavar="FILE_OR_DIR",
                        help="the target YAML file(s) the run used (default: those its summary.json records; "
                             "give them when they have moved since the run)")
    verify = sub.add_parser("verify", help="check an evidence bundle's signature and every file's hash",
                            description="Exit 0 only if the manifest's signature verifies with PUB.pem, every file's "
                                        "SHA-256 matches and the bundle holds exactly the manifest's files; 1 naming "
                                        "each file added, removed or changed (and a bad signature); 2 bad input.")
    verify.add_argument("bundle", metavar="FILE.zip")
    verify.add_argument("--public-key", required=True, metavar="PUB.pem",
                        help="the signer's PEM public key (or a certificate holding it)")


def _onboarding_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = sub.add_parser("init-target", help="write a first target YAML from the payer's discovery documents",
                          description="Fetch the SMART configuration and CapabilityStatement of FHIR_BASE_URL and "
                                      "write a commented target file (secrets as ${ENV} references).")
    init.add_argument("fhir_base_url", metavar="FHIR_BASE_URL")
    init.add_argument("--ca-bundle", default=None, metavar="PEM", help="CA bundle of a private (staging) CA")
    init.add_argument("--output", "-o", default=None, metavar="FILE", help="where to write (default: NAME.yaml)")
    init.add_argument("--name", default=None, help="target name (default: from the host name)")
    init.add_argument("--env-prefix", default="SMART_TARGET", metavar="PREFIX",
                      help="prefix of the environment variables the file reads (default: SMART_TARGET)")
    init.add_argument("--from-codegen", default=None, metavar="FILE",
                      help="Playwright codegen recording (Python) of sign-in and Allow, converted to login steps")
    init.add_argument("--deny-codegen", default=None, metavar="FILE",
                      help="a second recording that ends with Deny: its consent steps become login.consent.deny")
    init.add_argument("--smart-configuration-url", default=None, metavar="URL",
                      help="the SMART configuration, when it is not under the FHIR base")
    init.add_argument("--force", action="store_true", help="overwrite an existing output file")
    doctor = sub.add_parser("doctor", help="check the browser, Allure CLI, target file, CA bundle and reachability",
                            description="Exit 0 when everything a run needs is in place; each problem with its fix.")
    doctor.add_argument("--target", default=None, metavar="FILE", help="also check this target file and its server")


def init_target(args: argparse.Namespace) -> int:
    from smart_conformance import init_target as init

    output = Path(args.output) if args.output else Path(f"{args.name or init.default_name(args.fhir_base_url)}.yaml")
    try:
        _, detected = init.write(args.fhir_base_url, output, ca_bundle=Path(args.ca_bundle) if args.ca_bundle else None,
                                 name=args.name, prefix=args.env_prefix,
                                 from_codegen=Path(args.from_codegen) if args.from_codegen else None,
                                 deny_codegen=Path(args.deny_codegen) if args.deny_codegen else None,
                                 smart_configuration_url=args.smart_configuration_url, force=args.force)
    except init.InitError as exc:
        print(f"smart-conformance: init-target: {exc}", file=sys.stderr)
        return EXIT_BROKEN if exc.unreachable else EXIT_USAGE
    print(f"wrote {output} (SMART {detected.smart_version}, scopes: {detected.scopes.get('full', '')})")
    print("next: export " + " ".join(f"{v}=..." for v in init.env_names(args.env_prefix).values()))
    print(f"      smart-conformance doctor --target {output}")
    print(f"      smart-conformance run --target {output} --suite discovery")
    return 0


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
        from smart_conformance import baseline

        try:
            baseline.load(args.baseline)
        except ConfigError as exc:
            print(f"smart-conformance: configuration error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.shard:
        from smart_conformance.distribution import parse_shard

        try:
            parse_shard(args.shard)
        except ValueError as exc:
            print(f"smart-conformance: {exc}", file=sys.stderr)
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
    if args.shard:
        pytest_args.append(f"--shard={args.shard}")
    if args.strict:
        pytest_args.append("--smart-strict")
    if args.baseline:
        pytest_args.append(f"--smart-baseline={args.baseline}")
    pytest_args.append(f"--smart-profile={args.profile}")
    if args.with_bulk:
        pytest_args.append("--with-bulk")
    if args.max_rps is not None:
        if args.max_rps <= 0:
            print(f"smart-conformance: --max-rps must be a positive number, got {args.max_rps}", file=sys.stderr)
            return EXIT_USAGE
        pytest_args.append(f"--max-rps={args.max_rps}")
    import pytest

    code = _exit_code(int(pytest.main([*pytest_args, *extra])))
    if code == EXIT_USAGE:
        return code
    print(f"\nSummary: {reports / 'summary.md'}   Allure results: {allure_dir}   JUnit: {reports / 'junit.xml'}"
          f"   SARIF: {reports / 'results.sarif'}")
    if args.html:
        html_code = _build_html(reports, single_file=False)  # built whatever the verdict: failures need it most
        return code or html_code
    return code


def _exit_code(pytest_status: int) -> int:
    """The plugin sets a suite run's exit status to the run's ExitCode (results.py): 0, 1 or 3 as documented above.
    pytest's own statuses: 2 (interrupted) and 4 (usage error) are usage errors here, 3 (internal error) is could not
    check, 5 (no check selected) is no failure (the summary says NOTHING CHECKED)."""
    if pytest_status in (2, 4):
        return EXIT_USAGE
    if pytest_status == 5:
        return EXIT_OK
    return pytest_status if pytest_status in (EXIT_OK, EXIT_FAILED, EXIT_BROKEN) else EXIT_BROKEN


def merge_shards(args: argparse.Namespace) -> int:
    from smart_conformance.report import merge

    try:
        merged = merge.merge([Path(f) for f in args.folders], Path(args.output))
    except merge.MergeError as exc:
        print(f"smart-conformance: merge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for folder in merged.missing:
        print(f"smart-conformance: merge: {folder} has no summary.json (that shard did not finish); its targets "
              "were not checked", file=sys.stderr)
    for name, section in merged.summary["targets"].items():
        totals = section["totals"]
        print(f"target {name}: {section['verdict']} — {totals['passed']} passed, {totals['failed']} failed, "
              f"{totals['warning']} warnings, {totals['broken']} could not check, {totals['skipped']} not applicable")
    print(f"\nSummary: {Path(args.output) / 'summary.md'}   Allure results: {Path(args.output) / 'allure-results'}")
    return merged.exit_code


def bundle_evidence(args: argparse.Namespace) -> int:
    from smart_conformance.report import bundle

    password = None
    if args.key_password_env:
        if args.key_password_env not in os.environ:
            print(f"smart-conformance: bundle: --key-password-env {args.key_password_env}: the environment variable is "
                  f"not set. Fix: export {args.key_password_env}=... (the key's password) before the command",
                  file=sys.stderr)
            return EXIT_USAGE
        password = os.environ[args.key_password_env].encode()
    try:
        key = bundle.load_private_key(Path(args.key), password, password_env=args.key_password_env or "")
        built = bundle.build(Path(args.reports), key, Path(args.output), targets=[Path(t) for t in args.target])
    except bundle.BundleError as exc:
        print(f"smart-conformance: bundle: {exc}", file=sys.stderr)
        return EXIT_USAGE
    reports = [f for f in built.files if f.startswith("reports/")]
    shots = sum(1 for f in reports if f.endswith((".png", ".jpg", ".jpeg")))
    print(f"wrote {built.output}: {len(built.files)} files ({len(reports)} from {args.reports}, {shots} of them "
          f"images; {len(built.targets)} target file(s), secrets masked; versions.json), manifest signed with "
          f"{built.algorithm} key {built.fingerprint}")
    if built.missing:
        print(f"  not in {args.reports}, so not bundled: {', '.join(built.missing)}")
    if built.left_out:
        print(f"  left out (not this run's evidence): {', '.join(built.left_out)}")
    for file in built.unused_targets:
        print(f"  left out: {file} (its target is not in this run)")
    print(f"  requirement catalog: no version of its own; SHA-256 over its files {built.catalog_sha256[:16]}… "
          "(versions.json)")
    print(f"check it with: smart-conformance verify {built.output} --public-key PUB.pem")
    return 0


def verify_bundle(args: argparse.Namespace) -> int:
    from smart_conformance.report import bundle

    try:
        key = bundle.load_public_key(Path(args.public_key))
        result = bundle.verify(Path(args.bundle), key, key_file=Path(args.public_key))
    except bundle.BundleError as exc:
        print(f"smart-conformance: verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if result.ok:
        print(f"{args.bundle}: VERIFIED: the manifest's signature verifies with {args.public_key} "
              f"({bundle.algorithm(key)}, {bundle.fingerprint(key)}) and all {result.checked} files match their "
              "SHA-256")
        print(f"  {bundle.describe_run(result.manifest)}")
        return EXIT_OK
    problems = result.lines()
    print(f"{args.bundle}: NOT VERIFIED ({len(problems)} problem{'s' if len(problems) != 1 else ''})")
    for line in problems:
        print(f"  {line}")
    return EXIT_FAILED


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


def threat_model(args: argparse.Namespace) -> int:
    from smart_conformance import threats

    try:
        model = threats.load()
    except threats.ThreatModelError as exc:
        print(f"smart-conformance: threats: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(model.counts().line() if args.counts else threats.render(model), end="\n" if args.counts else "")
    return 0


def serve_reference(args: argparse.Namespace) -> int:
    from smart_conformance.reference import faults as fault_catalog

    if args.list_faults:
        for fault in fault_catalog.FAULTS.values():
            print(f"{fault!s:38} {fault.area:16} breaks {', '.join(fault.breaks)}\n{'':38} {fault.summary}")
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
    if args.command == "merge":
        return merge_shards(args)
    if args.command == "bundle":
        return bundle_evidence(args)
    if args.command == "verify":
        return verify_bundle(args)
    if args.command == "threats":
        return threat_model(args)
    if args.command == "init-target":
        return init_target(args)
    if args.command == "doctor":
        from smart_conformance import doctor

        return doctor.main(args.target)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
