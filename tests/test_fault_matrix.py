"""The fault matrix: every check proves it can fail.

Against the clean reference server every suite passes with nothing broken (tests/test_variant_matrix.py, in file
order and in random order). For each fault, only the suite modules
holding the checks it declares are run, with the fault switched on: the set of failing checks must equal the fault's
``caught_by`` exactly, and the set of checks that could not run must equal its ``blocks`` (a check that needs what
the fault takes away, e.g. a readable CapabilityStatement, honestly reports *could not check*). A check that fails
when it should not is as wrong as one that never fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from smart_conformance.reference.faults import FAULTS
from tests.suite_runner import run_suites, suite_checks

CHECKED_FAULTS = sorted(name for name, fault in FAULTS.items() if fault.caught_by)

# Checks whose failure no reference fault can produce on this machine, with the test that proves them instead.
PROVEN_ELSEWHERE = {
    "test_tls_legacy_ssl_refused": "tests/tls/test_tls_suite.py (sslv3-simulated): no OpenSSL build here can serve "
                                   "SSL 3.0, so the scanner's verdict is simulated there",
    "test_tls_certificate_signature_hash": "tests/tls/test_tls_suite.py (sha1-signature): a real local server with a "
                                           "SHA-1 signed leaf (the reference CA key is EC)",
    "test_expired_token_refused": "test_expired_token_check_with_short_lived_tokens below: it needs tokens that expire "
                                  "within the run",
    "test_backend_token_refused_after_expiry": "tests/reference/test_backend.py::"
                                               "test_backend_expiry_check_with_short_lived_tokens: it needs backend "
                                               "tokens that expire within the run",
}


def test_every_check_is_caught_by_some_fault() -> None:
    checks = suite_checks()
    caught = {c for fault in FAULTS.values() for c in fault.caught_by}
    unknown = {f"{f.name}: {c}" for f in FAULTS.values() for c in (*f.caught_by, *f.blocks) if c not in checks}
    assert not unknown, f"faults name checks that do not exist: {sorted(unknown)}"
    never = sorted(set(checks) - caught - set(PROVEN_ELSEWHERE))
    assert not never, f"checks no fault proves can fail (add a fault or extend caught_by): {never}"


@pytest.mark.parametrize("fault", CHECKED_FAULTS)
def test_fault_is_caught_by_exactly_its_checks(fault: str, tmp_path: Path) -> None:
    declared, blocked = set(FAULTS[fault].caught_by), set(FAULTS[fault].blocks)
    modules = sorted({suite_checks()[c] for c in declared | blocked})
    run = run_suites(modules, tmp_path, faults=(fault,))
    failing = run.checks_with("failed", "warning")
    broken = run.checks_with("broken")
    assert broken == blocked, (
        f"{fault}: checks that could not run differ from blocks\n  expected: {sorted(blocked)}\n"
        f"  got: {sorted(broken)}\n{run.output}")
    assert failing == declared, (
        f"{fault}: failing checks differ from caught_by\n  missed (declared, passed): {sorted(declared - failing)}\n"
        f"  unexpected (failed, not declared): {sorted(failing - declared)}\n{run.output}")


@pytest.mark.parametrize("fault", [None, "expired-token-accepted"], ids=["clean", "expired-token-accepted"])
def test_expired_token_check_with_short_lived_tokens(fault: str | None, tmp_path: Path) -> None:
    """With 10-second access tokens the expiry check runs (not skipped): it passes clean and fails with the fault."""
    run = run_suites(["fhir_security/test_authentication.py"], tmp_path, faults=(fault,) if fault else (),
                     env={"SMART_REFERENCE_ACCESS_TOKEN_TTL": "10"})
    assert not run.checks_with("broken"), run.output
    assert run.checks_with("failed", "warning") == ({"test_expired_token_refused"} if fault else set()), run.output
    assert run.totals().get("skipped", 0) == 0, run.output
