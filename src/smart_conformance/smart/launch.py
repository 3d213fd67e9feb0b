"""One SMART standalone launch, end to end: request → browser sign-in and consent → redirect → token exchange.

Nothing is asserted here. State mismatches, missing codes, error redirects and token errors are all returned in the
:class:`LaunchResult`, for the checks to judge and explain.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from smart_conformance.browser import AuthorizationResult, BrowserSession, Screenshot, Step
from smart_conformance.smart.authorize import AuthorizationRequest, new_nonce, new_state
from smart_conformance.smart.pkce import Pkce, new_pkce
from smart_conformance.smart.token import ClientCredentials, TokenResponse, TokenResponseError, exchange_code


def _identity(value: str) -> str:
    return value


@dataclass(frozen=True)
class LaunchSpec:
    """What to launch. Defaults are a conformant client; the override fields make negative tests one-liners.

    ``pkce``: True (S256), "plain", False (no challenge) or a ready :class:`Pkce`.
    ``request_overrides``: parameter → value, or None to omit it (e.g. ``{"aud": "https://evil.example"}``).
    ``token_overrides``: the same for the token request (e.g. ``{"code_verifier": "wrong"}``).
    """

    authorization_endpoint: str
    token_endpoint: str
    fhir_base_url: str
    client: ClientCredentials
    redirect_uri: str
    scope: str
    steps: Sequence[Step] = ()
    values: Mapping[str, str] = field(default_factory=dict, repr=False)
    use_post: bool = False
    pkce: bool | str | Pkce = True
    nonce: bool = True
    state: str | None = None
    request_overrides: Mapping[str, str | None] = field(default_factory=dict)
    customize: Callable[[AuthorizationRequest], AuthorizationRequest] | None = None
    expect_redirect: bool = True
    exchange: bool = True
    token_overrides: Mapping[str, str | None] = field(default_factory=dict)
    keep_trace: bool = False
    step_timeout_ms: int | None = None
    redact_url: Callable[[str], str] = _identity
    redact_text: Callable[[str], str] = _identity
    name: str = "launch"


@dataclass
class LaunchResult:
    spec: LaunchSpec = field(repr=False)
    request: AuthorizationRequest
    authorization_url: str  # GET: the URL opened; POST: the endpoint the form went to
    browser: AuthorizationResult
    code_verifier: str | None = field(repr=False)
    nonce: str | None
    state: str | None
    token_response: httpx.Response | None = field(default=None, repr=False)
    token: TokenResponse | None = None
    token_parse_error: str | None = None
    browser_seconds: float = 0.0
    token_seconds: float | None = None

    @property
    def screenshots(self) -> list[Screenshot]:
        return self.browser.screenshots

    @property
    def code(self) -> str | None:
        return self.browser.code

    @property
    def returned_state(self) -> str | None:
        return self.browser.state

    @property
    def state_matches(self) -> bool:
        return self.state is not None and self.browser.state == self.state

    @property
    def problems(self) -> list[str]:
        """What went wrong, in words, for a check's failure message (no secrets: no code, no tokens)."""
        out: list[str] = []
        b = self.browser
        if self.spec.expect_redirect and not b.redirected:
            out.append(f"the browser never reached the redirect_uri; it stopped on {b.page_url} ({b.title!r})")
        if b.redirected:
            if b.error:
                out.append(f"authorization error redirect: error={b.error!r}"
                           + (f" error_description={b.error_description!r}" if b.error_description else ""))
            elif not b.code:
                out.append("the redirect carries no code")
            if self.state is not None and b.state != self.state:
                out.append(f"state mismatch: sent {self.state!r}, got {b.state!r}")
        if self.token_response is not None and self.token_response.status_code != 200:
            out.append(f"token request answered HTTP {self.token_response.status_code}")
        if self.token_parse_error:
            out.append(self.token_parse_error)
        return out


def _pkce(setting: bool | str | Pkce) -> Pkce | None:
    if isinstance(setting, Pkce):
        return setting
    if setting is True or setting == "S256":
        return new_pkce()
    if setting == "plain":
        return new_pkce(method="plain")
    if setting is False or setting is None:
        return None
    raise ValueError(f"pkce must be True, False, 'S256', 'plain' or a Pkce, not {setting!r}")


def build_request(spec: LaunchSpec) -> tuple[AuthorizationRequest, Pkce | None]:
    pair = _pkce(spec.pkce)
    request = AuthorizationRequest(
        client_id=spec.client.client_id, redirect_uri=spec.redirect_uri, scope=spec.scope,
        state=spec.state if spec.state is not None else new_state(), aud=spec.fhir_base_url,
        code_challenge=pair.challenge if pair else None, code_challenge_method=pair.method if pair else None,
        nonce=new_nonce() if spec.nonce else None)
    overrides = dict(spec.request_overrides)
    if overrides:
        request = request.but(omit=[k for k, v in overrides.items() if v is None],
                              **{k: v for k, v in overrides.items() if v is not None})
    if spec.customize is not None:
        request = spec.customize(request)
    return request, pair


def run_launch(spec: LaunchSpec, http: httpx.Client, browser: BrowserSession,
               artifacts_dir: Path | str) -> LaunchResult:
    """Drive one launch. Browser problems a recipe can't get past raise LoginStepError; all else is returned."""
    request, pair = build_request(spec)
    sent = request.to_form()
    values = {"scope": spec.scope, **spec.values}
    secrets = [spec.client.client_secret, pair.verifier if pair else None]
    if spec.use_post:
        url = spec.authorization_endpoint
        outcome = browser.authorize(url, method="POST", form=sent, redirect_uri=spec.redirect_uri,
                                    steps=spec.steps, values=values, artifacts_dir=artifacts_dir,
                                    expect_redirect=spec.expect_redirect, keep_trace=spec.keep_trace,
                                    step_timeout_ms=spec.step_timeout_ms, redact_url=spec.redact_url,
                                    redact_text=spec.redact_text, secrets=secrets, name=spec.name)
    else:
        url = request.to_url(spec.authorization_endpoint)
        outcome = browser.authorize(url, redirect_uri=spec.redirect_uri, steps=spec.steps, values=values,
                                    artifacts_dir=artifacts_dir, expect_redirect=spec.expect_redirect,
                                    keep_trace=spec.keep_trace, step_timeout_ms=spec.step_timeout_ms,
                                    redact_url=spec.redact_url, redact_text=spec.redact_text, secrets=secrets,
                                    name=spec.name)
    result = LaunchResult(spec=spec, request=request, authorization_url=spec.redact_url(url), browser=outcome,
                          code_verifier=pair.verifier if pair else None, nonce=sent.get("nonce"),
                          state=sent.get("state"), browser_seconds=outcome.seconds)
    if spec.exchange and outcome.code:
        started = time.perf_counter()
        response = exchange_code(http, spec.token_endpoint, code=outcome.code,
                                 redirect_uri=sent.get("redirect_uri", spec.redirect_uri),
                                 code_verifier=result.code_verifier, client=spec.client,
                                 extra=spec.token_overrides)
        result.token_seconds = time.perf_counter() - started
        result.token_response = response
        if response.status_code == 200:
            try:
                result.token = TokenResponse.parse(response)
            except TokenResponseError as exc:
                result.token_parse_error = str(exc)
    return result
