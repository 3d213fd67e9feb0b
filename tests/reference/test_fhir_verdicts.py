"""FHIR-side verdicts that hold on payers we did not write (issue 10, classes 4c, 5, 7, 8, 11, 16b, 16c).

Each test reproduces one class of mistake against the reference server, with a fault, a variant, or a target file a
payer could write, and asserts the honest verdict: refusals count only beside a positive control; a MAY is advice;
a finding takes the level of the requirement it broke; a failed search is never "not applicable"; write probes change
nothing even when the server accepts them; input is not reflected from path segments; a refusal does not repeat the
token it refused; and the refusal statuses CARIN and FHIR allow (403, 404) give no failure.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from starlette.types import ASGIApp, Receive, Scope, Send

from smart_conformance import paths
from smart_conformance.reference import server as server_module
from smart_conformance.reference.server import ReferenceServer
from smart_conformance.reference.variants import REFUSALS_AS_403, REFUSALS_AS_404
from tests.suite_runner import reference_target_file, run_suites

# Checks whose verdict is a refusal, an isolation or a "nothing leaked": each needs its positive control.
REFUSAL_CHECKS = {
    "test_request_without_token_refused", "test_made_up_token_refused", "test_unsigned_alg_none_token_refused",
    "test_refusal_discloses_no_internals", "test_tampered_signature_refused", "test_token_in_query_not_accepted",
    "test_errors_are_operationoutcome", "test_junk_input_refused_cleanly", "test_input_not_reflected_as_html",
    "test_unsupported_methods_refused", "test_cors_no_credentials_for_any_origin",
    "test_type_outside_scopes_refused", "test_writes_refused_under_read_scopes", "test_v1_scope_grants_only_its_type",
    "test_v2_scope_grants_only_its_type", "test_other_member_read_refused", "test_other_member_search_refused",
    "test_other_member_include_refused", "test_other_member_chained_search_refused",
    "test_other_member_everything_refused", "test_refusal_same_for_existing_and_missing",
    "test_representative_reaches_only_represented_member", "test_named_other_patients_refused",
    "test_every_fhir_surface_requires_a_valid_token", "test_types_outside_scopes_never_included",
    "test_paging_links_bound_to_member", "test_refused_search_reveals_no_count",
}
PUBLIC_FHIR = ("/fhir/.well-known/smart-configuration", "/fhir/metadata")


class FhirApiNotFound:
    """A gateway that routes the FHIR API nowhere: every /fhir/ request but discovery and metadata answers 404."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/fhir") and scope["path"] not in PUBLIC_FHIR:
            body = b"<html><body><h1>404 Not Found</h1></body></html>"
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"text/html"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


@pytest.fixture()
def not_fhir(monkeypatch: pytest.MonkeyPatch) -> Iterator[ReferenceServer]:
    built = server_module.build_app
    monkeypatch.setattr(server_module, "build_app", lambda *a, **k: FhirApiNotFound(built(*a, **k)))
    with ReferenceServer() as srv:
        yield srv


def test_class7_no_refusal_passes_on_a_url_that_answers_404_to_everything(not_fhir: ReferenceServer,
                                                                          tmp_path: Path) -> None:
    """Discovery and sign-in work, the FHIR API answers 404 to everything: no refusal or isolation check passes."""
    run = run_suites(["fhir_security/test_authentication.py", "fhir_security/test_api_hygiene.py", "scopes"],
                     tmp_path / "r", targets=(reference_target_file(tmp_path),), env=not_fhir.target_env())
    seen = run.outcomes()
    assert REFUSAL_CHECKS <= set(seen), run.output
    passed = sorted(c for c in REFUSAL_CHECKS if "passed" in seen[c])
    assert passed == [], run.output
    messages = " ".join(run.messages("reference", "test_made_up_token_refused"))
    assert "no positive control" in messages and "HTTP 404" in messages, messages


def test_class4c_token_in_query_is_may_level_advice(tmp_path: Path) -> None:
    """RFC 6750 §2.3: resource servers MAY accept ?access_token=. A warning at MAY that says so, never a failure."""
    run = run_suites(["fhir_security/test_authentication.py"], tmp_path, faults=("token-in-query-accepted",),
                     extra=("-k", "test_token_in_query_not_accepted"))
    assert run.outcomes()["test_token_in_query_not_accepted"] == {"warning"}, run.output
    [message] = run.messages("reference", "test_token_in_query_not_accepted")
    # one expectation per surface probed (read, search, include, $everything): every one at MAY, none a violation
    assert message.startswith("[MAY] ") and "RFC6750-02 (MAY)" in message and "SHALL" not in message, message
    assert "not a violation" in message, message


def test_class5_cors_with_credentials_warns_at_should_not(tmp_path: Path) -> None:
    """A credentialed CORS grant to any origin breaks a SHOULD NOT, not the SHALL the check also cites."""
    run = run_suites(["fhir_security/test_api_hygiene.py"], tmp_path, faults=("cors-wildcard-credentials",),
                     extra=("-k", "cors"))
    assert run.outcomes()["test_cors_no_credentials_for_any_origin"] == {"warning"}, run.output
    [message] = run.messages("reference", "test_cors_no_credentials_for_any_origin")
    assert "SMART-SEC-01" not in message.splitlines()[0] and "HTTP-HYG-03" in message, message


def test_class8_failed_eob_search_is_never_not_applicable(tmp_path: Path) -> None:
    """A payer whose full scopes leave out ExplanationOfBenefit: the search is refused, so the checks built on it
    cannot check (and the search check fails); none says "the member has no EOB"."""
    doc = yaml.safe_load(paths.reference_target().read_text(encoding="utf-8"))
    full = " ".join(s for s in doc["scopes"]["full"].split() if "ExplanationOfBenefit" not in s)
    with ReferenceServer() as srv:
        run = run_suites(["payer_data"], tmp_path / "r", targets=(reference_target_file(tmp_path, scopes={**doc["scopes"],
                                                                                                 "full": full}),),
                         env=srv.target_env())
    seen = run.outcomes()
    assert seen["test_eob_search_returns_member_claims_only"] == {"failed"}, run.output
    assert seen["test_eob_carin_must_haves"] == {"broken"}, run.output
    assert seen["test_search_paging_consistent"] == {"broken"}, run.output
    assert seen["test_member_resources_valid_fhir"] == {"broken"}, run.output
    assert not run.checks_with("skipped"), run.output


def test_class11_write_probes_change_nothing_even_when_accepted(tmp_path: Path) -> None:
    """With writes-allowed the server really writes; the probes are caught and the member's data is unchanged."""
    with ReferenceServer(faults=["writes-allowed"]) as srv:
        assert srv.dataset is not None
        before = copy.deepcopy(srv.dataset.resources)
        run = run_suites(["scopes/test_scope_limits.py"], tmp_path / "r", targets=(reference_target_file(tmp_path),),
                         env=srv.target_env(), extra=("-k", "test_writes_refused_under_read_scopes"))
        after = srv.dataset.resources
    assert run.outcomes()["test_writes_refused_under_read_scopes"] == {"failed"}, run.output
    assert after == before


def test_class16b_path_segment_reflected_as_html_is_caught(tmp_path: Path) -> None:
    run = run_suites(["fhir_security/test_api_hygiene.py"], tmp_path, faults=("path-reflected-in-html",),
                     extra=("-k", "test_input_not_reflected_as_html"))
    assert run.outcomes()["test_input_not_reflected_as_html"] == {"warning"}, run.output  # HTTP-HYG-05: a SHOULD
    [message] = run.messages("reference", "test_input_not_reflected_as_html")
    assert "<svg onload=alert(1)>" in message, message


def test_class16c_refusal_repeating_the_token_is_caught(tmp_path: Path) -> None:
    run = run_suites(["fhir_security/test_authentication.py"], tmp_path, faults=("refusal-echoes-token",),
                     extra=("-k", "made_up or tampered or alg_none"))
    seen = run.outcomes()
    for check in ("test_made_up_token_refused", "test_tampered_signature_refused",
                  "test_unsigned_alg_none_token_refused"):
        assert seen[check] == {"warning"}, run.output
        [message] = run.messages("reference", check)
        assert "FHIR-SEC-14" in message.splitlines()[0] and "repeats the refused token" in message, message


@pytest.mark.parametrize("variant", [REFUSALS_AS_403, REFUSALS_AS_404])
def test_refusal_status_variants_give_no_finding(variant: str, tmp_path: Path) -> None:
    """403 or 404 refusals, as CARIN and FHIR allow: the FHIR suites give only passes and reasoned skips."""
    run = run_suites(["fhir_security", "scopes", "payer_data"], tmp_path, variants=(variant,))
    totals = run.totals()
    assert totals.get("failed", 0) == 0 and totals.get("warning", 0) == 0 and totals.get("broken", 0) == 0, run.output
    assert totals.get("passed", 0) > 0, run.output
