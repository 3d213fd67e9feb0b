"""Launches for the suites: a target's YAML turned into SMART standalone launches, with their evidence kept.

One successful launch per target and worker is shared by every check that only needs a token; scenarios that need
a launch of their own (deny, untick, PKCE negatives…) ask the :class:`Launcher` for one.

The sign-in budget: a launch reuses the member's identity-provider session (single sign-on in the same browser:
authorize, the server skips the sign-in, consent, code) unless it asks for ``fresh_sign_in=True``: the shared launch
(the positive control whose sign-in pages, cookies and headers the checks of the sign-in judge), wrong password,
deny, untick, and the checks of the sign-in form itself. Password submissions are counted per target
(``tally.SIGN_INS``) and capped by ``login.max_sign_ins``.

Remembered consent: a server may skip the consent page for a member and client that approved as much before (OpenID
Connect Core §3.1.2.4), and not only in the browser that approved. A fresh sign-in is the one whose consent page the
checks judge (the shared launch, deny, untick), so it asks ``prompt=consent`` when the server advertises that value
(``prompt_values_supported``); a launch that reuses the session takes the consent as remembered.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from smart_conformance import redact, refusals, tally
from smart_conformance.browser import (
    BrowserSession,
    LoginStepError,
    RecipeError,
    SignInBlocked,
    compose_steps,
    parse_recipe,
)
from smart_conformance.checks import CouldNotCheck, not_applicable
from smart_conformance.config import Target
from smart_conformance.fhir import call
from smart_conformance.http import (
    Evidence,
    RecordingClient,
    collecting,
    current_evidence,
)
from smart_conformance.smart.assertion import Signer, load_private_key
from smart_conformance.smart.discovery import fetch_json, openid_configuration_url
from smart_conformance.smart.launch import (
    LaunchOutcome,
    LaunchResult,
    LaunchSpec,
    control_proves,
    run_launch,
)
from smart_conformance.smart.token import ClientCredentials, TokenResponse, introspect

# The shared launch is renewed this long before its access token expires (at most half its lifetime), so a check
# never starts with a token that dies while it runs.
SHARED_RENEW_MARGIN_S = 30.0


# How long a positive control vouches for a negative launch's refusal. The reference's whole run takes about a minute
# and a half; a payer's run with many targets or a slow identity provider may take much longer, and its authorization
# server can fail in between (a deployment, a gateway): a control older than this is taken again, with a fresh sign-in.
CONTROL_WINDOW_S = 600.0


def control_pages(control: LaunchResult, spec: LaunchSpec) -> list[str | None]:
    """Per step of ``spec``, the page (origin + path) on which the positive control ran the same step, if it did."""
    if control.outcome is not LaunchOutcome.TOKENS:
        return []
    pages: list[str | None] = []
    for number, step in enumerate(spec.steps, start=1):
        pages.append(control.browser.step_pages[number - 1] or None if control_proves(control, spec, number)
                     else None)
    return pages


def credentials(client: Any) -> ClientCredentials:
    """How the configured client authenticates: its secret, or (private_key_jwt) a signer of assertions."""
    signer = None
    if client.auth_method == "private_key_jwt":
        signer = Signer(client.client_id, load_private_key(client.private_key), client.alg, client.kid)
    return ClientCredentials(client_id=client.client_id, client_secret=client.client_secret,
                             auth_method=client.auth_method, signer=signer)


class Launcher:
    """Builds and runs launches against one target; every screenshot lands in the running test's evidence."""

    def __init__(self, target: Target, http: RecordingClient, browser: BrowserSession, smart_config: dict[str, Any],
                 artifacts: Path, keep_traces: bool = False) -> None:
        if target.login is None:
            raise CouldNotCheck(f"target '{target.name}' has no login recipe (login.steps in {target.source})")
        try:
            self.recipe = parse_recipe(target.login)
        except RecipeError as exc:
            raise CouldNotCheck(f"{target.source}: {exc}") from None
        self.target, self.http, self.browser = target, http, browser
        browser.guards = self.recipe.guards  # lockout / out-of-band markers and the back-off budget
        browser.tally_as = target.name  # its sign-in back-offs count in the target's rate_limited tally
        self.config = smart_config
        self.artifacts = artifacts
        self.keep_traces = keep_traces
        self._shared: LaunchResult | None = None
        self._shared_at = 0.0  # time.monotonic() when the shared launch's token was issued
        self._shared_checked_in: Evidence | None = None  # the test whose use of the shared launch was last checked
        self._shared_evidence = Evidence()  # what the shared launch's own making saw: evidence for every user of it
        self._grant_check_trusted = True  # False once a brand-new token failed its own check (see _renew_shared)
        self._count = 0
        self._control: LaunchResult | None = None
        self._control_problem: str | None = None
        self._control_files: list[tuple[str, Path]] = []
        self.sign_ins = 0  # password submissions this launcher made (this process)
        self.max_sign_ins: int | None = target.login.max_sign_ins
        self.minimal_sign_ins = False  # the production profile: no fresh sign-in of a member signed in already
        self._making_shared = False  # the shared launch (the positive control) always signs in afresh
        self._prompt_values: frozenset[str] | None = None  # prompt_values_supported, read once

    @property
    def authorization_endpoint(self) -> str:
        url = self.config.get("authorization_endpoint")
        if not isinstance(url, str):
            raise CouldNotCheck("smart-configuration has no authorization_endpoint: no launch is possible")
        return url

    @property
    def token_endpoint(self) -> str:
        url = self.config.get("token_endpoint")
        if not isinstance(url, str):
            raise CouldNotCheck("smart-configuration has no token_endpoint: no launch is possible")
        return url

    def spec(self, *, scope: str | None = None, member: str = "primary",
             scenario: str | tuple[str, Sequence[str]] = "approve", client: Any = None, tolerant: bool = False,
             **overrides: Any) -> LaunchSpec:
        """A launch spec from the target's config.

        ``tolerant`` (or ``negative=True``): a request the server should refuse. The recipe runs as written; a step
        that does not match ends the launch instead of breaking the check, and the launch's outcome is judged
        against the positive control (:meth:`control`): a refusal counts only when the server was seen deciding.
        """
        if member not in self.target.members:
            raise CouldNotCheck(f"target '{self.target.name}' names no '{member}' member (members.{member})")
        who = self.target.members[member]
        chosen = client or self.target.client
        try:
            steps = compose_steps(self.recipe, scenario)
        except RecipeError as exc:
            raise CouldNotCheck(f"{self.target.source}: {exc}") from None
        if tolerant:
            overrides.setdefault("negative", True)
        if overrides.get("negative"):
            overrides.setdefault("expect_redirect", False)
        self._count += 1
        spec = LaunchSpec(authorization_endpoint=self.authorization_endpoint, token_endpoint=self.token_endpoint,
                          fhir_base_url=self.target.fhir_base_url, client=credentials(chosen),
                          redirect_uri=chosen.redirect_uri, scope=scope or self.target.scopes["full"], steps=steps,
                          values=who.values("member"), keep_trace=self.keep_traces,
                          step_timeout_ms=self.recipe.step_timeout_ms, redact_url=redact.url,
                          redact_text=redact.text, name=f"launch-{self._count:02d}")
        return replace(spec, **overrides) if overrides else spec

    def control(self) -> tuple[LaunchResult | None, str | None]:
        """The positive control of every negative launch: the shared launch (the same recipe, valid input, this
        run). Made once, and made again when older than ``CONTROL_WINDOW_S``: an authorization server that worked
        at minute 1 does not vouch for a refusal at minute 20. If it could not run, why (its screenshot goes to
        every negative that needed it)."""
        if self._control is not None and self._control is self._shared and self._shared_at \
                and time.monotonic() - self._shared_at > CONTROL_WINDOW_S:
            age = time.monotonic() - self._shared_at
            try:
                self._renew_shared(f"the positive control was {age:.0f} s old (at most {CONTROL_WINDOW_S:.0f} s)")
                self._control = self._shared
            except CouldNotCheck as exc:
                self._control, self._control_problem = None, f"the positive control, re-taken after {age:.0f} s: {exc}"
        if self._control is None and self._control_problem is None:
            evidence = current_evidence()
            before = len(evidence.files) if evidence is not None else 0
            try:
                self._control = self.shared(require_token=False)
            except CouldNotCheck as exc:
                self._control_problem = str(exc)
                self._control_files = list(evidence.files[before:]) if evidence is not None else []
        evidence = current_evidence()
        if evidence is not None and self._control is not None and self._control is self._shared:
            evidence.inherit(self._shared_evidence)  # every verdict that leans on the control shows it
        return self._control, self._control_problem

    def launch(self, *, fresh_sign_in: bool = False, **kwargs: Any) -> LaunchResult:
        """Run one launch; a recipe step that cannot proceed makes the check *broken*, with its screenshot.

        A negative launch (``tolerant=True``) never raises for a step: its ``outcome`` says what the server was seen
        to decide, or ``inconclusive`` with ``why`` (the checks turn that into *could not check*).
        ``fresh_sign_in``: a new browser context and the password typed, for checks of the sign-in itself; otherwise
        the member's identity-provider session is reused when one is kept (see :meth:`sign_in_plan`)."""
        member = kwargs.get("member", "primary")
        if member == "primary" and not fresh_sign_in and not self._making_shared and self._shared is None \
                and not self.browser.has_session(member):
            self.control()  # the positive control signs in first; this launch then reuses its session
        spec = self.spec(**kwargs)
        spec = replace(spec, **self.sign_in_plan(member, fresh=fresh_sign_in))
        if fresh_sign_in and "consent" in self.prompt_values():  # the consent page shown, even if remembered
            spec = replace(spec, request_overrides={"prompt": "consent", **spec.request_overrides})
        control: LaunchResult | None = None
        control_problem: str | None = None
        evidence = current_evidence()
        if spec.negative:
            control, control_problem = self.control()
            if control_problem and evidence is not None:
                evidence.files.extend(f for f in self._control_files if f not in evidence.files)
            if control is not None:
                spec = replace(spec, control_pages=control_pages(control, spec))
        folder = self.artifacts / spec.name
        folder.mkdir(parents=True, exist_ok=True)
        try:
            result = run_launch(spec, self.http, self.browser, folder, control=control,
                                control_problem=control_problem)
        except LoginStepError as exc:
            if isinstance(exc, SignInBlocked):  # the payer stopped the sign-in: name whose and why
                exc.args = (f"member '{kwargs.get('member', 'primary')}' ({exc.kind}): {exc.args[0]}",)
            if exc.index > _last_sign_in_step(spec):  # the password went out before the step that broke
                self._signed_in()
            if evidence is not None and exc.screenshot:
                evidence.files.append((f"login step {exc.index} failed", Path(exc.screenshot)))
            if evidence is not None and exc.trace:
                evidence.files.append(("playwright trace", Path(exc.trace)))
            raise CouldNotCheck(str(exc)) from None
        if result.browser.redirected and result.browser.error:
            # its wording is judged once per run, by the check that reads them all
            denial = kwargs.get("scenario") == "deny"
            refusals.note_format(refusals.record_error_redirect(
                spec.authorization_endpoint, result.browser.error,
                refusals.error_redirect("access_denied", requirement="SMART-AUTHZ-08") if denial else refusals.error_redirect()),
                "the error redirect")
        if result.browser.password_submitted:
            self._signed_in()
        if result.code:
            redact.register_secret(result.code)
        if result.token is not None:
            redact.register_secret(result.token.access_token, result.token.refresh_token, result.token.id_token)
        if evidence is not None:
            for shot in result.screenshots:
                evidence.files.append((f"{spec.name}: {shot.title or shot.url}", shot.path))
            if result.browser.trace_path:
                evidence.files.append((f"{spec.name}: playwright trace", result.browser.trace_path))
            how = ("signed in with a password" if result.browser.password_submitted else
                   "the identity provider's session reused (no sign-in)" if result.browser.session_reused else
                   "no password typed")
            evidence.notes.append(f"{spec.name}: browser {result.browser_seconds:.2f}s, TLS mode "
                                  f"{result.browser.tls_mode}, {how}, steps {', '.join(result.browser.steps_run)}; "
                                  f"outcome: {result.outcome} ({result.why})")
        return result

    def consent_not_shown(self, result: LaunchResult) -> str | None:
        """Why a launch that needed the consent page (deny, untick) could not use it, or None. Its consent steps were
        skipped because the code came back first, while the shared launch of the same member and client showed the
        page: a consent the server remembers from an earlier approval (OpenID Connect Core §3.1.2.4), which the harness
        can ask to see again only with prompt=consent, not advertised here. When the shared launch saw no consent page
        either, None: the verdict on the launch stands (a server that never asks)."""
        captured = "redirect already captured"
        if not any(captured in step for step in result.browser.steps_skipped):
            return None
        control, _problem = self.control()
        if control is None or control.outcome is not LaunchOutcome.TOKENS or not self.recipe.consent.get("approve") \
                or any(captured in step for step in control.browser.steps_skipped):
            return None
        asked = "prompt=consent was sent and" if "consent" in self.prompt_values() else \
            "the server does not advertise prompt=consent (prompt_values_supported), so the harness cannot ask for it;"
        return (f"the consent page did not show: the code came back before the consent steps could run, while the "
                f"shared launch of the same member and client ({control.spec.name}) showed it. The server seems to "
                f"remember the member's consent; {asked} the page was not shown. Fix: clear the test member's "
                "remembered consent for this client before the run, or honour and advertise prompt=consent")

    def prompt_values(self) -> frozenset[str]:
        """The OpenID Connect ``prompt`` values the server says it honours (``prompt_values_supported``, OpenID Connect
        Prompt Create 1.0 §4.1): the SMART configuration's, else the openid-configuration's at the advertised issuer.
        Read once. A value is never sent unadvertised: some servers refuse a prompt value they do not know."""
        if self._prompt_values is None:
            values = self.config.get("prompt_values_supported")
            if not isinstance(values, list):
                values = self._openid_prompt_values()
            self._prompt_values = frozenset(v for v in values if isinstance(v, str))
        return self._prompt_values

    def _openid_prompt_values(self) -> list[Any]:
        """``prompt_values_supported`` of the openid-configuration, or []; the harness's bookkeeping, so its exchange
        stays out of the running check's evidence."""
        issuer = self.config.get("issuer")
        if not isinstance(issuer, str) or not issuer.startswith("https://"):
            return []
        evidence = current_evidence()
        mark = len(evidence.exchanges) if evidence is not None else 0
        try:
            document = fetch_json(self.http, openid_configuration_url(issuer))
        except httpx.HTTPError:
            return []
        finally:
            if evidence is not None:
                del evidence.exchanges[mark:]
        values = document.json.get("prompt_values_supported") if document.ok else None
        return values if isinstance(values, list) else []

    def sign_in_plan(self, member: str, *, fresh: bool) -> dict[str, Any]:
        """How a launch signs in: reuse the member's identity-provider session when one is kept and the check did
        not ask for a fresh sign-in; a password only within ``login.max_sign_ins``. Beyond the cap a launch that
        must type a password is could-not-check naming the cap; one that reuses the session may go on, but stops
        if the server shows the sign-in page anyway."""
        reuse = not fresh and self.browser.has_session(member)
        if fresh and self.minimal_sign_ins and self.browser.has_session(member) and not self._making_shared:
            not_applicable("production profile: the sign-in budget is at its minimum (one password sign-in per "
                           f"member), and this check needs a fresh sign-in of members.{member}")
        refusal = ""
        cap = self.max_sign_ins
        if cap is not None and self.sign_ins >= cap:
            refusal = (f"the sign-in budget is spent: {self.sign_ins} password sign-in(s) made on this target, "
                       f"login.max_sign_ins is {cap} ({self.target.source}); raise it to run this check")
            if not reuse:
                raise CouldNotCheck(refusal + (" (it needs a fresh sign-in)" if fresh else
                                               f" (no session of members.{member} to reuse)"))
        return {"session_key": member, "reuse_session": reuse, "sign_in_steps": len(self.recipe.steps),
                "sign_in_refusal": refusal}

    def _signed_in(self) -> None:
        self.sign_ins += 1
        tally.add(self.target.name, tally.SIGN_INS)

    def shared(self, *, require_token: bool = True) -> LaunchResult:
        """The full-scope launch of the primary member, reused by checks that only need its token.

        No check changes it (revoking, replaying or refreshing checks make their own: :meth:`fresh_grant`), yet a
        conformant server may still end it: tokens expire, and revoking one refresh token may revoke every grant the
        member gave the client. So it is checked before each test uses it (introspection when offered, else a read of
        the member's own Patient); a grant found invalid is replaced by a new launch, once, and the test's evidence
        says so. A later check must never fail for what an earlier one did."""
        evidence = current_evidence()
        if self._shared is None:
            self._renew_shared(None)
        elif self._shared.token is not None and (evidence is None or evidence is not self._shared_checked_in):
            reason = self._shared_invalid()
            if reason:
                self._renew_shared(reason)
        self._shared_checked_in = evidence
        if evidence is not None:
            evidence.inherit(self._shared_evidence)
        assert self._shared is not None
        if require_token and self._shared.token is None:
            raise CouldNotCheck("the shared launch produced no token: " + "; ".join(self._shared.problems)
                                + " (the standalone launch check reports why)")
        return self._shared

    def shared_launch(self) -> SharedLaunch:
        """A read-only handle on the shared launch for the ``launch`` fixture: each test that reads it gets the
        launch as checked for that test (see :meth:`shared`)."""
        self.shared()
        return SharedLaunch(self)

    def fresh_grant(self, why: str, **kwargs: Any) -> LaunchResult:
        """A launch of the check's own, for checks that revoke, replay or refresh: they must not touch the shared
        grant. No token is could-not-check, naming the check's need."""
        result = self.launch(**kwargs)
        if result.token is None:
            raise CouldNotCheck(f"the launch for {why} produced no token: " + "; ".join(result.problems))
        return result

    def _renew_shared(self, reason: str | None) -> None:
        old = self._shared.spec.name if self._shared is not None else None
        self._shared_evidence = Evidence()
        try:
            with collecting(self._shared_evidence):  # fresh: it is the sign-in whose pages the checks judge
                self._making_shared = True
                try:
                    self._shared = self.launch(fresh_sign_in=True)
                finally:
                    self._making_shared = False
        finally:  # the test that made it sees it too, also when it failed (screenshot of the step that broke)
            outer = current_evidence()
            if outer is not None:
                outer.inherit(self._shared_evidence)
        self._shared_at = time.monotonic()
        evidence = current_evidence()
        if reason and evidence is not None:
            evidence.notes.append(f"shared launch {old} was no longer valid ({reason}); it was replaced, once, by "
                                  f"the new shared launch {self._shared.spec.name}")
        if self._shared.token is not None and self._grant_check_trusted:
            problem = self._grant_check(self._shared.token)
            if problem:  # a brand-new token fails the check: the check says nothing about this server's tokens
                self._grant_check_trusted = False
                if evidence is not None:
                    evidence.notes.append(f"the shared grant cannot be checked on this target ({problem} for a "
                                          "token just issued); it is renewed only before it expires")

    def _shared_invalid(self) -> str | None:
        """Why the shared grant can no longer be used, or None."""
        assert self._shared is not None and self._shared.token is not None
        lifetime = self._shared.token.expires_in
        if lifetime:
            left = lifetime - (time.monotonic() - self._shared_at)
            if left < min(SHARED_RENEW_MARGIN_S, lifetime / 2):
                return f"its access token expires in {max(left, 0):.0f}s (expires_in {lifetime})"
        return self._grant_check(self._shared.token) if self._grant_check_trusted else None

    def _grant_check(self, token: TokenResponse) -> str | None:
        """Is the grant still live? Introspection when the target offers it, else an authorized read of the member's
        own Patient. Returns the problem seen, or None (also when the answer says nothing either way). The exchanges
        stay out of the test's evidence unless they found a problem: they are the harness's bookkeeping."""
        evidence = current_evidence()
        mark = len(evidence.exchanges) if evidence is not None else 0
        problem = None
        endpoint = self.config.get("introspection_endpoint")
        verdict: bool | None = None
        if isinstance(endpoint, str) and token.access_token:
            response = introspect(self.http, endpoint, token=token.access_token, client=credentials(self.target.client))
            try:
                body = response.json()
            except ValueError:
                body = None
            if response.status_code == 200 and isinstance(body, dict) and isinstance(body.get("active"), bool):
                verdict = body["active"]
                problem = None if verdict else "introspection: active false"
        if verdict is None and token.access_token:
            patient = token.patient or self.target.member.patient_id
            reply = call(self.http, "GET", f"{self.target.fhir_base_url}/Patient/{patient}", token=token.access_token)
            if reply.status in (401, *self.target.unauthorized_statuses) and reply.status != 200:
                problem = f"GET Patient/{patient}: HTTP {reply.status}"
        if problem is None and evidence is not None:
            del evidence.exchanges[mark:]
        return problem


def _last_sign_in_step(spec: LaunchSpec) -> int:
    """The 1-based number of the last required sign-in step before any one-time code: after it, the password has
    been sent (none: past the end, so no step error counts as a sign-in)."""
    required = [n for n, step in enumerate(spec.steps[:spec.sign_in_steps], start=1)
                if not step.optional and step.action != "totp"]
    return required[-1] if required else len(spec.steps) + 1


class SharedLaunch:
    """Read-only view of the launcher's shared launch: attributes come from the launch as checked for the running
    test, so a test never sees a grant an earlier test (or the server's expiry) ended, nor a half-renewed one."""

    __slots__ = ("_launcher",)

    def __init__(self, launcher: Launcher) -> None:
        object.__setattr__(self, "_launcher", launcher)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._launcher.shared(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("the shared launch is read-only; make a launch of your own (launcher.fresh_grant)")
