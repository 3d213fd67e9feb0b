"""The fault matrix: every check proves it can fail.

Against the clean reference server every suite passes with nothing broken (tests/test_variant_matrix.py, in file
order and in random order). The plan is declared on the checks (``@proves(Fault.X)``, ``@needs(Needs.Y)`` in
``suites/``) and derived by ``smart_conformance.testplan``. For each fault, only the suite modules holding the checks
it concerns are run, with the fault switched on: the failing checks must be exactly those that ``@proves`` it, and
the checks that could not run exactly those that need what it takes away (e.g. a readable CapabilityStatement) and
honestly report *could not check*. A check that fails when it should not is as wrong as one that never fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from smart_conformance.reference.faults import FAULTS, Fault
from smart_conformance.testplan import plan
from tests.conftest import order_seed
from tests.suite_runner import run_suites

CHECKED_FAULTS = sorted(str(name) for name in FAULTS if plan().caught_by(name))

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
    never = sorted(set(plan().unproven()) - set(PROVEN_ELSEWHERE))
    assert not never, f"checks no fault proves can fail (add @proves(Fault.X) or a fault): {never}"
    gone = sorted(set(PROVEN_ELSEWHERE) - set(plan().checks))
    assert not gone, f"PROVEN_ELSEWHERE names checks that do not exist: {gone}"


@pytest.mark.parametrize("fault", CHECKED_FAULTS)
def test_fault_is_caught_by_exactly_its_checks(fault: str, tmp_path: Path) -> None:
    declared, blocked = plan().caught_by(fault), plan().blocks(fault)
    run = run_suites(plan().modules(declared | blocked), tmp_path, faults=(fault,),
                     variants=FAULTS[Fault(fault)].runs_with)  # the variants its checks need to apply
    failing = run.checks_with("failed", "warning")
    broken = run.checks_with("broken")
    assert broken == blocked, (
        f"{fault}: checks that could not run differ from the checks that need what it takes away\n"
        f"  expected: {sorted(blocked)}\n  got: {sorted(broken)}\n{run.output}")
    assert failing == declared, (
        f"{fault}: failing checks differ from the checks that @proves it\n"
        f"  missed (declared, passed): {sorted(declared - failing)}\n"
        f"  unexpected (failed, not declared): {sorted(failing - declared)}\n{run.output}")


@pytest.mark.parametrize("fault", [None, "expired-token-accepted"], ids=["clean", "expired-token-accepted"])
def test_expired_token_check_with_short_lived_tokens(fault: str | None, tmp_path: Path) -> None:
    """With 10-second access tokens the expiry check runs (not skipped): it passes clean and fails with the fault."""
    run = run_suites(["fhir_security/test_authentication.py"], tmp_path, faults=(fault,) if fault else (),
                     env={"SMART_REFERENCE_ACCESS_TOKEN_TTL": "10"})
    assert not run.checks_with("broken"), run.output
    assert run.checks_with("failed", "warning") == ({"test_expired_token_refused"} if fault else set()), run.output
    assert run.totals().get("skipped", 0) == 0, run.output


REFUSAL_CHECKS = {"test_request_without_token_refused", "test_made_up_token_refused",
                  "test_unsigned_alg_none_token_refused", "test_refusal_discloses_no_internals",
                  "test_tampered_signature_refused", "test_every_fhir_surface_requires_a_valid_token",
                  "test_token_in_query_not_accepted", "test_fhir_refusal_responses"}


def test_gateway_blocking_mid_run_is_could_not_check(tmp_path: Path) -> None:
    """gateway-blocks-after-refusal: once the FHIR API has refused one request, a gateway refuses everyone, valid
    tokens included. Every refusal check takes its positive control beside its own negative, so after the block they
    could not check; none passes on a control taken before it (as a control cached for the run did), none fails.
    Only the check whose own refusal tripped the gateway, its control taken just before, may pass; in any order."""
    run = run_suites(["fhir_security/test_authentication.py"], tmp_path, faults=("gateway-blocks-after-refusal",),
                     order_seed=order_seed())
    outcomes = run.outcomes()
    assert not run.checks_with("failed", "warning"), run.output
    passed = {check for check in REFUSAL_CHECKS if "passed" in outcomes.get(check, set())}
    assert len(passed) <= 1, f"refusal checks passed behind a gateway that refuses everyone: {passed}\n{run.output}"
    assert REFUSAL_CHECKS - passed <= run.checks_with("broken"), run.output
    assert run.checks_with("skipped") <= {"test_expired_token_refused"}, run.output
