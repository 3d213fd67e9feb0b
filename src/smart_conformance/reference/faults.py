"""The fault catalog: named, realistic defects the reference server can switch on.

Each fault is checked at exactly one spot in the server (``ctx.faults.active(Fault.NAME)``), so switching one on
changes one behaviour. Which checks catch a fault is declared on the checks (``@proves`` in ``suites/``) and derived by
``smart_conformance.testplan``; a fault is defined once, as a member of ``Fault``, and says only what it breaks, what
it takes away (``takes_away``: the checks that need that honestly report *could not check*) and which variants its
checks need (``runs_with``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Self

from smart_conformance.reference.variants import MEMBER_CLIENT_PRIVATE_KEY_JWT, ROTATING_REFRESH_TOKENS, TOTP_MFA


class Needs(StrEnum):
    """What a check may need from the target before it can judge anything; a fault can take it away."""

    SMART_CONFIGURATION = "a SMART configuration document served as JSON"
    CAPABILITY_STATEMENT = "a CapabilityStatement readable without a token"
    MEMBER_LAUNCH = "a member launch that reaches tokens (the positive control of every launch negative)"
    SYSTEM_READ = "a system-scoped read that works (the positive control of the refused-type check)"
    BULK_STATUS_URL = "a bulk export kick-off that names its status URL"
    BULK_TOKEN_FLAG = "a bulk manifest that says whether its files need the token"
    AUTHENTICATED_REVOCATION = "an authenticated revocation that revokes (the control of the unauthenticated one)"
    CLIENT_ACCEPTED_CHAIN = "a certificate chain clients accept"
    FHIR_USER_ON_BASE = "a fhirUser under the FHIR base (the only place the harness sends the member's token)"
    AUTHORIZE_DECISION = "an authorization endpoint that decides on a bad request (an error page or redirect, not a 5xx)"
    P2P_QUERIES = "FHIR queries that serve the matched member to the requesting payer (the control of the refusals)"


@dataclass(frozen=True)
class _Spec:
    name: str
    area: str
    breaks: tuple[str, ...]
    summary: str
    takes_away: tuple[Needs, ...] = ()
    runs_with: tuple[str, ...] = ()  # variants the fault matrix switches on with it (its checks need them to apply)


def _f(name: str, area: str, breaks: tuple[str, ...], summary: str, *, takes_away: tuple[Needs, ...] = (),
       runs_with: tuple[str, ...] = ()) -> _Spec:
    return _Spec(name, area, breaks, summary, takes_away, runs_with)


class Fault(StrEnum):
    """Every fault, defined once: its name (the constant the server asks about and the suites' ``@proves`` cite), the
    area, the requirement ids it breaks, what it does, and optionally what it takes away from other checks
    (``takes_away``) and the variants its checks need on (``runs_with``)."""

    area: str
    breaks: tuple[str, ...]
    summary: str
    takes_away: tuple[Needs, ...]
    runs_with: tuple[str, ...]

    def __new__(cls, spec: _Spec) -> Self:
        member = str.__new__(cls, spec.name)
        member._value_ = spec.name
        member.area, member.breaks, member.summary = spec.area, spec.breaks, spec.summary
        member.takes_away, member.runs_with = spec.takes_away, spec.runs_with
        return member

    # --- discovery ----------------------------------------------------------------------------------------------------
    SMART_CONFIG_MISSING_CAPABILITY = _f("smart-config-missing-capability", "discovery",
        ("CARIN-SEC-04", "SMART-CAP-01"),
        "smart-configuration `capabilities` omits launch-standalone.")
    PKCE_PLAIN_ADVERTISED = _f("pkce-plain-advertised", "discovery", ("SMART-DISC-08",),
        "smart-configuration code_challenge_methods_supported lists plain next to S256.")
    SMART_CONFIG_RELATIVE_URLS = _f("smart-config-relative-urls", "discovery", ("SMART-DISC-03",),
        "smart-configuration endpoint URLs are relative paths (/auth/token) instead of absolute https URLs.")
    SMART_CONFIG_HTML_ON_ACCEPT_HTML = _f("smart-config-html-on-accept-html", "discovery", ("SMART-DISC-02",),
        "smart-configuration answers an HTML page when the request's Accept header prefers text/html.")
    GRANT_TYPES_MISSING = _f("grant-types-missing", "discovery", ("SMART-DISC-07",),
        "smart-configuration has no grant_types_supported.")
    SCOPES_SUPPORTED_MISSING = _f("scopes-supported-missing", "discovery", ("SMART-DISC-11", "CARIN-SEC-02"),
        "smart-configuration has no scopes_supported.")
    ISSUER_MISMATCH = _f("issuer-mismatch", "discovery", ("OIDC-DISC-01", "SMART-DISC-09"),
        "openid-configuration `issuer` has a trailing slash, so it differs from the issuer URL it is served under, "
        "from smart-configuration's issuer and from id_token iss.")
    JWKS_MISSING_KID = _f("jwks-missing-kid", "discovery", ("OIDC-05", "SMART-OIDC-03"),
        "JWKS keys (two: the active one and the next rotation key) carry no kid, so a verifier cannot pick one.")
    JWKS_PUBLISHES_PRIVATE_KEY = _f("jwks-publishes-private-key", "discovery", ("OIDC-DISC-03",),
        "the JWKS also publishes a leftover symmetric HS256 key (kty oct, kid hs-1) with its secret k; the RSA keys "
        "stay public.")
    CAPABILITY_OAUTH_URIS_MISMATCH = _f("capability-oauth-uris-mismatch", "discovery", ("SMART-DISC-15",),
        "CapabilityStatement oauth-uris `token` points at a stale path (/auth/oauth2/token) that answers 404.")
    METADATA_REQUIRES_TOKEN = _f("metadata-requires-token", "discovery", ("SMART-DISC-15", "SAFETY-09"),
        "GET /fhir/metadata demands a bearer token (401) instead of being public.",
        takes_away=(Needs.CAPABILITY_STATEMENT,))
    CAPABILITIES_AS_STRING = _f("capabilities-as-string", "discovery", ("SMART-DISC-04",),
        "smart-configuration `capabilities` is one space-separated string instead of an array.")
    AUTHORIZATION_ENDPOINT_MISSING = _f("authorization-endpoint-missing", "discovery", ("SMART-DISC-06",),
        "smart-configuration advertises launch-standalone but has no authorization_endpoint.")
    SSO_WITHOUT_JWKS_URI = _f("sso-without-jwks-uri", "discovery", ("SMART-DISC-09",),
        "smart-configuration advertises sso-openid-connect but omits jwks_uri.")
    RESPONSE_TYPES_MISSING = _f("response-types-missing", "discovery", ("SMART-DISC-12",),
        "smart-configuration has no response_types_supported.")
    IMPLICIT_RESPONSE_TYPE_ADVERTISED = _f("implicit-response-type-advertised", "discovery", ("OAUTHBCP-06",),
        "smart-configuration response_types_supported lists token and id_token token next to code (the endpoint "
        "still refuses them).")
    REVOCATION_NOT_ADVERTISED = _f("revocation-not-advertised", "discovery", ("SMART-DISC-14",),
        "smart-configuration omits revocation_endpoint (the endpoint still works).")
    PERMISSION_V1_NOT_ADVERTISED = _f("permission-v1-not-advertised", "discovery", ("SMART-SCOPE-01",),
        "a SMART 2 server that still accepts v1 scopes does not advertise permission-v1.")
    AUTH_METHODS_POST_ONLY = _f("auth-methods-post-only", "discovery", ("SMART-TOKEN-01", "SMART-DISC-10"),
        "token_endpoint_auth_methods_supported lists only client_secret_post for a symmetric confidential server.")
    SMART_CONFIG_REQUIRES_TOKEN = _f("smart-config-requires-token", "discovery", ("SMART-DISC-01", "CARIN-SEC-02"),
        "the well-known SMART configuration answers 401 to requests without a bearer token.",
        takes_away=(Needs.SMART_CONFIGURATION,))
    OPENID_CONFIG_INCOMPLETE = _f("openid-config-incomplete", "discovery", ("OIDC-DISC-01",),
        "openid-configuration omits subject_types_supported.")
    OPENID_CONFIG_NO_RS256 = _f("openid-config-no-rs256", "discovery", ("SMART-OIDC-04",),
        "openid-configuration advertises only ES256 for id_token signing.")
    CAPABILITY_WRONG_FHIR_VERSION = _f("capability-wrong-fhir-version", "discovery", ("FHIR-CAP-02",),
        "the CapabilityStatement declares fhirVersion 4.3.0 on an R4 endpoint.")
    CAPABILITY_NO_SECURITY_SERVICE = _f("capability-no-security-service", "discovery", ("FHIR-CAP-03",),
        "the CapabilityStatement's rest.security has no service coding.")

    # --- authorize ----------------------------------------------------------------------------------------------------
    PKCE_PLAIN_ACCEPTED = _f("pkce-plain-accepted", "authorize", ("SMART-PKCE-02", "RFC7636-01"),
        "authorize accepts code_challenge_method=plain (and a challenge with no method, as plain); the token endpoint "
        "then compares the verifier to the challenge verbatim.")
    PKCE_NOT_REQUIRED = _f("pkce-not-required", "authorize", ("SMART-PKCE-05", "RFC7636-02"),
        "authorize accepts requests without code_challenge; such codes are exchanged without a verifier.")
    REDIRECT_URI_PREFIX_MATCH = _f("redirect-uri-prefix-match", "authorize",
        ("OAUTHBCP-01", "SMART-AUTHZ-03", "RFC6749-01"),
        "redirect_uri is accepted when it merely starts with a registered URI (e.g. .../callback/../evil or "
        "...callback.attacker).")
    UNKNOWN_CLIENT_REDIRECTS = _f("unknown-client-redirects", "authorize", ("RFC6749-01",),
        "an unknown client_id is answered with a redirect (error=unauthorized_client) to the supplied redirect_uri "
        "instead of an error page.")
    STATE_NOT_ECHOED_ON_ERROR = _f("state-not-echoed-on-error", "authorize", ("SMART-AUTHZ-04", "RFC6749-02"),
        "error redirects from authorize/consent leave out the state parameter.")
    STATE_ALTERED = _f("state-altered", "authorize", ("SMART-AUTHZ-04",),
        "the success redirect percent-encodes state twice, so a state holding characters outside A-Z a-z 0-9 -._~ "
        "comes back altered.")
    AUD_NOT_VALIDATED = _f("aud-not-validated", "authorize", ("SMART-AUTHZ-05", "SMART-FHIR-04"),
        "authorize ignores aud/resource; a launch naming a foreign aud gets a token that works on this FHIR server.")
    IMPLICIT_GRANT_ALLOWED = _f("implicit-grant-allowed", "authorize", ("OAUTHBCP-03", "SMART-AUTHZ-02"),
        "response_type=token is accepted: after consent the access token is returned in the redirect fragment.")
    AUTHORIZE_POST_UNSUPPORTED = _f("authorize-post-unsupported", "authorize", ("SMART-AUTHZ-01",),
        "POST to the authorization endpoint answers 405 (only GET works).")
    AUTHORIZATION_RESPONSE_ISS_WRONG = _f("authorization-response-iss-wrong", "authorize", ("RFC9207-01",),
        "the success redirect's iss is the FHIR base URL instead of the issuer, though the metadata advertises "
        "authorization_response_iss_parameter_supported.")

    # --- member pages -------------------------------------------------------------------------------------------------
    LOGIN_NO_CSRF = _f("login-no-csrf", "consent", ("RFC6749-10",),
        "the login and consent form posts are accepted without the CSRF token / browser binding cookie.")
    LOGIN_ACCEPTS_ANY_PASSWORD = _f("login-accepts-any-password", "consent", ("PDEX-SEC-02", "FHIR-SEC-06"),
        "sign-in accepts any password for a known username.")
    CONSENT_SKIPPED = _f("consent-skipped", "consent", ("PDEX-SEC-03", "SAFETY-22"),
        "after sign-in the code is issued at once with every requested scope; no consent page is shown.")
    CONSENT_IGNORES_UNTICKED = _f("consent-ignores-unticked", "consent", ("SMART-AUTHZ-09",),
        "the consent POST grants every requested scope, ignoring which checkboxes the member left ticked.")
    DENY_RETURNS_CODE = _f("deny-returns-code", "consent", ("SMART-AUTHZ-08",),
        "pressing Deny on the consent page still redirects with a code (the decision field is ignored).")
    CONSENT_PAGE_FRAMEABLE = _f("consent-page-frameable", "consent", ("OAUTHBCP-04",),
        "login and consent pages carry neither X-Frame-Options nor CSP frame-ancestors.")
    AUTHORIZE_ERROR_REFLECTS_INPUT = _f("authorize-error-reflects-input", "consent", ("ASVS-ENC-01",),
        "the authorize endpoint's error page for an unknown client_id echoes the client_id into the HTML unescaped "
        "(reflected XSS on the payer's sign-in origin).")
    SIGN_IN_OPEN_REDIRECT = _f("sign-in-open-redirect", "consent", ("ASVS-REDIR-01",),
        "the sign-in page follows a return_to or next parameter to any site, unchecked (an open redirector on the "
        "payer's origin).")
    SIGN_IN_307 = _f("sign-in-307", "consent", ("OAUTHBCP-05",),
        "a successful sign-in post is answered 307, so the browser posts the username and password again to the "
        "next hop.")
    AUTHORIZE_JUNK_500 = _f("authorize-junk-500", "consent", ("FHIR-SEC-13", "FHIR-SEC-03"),
        "the authorize endpoint crashes on a parameter over 4 KB: HTTP 500 with a Python traceback.")
    AUTHORIZE_ERRORS_NONSTANDARD = _f("authorize-errors-nonstandard", "launch", ("RFC6749-02", "SMART-AUTHZ-08"),
        "every authorization error redirect carries a vendor code (error=request_rejected; a Deny gives "
        "error=user_cancelled) instead of RFC 6749 §4.1.2.1's (access_denied, invalid_request...): the refusals "
        "themselves are made, only worded wrong.")
    AUTHORIZE_REFUSALS_AS_503 = _f("authorize-refusals-as-503", "launch", ("RFC6749-01", "RFC6749-02"),
        "wherever the authorization endpoint would refuse a request (unknown client, unregistered redirect_uri, a "
        "missing or plain PKCE challenge, any error redirect) a gateway answers HTTP 503 instead, before the server "
        "decides: no launch negative at authorize can be judged (a harness reading any status >= 400 as a refusal "
        "would pass them all).", takes_away=(Needs.AUTHORIZE_DECISION,))
    SESSION_COOKIE_UNPROTECTED = _f("session-cookie-unprotected", "consent",
        ("ASVS-SESS-01", "ASVS-SESS-02", "ASVS-SESS-03"),
        "the sign-in's browser-binding cookie is set without Secure, HttpOnly or SameSite.")
    SIGN_IN_PAGES_WITHOUT_REFERRER_POLICY = _f("sign-in-pages-without-referrer-policy", "consent",
        ("ASVS-REFERRER-01",),
        "the authorize error, sign-in and consent pages send no Referrer-Policy: the request in their URL goes to any "
        "site they link to or load from.")
    MFA_SKIPPED = _f("mfa-skipped", "consent", ("NIST-AAL2-01",),
        "for a member enrolled in TOTP two-step verification, the right password alone signs the member in: the code "
        "page is never shown and the authorization goes on to consent and a code.", runs_with=(TOTP_MFA,))

    # --- token endpoint -----------------------------------------------------------------------------------------------
    SHORT_AUTHORIZATION_CODES = _f("short-authorization-codes", "token", ("RFC6749-09",),
        "authorization codes are 8 random digits (about 27 bits): guessable within a code's lifetime.")
    CODE_REUSE_ALLOWED = _f("code-reuse-allowed", "token", ("RFC6749-04",),
        "an authorization code can be exchanged more than once; each use yields fresh tokens.")
    CODE_NOT_BOUND_TO_REDIRECT = _f("code-not-bound-to-redirect", "token", ("RFC6749-06",),
        "the token request's redirect_uri is not compared with the one used at authorize (missing or different values "
        "pass).")
    CODE_NOT_BOUND_TO_CLIENT = _f("code-not-bound-to-client", "token", ("RFC6749-05",),
        "a code issued to one client can be exchanged by another authenticated client.")
    PKCE_VERIFIER_NOT_CHECKED = _f("pkce-verifier-not-checked", "token", ("SMART-PKCE-03", "SMART-PKCE-04"),
        "the token endpoint ignores code_verifier: missing, blank or wrong verifiers are accepted.")
    TOKEN_NO_STORE_MISSING = _f("token-no-store-missing", "token", ("SMART-TOKEN-06",),
        "token endpoint responses (success and error) lack Cache-Control: no-store and Pragma: no-cache.")
    WRONG_SECRET_ACCEPTED = _f("wrong-secret-accepted", "token", ("SMART-TOKEN-02", "SMART-TOKEN-01"),
        "client authentication checks only that the client_id exists; any secret is accepted.")
    INVALID_CLIENT_WITHOUT_401 = _f("invalid-client-without-401", "token", ("RFC6749-08",),
        "failed client authentication is answered 400 invalid_client without WWW-Authenticate.")
    TOKEN_ERRORS_NONSTANDARD = _f("token-errors-nonstandard", "token", ("RFC6749-08", "RFC6749-13"),
        "every token endpoint refusal is HTTP 403, worded invalid_code (for invalid_grant) or unauthorized_client, "
        "as a real open-source server was seen to answer: each protection holds, only the wording is not RFC 6749's.")
    PASSWORD_GRANT_ALLOWED = _f("password-grant-allowed", "token", ("OAUTHBCP-03",),
        "grant_type=password with a member's username/password returns tokens.")
    EXPIRES_IN_MISSING = _f("expires-in-missing", "token", ("SMART-TOKEN-05", "SMART-REFRESH-02"),
        "token responses omit expires_in.")
    SCOPE_WIDENED = _f("scope-widened", "token", ("SMART-TOKEN-04", "SMART-AUTHZ-09"),
        "the token endpoint adds patient/*.rs to the granted scope: the token (and its scope field) covers every "
        "resource type whatever was consented.")
    PATIENT_MISSING = _f("patient-missing", "token", ("SMART-TOKEN-07", "SMART-AUTHZ-06"),
        "the token response has no `patient` even though patient scopes were granted.")
    CODE_EXPIRES_IMMEDIATELY = _f("code-expires-immediately", "token", ("RFC6749-03", "CARIN-SEC-01"),
        "codes are stored already expired (a clock-unit bug): every code exchange fails with invalid_grant.",
        takes_away=(Needs.MEMBER_LAUNCH,))
    TOKEN_TYPE_NOT_BEARER = _f("token-type-not-bearer", "token", ("SMART-TOKEN-03",),
        "the token response says token_type JWT instead of Bearer.")
    TOKEN_SCOPE_MISSING = _f("token-scope-missing", "token", ("SMART-TOKEN-04",),
        "the token response omits scope.")
    CONTEXT_WRONG_TYPES = _f("context-wrong-types", "token", ("SMART-TOKEN-08",),
        "the token response carries need_patient_banner as the string \"false\" instead of a boolean.")
    CODE_REUSE_KEEPS_TOKENS = _f("code-reuse-keeps-tokens", "token", ("RFC6749-11",),
        "a replayed code is refused, but the tokens it produced keep working.")
    TOKEN_GET_ACCEPTED = _f("token-get-accepted", "token", ("RFC6749-12",),
        "the token endpoint also serves GET with the parameters in the query string.")
    TOKEN_ERROR_STACK_TRACE = _f("token-error-stack-trace", "token", ("FHIR-SEC-13", "FHIR-SEC-03"),
        "the token endpoint crashes on a parameter over 4 KB (an oversized code or client_assertion): HTTP 500 with "
        "a Python traceback in a text/plain body.")
    REFRESH_IGNORES_NARROWER_SCOPE = _f("refresh-ignores-narrower-scope", "refresh", ("SMART-REFRESH-04",),
        "a narrower scope asked for at refresh is ignored: the full original scope is granted again.")
    INTROSPECTION_ERROR_NOT_401 = _f("introspection-error-not-401", "introspection", ("RFC7662-03",),
        "introspection without client authentication is refused with 403 access_denied instead of 401 "
        "invalid_client.")
    REVOCATION_ERROR_WITHOUT_BODY = _f("revocation-error-without-body", "introspection", ("RFC7009-09",),
        "revocation without client credentials is refused with a bare 401: no JSON body, no error code.")
    INTROSPECT_UNKNOWN_ERROR = _f("introspect-unknown-error", "introspection", ("RFC7662-01",),
        "introspecting a token the server cannot parse answers 400 instead of active: false.")
    REPRESENTATIVE_FHIRUSER_PATIENT = _f("representative-fhiruser-patient", "id_token",
        ("PDEX-SEC-04", "SMART-OIDC-02"),
        "for a personal representative, fhirUser names the dependent's Patient instead of the representative.")

    # --- id_token -----------------------------------------------------------------------------------------------------
    ID_TOKEN_MISSING = _f("id-token-missing", "id_token", ("SMART-OIDC-01",),
        "no id_token is returned although openid and fhirUser were granted.")
    ID_TOKEN_WRONG_AUD = _f("id-token-wrong-aud", "id_token", ("OIDC-02",),
        "id_token aud is the FHIR base URL instead of the client_id.")
    ID_TOKEN_HS256 = _f("id-token-hs256", "id_token", ("SMART-OIDC-04", "OIDC-02"),
        "id_token is signed HS256 with a server secret (not verifiable with the JWKS).")
    ID_TOKEN_NO_KID = _f("id-token-no-kid", "id_token", ("OIDC-05",),
        "id_token header has no kid although the JWKS holds two keys.")
    ID_TOKEN_BAD_SIGNATURE = _f("id-token-bad-signature", "id_token", ("OIDC-02", "SMART-OIDC-05"),
        "id_token signature bytes are corrupted.")
    ID_TOKEN_NONCE_NOT_ECHOED = _f("id-token-nonce-not-echoed", "id_token", ("OIDC-03", "OIDC-01"),
        "id_token leaves out the nonce sent at authorize.")
    ID_TOKEN_EXPIRED = _f("id-token-expired", "id_token", ("OIDC-02",),
        "id_token exp is already in the past when issued (computed from the wrong clock base).")
    FHIRUSER_OTHER_ORIGIN = _f("fhiruser-other-origin", "id_token", ("FHIR-SEC-01",),
        "the id_token's fhirUser is an absolute plain-http URL on another origin than the FHIR server "
        "($SMART_REFERENCE_FHIRUSER_ORIGIN, default http://127.0.0.1:9): a harness that follows it hands the member's "
        "token to that origin. SMART does not require fhirUser under the base: the checks that resolve it cannot "
        "check, naming the origin.", takes_away=(Needs.FHIR_USER_ON_BASE,))
    FHIRUSER_MISSING = _f("fhiruser-missing", "id_token", ("SMART-OIDC-02",),
        "id_token has no fhirUser claim.")
    SUB_UNSTABLE = _f("sub-unstable", "id_token", ("OIDC-04",),
        "id_token sub is a fresh random value at every launch instead of a stable member id.")

    # --- refresh ------------------------------------------------------------------------------------------------------
    OFFLINE_ACCESS_NO_REFRESH_TOKEN = _f("offline-access-no-refresh-token", "refresh",
        ("SMART-REFRESH-01", "SMART-CAP-02"),
        "offline_access is granted but no refresh_token is returned.")
    REFRESH_WIDENS_SCOPE = _f("refresh-widens-scope", "refresh", ("SMART-REFRESH-04",),
        "a scope parameter on refresh is granted as asked, even beyond the original grant.")
    REFRESH_WITHOUT_CLIENT_AUTH = _f("refresh-without-client-auth", "refresh", ("SMART-REFRESH-02", "SMART-TOKEN-02"),
        "a refresh request without an Authorization header is served (client taken from the refresh token).")
    REFRESH_OTHER_CLIENT = _f("refresh-other-client", "refresh", ("SMART-REFRESH-03",),
        "a refresh token issued to one client is accepted from another authenticated client.")

    ROTATED_REFRESH_TOKEN_REUSABLE = _f("rotated-refresh-token-reusable", "refresh", ("SMART-REFRESH-05",),
        "with rotating refresh tokens, the refresh token a refresh replaced keeps working.",
        runs_with=(ROTATING_REFRESH_TOKENS,))

    # --- revocation / introspection -----------------------------------------------------------------------------------
    REVOCATION_IGNORED_ON_SEARCHES = _f("revocation-ignored-on-searches", "introspection", ("RFC7009-01",),
        "a revoked access token is refused on reads but still served on searches and $everything (the revocation "
        "list is consulted by the read path only).")
    INTROSPECTION_IGNORES_SIGNATURE = _f("introspection-ignores-signature", "introspection", ("RFC7662-01",),
        "introspection reads an access token's claims without verifying its signature: a tampered or unsigned copy "
        "of a live token introspects active.")
    REVOCATION_IGNORED = _f("revocation-ignored", "revocation", ("RFC7009-01",),
        "revoking an access token answers 200 but the token keeps working.")
    REVOCATION_WITHOUT_CLIENT_AUTH = _f("revocation-without-client-auth", "revocation", ("RFC7009-07",),
        "the revocation endpoint revokes a token for any caller that presents it, without client authentication.")
    REVOCATION_CROSS_CLIENT = _f("revocation-cross-client", "revocation", ("RFC7009-03",),
        "the revocation endpoint revokes a token for any authenticated client, not only the one it was issued to.")
    REVOCATION_ACCEPTS_GET = _f("revocation-accepts-get", "revocation", ("RFC7009-08",),
        "the revocation endpoint also serves GET, with the token and client credentials in the query string.")
    INTROSPECTION_ACCEPTS_GET = _f("introspection-accepts-get", "introspection", ("RFC7662-02",),
        "the introspection endpoint also serves GET, with the token and client credentials in the query string.")
    REFRESH_SURVIVES_REVOCATION = _f("refresh-survives-revocation", "revocation", ("RFC7009-01",),
        "revoking a refresh token ends its access tokens but the refresh token itself still refreshes.",
        takes_away=(Needs.AUTHENTICATED_REVOCATION,))
    ACCESS_SURVIVES_REFRESH_REVOCATION = _f("access-survives-refresh-revocation", "revocation", ("RFC7009-02",),
        "revoking a refresh token leaves the access tokens of the same grant working.")
    INTROSPECT_REVOKED_ACTIVE = _f("introspect-revoked-active", "introspection", ("RFC7662-01",),
        "introspection reports revoked tokens as active with full details.")
    INTROSPECT_MISSING_PATIENT = _f("introspect-missing-patient", "introspection", ("SMART-INTRO-03",),
        "introspection of an active token omits the patient launch context.")
    INTROSPECT_UNAUTHENTICATED = _f("introspect-unauthenticated", "introspection", ("RFC7662-01",),
        "introspection answers callers without client authentication.")

    # --- FHIR API: tokens ---------------------------------------------------------------------------------------------
    TOKEN_IN_QUERY_ACCEPTED = _f("token-in-query-accepted", "fhir-auth", ("RFC6750-02",),
        "the FHIR API accepts an access token in the access_token query parameter.")
    EXPIRED_TOKEN_ACCEPTED = _f("expired-token-accepted", "fhir-auth", ("SMART-FHIR-02",),
        "the FHIR API does not check access token expiry.")
    ALG_NONE_ACCEPTED = _f("alg-none-accepted", "fhir-auth", ("SMART-FHIR-01",),
        "the FHIR API accepts unsigned (alg: none) access tokens whose claims look right.")
    TAMPERED_SIGNATURE_ACCEPTED = _f("tampered-signature-accepted", "fhir-auth", ("SMART-FHIR-01",),
        "the FHIR API does not verify the access token signature.")
    REVOKED_TOKEN_ACCEPTED = _f("revoked-token-accepted", "fhir-auth", ("SMART-FHIR-01", "RFC7009-01"),
        "the FHIR API checks signature and expiry but not the revocation list.")
    REFUSAL_ECHOES_TOKEN = _f("refusal-echoes-token", "fhir-auth", ("FHIR-SEC-14",),
        "a 401 for a bad access token repeats the rejected token in the OperationOutcome diagnostics.")
    TOKENLESS_PATIENT_READ = _f("tokenless-patient-read", "fhir-auth", ("SMART-FHIR-01",),
        "a read of Patient/{id} without any Authorization header is served, as if a gateway's default user had "
        "asked (searches, operations and bad tokens are refused as usual).")
    GATEWAY_BLOCKS_AFTER_REFUSAL = _f("gateway-blocks-after-refusal", "fhir-auth", ("SMART-FHIR-01",),
        "once the FHIR API has refused one request (401), a gateway in front of it answers 401 to every later request "
        "from anyone, valid tokens included, for the rest of the run (as a WAF blocks a caller): a positive control "
        "taken minutes before no longer shows that the server, not the gateway, refused a later probe. Shown by "
        "tests/test_fault_matrix.py::test_gateway_blocking_mid_run_is_could_not_check.")
    WWW_AUTHENTICATE_MISSING = _f("www-authenticate-missing", "fhir-auth", ("RFC6750-03",),
        "401 answers from the FHIR API carry no WWW-Authenticate header.")
    OPERATIONS_TOKEN_UNVERIFIED = _f("operations-token-unverified", "fhir-auth", ("SMART-FHIR-01",),
        "Patient/{id}/$everything only looks for a bearer token, never verifies it: any token at all (made-up, "
        "unsigned, altered) gets the record of the patient the URL names; reads and searches verify it as usual.")

    # --- FHIR API: scopes and compartment -----------------------------------------------------------------------------
    EVERYTHING_EXISTENCE_ORACLE = _f("everything-existence-oracle", "scopes", ("FHIR-SEC-08",),
        "Patient/{id}/$everything for another member's real id answers 403 'belongs to another member', for a made-up "
        "id 404: the refusal tells who is a member.")
    INCLUDE_IGNORES_SCOPES = _f("include-ignores-scopes", "scopes", ("SMART-FHIR-03",),
        "_include/_revinclude and $everything add resources of types the token's scopes leave out.")
    SCOPE_NOT_ENFORCED = _f("scope-not-enforced", "scopes", ("SMART-FHIR-03", "SMART-AUTHZ-09"),
        "the FHIR API does not check that granted scopes cover the resource type (403 never happens).")
    WRITES_ALLOWED = _f("writes-allowed", "scopes", ("SMART-FHIR-06",),
        "create/update/delete are accepted (201/200) under read-only scopes.")
    V1_SCOPES_IGNORED = _f("v1-scopes-ignored", "scopes", ("SMART-SCOPE-01", "CARIN-SEC-05"),
        "v1 scopes (patient/Coverage.read) are granted, but the FHIR API only understands v2 suffixes, so a v1 token "
        "is refused (403) for the very types it was granted.")
    COMPARTMENT_LEAK_READ = _f("compartment-leak-read", "compartment", ("SMART-FHIR-05", "HREX-SEC-01"),
        "reading a resource by id does not check the patient compartment: other members' records are returned.")
    COMPARTMENT_LEAK_SEARCH = _f("compartment-leak-search", "compartment", ("SMART-FHIR-05", "FHIR-SEC-07"),
        "an explicit patient/beneficiary search parameter overrides the compartment: another member's data is found.")
    COMPARTMENT_LEAK_INCLUDE = _f("compartment-leak-include", "compartment", ("FHIR-SEC-07", "SMART-FHIR-05"),
        "_include/_revinclude results are not compartment-filtered (e.g. "
        "Organization?_revinclude=ExplanationOfBenefit:insurer returns every member's claims).")
    COMPARTMENT_LEAK_EVERYTHING = _f("compartment-leak-everything", "compartment", ("FHIR-SEC-07", "SMART-FHIR-05"),
        "Patient/{id}/$everything works for any patient id, not only the one in context.")
    EXISTENCE_ORACLE = _f("existence-oracle", "compartment", ("FHIR-SEC-08",),
        "reading another member's existing record answers 403, a missing id 404: existence leaks.")
    COMPARTMENT_LEAK_CHAINED = _f("compartment-leak-chained", "compartment", ("FHIR-SEC-07", "SMART-FHIR-05"),
        "chained parameters (ExplanationOfBenefit?patient.identifier=…, patient.name=…) are resolved before the "
        "compartment filter, so they find another member's claims and coverage.")
    REPRESENTATIVE_OVER_REACH = _f("representative-over-reach", "compartment",
        ("PDEX-SEC-04", "SMART-FHIR-05", "HREX-SEC-01"),
        "the compartment check is only made for Patient users: a representative's (fhirUser RelatedPerson) token reads "
        "and searches every member's records.")
    PAGING_CURSOR_NOT_BOUND = _f("paging-cursor-not-bound", "compartment",
        ("SMART-FHIR-05", "FHIR-SEC-07", "HREX-SEC-01"),
        "pages after the first (_offset > 0) apply the link's own search parameters but skip the token's compartment "
        "check: a member's next link followed with another member's token, or with the patient id in it swapped for "
        "another member's, reaches that member's claims.")
    SEARCH_TOTAL_COUNTS_OTHERS = _f("search-total-counts-others", "compartment", ("FHIR-SEC-08",),
        "a search's total is counted before the compartment filter: ExplanationOfBenefit?patient=<another member> "
        "returns no entries but total = that member's real number of claims (a missing id: 0).")
    SEARCH_UNFILTERED = _f("search-unfiltered", "payer-data", ("CARIN-DATA-01", "CARIN-DATA-02", "SMART-FHIR-05"),
        "type-level searches ignore both the patient compartment and the patient/beneficiary parameter: a member's "
        "ExplanationOfBenefit?patient=… returns every member's claims.")
    PAGING_LEAKS_OTHER_MEMBERS = _f("paging-leaks-other-members", "payer-data", ("FHIR-HTTP-03", "SMART-FHIR-05"),
        "search pages after the first (_offset > 0) are cut from every resource of the type, so following `next` "
        "reaches other members' claims and the totals disagree.")
    EOB_INSURER_UNRESOLVABLE = _f("eob-insurer-unresolvable", "payer-data", ("CARIN-DATA-03",),
        "ExplanationOfBenefit.insurer points at a retired Organization (Organization/org-payer-retired-2019) that "
        "answers 404.")
    INVALID_FHIR_DATES = _f("invalid-fhir-dates", "payer-data", ("SAFETY-10",),
        "ExplanationOfBenefit.created is served in US notation (02/01/2024), not as a FHIR dateTime.")

    # --- FHIR API: errors and headers ---------------------------------------------------------------------------------
    ERROR_STACK_TRACE = _f("error-stack-trace", "fhir-errors", ("FHIR-SEC-03", "SAFETY-41", "FHIR-SEC-13"),
        "a non-numeric _count crashes the search: 500 with a Python traceback in a text/plain body.")
    ERROR_NOT_OPERATIONOUTCOME = _f("error-not-operationoutcome", "fhir-errors", ("SAFETY-41", "SAFETY-39"),
        "FHIR API errors are HTML pages instead of OperationOutcome JSON.")
    SERVER_BANNER = _f("server-banner", "fhir-errors", ("FHIR-SEC-03",),
        "every response names the server software and version (Server: uvicorn/…, X-Powered-By: Starlette/…).")
    WRONG_CONTENT_TYPE = _f("wrong-content-type", "fhir-errors", ("SAFETY-38",),
        "FHIR responses are labelled application/json instead of application/fhir+json.")
    PATH_REFLECTED_IN_HTML = _f("path-reflected-in-html", "fhir-errors", ("HTTP-HYG-05", "FHIR-SEC-12"),
        "an unknown resource type is answered with an HTML error page that echoes the path segment unescaped.")
    NOSNIFF_MISSING = _f("nosniff-missing", "fhir-errors", ("FHIR-SEC-12",),
        "responses lack X-Content-Type-Options: nosniff.")
    CORS_WILDCARD_CREDENTIALS = _f("cors-wildcard-credentials", "fhir-errors", ("SMART-SEC-01", "SAFETY-37"),
        "the FHIR and token endpoints reflect any Origin in Access-Control-Allow-Origin together with "
        "Access-Control-Allow-Credentials: true.")
    CORS_ORIGIN_LOOSE_MATCH = _f("cors-origin-loose-match", "fhir-errors", ("ASVS-CORS-01",),
        "CORS grants credentialed access to the null origin and to any origin whose host merely contains this "
        "server's host (look-alike, the host as a subdomain of another domain, an http origin).")
    MEMBER_DATA_CACHEABLE = _f("member-data-cacheable", "fhir-errors", ("ASVS-CACHE-01",),
        "FHIR answers with the member's data say Cache-Control: public, max-age=3600: any shared cache may keep them.")
    FORWARDED_HOST_TRUSTED = _f("forwarded-host-trusted", "fhir-errors", ("ASVS-PROXY-01",),
        "the server builds its own URLs (discovery endpoints, search links) from a caller's X-Forwarded-Host or "
        "Forwarded host=, as if every caller were its trusted proxy.")
    PAGING_OFFSET_500 = _f("paging-offset-500", "fhir-errors", ("FHIR-SEC-13", "FHIR-SEC-03"),
        "a non-numeric _offset in a page link crashes the search: 500 with a Python traceback in a text/plain body.")

    # --- TLS ----------------------------------------------------------------------------------------------------------
    TLS_LEGACY_PROTOCOLS = _f("tls-legacy-protocols", "tls", ("TLS-02", "CARIN-SEC-06", "FHIR-SEC-02", "USCORE-SEC-01"),
        "the HTTPS listener also negotiates TLS 1.0 and 1.1 (OpenSSL security level 0).")
    TLS13_DISABLED = _f("tls13-disabled", "tls", ("TLS-03",),
        "the HTTPS listener offers TLS 1.2 only (no TLS 1.3).")
    TLS_WEAK_CIPHERS = _f("tls-weak-ciphers", "tls", ("TLS-04", "FHIR-SEC-02"),
        "TLS 1.2 also offers static-RSA CBC suites without forward secrecy (AES128-SHA, AES256-SHA).")
    TLS12_DISABLED = _f("tls12-disabled", "tls", ("TLS-03", "CARIN-SEC-06"),
        "the listener accepts TLS 1.3 only, locking out clients that (as BCP 195 allows) speak TLS 1.2.")
    TLS_CBC_ONLY = _f("tls-cbc-only", "tls", ("TLS-04",),
        "TLS 1.2 offers only ECDHE with AES-CBC/SHA-1 suites: forward secret but no AEAD cipher.")
    CERT_EXPIRING_SOON = _f("cert-expiring-soon", "tls", ("TLS-08",),
        "the server certificate expires in 10 days.")
    CERT_EXPIRED = _f("cert-expired", "tls", ("TLS-05",),
        "the server certificate expired yesterday.", takes_away=(Needs.CLIENT_ACCEPTED_CHAIN,))
    CERT_WEAK_KEY_1024 = _f("cert-weak-key-1024", "tls", ("TLS-05",),
        "the server certificate has a 1024-bit RSA key.")
    CERT_CRITICAL_SAN = _f("cert-critical-san", "tls", ("TLS-10",),
        "the server certificate marks its subjectAltName critical next to a non-empty subject (as trustme's leaves "
        "do): clients accept the chain, cryptography's strict RFC 5280 verifier does not.")
    CERT_HOSTNAME_MISMATCH = _f("cert-hostname-mismatch", "tls", ("TLS-05",),
        "the server certificate names only reference.invalid, not 127.0.0.1/localhost.")
    HSTS_MISSING = _f("hsts-missing", "tls", ("TLS-06",),
        "no Strict-Transport-Security header on HTTPS responses.")
    PLAINTEXT_HTTP_SERVED = _f("plaintext-http-served", "tls", ("TLS-06", "FHIR-SEC-01"),
        "the plain-http listener serves the whole server (discovery, auth, FHIR data) instead of redirecting to "
        "https.")

    # --- backend services (reference/backend.py; checks in suites/backend_services) -----------------------------------
    CLIENT_CREDENTIALS_NOT_ADVERTISED = _f("client-credentials-not-advertised", "backend-services", ("BACKEND-01",),
        "smart-configuration grant_types_supported omits client_credentials although the grant works.")
    PRIVATE_KEY_JWT_NOT_ADVERTISED = _f("private-key-jwt-not-advertised", "backend-services", ("BACKEND-02",),
        "smart-configuration token_endpoint_auth_methods_supported omits private_key_jwt.")
    ASYMMETRIC_CAPABILITY_MISSING = _f("asymmetric-capability-missing", "backend-services", ("BACKEND-02",),
        "smart-configuration capabilities omits client-confidential-asymmetric.")
    ASSERTION_ALGS_NOT_ADVERTISED = _f("assertion-algs-not-advertised", "backend-services", ("BACKEND-03",),
        "smart-configuration has no token_endpoint_auth_signing_alg_values_supported.")
    SYSTEM_SCOPES_NOT_ADVERTISED = _f("system-scopes-not-advertised", "backend-services", ("BACKEND-04",),
        "smart-configuration scopes_supported lists no system/ scopes.")
    BACKEND_TOKEN_NO_EXPIRES_IN = _f("backend-token-no-expires-in", "backend-services", ("BACKEND-05",),
        "the client_credentials token response has no expires_in.")
    BACKEND_TOKEN_LONG_LIVED = _f("backend-token-long-lived", "backend-services", ("BACKEND-06",),
        "backend access tokens live a day (expires_in 86400).")
    BACKEND_SCOPE_WIDENED = _f("backend-scope-widened", "backend-services", ("BACKEND-07", "BACKEND-08", "BACKEND-10"),
        "the client_credentials token adds system/*.rs to whatever was requested (and it works at the API).")
    BACKEND_REFRESH_TOKEN_ISSUED = _f("backend-refresh-token-issued", "backend-services", ("BACKEND-09",),
        "the client_credentials token response carries a refresh_token.")
    BACKEND_SCOPE_NOT_LIMITED = _f("backend-scope-not-limited", "backend-services", ("BACKEND-08",),
        "requested system/ scopes are granted as asked, beyond what the client is registered for.")
    ASSERTION_TYPE_NOT_CHECKED = _f("assertion-type-not-checked", "backend-services", ("RFC7523-04",),
        "client_assertion_type is not checked: an assertion sent under another type authenticates the client.")
    ASSERTION_ISS_SUB_NOT_CHECKED = _f("assertion-iss-sub-not-checked", "backend-services", ("ASYM-03", "RFC7523-03"),
        "the client is taken from the assertion's sub; iss is not compared with it.")
    ASSERTION_KEY_BY_KID_ONLY = _f("assertion-key-by-kid-only", "backend-services", ("ASYM-03",),
        "the verification key is looked up by kid across all registered clients: an assertion naming an unknown iss, "
        "signed with a registered key, authenticates that key's client.")
    ASSERTION_AUD_NOT_CHECKED = _f("assertion-aud-not-checked", "backend-services", ("RFC7523-01",),
        "the assertion's aud is neither required nor compared with the token endpoint.")
    ASSERTION_EXP_NOT_CHECKED = _f("assertion-exp-not-checked", "backend-services", ("RFC7523-02",),
        "expired assertions are accepted (exp not verified).")
    ASSERTION_LIFETIME_NOT_LIMITED = _f("assertion-lifetime-not-limited", "backend-services", ("ASYM-06",),
        "assertions whose exp is an hour ahead are accepted (no five-minute limit).")
    ASSERTION_JTI_REPLAY_ACCEPTED = _f("assertion-jti-replay-accepted", "backend-services", ("ASYM-02",),
        "assertion jti values are not remembered: the same assertion authenticates twice.")
    ASSERTION_SIGNATURE_NOT_VERIFIED = _f("assertion-signature-not-verified", "backend-services", ("ASYM-01",),
        "the assertion's claims are checked but its signature is not verified.")
    ASSERTION_UNKNOWN_KID_ACCEPTED = _f("assertion-unknown-kid-accepted", "backend-services", ("ASYM-04",),
        "an assertion whose kid matches no registered key is verified with the client's first key of that type.")
    ASSERTION_ALG_NONE_ACCEPTED = _f("assertion-alg-none-accepted", "backend-services", ("ASYM-01", "JWTBCP-01"),
        "an unsigned assertion (alg none) is accepted.")
    ASSERTION_HS256_CONFUSION = _f("assertion-hs256-confusion", "backend-services", ("ASYM-01", "JWTBCP-01"),
        "algorithm confusion: an HS256 assertion is verified with the client's registered public key (PEM) as the HMAC "
        "secret.")
    KEY_CLIENT_SECRET_ACCEPTED = _f("key-client-secret-accepted", "backend-services", ("ASYM-07",),
        "a key-only backend client is accepted with any client secret (no secret registered was taken as a match).")
    SYSTEM_TOKENS_REFUSED = _f("system-tokens-refused", "backend-services", ("BACKEND-10",),
        "the FHIR API refuses every system/ token (403: it expects a patient context).",
        takes_away=(Needs.SYSTEM_READ,))
    SYSTEM_SCOPE_NOT_ENFORCED = _f("system-scope-not-enforced", "backend-services", ("BACKEND-10",),
        "a system/ token reads every resource type, whatever its scopes.")

    # --- bulk data export (reference/bulk.py; checks in suites/bulk_export) -------------------------------------------
    BULK_FILES_SIGNATURE_NOT_CHECKED = _f("bulk-files-signature-not-checked", "bulk-data", ("BULK-05",),
        "output files accept any bearer JWT that names the job's client, without checking its signature (a tampered "
        "or unsigned copy of the client's token downloads the files).")
    SYSTEM_EXPORT_SERVED = _f("system-export-served", "bulk-data", ("SAFETY-09",),
        "a system-level $export, not in the CapabilityStatement, is started for a backend client: every member's "
        "data, through a way out nobody reviewed.")
    BULK_STATUS_ORACLE = _f("bulk-status-oracle", "bulk-data", ("FHIR-SEC-08",),
        "another client's export job is refused with 403 'belongs to another client', an unknown job with 404: the "
        "refusal tells which job ids exist.")
    BULK_KICKOFF_JUNK_500 = _f("bulk-kickoff-junk-500", "bulk-data", ("FHIR-SEC-13", "FHIR-SEC-03"),
        "a kick-off whose _since is not a FHIR instant crashes: HTTP 500 with a Python traceback.")
    BULK_KICKOFF_WITHOUT_TOKEN = _f("bulk-kickoff-without-token", "bulk-data", ("BULK-01",),
        "$export kick-off without an Authorization header starts a job (of every type).")
    BULK_CONTENT_LOCATION_MISSING = _f("bulk-content-location-missing", "bulk-data", ("BULK-02",),
        "the kick-off's 202 has no Content-Location, so the client cannot find the status URL.",
        takes_away=(Needs.BULK_STATUS_URL,))
    BULK_RETRY_AFTER_MISSING = _f("bulk-retry-after-missing", "bulk-data", ("BULK-03",),
        "in-progress status answers (202) carry no Retry-After.")
    BULK_MANIFEST_INCOMPLETE = _f("bulk-manifest-incomplete", "bulk-data", ("BULK-04",),
        "the completed export's manifest has no requiresAccessToken.", takes_away=(Needs.BULK_TOKEN_FLAG,))
    BULK_FILES_UNPROTECTED = _f("bulk-files-unprotected", "bulk-data", ("BULK-05",),
        "output files are served without a token although the manifest says requiresAccessToken true.")
    BULK_TYPE_FILTER_IGNORED = _f("bulk-type-filter-ignored", "bulk-data", ("BULK-06",),
        "the export holds every resource type, whatever _type and the token's scopes say.")
    BULK_NDJSON_INVALID = _f("bulk-ndjson-invalid", "bulk-data", ("BULK-07",),
        "output files are one pretty-printed JSON array instead of NDJSON.")
    BULK_DELETE_IGNORED = _f("bulk-delete-ignored", "bulk-data", ("BULK-08",),
        "DELETE on the status URL answers 202 but the job and its manifest stay.")
    BULK_STATUS_ANY_CLIENT = _f("bulk-status-any-client", "bulk-data", ("BULK-09",),
        "any authenticated backend client can poll another client's export job and download its files.")
    BULK_OUTPUT_CACHEABLE = _f("bulk-output-cacheable", "bulk-data", ("ASVS-CACHE-01",),
        "bulk output files say Cache-Control: public, max-age=86400: any shared cache may keep the exported data.")

    # --- safety checklist --- (reference/fhir_search.py; checks in suites/fhir_safety) --------------------------------
    SEARCH_PARAM_IGNORED = _f("advertised-search-param-ignored", "fhir-safety", ("SAFETY-09", "FHIR-SRCH-01"),
        "the advertised _id search parameter is ignored (every match returned) yet still shown in the self link.")
    UNADVERTISED_INTERACTION_SERVED = _f("unadvertised-interaction-served", "fhir-safety", ("SAFETY-09",),
        "instance history (GET [type]/[id]/_history), not in the CapabilityStatement, is served with the record.")
    CAPABILITY_ADVERTISES_UNSERVED_TYPE = _f("capability-advertises-unserved-type", "fhir-safety", ("SAFETY-09",),
        "the CapabilityStatement advertises Practitioner (read, search-type; within the member's granted scopes) but "
        "the FHIR API answers every Practitioner request 404 not-supported, as an unknown resource type.")
    MISSING_VALUE_500 = _f("missing-value-param-500", "fhir-safety", ("SAFETY-17", "FHIR-HTTP-02"),
        "a search parameter with an empty value (patient=) crashes the search: HTTP 500 with a plain-text body.")
    LENIENT_SELF_LINK_LISTS_IGNORED = _f("lenient-self-link-lists-ignored", "fhir-safety", ("FHIR-SRCH-01",),
        "under Prefer: handling=lenient the ignored unknown parameter is still listed in the self link.")
    CLOCK_SKEWED = _f("clock-skewed", "fhir-safety", ("SAFETY-24",),
        "the server clock runs 3 hours ahead: Date headers, token iat/exp and introspection follow it.")
    SYSTEM_SEARCH_SERVED = _f("system-search-served", "fhir-safety", ("SAFETY-09",),
        "a whole-system search (GET [base]?...), not in the CapabilityStatement, is served: a searchset of every "
        "resource of every member.")
    NARRATIVE_SCRIPT = _f("narrative-script", "fhir-safety", ("SAFETY-34", "FHIR-NARR-01"),
        "the member's Patient narrative carries a <script> element and an onclick attribute.")
    SHARED_NARRATIVE_SCRIPT = _f("shared-narrative-script", "fhir-safety", ("SAFETY-34", "FHIR-NARR-01"),
        "Organization narratives (the insurer and providers that claims reference, reached by _include and "
        "$everything) carry an <img onerror> handler.")
    FORMAT_IGNORED_HTML = _f("format-ignored-html", "fhir-safety", ("SAFETY-40", "FHIR-FMT-01"),
        "_format other than JSON is ignored and the server's HTML browse page is returned instead.")
    FORMAT_HTML_REFLECTS_QUERY = _f("format-html-reflects-query", "fhir-safety",
        ("FHIR-FMT-01", "SAFETY-40", "HTTP-HYG-05"),
        "_format=html or text/html is answered 200 text/html with a page echoing the raw query string unescaped "
        "(json and xml answered as without the fault).")
    MUST_SUPPORT_DROPPED = _f("must-support-dropped", "fhir-safety", ("SAFETY-04", "CARIN-MS-01"),
        "Coverage is served without relationship, a must-support element its CARIN profile requires (1..1).")

    # --- issue 13: member private_key_jwt (with its variant), jku, Patient/$export ------------------------------------
    MEMBER_ASSERTION_SIGNATURE_NOT_CHECKED = _f("member-assertion-signature-not-checked", "tokens", ("ASYM-01",),
        "the key-registered member client's assertion at the code exchange is accepted without checking its "
        "signature.", runs_with=(MEMBER_CLIENT_PRIVATE_KEY_JWT,))
    MEMBER_ASSERTION_REPLAY_ACCEPTED = _f("member-assertion-replay-accepted", "tokens", ("ASYM-02",),
        "the key-registered member client's assertion is accepted again with a jti already used.",
        runs_with=(MEMBER_CLIENT_PRIVATE_KEY_JWT,))
    ASSERTION_JKU_TRUSTED = _f("assertion-jku-trusted", "backend-services", ("ASYM-08",),
        "a backend assertion's jku header is ignored: a jku the client never registered still authenticates.")
    BULK_PATIENT_EXPORT_SCOPE_IGNORED = _f("bulk-patient-export-scope-ignored", "bulk-data", ("BULK-06",),
        "Patient/$export exports every resource type, whatever the token's system/ scopes say.")

    # --- issue 19: Provider Access (reference/pdex.py) -----------------------------------------------------------------
    PDEX_OPERATIONS_NOT_ADVERTISED = _f("pdex-operations-not-advertised", "provider-access", ("PDEX-PA-14",),
        "the CapabilityStatement lists no Group resource and none of $provider-member-match, $bulk-member-match, "
        "$davinci-data-export or $member-match (they still work).")
    PDEX_MATCH_WITHOUT_TOKEN = _f("pdex-match-without-token", "provider-access", ("PDEX-PA-01", "PDEX-P2P-01"),
        "$provider-member-match and $bulk-member-match answer a request without a token as if the registered "
        "client had sent it.")
    MATCHED_GROUP_NOT_READABLE = _f("matched-group-not-readable", "provider-access", ("PDEX-PA-02",),
        "GET Group/{id} on the caller's own MatchedMembers Group answers 404 (the export on it still works).")
    OPT_OUT_IGNORED = _f("opt-out-ignored", "provider-access", ("PDEX-PA-03", "PDEX-PA-06", "PDEX-PA-07"),
        "members' Provider Access opt-out is never consulted: an opted-out member stays on the attribution list, "
        "lands in MatchedMembers and is exported.")
    TREATMENT_RELATIONSHIP_NOT_CHECKED = _f("treatment-relationship-not-checked", "provider-access", ("PDEX-PA-04",),
        "$provider-member-match puts any matching member in MatchedMembers, attributed to the caller or not.")
    MEMBER_MATCH_TOO_LOOSE = _f("member-match-too-loose", "provider-access", ("PDEX-PA-04",),
        "$provider-member-match matches on the coverage's subscriber id alone: a person with another name and "
        "birth date lands in MatchedMembers.")
    MEMBER_MATCH_ECHOES_RECORD = _f("member-match-echoes-record", "provider-access", ("PDEX-PA-05",),
        "the MatchedMembers Group's contained Patient is filled in from the payer's record (address, phone), "
        "beyond what the request carried.")
    DATA_EXPORT_WITHOUT_TOKEN = _f("data-export-without-token", "provider-access", ("PDEX-PA-01",),
        "$davinci-data-export starts a job for a request without a token.")
    OTHER_CLIENT_GROUP_EXPORTABLE = _f("other-client-group-exportable", "provider-access", ("PDEX-PA-09",),
        "$davinci-data-export runs on any Group id, including another provider's attribution list.")
    UNATTRIBUTED_MEMBER_EXPORTED = _f("unattributed-member-exported", "provider-access", ("PDEX-PA-07", "PDEX-P2P-08"),
        "$davinci-data-export honours patient references to members outside the Group: a member with no "
        "treatment relationship (or no consent) is exported.")
    GROUP_SEARCH_UNRESTRICTED = _f("group-search-unrestricted", "provider-access", ("PDEX-PA-08",),
        "GET Group and GET Group/{id} serve every client's Groups, including other providers' attribution lists.")
    EXPORT_TYPE_REJECTED = _f("export-type-rejected", "provider-access", ("PDEX-PA-10",),
        "$davinci-data-export accepts only exportType provider-download and refuses provider-delta and "
        "provider-snapshot with 400.")
    DATA_EXPORT_TYPE_IGNORED = _f("data-export-type-ignored", "provider-access", ("PDEX-PA-11",),
        "$davinci-data-export ignores _type and the token's scopes: every type is exported.")
    DATA_EXPORT_SINCE_IGNORED = _f("data-export-since-ignored", "provider-access", ("PDEX-PA-12",),
        "$davinci-data-export ignores _since: a delta export holds the whole history.")
    COST_SHARING_INCLUDED = _f("cost-sharing-included", "provider-access", ("PDEX-PA-13",),
        "Provider Access exports the claims as the payer holds them, with totals, payment, benefit balances and "
        "cost-sharing adjudication amounts.")

    # --- issue 19: Payer-to-Payer (reference/pdex.py) --------------------------------------------------------------
    MEMBER_MATCH_WITHOUT_TOKEN = _f("member-match-without-token", "payer-to-payer", ("PDEX-P2P-01",),
        "$member-match answers a request without a token as if a registered payer had sent it.")
    MEMBER_MATCH_SCOPE_NOT_CHECKED = _f("member-match-scope-not-checked", "payer-to-payer", ("PDEX-P2P-01",),
        "$member-match accepts any system/ token, whatever its scopes.")
    MEMBER_MATCH_IDENTIFIER_MISSING = _f("member-match-identifier-missing", "payer-to-payer", ("PDEX-P2P-02",),
        "a successful $member-match answers 200 with an empty Parameters: no member identifier.")
    MEMBER_MATCH_IGNORES_DEMOGRAPHICS = _f("member-match-ignores-demographics", "payer-to-payer", ("PDEX-P2P-03",),
        "$member-match matches on the coverage's subscriber id alone, whatever the demographics say.")
    CONSENT_NOT_CHECKED = _f("consent-not-checked", "payer-to-payer", ("PDEX-P2P-04",),
        "$member-match takes a Consent whose provision denies the exchange as a permit.")
    CONSENT_PERIOD_IGNORED = _f("consent-period-ignored", "payer-to-payer", ("PDEX-P2P-04", "PDEX-P2P-06", "PDEX-P2P-08"),
        "$member-match and $bulk-member-match accept a Consent whose period has ended (the member is matched and "
        "exported).")
    CONSENT_RECIPIENT_NOT_CHECKED = _f("consent-recipient-not-checked", "payer-to-payer", ("PDEX-P2P-04",),
        "$member-match accepts a Consent that names another payer as the recipient.")
    CONSENT_POLICY_IGNORED = _f("consent-policy-ignored", "payer-to-payer", ("PDEX-P2P-04",),
        "$member-match accepts a Consent whose policy (e.g. non-sensitive data only) the payer cannot honour.")
    MEMBER_MATCH_ORACLE = _f("member-match-oracle", "payer-to-payer", ("PDEX-P2P-05",),
        "$member-match answers a near miss on a real member (right coverage, wrong demographics) with another "
        "OperationOutcome code and text than a person who is not a member.")
    BULK_MATCH_CONSENT_DETAILS = _f("bulk-match-consent-details", "payer-to-payer", ("PDEX-P2P-07",),
        "the ConsentConstrainedMembers Group of $bulk-member-match says why each member's consent failed.")
    FIVE_YEAR_WINDOW_IGNORED = _f("five-year-window-ignored", "payer-to-payer", ("PDEX-P2P-09",),
        "Payer-to-Payer exports apply the one-year lookback of another API instead of the five-year window: claims "
        "older than a year are missing.")
    P2P_QUERIES_REFUSED = _f("p2p-queries-refused", "payer-to-payer", ("PDEX-P2P-10",),
        "the requesting payer's token gets no data by FHIR queries after a single-member $member-match: every read and "
        "search of the matched member is refused (only the export path was built).", takes_away=(Needs.P2P_QUERIES,))
    P2P_QUERY_CONSENT_NOT_CHECKED = _f("p2p-query-consent-not-checked", "payer-to-payer", ("PDEX-P2P-11",),
        "FHIR queries by the requesting payer serve any member it matched on demographics, whether or not the Consent "
        "was honoured (a $member-match with an expired Consent opens the member's data; consent is not re-checked "
        "when the data is requested).")


# A fault is its own record: ``FAULTS[name]`` is the member, with its area, breaks, summary, takes_away, runs_with.
FAULTS: dict[str, Fault] = {str(fault): fault for fault in Fault}


class ActiveFaults:
    """The faults switched on for one server; ``active()`` refuses names not in the catalog to catch typos."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        names = list(names)
        unknown = [name for name in names if name not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {', '.join(sorted(unknown))}; valid names: "
                             f"{', '.join(sorted(FAULTS))}")
        self.names: frozenset[str] = frozenset(names)

    def active(self, name: str) -> bool:
        if name not in FAULTS:
            raise KeyError(f"fault {name!r} is not in the catalog")
        return name in self.names

    def __repr__(self) -> str:
        return f"ActiveFaults({sorted(self.names)})"
