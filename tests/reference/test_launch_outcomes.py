"""Launch verdicts that hold on payers we did not write (issue 10: typed launch outcomes, classes 1, 2, 3 and 15).

Each test reproduces one class of mistake against the reference server, with a fault, a variant, or a target file a
payer could write, and asserts the honest verdict: a negative launch check passes only on a refusal the harness saw
the server make, beside a positive control that reached tokens; an error in the redirect's fragment is read; an
empty-body 400 at authorize is a refusal; the untick check builds the scopes it needs instead of going quiet.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from smart_conformance import paths
from smart_conformance.browser import BrowserSession
from smart_conformance.config import load_target
from smart_conformance.launcher import Launcher
from smart_conformance.plugin import build_client
from smart_conformance.reference.server import ReferenceServer
from smart_conformance.reference.variants import (
    AUTHORIZE_REFUSAL_EMPTY_400,
    CONSENT_WITHOUT_SCOPE_CONTROLS,
    IMPLICIT_ERROR_IN_FRAGMENT,
    SCRIPT_RENDERED_SIGN_IN,
    TWO_PAGE_SIGN_IN,
)
from smart_conformance.smart.launch import LaunchOutcome
from tests.suite_runner import reference_target_file, run_suites

# The launch-suite checks whose verdict is a refusal: each must see the server refuse, beside a positive control.
NEGATIVE_CHECKS = {
    "test_unknown_client_not_redirected", "test_unregistered_redirect_uri_not_redirected", "test_wrong_aud_refused",
    "test_wrong_password_refused", "test_implicit_grant_refused", "test_pkce_challenge_required",
    "test_pkce_plain_refused",
}
# Checks of the launch and tokens suites that need no sign-in at all (a made-up code, a grant type the server must
# refuse for every client): everything else needs the recipe to work.
# Judged at the token endpoint with made-up codes and client authentication only: no sign-in needed.
NO_SIGN_IN = {"test_token_error_not_cached", "test_unsupported_grant_types_refused",
              "test_oauth_endpoints_answer_junk_cleanly", "test_revocation_error_responses",
              "test_introspection_error_responses"}
UNTICK = "test_unticked_scope_withheld_and_enforced"


def reference_doc() -> dict[str, Any]:
    return yaml.safe_load(paths.reference_target().read_text(encoding="utf-8"))


# --- typed outcomes: the Done-when test ----------------------------------------------------------------------------

def test_recipe_first_selector_changed_gives_no_pass_that_needs_a_sign_in(tmp_path: Path) -> None:
    """Issue 10, done-when: the login recipe's first selector no longer matches the sign-in page. Against a server
    that issues codes without PKCE and accepts redirect_uris by prefix, the launch and tokens suites give 0 passes
    among the checks that need a sign-in: every negative is *could not check*, none "refused"."""
    login = reference_doc()["login"]
    login["steps"][0]["fill"]["selector"] = "#user-name-changed"
    login["step_timeout_ms"] = 1000  # the page will not change: no need to wait the default 10 s each time
    with ReferenceServer(faults=["pkce-not-required", "redirect-uri-prefix-match"]) as srv:
        run = run_suites(["launch", "tokens"], tmp_path / "r", targets=(reference_target_file(tmp_path, login=login),),
                         env=srv.target_env())
    seen = run.outcomes()
    assert NEGATIVE_CHECKS <= set(seen), run.output
    passed = sorted(c for c, outcomes in seen.items() if "passed" in outcomes and c not in NO_SIGN_IN)
    assert passed == [], run.output
    for check in NEGATIVE_CHECKS:
        assert seen[check] == {"broken"}, (check, run.messages("reference", check))
    message = " ".join(run.messages("reference", "test_pkce_challenge_required"))
    assert "inconclusive" in message and "positive control" in message, message
    assert "#user-name-changed" in message, message


# --- in-process launches: the outcome of each kind of refusal --------------------------------------------------------

@pytest.fixture(scope="module")
def variant_launcher(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A factory: a Launcher against a reference server with the given variants on (one server per variant set)."""
    stack: list[Any] = []

    def make(*variants: str) -> Launcher:
        from smart_conformance.reference.variants import ActiveVariants

        srv = ReferenceServer(variants=list(variants))
        srv.start()
        stack.append(srv.stop)
        target = load_target(paths.reference_target(), {**os.environ, **srv.target_env()},
                             patch=ActiveVariants(variants).target_patch())
        http = build_client(target)
        stack.append(http.close)
        config = http.get(target.fhir_base_url + "/.well-known/smart-configuration").json()
        session = BrowserSession(ca_bundle=target.tls.ca_bundle)
        session.start()
        stack.append(session.close)
        return Launcher(target, http, session, config, Path(tempfile.mkdtemp(prefix="launch-outcomes-")))

    yield make
    for close in reversed(stack):
        close()


def test_class1_nonce_only_with_openid(variant_launcher: Any) -> None:
    """OIDC Core §3.1.2.1: nonce is an OpenID request parameter. A launch without openid sends none (a conformant OP
    may refuse it with invalid_request), and still ends in tokens; with openid it is sent and echoed."""
    launcher = variant_launcher()
    plain = launcher.launch(scope="launch/patient patient/Patient.rs")
    assert plain.outcome is LaunchOutcome.TOKENS, plain.why
    assert "nonce" not in plain.request.to_form() and "nonce=" not in plain.authorization_url
    oidc = launcher.launch()
    assert oidc.outcome is LaunchOutcome.TOKENS and oidc.nonce and "nonce" in oidc.request.to_form()


def test_refusals_are_typed_by_where_the_server_said_no(variant_launcher: Any) -> None:
    launcher = variant_launcher()
    target = launcher.target
    unknown = launcher.launch(request_overrides={"client_id": "smart-conformance-unknown"}, tolerant=True,
                              exchange=False)
    assert unknown.outcome is LaunchOutcome.REFUSED_AT_AUTHORIZE and "HTTP 400" in unknown.why, unknown.why
    wrong = launcher.launch(values={**target.member.values("member"), "member.password": "not-it"}, tolerant=True,
                            exchange=False, fresh_sign_in=True)  # else the member's session signs in without it
    assert wrong.outcome is LaunchOutcome.REFUSED_AT_SIGN_IN and "HTTP 401" in wrong.why, wrong.why
    denied = launcher.launch(scenario="deny", exchange=False)
    assert denied.outcome is LaunchOutcome.REFUSED_AT_CONSENT and "access_denied" in denied.why
    no_pkce = launcher.launch(pkce=False, tolerant=True)
    assert no_pkce.outcome is LaunchOutcome.REFUSED_AT_AUTHORIZE and "invalid_request" in no_pkce.why
    bad_verifier = launcher.launch(token_overrides={"code_verifier": "x" * 43})
    assert bad_verifier.outcome is LaunchOutcome.REFUSED_AT_TOKEN, bad_verifier.why
    # Negatives decide on the server's answer (the HTTP status in ``why`` above), never by waiting out a step: a
    # wait-out takes the whole step timeout. (How fast they decide is measured by the benchmark, not asserted.)
    limit = launcher.recipe.step_timeout_ms / 1000
    assert unknown.browser_seconds < limit and wrong.browser_seconds < limit, (unknown.browser_seconds,
                                                                                wrong.browser_seconds)


def test_class2_implicit_error_in_the_fragment_is_a_refusal(variant_launcher: Any) -> None:
    """RFC 6749 §4.2.2.1: an implicit request's error is added to the redirect's fragment. It is read."""
    launcher = variant_launcher(IMPLICIT_ERROR_IN_FRAGMENT)
    result = launcher.launch(request_overrides={"response_type": "token"}, tolerant=True, exchange=False)
    assert result.browser.redirected and result.browser.response_in == "fragment"
    assert result.browser.error == "unsupported_response_type" and result.returned_state == result.state
    assert result.outcome is LaunchOutcome.REFUSED_AT_AUTHORIZE, result.why


def test_class3_empty_body_400_at_authorize_is_a_refusal(variant_launcher: Any) -> None:
    """An authorize endpoint that refuses an unknown client with a bare 400 (Chromium raises on it): a refusal at
    authorize, seen at once, not a step that could not proceed."""
    launcher = variant_launcher(AUTHORIZE_REFUSAL_EMPTY_400)
    result = launcher.launch(request_overrides={"client_id": "smart-conformance-unknown"}, tolerant=True,
                             exchange=False)
    assert result.outcome is LaunchOutcome.REFUSED_AT_AUTHORIZE, result.why
    assert "HTTP 400, empty body" in result.why and not result.browser.redirected
    assert result.browser_seconds < launcher.recipe.step_timeout_ms / 1000  # no step was waited out


@pytest.mark.parametrize("variant", [TWO_PAGE_SIGN_IN, SCRIPT_RENDERED_SIGN_IN])
def test_other_sign_in_shapes_reach_tokens_and_refuse_a_wrong_password(variant_launcher: Any, variant: str) -> None:
    launcher = variant_launcher(variant)
    assert launcher.launch().outcome is LaunchOutcome.TOKENS
    wrong = launcher.launch(values={**launcher.target.member.values("member"), "member.password": "not-it"},
                            tolerant=True, exchange=False, fresh_sign_in=True)
    assert wrong.outcome is LaunchOutcome.REFUSED_AT_SIGN_IN, wrong.why


def test_script_rendered_sign_in_has_no_form_in_its_html() -> None:
    """The variant is what it says: the page as served holds no password field; a script builds it after load."""
    with ReferenceServer(variants=[SCRIPT_RENDERED_SIGN_IN]) as srv, \
            httpx.Client(verify=ssl.create_default_context(cafile=str(srv.ca_path)), follow_redirects=False) as client:
        from smart_conformance.smart.authorize import standard_request

        env = srv.target_env()
        request, _ = standard_request(client_id=env["SMART_REFERENCE_CLIENT_ID"],
                                      redirect_uri="http://127.0.0.1:8765/callback",
                                      scope="launch/patient patient/Patient.rs", aud=srv.fhir_base_url)
        first = client.get(request.to_url(srv.issuer + "/authorize"))
        login = client.get(srv.origin + first.headers["location"])
        assert login.status_code == 200 and 'type="password"' not in login.text and "<script nonce=" in login.text
        assert "script-src 'nonce-" in login.headers["content-security-policy"]


# --- class 15: the untick check builds its own scope set -------------------------------------------------------------

WILDCARD_FULL = "launch/patient openid fhirUser offline_access patient/*.rs"


@pytest.mark.parametrize("fault", [None, "consent-ignores-unticked"], ids=["clean", "consent-ignores-unticked"])
def test_class15_untick_check_runs_with_a_wildcard_full_scope(fault: str | None, tmp_path: Path) -> None:
    """scopes.full written the common way (patient/*.rs): the untick check requests explicit per-type scopes, unticks
    Coverage and offline_access, and passes on the clean reference; it fails when unticked scopes are granted."""
    scopes = {**reference_doc()["scopes"], "full": WILDCARD_FULL}
    with ReferenceServer(faults=[fault] if fault else []) as srv:
        run = run_suites(["launch/test_standalone_launch.py"], tmp_path / "r",
                         targets=(reference_target_file(tmp_path, scopes=scopes),), env=srv.target_env(),
                         extra=("-k", UNTICK))
    seen = run.outcomes()
    assert seen[UNTICK] == ({"failed"} if fault else {"passed"}), run.output
    if fault:
        message = " ".join(run.messages("reference", UNTICK))
        assert "patient/Coverage.rs" in message, message


def test_class15_untick_not_applicable_only_without_per_scope_controls(tmp_path: Path) -> None:
    """A consent page with Allow/Deny only (no per-scope checkboxes, offline_access included): the recipe has no
    untick steps, so the check is not applicable, saying why; nothing else in the launch suite changes."""
    run = run_suites(["launch/test_standalone_launch.py"], tmp_path / "r", variants=(CONSENT_WITHOUT_SCOPE_CONTROLS,),
                     extra=("-rs",))
    seen = run.outcomes()
    assert seen[UNTICK] == {"skipped"}, run.output
    assert "offers no per-scope choice" in run.output, run.output
    assert not run.checks_with("failed", "warning", "broken"), run.output


# --- classes 2 and 3 as the suite reports them -----------------------------------------------------------------------

def test_classes2_3_refusal_variants_pass_the_negative_checks(tmp_path: Path) -> None:
    """Implicit errors in the fragment and empty-body 400s at authorize: every launch negative passes (none could
    not check, none failed)."""
    run = run_suites(["launch/test_authorization_request.py"], tmp_path / "r",
                     variants=(IMPLICIT_ERROR_IN_FRAGMENT, AUTHORIZE_REFUSAL_EMPTY_400))
    seen = run.outcomes()
    assert NEGATIVE_CHECKS <= set(seen), run.output
    assert all(outcomes == {"passed"} for outcomes in seen.values()), run.output


def test_remembered_consent_is_asked_again_with_prompt_consent(variant_launcher: Any) -> None:
    """remembered-consent: a launch that reuses the member's session takes the remembered consent (no consent page,
    its steps skipped because the code came first); a fresh sign-in, whose consent page the checks judge, asks
    prompt=consent, which the server advertises, and sees the page: Deny is still a refusal at consent. A server that
    does not advertise the value is never sent it."""
    from smart_conformance.reference.variants import REMEMBERED_CONSENT

    launcher = variant_launcher(REMEMBERED_CONSENT)
    assert launcher.prompt_values() == frozenset({"consent"})
    reused = launcher.launch()  # the shared launch (fresh, consent shown) first; this one reuses its session
    assert reused.outcome is LaunchOutcome.TOKENS, reused.why
    assert reused.browser.session_reused and "prompt" not in reused.request.to_form()
    assert any("redirect already captured" in s for s in reused.browser.steps_skipped), reused.browser.steps_skipped
    assert reused.browser_seconds < launcher.recipe.step_timeout_ms / 1000
    denied = launcher.launch(scenario="deny", exchange=False, fresh_sign_in=True)
    assert denied.request.to_form().get("prompt") == "consent"
    assert denied.outcome is LaunchOutcome.REFUSED_AT_CONSENT and "access_denied" in denied.why, denied.why
    plain = variant_launcher()
    assert plain.prompt_values() == frozenset()
    fresh = plain.launch(fresh_sign_in=True, scope="launch/patient patient/Patient.rs")
    assert fresh.outcome is LaunchOutcome.TOKENS and "prompt" not in fresh.request.to_form()


def test_a_remembered_consent_without_prompt_consent_is_could_not_check(variant_launcher: Any) -> None:
    """A server that remembers consent but does not advertise prompt=consent (simulated: the advertisement unread):
    Deny after the shared launch approved finds no consent page. That is no verdict on Deny: consent_not_shown names
    the remembered consent and the fix, for the checks to say could-not-check instead of failing."""
    from smart_conformance.reference.variants import REMEMBERED_CONSENT

    launcher = variant_launcher(REMEMBERED_CONSENT)
    launcher._prompt_values = frozenset()  # as if the server did not advertise prompt=consent
    control, problem = launcher.control()
    assert control is not None and launcher.consent_not_shown(control) is None, problem
    denied = launcher.launch(scenario="deny", exchange=False, fresh_sign_in=True)
    assert "prompt" not in denied.request.to_form() and denied.code, denied.why
    why = launcher.consent_not_shown(denied)
    assert why is not None and "remember the member's consent" in why and "prompt=consent" in why, why
