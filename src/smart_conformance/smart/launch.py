"""One SMART standalone launch, end to end: request → browser sign-in and consent → redirect → token exchange.

Nothing is asserted here. State mismatches, missing codes, error redirects and token errors are all returned in the
:class:`LaunchResult`, for the checks to judge and explain. Every launch ends as exactly one :class:`LaunchOutcome`
(``result.outcome``, with a one-line ``result.why``): a negative check passes only on a refusal the harness saw the
server make, never because the recipe stopped matching the page.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import httpx

from smart_conformance import redact
from smart_conformance.browser import (
    AuthorizationResult,
    BrowserSession,
    Screenshot,
    Step,
)
from smart_conformance.http import Exchange, exchange_of, rate_limit_note
from smart_conformance.oauth import not_a_decision
from smart_conformance.smart.authorize import AuthorizationRequest, new_nonce, new_state
from smart_conformance.smart.pkce import Pkce, new_pkce
from smart_conformance.smart.token import (
    ClientCredentials,
    TokenResponse,
    TokenResponseError,
    exchange_code,
)


def _identity(value: str) -> str:
    return value


class LaunchOutcome(str, Enum):
    """How a launch ended. Exactly one per launch; the refusals name where the server said no."""

    TOKENS = "tokens issued"
    CODE = "code issued"  # the launch was asked not to exchange its code (exchange=False)
    REFUSED_AT_AUTHORIZE = "refused at authorize"
    REFUSED_AT_SIGN_IN = "refused at sign-in"
    REFUSED_AT_CONSENT = "refused at consent"
    REFUSED_AT_TOKEN = "refused at the token endpoint"
    INCONCLUSIVE = "inconclusive"

    @property
    def refused(self) -> bool:
        return self in REFUSALS

    @property
    def authorized(self) -> bool:
        """The server let the request through: a code (or tokens) came back."""
        return self in (LaunchOutcome.TOKENS, LaunchOutcome.CODE)

    def __str__(self) -> str:
        return self.value


REFUSALS = frozenset({LaunchOutcome.REFUSED_AT_AUTHORIZE, LaunchOutcome.REFUSED_AT_SIGN_IN,
                      LaunchOutcome.REFUSED_AT_CONSENT, LaunchOutcome.REFUSED_AT_TOKEN})


@dataclass(frozen=True)
class LaunchSpec:
    """What to launch. Defaults are a conformant client; the override fields make negative tests one-liners.

    ``pkce``: True (S256), "plain", False (no challenge) or a ready :class:`Pkce`.
    ``request_overrides``: parameter → value, or None to omit it (e.g. ``{"aud": "https://evil.example"}``).
    ``token_overrides``: the same for the token request (e.g. ``{"code_verifier": "wrong"}``).
    ``nonce``: sent only when ``openid`` is requested (OIDC Core §3.1.2.1); a nonce without it is a parameter a
    conformant OpenID provider may refuse with invalid_request.
    ``negative``: the server is expected to refuse; a recipe step that does not match ends the launch (judged
    against the positive control) instead of raising :class:`LoginStepError`.
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
    negative: bool = False
    control_pages: Sequence[str | None] | None = None  # where the positive control ran each step (origin + path)
    # Single sign-on (BrowserSession.authorize): whose identity-provider session to keep, whether to start from it,
    # how many leading steps are the sign-in, and why no password may be typed (the sign-in budget), if so.
    session_key: str | None = None
    reuse_session: bool = False
    sign_in_steps: int = 0
    sign_in_refusal: str = ""


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
    outcome: LaunchOutcome = LaunchOutcome.INCONCLUSIVE
    why: str = ""

    @property
    def token_exchange(self) -> Exchange | None:
        """The token request and its answer as recorded: the evidence of a check on the token response or on claims
        inside its id_token (None when the launch never reached the token endpoint)."""
        return exchange_of(self.token_response)

    @property
    def seen(self) -> str:
        """The browser part in one redacted line, the evidence of a check on how the authorization went: the request
        (the URL to open in a browser to reproduce it), where the browser ended (the redirect, or the page and its
        status) and the outcome. Never a code, a token or a secret: every part passes through redact."""
        b = self.browser
        method = "POST" if self.spec.use_post else "GET"
        if b.redirected:
            end = f"redirected to {redact.url(b.redirect_url or '')}"
        else:
            status = f"HTTP {b.status} " if b.status is not None else ""
            end = f"stopped on {status}{redact.url(b.document_url or b.page_url)}"
        return redact.text(f"browser {method} {redact.url(self.authorization_url)} → {end} ({self.outcome}: "
                           f"{self.why})")

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
            out.append(f"the browser never reached the redirect_uri ({self.outcome}: {self.why})")
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
        nonce=new_nonce() if spec.nonce and "openid" in spec.scope.split() else None)
    overrides = dict(spec.request_overrides)
    if overrides:
        request = request.but(omit=[k for k, v in overrides.items() if v is None],
                              **{k: v for k, v in overrides.items() if v is not None})
    if spec.customize is not None:
        request = spec.customize(request)
    return request, pair


def run_launch(spec: LaunchSpec, http: httpx.Client, browser: BrowserSession,
               artifacts_dir: Path | str, control: LaunchResult | None = None,
               control_problem: str | None = None) -> LaunchResult:
    """Drive one launch. Browser problems a recipe can't get past raise LoginStepError (on a launch the server should
    accept); all else is returned, with its :class:`LaunchOutcome` judged (against ``control`` for a negative)."""
    request, pair = build_request(spec)
    sent = request.to_form()
    values = {"scope": spec.scope, **spec.values}
    secrets = [spec.client.client_secret, pair.verifier if pair else None]
    common = {
        "redirect_uri": spec.redirect_uri, "steps": spec.steps, "values": values, "artifacts_dir": artifacts_dir,
        "expect_redirect": spec.expect_redirect, "keep_trace": spec.keep_trace, "step_timeout_ms": spec.step_timeout_ms,
        "redact_url": spec.redact_url, "redact_text": spec.redact_text, "secrets": secrets, "name": spec.name,
        "negative": spec.negative, "control_pages": spec.control_pages, "session_key": spec.session_key,
        "reuse_session": spec.reuse_session, "sign_in_steps": spec.sign_in_steps,
        "sign_in_refusal": spec.sign_in_refusal,
    }
    if spec.use_post:
        url = spec.authorization_endpoint
        outcome = browser.authorize(url, method="POST", form=sent, **common)  # type: ignore[arg-type]
    else:
        url = request.to_url(spec.authorization_endpoint)
        outcome = browser.authorize(url, **common)  # type: ignore[arg-type]
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
    result.outcome, result.why = judge(result, control, control_problem=control_problem)
    return result


# ----------------------------------------------------------------------------------------------------------------
# Judging how a launch ended


def step_stage(step: Step) -> str:
    """Which page a recipe step drives: the consent page (``login.consent.*``) or the sign-in."""
    return "consent" if step.where.startswith("login.consent") else "sign-in"


_STAGE_REFUSAL = {"authorize": LaunchOutcome.REFUSED_AT_AUTHORIZE, "sign-in": LaunchOutcome.REFUSED_AT_SIGN_IN,
                  "consent": LaunchOutcome.REFUSED_AT_CONSENT}


def _stage_after(steps: Sequence[Step], done: int) -> str:
    """Where the launch was when ``done`` steps had run: nothing run yet means the authorize answer itself."""
    return "authorize" if done <= 0 or done > len(steps) else step_stage(steps[done - 1])


def control_proves(control: LaunchResult | None, spec: LaunchSpec, number: int) -> bool:
    """The positive control reached tokens and ran step ``number`` (the same step) on its way there."""
    if control is None or control.outcome is not LaunchOutcome.TOKENS:
        return False
    if number < 1 or number > len(spec.steps) or number > len(control.spec.steps):
        return False
    same = control.spec.steps[number - 1].describe() == spec.steps[number - 1].describe()
    pages = control.browser.step_pages
    return same and len(pages) >= number and bool(pages[number - 1])


def _control_note(control: LaunchResult | None, problem: str | None) -> str:
    """Why the positive control cannot vouch for a step, in a clause."""
    if control is None:
        return f"; the positive control launch could not run either ({problem.split('; screenshot')[0]})" \
            if problem else "; no positive control launch to compare with"
    if control.outcome is not LaunchOutcome.TOKENS:
        return f"; the positive control launch did not reach tokens either ({control.outcome}: {control.why})"
    return ""


def _observe(result: LaunchResult, control: LaunchResult | None,
             control_problem: str | None = None) -> tuple[LaunchOutcome, str]:
    """What the harness saw the server do, without yet asking whether a refusal is backed by a positive control."""
    b, spec = result.browser, result.spec
    steps = list(spec.steps)
    done = b.steps_done
    if b.redirected:
        where = f" (in the redirect's {b.response_in})" if b.response_in else ""
        if b.error:
            consent_ran = any(step_stage(s) == "consent" for s in steps[:done])
            stage = LaunchOutcome.REFUSED_AT_CONSENT if consent_ran else LaunchOutcome.REFUSED_AT_AUTHORIZE
            return stage, f"error redirect error={b.error!r}{where}"
        if b.params.get("access_token") or b.params.get("id_token"):
            return LaunchOutcome.TOKENS, f"the redirect itself carried a token{where}"
        if b.code:
            response = result.token_response
            if not spec.exchange or response is None:
                return LaunchOutcome.CODE, f"the redirect carried a code{where}"
            if response.status_code == 200:
                extra = f", but {result.token_parse_error}" if result.token_parse_error else ""
                return LaunchOutcome.TOKENS, f"the token endpoint answered HTTP 200{extra}"
            if not_a_decision(response.status_code):
                seen = f"the token endpoint answered HTTP {response.status_code}{_oauth_error(response)}"
                return LaunchOutcome.INCONCLUSIVE, f"{seen}: {NOT_A_DECISION}{rate_limit_note(response)}"
            return (LaunchOutcome.REFUSED_AT_TOKEN,
                    f"the token endpoint answered HTTP {response.status_code}{_oauth_error(response)}")
        return LaunchOutcome.INCONCLUSIVE, "redirected to the redirect_uri with neither a code nor an error"
    page = f"{b.page_url} ({b.title!r})" if b.title else b.page_url
    if b.status is not None and b.status >= 400:
        after = "the authorization request" if done == 0 else f"step {done} ({steps[done - 1].describe()})"
        bare = b.page_url.startswith("chrome-error:")  # no body: Chromium showed its own error page
        body = ", empty body" if bare else ""
        shown = (f"{b.document_url} ({b.title!r})" if b.document_url and b.title and not bare
                 else (b.document_url or page))
        seen = f"HTTP {b.status}{body} and no redirect after {after}: {shown}"
        if not_a_decision(b.status):
            return LaunchOutcome.INCONCLUSIVE, f"{seen}: {NOT_A_DECISION}"
        return _STAGE_REFUSAL[_stage_after(steps, done)], seen
    if b.stopped_at is not None:
        number = b.stopped_at
        step = steps[number - 1].describe() if 0 < number <= len(steps) else f"step {number}"
        if b.settled and control_proves(control, spec, number):
            seen = control.browser.step_pages[number - 1] if control else ""
            return (_STAGE_REFUSAL[_stage_after(steps, number - 1)],
                    (f"step {number} ({step}) did not match on {page}, where the positive control found it "
                    f"(on {seen}): the server showed another page instead"))
        return (LaunchOutcome.INCONCLUSIVE,
                (f"step {number} ({step}) did not match on {page} ({b.stop_reason}) before the server's decision "
                f"could be observed{_control_note(control, control_problem)}"))
    if done == len(steps) and steps and b.settled and control is not None \
            and control.outcome is LaunchOutcome.TOKENS and control_proves(control, spec, len(steps)) \
            and b.page_key and b.page_key != control.browser.step_pages[len(steps) - 1]:
        return (_STAGE_REFUSAL[_stage_after(steps, done)],
                (f"every step ran but, where the positive control was redirected to the app, the server showed "
                f"{page}"))
    return LaunchOutcome.INCONCLUSIVE, f"no redirect to the redirect_uri; the browser stopped on {page}"


NOT_A_DECISION = "a server error or a rate limit, not a refusal the server decided"


def _oauth_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return f" error={body['error']!r}"
    return ""


def judge(result: LaunchResult, control: LaunchResult | None = None, *,
          control_problem: str | None = None) -> tuple[LaunchOutcome, str]:
    """The launch's outcome and why, in one line. On a negative launch a refusal counts only when the positive
    control (the same recipe, valid input, same run) reached tokens; otherwise it is inconclusive."""
    outcome, why = _observe(result, control, control_problem)
    if result.spec.negative and outcome.refused:
        if control is None:
            return LaunchOutcome.INCONCLUSIVE, (f"{why}; but the positive control launch (same recipe, valid input) "
                                                f"could not run: {control_problem}" if control_problem else
                                                f"{why}; but no positive control launch backs it")
        if control.outcome is not LaunchOutcome.TOKENS:
            return (LaunchOutcome.INCONCLUSIVE, (f"{why}; but the positive control launch (same recipe, valid "
                    f"input) did not reach tokens either ({control.outcome}: {control.why})"))
    return outcome, why
