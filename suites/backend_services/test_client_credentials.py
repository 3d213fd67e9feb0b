"""The client_credentials token: what a backend client gets for a good assertion

SMART App Launch 2.2 §Backend Services, Issue Access Token and Evaluate Requested Access: a valid request gets a JSON
token response with access_token, token_type bearer, expires_in and scope; the token is short-lived (expires_in
SHOULD NOT exceed 300), limited to what was requested, never beyond what the client is pre-authorized for, and comes
without a refresh token.
"""

from __future__ import annotations

import pytest

from smart_conformance.checks import describe, expect, expectations, not_applicable
from smart_conformance.config import Target
from smart_conformance.oauth import (
    covered_by,
    issued_tokens,
    oauth_error,
    scope_set,
    wider_than,
)
from smart_conformance.reference.variants import BACKEND_TOKENS_ONE_HOUR
from smart_conformance.smart.backend import (
    BackendSession,
    Grant,
    has_resources,
    must_have_token,
    outside_types,
    supported_types,
    system_search,
)
from smart_conformance.smart.discovery import Document
from smart_conformance.testplan import Fault, proves, warns_under

RECOMMENDED_MAX_TTL = 300


@pytest.mark.requirement("BACKEND-05")
@proves(Fault.BACKEND_TOKEN_NO_EXPIRES_IN)
def test_backend_token_issued(backend: BackendSession, backend_grant: Grant) -> None:
    """A good assertion with the registered system scopes gets HTTP 200 and a token response with access_token,
    token_type bearer, a positive integer expires_in and scope."""
    response, body = backend_grant.response, backend_grant.body
    exchange = backend.http.exchange_for(response)
    err = oauth_error(response)
    expect(response.status_code == 200 and backend_grant.token is not None,
           expected="HTTP 200 with an access_token for a good assertion and the client's registered scopes",
           actual=f"HTTP {err.status} error={err.error!r} {err.description or ''}".strip(), exchange=exchange)
    missing = [name for name in ("token_type", "expires_in", "scope") if name not in body]
    ttl = body.get("expires_in")
    with expectations() as check:  # the members are independent: every wrong one is reported
        check.expect(not missing, expected="access_token, token_type, expires_in and scope in the token response",
                     actual=f"missing: {', '.join(missing)}", exchange=exchange)
        check.expect("token_type" not in body or str(body["token_type"]).lower() == "bearer",
                     expected="token_type bearer",
                     actual=f"token_type = {describe(body.get('token_type'))}", exchange=exchange)
        check.expect("expires_in" not in body or (isinstance(ttl, int) and not isinstance(ttl, bool) and ttl > 0),
                     expected="expires_in: a positive integer number of seconds",
                     actual=f"expires_in = {describe(ttl)}", exchange=exchange)


@pytest.mark.requirement("BACKEND-06")
@proves(Fault.BACKEND_TOKEN_LONG_LIVED)
# expires_in "SHOULD NOT exceed 300": one-hour backend tokens are allowed and earn the warning.
@warns_under(BACKEND_TOKENS_ONE_HOUR)
def test_backend_token_short_lived(backend: BackendSession, backend_grant: Grant) -> None:
    """expires_in is at most 300 seconds (SHOULD NOT exceed 300: a longer lifetime is a warning)."""
    must_have_token(backend_grant, "no token lifetime to judge")
    ttl = backend_grant.body.get("expires_in")
    if not isinstance(ttl, int) or isinstance(ttl, bool):
        not_applicable("the token response has no integer expires_in (test_backend_token_issued judges that)")
    expect(ttl <= RECOMMENDED_MAX_TTL, expected=f"expires_in <= {RECOMMENDED_MAX_TTL}",
           actual=f"expires_in = {ttl}", exchange=backend.http.exchange_for(backend_grant.response))


@pytest.mark.requirement("BACKEND-07")
@proves(Fault.BACKEND_SCOPE_WIDENED)
def test_backend_token_scope_within_request(backend: BackendSession, backend_grant: Grant) -> None:
    """The granted scope is within the requested scopes (it may be narrower, never wider)."""
    must_have_token(backend_grant, "no granted scope to judge")
    if backend_grant.scope is None:
        not_applicable("the token response names no scope (test_backend_token_issued judges that)")
    extra = wider_than(scope_set(backend_grant.scope), scope_set(backend.scopes))
    expect(not extra, expected=f"granted scopes within the request ({backend.scopes})",
           actual=f"also granted: {' '.join(extra)}", exchange=backend.http.exchange_for(backend_grant.response))


@pytest.mark.requirement("BACKEND-09")
@proves(Fault.BACKEND_REFRESH_TOKEN_ISSUED)
def test_backend_no_refresh_token(backend: BackendSession, backend_grant: Grant) -> None:
    """No refresh_token comes with a backend token (a backend client simply asks again)."""
    must_have_token(backend_grant, "no token response to judge")
    expect("refresh_token" not in backend_grant.body, expected="no refresh_token in the token response",
           actual="a refresh_token was issued", exchange=backend.http.exchange_for(backend_grant.response))


@pytest.mark.requirement("BACKEND-08")
@proves(Fault.BACKEND_SCOPE_NOT_LIMITED, Fault.BACKEND_SCOPE_WIDENED)
def test_backend_scope_outside_registration_not_granted(backend: BackendSession, backend_grant: Grant,
                                                        capability_statement: Document, target: Target) -> None:
    """Asking for the registered scopes plus a system scope for a type the client is not registered for: refused
    (invalid_scope) or narrowed, never widened, and the token does not read that type."""
    must_have_token(backend_grant, "no positive control")
    outside = outside_types(supported_types(capability_statement.json), backend.scopes)
    if not outside:
        not_applicable("every resource type the CapabilityStatement lists is within the client's registered scopes")
    rtype = outside[0]
    extra = f"system/{rtype}.rs"
    grant = backend.good(scope=f"{backend.scopes} {extra}")
    exchange = backend.http.exchange_for(grant.response)
    if grant.token is None:
        err = oauth_error(grant.response)
        expect(not issued_tokens(grant.response) and err.status in (400, 401, 403)
               and err.error in ("invalid_scope", "unauthorized_client", "access_denied", "invalid_request"),
               expected=f"{extra} (outside the registration) refused with an OAuth error, or dropped from the grant",
               actual=f"HTTP {err.status} error={err.error!r}", exchange=exchange)
        backend.control(f"a request for {extra}")
        return
    granted = scope_set(grant.scope) if grant.scope is not None else scope_set(f"{backend.scopes} {extra}")
    expect(not covered_by(f"system/{rtype}.r", granted),
           expected=f"a token without {extra} (the client is not registered for {rtype})",
           actual=f"granted scope: {describe(grant.scope)}" if grant.scope is not None
           else "no scope in the response: by RFC 6749 §5.1 the requested scope, with " + extra, exchange=exchange)
    response = system_search(backend.http, target.fhir_base_url, rtype, grant.token)
    expect(not has_resources(response, rtype),
           expected=f"the token refused for {rtype} (401/403/404) or given no {rtype} data",
           actual=f"HTTP {response.status_code} with {rtype} resources", exchange=backend.http.exchange_for(response))

