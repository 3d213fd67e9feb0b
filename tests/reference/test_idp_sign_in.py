"""Sign-ins as hosted identity providers run them (issue 20), driven in the browser against the reference: a TOTP page
after the password, optional prompts skipped without waiting out their timeout, a lockout that stops every later
sign-in of that member, a 429 on the sign-in page waited out within the recipe's budget, an email code named."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smart_conformance import paths, redact, tally
from smart_conformance.browser import BrowserSession, SignInBlocked, compose_steps, parse_recipe
from smart_conformance.browser.recipe import SignInGuards
from smart_conformance.config import Target, load_target
from smart_conformance.reference import idp
from smart_conformance.reference.server import ReferenceServer
from smart_conformance.reference.variants import (
    LOCKOUT_AFTER_FAILURES,
    SIGN_IN_PROMPTS,
    SIGN_IN_RATE_LIMIT,
    TOTP_MFA,
    ActiveVariants,
)
from tests.reference.launcher import target_authorize_url

VARIANTS = (TOTP_MFA, LOCKOUT_AFTER_FAILURES, SIGN_IN_RATE_LIMIT)


@pytest.fixture(scope="module")
def server() -> Iterator[ReferenceServer]:
    """One server with the code page, the lockout and the (deterministic) burst limit on."""
    with ReferenceServer(variants=VARIANTS) as srv:
        yield srv


@pytest.fixture(scope="module")
def payer(server: ReferenceServer) -> Target:
    return load_target(paths.reference_target(), env=server.target_env(),
                       patch=ActiveVariants([TOTP_MFA]).target_patch())


@pytest.fixture()
def session(server: ReferenceServer, payer: Target) -> Iterator[BrowserSession]:
    with BrowserSession(ca_bundle=server.ca_path, origins=server.origins) as browser:
        browser.guards = parse_recipe(payer.login).guards
        yield browser


@pytest.fixture(autouse=True)
def no_burst_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The burst limit only where a test asks for it: every other test sees a page every time."""
    monkeypatch.setattr(idp, "RATE_LIMIT_EVERY", 10**9)


def authorize(server: ReferenceServer, session: BrowserSession, payer: Target, folder: Path, *,
              steps: Any = None, member: str = "primary", negative: bool = False,
              values: dict[str, str] | None = None, **extra: Any) -> Any:
    url = target_authorize_url(server, payer)
    steps = compose_steps(parse_recipe(payer.login)) if steps is None else steps
    return session.authorize(url, redirect_uri=payer.client.redirect_uri, steps=steps,
                             values=values or payer.members[member].values("member"), artifacts_dir=folder,
                             negative=negative, expect_redirect=not negative, redact_url=redact.url,
                             redact_text=redact.text, **extra)


def test_totp_step_signs_in_past_the_code_page(server: ReferenceServer, session: BrowserSession, payer: Target,
                                               tmp_path: Path) -> None:
    result = authorize(server, session, payer, tmp_path)
    assert result.code, result
    assert "totp '#otp'" in result.steps_run
    assert any("/auth/mfa" in d.url for d in result.documents)
    secret = payer.members["primary"].totp_secret
    assert secret and secret in redact.known_secrets()
    assert secret not in repr(result) and secret not in str(payer.login.steps)


def test_without_the_code_the_member_gets_no_code(server: ReferenceServer, session: BrowserSession, payer: Target,
                                                  tmp_path: Path) -> None:
    """An out-of-band marker that matches the code page ends the launch at once, naming the fix."""
    login = {"steps": list(payer.login.steps[:3]), "consent": payer.login.consent,
             "out_of_band_code": {"text": "code from your authenticator app"}}
    session.guards = parse_recipe(login).guards
    with pytest.raises(SignInBlocked) as raised:
        authorize(server, session, payer, tmp_path, steps=compose_steps(parse_recipe(login)))
    assert raised.value.kind == "out-of-band"
    assert "enrol a TOTP authenticator for the test member" in str(raised.value)


def test_absent_optional_steps_are_skipped_without_waiting(server: ReferenceServer, session: BrowserSession,
                                                          payer: Target, tmp_path: Path) -> None:
    """The prompts' optional steps (sign-in-prompts' recipe) on a sign-in without prompts: each is decided by the
    next step's element showing, none by its timeout running out."""
    prompts = ActiveVariants([SIGN_IN_PROMPTS]).target_patch()["login"]["steps"][3:]
    login = {"steps": [*payer.login.steps, *({**p, "timeout_ms": 60_000} for p in prompts)],
             "consent": payer.login.consent}
    result = authorize(server, session, payer, tmp_path, steps=compose_steps(parse_recipe(login)))
    assert result.code
    skipped = [s for s in result.steps_skipped if "optional, not present" in s]
    assert len(skipped) == 2, result.steps_skipped
    assert all("came first" in s for s in skipped), skipped
    assert not any("within" in s for s in skipped)


def test_a_code_page_never_shown_is_recorded_not_waited_out(tmp_path: Path) -> None:
    """mfa-skipped: the server goes on to consent after the password alone. The required totp step is recorded as not
    asked for (test_second_factor_asked_before_code judges it) as soon as the consent page shows, not after its
    timeout; the launch goes on to its code and the password counts as typed."""
    with ReferenceServer(faults=["mfa-skipped"], variants=[TOTP_MFA]) as srv:
        payer = load_target(paths.reference_target(), env=srv.target_env(),
                            patch=ActiveVariants([TOTP_MFA]).target_patch())
        steps = [*payer.login.steps[:3], {**payer.login.steps[3], "timeout_ms": 60_000}]
        recipe = parse_recipe({"steps": steps, "consent": payer.login.consent})
        with BrowserSession(ca_bundle=srv.ca_path, origins=srv.origins) as browser:
            browser.guards = recipe.guards
            result = authorize(srv, browser, payer, tmp_path, steps=compose_steps(recipe),
                               sign_in_steps=len(recipe.steps))
    assert result.code and result.password_submitted, result
    assert "totp '#otp'" not in result.steps_run
    skipped = [s for s in result.steps_skipped if s.startswith("totp '#otp' (not asked for:")]
    assert len(skipped) == 1 and "/auth/consent" in skipped[0], result.steps_skipped
    assert result.seconds < 30, result.seconds


def test_lockout_stops_every_later_sign_in_of_that_member(server: ReferenceServer, session: BrowserSession,
                                                          payer: Target, tmp_path: Path) -> None:
    bob = payer.members["other"]
    wrong = {**bob.values("member"), "member.password": "not-" + bob.password}
    for attempt in range(idp.LOCKOUT_THRESHOLD):
        result = authorize(server, session, payer, tmp_path / str(attempt), negative=True, values=wrong)
        assert not result.code
    assert result.blocked and "account is locked" in result.blocked
    assert bob.username in session.locked_out
    with pytest.raises(SignInBlocked) as raised:  # before any page: no password is typed again
        authorize(server, session, payer, tmp_path / "after", member="other")
    assert raised.value.kind == "lockout" and not raised.value.url
    other = BrowserSession(ca_bundle=server.ca_path, origins=server.origins)  # a browser that did not see it
    with other, pytest.raises(SignInBlocked) as seen:
        authorize(server, other, payer, tmp_path / "other", member="other")
    assert seen.value.kind == "lockout" and seen.value.url


def test_a_429_on_the_sign_in_is_waited_out_then_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server of its own: the burst limit counts every sign-in page the server served, so the module's server,
    whose count depends on the tests before, would make the first 429 come at another request."""
    monkeypatch.setattr(idp, "RATE_LIMIT_EVERY", 2)
    with ReferenceServer(variants=VARIANTS) as own, \
            BrowserSession(ca_bundle=own.ca_path, origins=own.origins) as session:
        payer = load_target(paths.reference_target(), env=own.target_env(),
                            patch=ActiveVariants([TOTP_MFA]).target_patch())
        session.guards = parse_recipe(payer.login).guards
        monkeypatch.setattr(session, "tally_as", "idp-backoff")  # each wait counts in the run's rate_limited tally
        tally.drain()
        results = [authorize(own, session, payer, tmp_path / str(n)) for n in range(2)]
        assert all(r.code for r in results)
        assert len(session.backoffs) == 1 and session.backoffs[0][1] == idp.RETRY_AFTER_S
        assert tally.drain()["idp-backoff"] == {tally.RATE_LIMITED: 1,
                                                tally.RATE_LIMIT_WAIT_MS: idp.RETRY_AFTER_S * 1000}
        monkeypatch.setattr(idp, "RATE_LIMIT_EVERY", 1)
        session.guards = SignInGuards(max_backoff_s=1.5)
        with pytest.raises(SignInBlocked) as raised:
            authorize(own, session, payer, tmp_path / "limited")
        assert raised.value.kind == "rate-limited" and "HTTP 429" in str(raised.value)
        assert "login.rate_limit.max_wait_s" in str(raised.value)
