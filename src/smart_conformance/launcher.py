"""Launches for the suites: a target's YAML turned into SMART standalone launches, with their evidence kept.

One successful launch per target and worker is shared by every check that only needs a token; scenarios that need
a launch of their own (deny, untick, PKCE negatives…) ask the :class:`Launcher` for one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from smart_conformance import redact
from smart_conformance.browser import BrowserSession, LoginStepError, RecipeError, compose_steps, parse_recipe
from smart_conformance.checks import CouldNotCheck
from smart_conformance.config import Target
from smart_conformance.http import RecordingClient, current_evidence
from smart_conformance.smart.launch import LaunchResult, LaunchSpec, run_launch
from smart_conformance.smart.token import ClientCredentials


TOLERANT_STEP_MS = 1500


@dataclass
class RefreshChain:
    """The newest refresh token of one grant: servers may rotate refresh tokens on every use (SMART-REFRESH-05)."""

    refresh_token: str
    scope: str

    def advance(self, body: Any) -> None:
        """Follow a rotated refresh token so later checks use the live one."""
        if isinstance(body, dict) and isinstance(body.get("refresh_token"), str):
            self.refresh_token = body["refresh_token"]


def credentials(client: Any) -> ClientCredentials:
    return ClientCredentials(client_id=client.client_id, client_secret=client.client_secret,
                             auth_method=client.auth_method)


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
        self.config = smart_config
        self.artifacts = artifacts
        self.keep_traces = keep_traces
        self._shared: LaunchResult | None = None
        self._count = 0

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
        """A launch spec from the target's config. ``tolerant``: for requests the server should refuse, the recipe's
        steps become optional (short timeout), so an error page ends the launch instead of breaking the check, while
        a server that wrongly accepts the request is still driven through sign-in and consent."""
        if member not in self.target.members:
            raise CouldNotCheck(f"target '{self.target.name}' names no '{member}' member (members.{member})")
        who = self.target.members[member]
        chosen = client or self.target.client
        try:
            steps = compose_steps(self.recipe, scenario)
        except RecipeError as exc:
            raise CouldNotCheck(f"{self.target.source}: {exc}") from None
        if tolerant:
            steps = [replace(step, optional=True, timeout_ms=min(step.timeout_ms or TOLERANT_STEP_MS, TOLERANT_STEP_MS))
                     for step in steps]
            overrides.setdefault("expect_redirect", False)
        self._count += 1
        spec = LaunchSpec(authorization_endpoint=self.authorization_endpoint, token_endpoint=self.token_endpoint,
                          fhir_base_url=self.target.fhir_base_url, client=credentials(chosen),
                          redirect_uri=chosen.redirect_uri, scope=scope or self.target.scopes["full"], steps=steps,
                          values=who.values("member"), keep_trace=self.keep_traces,
                          step_timeout_ms=self.recipe.step_timeout_ms, redact_url=redact.url,
                          redact_text=redact.text, name=f"launch-{self._count:02d}")
        return replace(spec, **overrides) if overrides else spec

    def launch(self, **kwargs: Any) -> LaunchResult:
        """Run one launch; a recipe step that cannot proceed makes the check *broken*, with its screenshot."""
        spec = self.spec(**kwargs)
        evidence = current_evidence()
        folder = self.artifacts / spec.name
        folder.mkdir(parents=True, exist_ok=True)
        try:
            result = run_launch(spec, self.http, self.browser, folder)
        except LoginStepError as exc:
            if evidence is not None and exc.screenshot:
                evidence.files.append((f"login step {exc.index} failed", Path(exc.screenshot)))
            if evidence is not None and exc.trace:
                evidence.files.append(("playwright trace", Path(exc.trace)))
            raise CouldNotCheck(str(exc)) from None
        if result.code:
            redact.register_secret(result.code)
        if result.token is not None:
            redact.register_secret(result.token.access_token, result.token.refresh_token, result.token.id_token)
        if evidence is not None:
            for shot in result.screenshots:
                evidence.files.append((f"{spec.name}: {shot.title or shot.url}", shot.path))
            if result.browser.trace_path:
                evidence.files.append((f"{spec.name}: playwright trace", result.browser.trace_path))
            evidence.notes.append(f"{spec.name}: browser {result.browser_seconds:.2f}s, TLS mode "
                                  f"{result.browser.tls_mode}, steps {', '.join(result.browser.steps_run)}")
        return result

    def shared(self, *, require_token: bool = True) -> LaunchResult:
        """The full-scope launch of the primary member, made once and reused by checks that only need its token."""
        if self._shared is None:
            self._shared = self.launch()
        if require_token and self._shared.token is None:
            raise CouldNotCheck("the shared launch produced no token: " + "; ".join(self._shared.problems)
                                + " (see test_standalone_launch_succeeds)")
        return self._shared
