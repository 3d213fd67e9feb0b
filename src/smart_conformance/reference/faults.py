"""The fault catalog: named, realistic defects the reference server can switch on.

Each fault is checked at exactly one spot in the server (``ctx.faults.active(Fault.NAME)``), so switching one on
changes one behaviour. Which checks catch a fault is declared on the checks (``@proves`` in ``suites/``) and derived by
``smart_conformance.testplan``; a fault says only what it breaks and what it takes away (``takes_away``: the checks
that need that honestly report *could not check*).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from smart_conformance.reference.variants import MEMBER_CLIENT_PRIVATE_KEY_JWT


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


class Fault(StrEnum):
    """Every fault by name: the constants the server asks about and the suites' ``@proves`` cite."""

    SMART_CONFIG_MISSING_CAPABILITY = "smart-config-missing-capability"
    PKCE_PLAIN_ADVERTISED = "pkce-plain-advertised"
    SMART_CONFIG_RELATIVE_URLS = "smart-config-relative-urls"
    SMART_CONFIG_HTML_ON_ACCEPT_HTML = "smart-config-html-on-accept-html"
    GRANT_TYPES_MISSING = "grant-types-missing"
    SCOPES_SUPPORTED_MISSING = "scopes-supported-missing"
    ISSUER_MISMATCH = "issuer-mismatch"
    JWKS_MISSING_KID = "jwks-missing-kid"
    CAPABILITY_OAUTH_URIS_MISMATCH = "capability-oauth-uris-mismatch"
    METADATA_REQUIRES_TOKEN = "metadata-requires-token"
    CAPABILITIES_AS_STRING = "capabilities-as-string"
    AUTHORIZATION_ENDPOINT_MISSING = "authorization-endpoint-missing"
    SSO_WITHOUT_JWKS_URI = "sso-without-jwks-uri"
    RESPONSE_TYPES_MISSING = "response-types-missing"
    REVOCATION_NOT_ADVERTISED = "revocation-not-advertised"
    PERMISSION_V1_NOT_ADVERTISED = "permission-v1-not-advertised"
    AUTH_METHODS_POST_ONLY = "auth-methods-post-only"
    SMART_CONFIG_REQUIRES_TOKEN = "smart-config-requires-token"
    OPENID_CONFIG_INCOMPLETE = "openid-config-incomplete"
    OPENID_CONFIG_NO_RS256 = "openid-config-no-rs256"
    CAPABILITY_WRONG_FHIR_VERSION = "capability-wrong-fhir-version"
    CAPABILITY_NO_SECURITY_SERVICE = "capability-no-security-service"
    PKCE_PLAIN_ACCEPTED = "pkce-plain-accepted"
    PKCE_NOT_REQUIRED = "pkce-not-required"
    REDIRECT_URI_PREFIX_MATCH = "redirect-uri-prefix-match"
    UNKNOWN_CLIENT_REDIRECTS = "unknown-client-redirects"
    STATE_NOT_ECHOED_ON_ERROR = "state-not-echoed-on-error"
    STATE_ALTERED = "state-altered"
    AUD_NOT_VALIDATED = "aud-not-validated"
    IMPLICIT_GRANT_ALLOWED = "implicit-grant-allowed"
    AUTHORIZE_POST_UNSUPPORTED = "authorize-post-unsupported"
    LOGIN_NO_CSRF = "login-no-csrf"
    LOGIN_ACCEPTS_ANY_PASSWORD = "login-accepts-any-password"
    CONSENT_SKIPPED = "consent-skipped"
    CONSENT_IGNORES_UNTICKED = "consent-ignores-unticked"
    DENY_RETURNS_CODE = "deny-returns-code"
    CONSENT_PAGE_FRAMEABLE = "consent-page-frameable"
    CODE_REUSE_ALLOWED = "code-reuse-allowed"
    CODE_NOT_BOUND_TO_REDIRECT = "code-not-bound-to-redirect"
    CODE_NOT_BOUND_TO_CLIENT = "code-not-bound-to-client"
    PKCE_VERIFIER_NOT_CHECKED = "pkce-verifier-not-checked"
    TOKEN_NO_STORE_MISSING = "token-no-store-missing"
    WRONG_SECRET_ACCEPTED = "wrong-secret-accepted"
    INVALID_CLIENT_WITHOUT_401 = "invalid-client-without-401"
    PASSWORD_GRANT_ALLOWED = "password-grant-allowed"
    EXPIRES_IN_MISSING = "expires-in-missing"
    SCOPE_WIDENED = "scope-widened"
    PATIENT_MISSING = "patient-missing"
    CODE_EXPIRES_IMMEDIATELY = "code-expires-immediately"
    TOKEN_TYPE_NOT_BEARER = "token-type-not-bearer"
    TOKEN_SCOPE_MISSING = "token-scope-missing"
    CONTEXT_WRONG_TYPES = "context-wrong-types"
    CODE_REUSE_KEEPS_TOKENS = "code-reuse-keeps-tokens"
    TOKEN_GET_ACCEPTED = "token-get-accepted"
    REFRESH_IGNORES_NARROWER_SCOPE = "refresh-ignores-narrower-scope"
    INTROSPECT_UNKNOWN_ERROR = "introspect-unknown-error"
    REPRESENTATIVE_FHIRUSER_PATIENT = "representative-fhiruser-patient"
    ID_TOKEN_MISSING = "id-token-missing"
    ID_TOKEN_WRONG_AUD = "id-token-wrong-aud"
    ID_TOKEN_HS256 = "id-token-hs256"
    ID_TOKEN_NO_KID = "id-token-no-kid"
    ID_TOKEN_BAD_SIGNATURE = "id-token-bad-signature"
    ID_TOKEN_NONCE_NOT_ECHOED = "id-token-nonce-not-echoed"
    ID_TOKEN_EXPIRED = "id-token-expired"
    FHIRUSER_OTHER_ORIGIN = "fhiruser-other-origin"
    FHIRUSER_MISSING = "fhiruser-missing"
    SUB_UNSTABLE = "sub-unstable"
    OFFLINE_ACCESS_NO_REFRESH_TOKEN = "offline-access-no-refresh-token"
    REFRESH_WIDENS_SCOPE = "refresh-widens-scope"
    REFRESH_WITHOUT_CLIENT_AUTH = "refresh-without-client-auth"
    REFRESH_OTHER_CLIENT = "refresh-other-client"
    REVOCATION_IGNORED = "revocation-ignored"
    REVOCATION_WITHOUT_CLIENT_AUTH = "revocation-without-client-auth"
    REFRESH_SURVIVES_REVOCATION = "refresh-survives-revocation"
    ACCESS_SURVIVES_REFRESH_REVOCATION = "access-survives-refresh-revocation"
    INTROSPECT_REVOKED_ACTIVE = "introspect-revoked-active"
    INTROSPECT_MISSING_PATIENT = "introspect-missing-patient"
    INTROSPECT_UNAUTHENTICATED = "introspect-unauthenticated"
    TOKEN_IN_QUERY_ACCEPTED = "token-in-query-accepted"
    EXPIRED_TOKEN_ACCEPTED = "expired-token-accepted"
    ALG_NONE_ACCEPTED = "alg-none-accepted"
    TAMPERED_SIGNATURE_ACCEPTED = "tampered-signature-accepted"
    REVOKED_TOKEN_ACCEPTED = "revoked-token-accepted"
    REFUSAL_ECHOES_TOKEN = "refusal-echoes-token"
    WWW_AUTHENTICATE_MISSING = "www-authenticate-missing"
    SCOPE_NOT_ENFORCED = "scope-not-enforced"
    WRITES_ALLOWED = "writes-allowed"
    V1_SCOPES_IGNORED = "v1-scopes-ignored"
    COMPARTMENT_LEAK_READ = "compartment-leak-read"
    COMPARTMENT_LEAK_SEARCH = "compartment-leak-search"
    COMPARTMENT_LEAK_INCLUDE = "compartment-leak-include"
    COMPARTMENT_LEAK_EVERYTHING = "compartment-leak-everything"
    EXISTENCE_ORACLE = "existence-oracle"
    COMPARTMENT_LEAK_CHAINED = "compartment-leak-chained"
    REPRESENTATIVE_OVER_REACH = "representative-over-reach"
    SEARCH_UNFILTERED = "search-unfiltered"
    PAGING_LEAKS_OTHER_MEMBERS = "paging-leaks-other-members"
    EOB_INSURER_UNRESOLVABLE = "eob-insurer-unresolvable"
    INVALID_FHIR_DATES = "invalid-fhir-dates"
    ERROR_STACK_TRACE = "error-stack-trace"
    ERROR_NOT_OPERATIONOUTCOME = "error-not-operationoutcome"
    SERVER_BANNER = "server-banner"
    WRONG_CONTENT_TYPE = "wrong-content-type"
    PATH_REFLECTED_IN_HTML = "path-reflected-in-html"
    NOSNIFF_MISSING = "nosniff-missing"
    CORS_WILDCARD_CREDENTIALS = "cors-wildcard-credentials"
    TLS_LEGACY_PROTOCOLS = "tls-legacy-protocols"
    TLS13_DISABLED = "tls13-disabled"
    TLS_WEAK_CIPHERS = "tls-weak-ciphers"
    TLS12_DISABLED = "tls12-disabled"
    TLS_CBC_ONLY = "tls-cbc-only"
    CERT_EXPIRING_SOON = "cert-expiring-soon"
    CERT_EXPIRED = "cert-expired"
    CERT_WEAK_KEY_1024 = "cert-weak-key-1024"
    CERT_CRITICAL_SAN = "cert-critical-san"
    CERT_HOSTNAME_MISMATCH = "cert-hostname-mismatch"
    HSTS_MISSING = "hsts-missing"
    PLAINTEXT_HTTP_SERVED = "plaintext-http-served"
    CLIENT_CREDENTIALS_NOT_ADVERTISED = "client-credentials-not-advertised"
    PRIVATE_KEY_JWT_NOT_ADVERTISED = "private-key-jwt-not-advertised"
    ASYMMETRIC_CAPABILITY_MISSING = "asymmetric-capability-missing"
    ASSERTION_ALGS_NOT_ADVERTISED = "assertion-algs-not-advertised"
    SYSTEM_SCOPES_NOT_ADVERTISED = "system-scopes-not-advertised"
    BACKEND_TOKEN_NO_EXPIRES_IN = "backend-token-no-expires-in"
    BACKEND_TOKEN_LONG_LIVED = "backend-token-long-lived"
    BACKEND_SCOPE_WIDENED = "backend-scope-widened"
    BACKEND_REFRESH_TOKEN_ISSUED = "backend-refresh-token-issued"
    BACKEND_SCOPE_NOT_LIMITED = "backend-scope-not-limited"
    ASSERTION_TYPE_NOT_CHECKED = "assertion-type-not-checked"
    ASSERTION_ISS_SUB_NOT_CHECKED = "assertion-iss-sub-not-checked"
    ASSERTION_KEY_BY_KID_ONLY = "assertion-key-by-kid-only"
    ASSERTION_AUD_NOT_CHECKED = "assertion-aud-not-checked"
    ASSERTION_EXP_NOT_CHECKED = "assertion-exp-not-checked"
    ASSERTION_LIFETIME_NOT_LIMITED = "assertion-lifetime-not-limited"
    ASSERTION_JTI_REPLAY_ACCEPTED = "assertion-jti-replay-accepted"
    ASSERTION_SIGNATURE_NOT_VERIFIED = "assertion-signature-not-verified"
    ASSERTION_UNKNOWN_KID_ACCEPTED = "assertion-unknown-kid-accepted"
    ASSERTION_ALG_NONE_ACCEPTED = "assertion-alg-none-accepted"
    ASSERTION_HS256_CONFUSION = "assertion-hs256-confusion"
    KEY_CLIENT_SECRET_ACCEPTED = "key-client-secret-accepted"
    SYSTEM_TOKENS_REFUSED = "system-tokens-refused"
    SYSTEM_SCOPE_NOT_ENFORCED = "system-scope-not-enforced"
    BULK_KICKOFF_WITHOUT_TOKEN = "bulk-kickoff-without-token"
    BULK_CONTENT_LOCATION_MISSING = "bulk-content-location-missing"
    BULK_RETRY_AFTER_MISSING = "bulk-retry-after-missing"
    BULK_MANIFEST_INCOMPLETE = "bulk-manifest-incomplete"
    BULK_FILES_UNPROTECTED = "bulk-files-unprotected"
    BULK_TYPE_FILTER_IGNORED = "bulk-type-filter-ignored"
    BULK_NDJSON_INVALID = "bulk-ndjson-invalid"
    BULK_DELETE_IGNORED = "bulk-delete-ignored"
    BULK_STATUS_ANY_CLIENT = "bulk-status-any-client"
    # --- safety checklist ---
    SEARCH_PARAM_IGNORED = "advertised-search-param-ignored"
    UNADVERTISED_INTERACTION_SERVED = "unadvertised-interaction-served"
    MISSING_VALUE_500 = "missing-value-param-500"
    LENIENT_SELF_LINK_LISTS_IGNORED = "lenient-self-link-lists-ignored"
    CLOCK_SKEWED = "clock-skewed"
    NARRATIVE_SCRIPT = "narrative-script"
    FORMAT_IGNORED_HTML = "format-ignored-html"
    MUST_SUPPORT_DROPPED = "must-support-dropped"

    # --- issue 13: member private_key_jwt, jku, Patient/$export ---
    MEMBER_ASSERTION_SIGNATURE_NOT_CHECKED = "member-assertion-signature-not-checked"
    MEMBER_ASSERTION_REPLAY_ACCEPTED = "member-assertion-replay-accepted"
    ASSERTION_JKU_TRUSTED = "assertion-jku-trusted"
    BULK_PATIENT_EXPORT_SCOPE_IGNORED = "bulk-patient-export-scope-ignored"

@dataclass(frozen=True)
class FaultSpec:
    """One defect: what it does, which requirements it breaks, and what checks it leaves without a precondition."""

    name: Fault
    summary: str
    breaks: tuple[str, ...]
    area: str
    takes_away: tuple[Needs, ...] = ()
    runs_with: tuple[str, ...] = ()  # variants the fault matrix switches on with it (the checks need them to apply)


def _f(name: Fault, area: str, breaks: tuple[str, ...], summary: str) -> FaultSpec:
    return FaultSpec(name=name, summary=summary, breaks=breaks, area=area)


_TAKES_AWAY: dict[Fault, tuple[Needs, ...]] = {
    Fault.CODE_EXPIRES_IMMEDIATELY: (Needs.MEMBER_LAUNCH,),
    Fault.SYSTEM_TOKENS_REFUSED: (Needs.SYSTEM_READ,),
    Fault.BULK_CONTENT_LOCATION_MISSING: (Needs.BULK_STATUS_URL,),
    Fault.BULK_MANIFEST_INCOMPLETE: (Needs.BULK_TOKEN_FLAG,),
    Fault.REFRESH_SURVIVES_REVOCATION: (Needs.AUTHENTICATED_REVOCATION,),
    Fault.CERT_EXPIRED: (Needs.CLIENT_ACCEPTED_CHAIN,),
    Fault.METADATA_REQUIRES_TOKEN: (Needs.CAPABILITY_STATEMENT,),
    Fault.SMART_CONFIG_REQUIRES_TOKEN: (Needs.SMART_CONFIGURATION,),
}

_CATALOG: tuple[FaultSpec, ...] = (
    # --- discovery -------------------------------------------------------------------------------------------
    _f(Fault.SMART_CONFIG_MISSING_CAPABILITY, "discovery", ("CARIN-SEC-04", "SMART-CAP-01"),
       "smart-configuration `capabilities` omits launch-standalone."),
    _f(Fault.PKCE_PLAIN_ADVERTISED, "discovery", ("SMART-DISC-08",),
       "smart-configuration code_challenge_methods_supported lists plain next to S256."),
    _f(Fault.SMART_CONFIG_RELATIVE_URLS, "discovery", ("SMART-DISC-03",),
       "smart-configuration endpoint URLs are relative paths (/auth/token) instead of absolute https URLs."),
    _f(Fault.SMART_CONFIG_HTML_ON_ACCEPT_HTML, "discovery", ("SMART-DISC-02",),
       "smart-configuration answers an HTML page when the request's Accept header prefers text/html."),
    _f(Fault.GRANT_TYPES_MISSING, "discovery", ("SMART-DISC-07",),
       "smart-configuration has no grant_types_supported."),
    _f(Fault.SCOPES_SUPPORTED_MISSING, "discovery", ("SMART-DISC-11", "CARIN-SEC-02"),
       "smart-configuration has no scopes_supported."),
    _f(Fault.ISSUER_MISMATCH, "discovery", ("OIDC-DISC-01", "SMART-DISC-09"),
       "openid-configuration `issuer` has a trailing slash, so it differs from the issuer URL it is served under, "
       "from smart-configuration's issuer and from id_token iss."),
    _f(Fault.JWKS_MISSING_KID, "discovery", ("OIDC-05", "SMART-OIDC-03"),
       "JWKS keys (two: the active one and the next rotation key) carry no kid, so a verifier cannot pick one."),
    _f(Fault.CAPABILITY_OAUTH_URIS_MISMATCH, "discovery", ("SMART-DISC-15",),
       "CapabilityStatement oauth-uris `token` points at a stale path (/auth/oauth2/token) that answers 404."),
    _f(Fault.METADATA_REQUIRES_TOKEN, "discovery", ("SMART-DISC-15", "SAFETY-09"),
       "GET /fhir/metadata demands a bearer token (401) instead of being public."),
    _f(Fault.CAPABILITIES_AS_STRING, "discovery", ("SMART-DISC-04",),
       "smart-configuration `capabilities` is one space-separated string instead of an array."),
    _f(Fault.AUTHORIZATION_ENDPOINT_MISSING, "discovery", ("SMART-DISC-06",),
       "smart-configuration advertises launch-standalone but has no authorization_endpoint."),
    _f(Fault.SSO_WITHOUT_JWKS_URI, "discovery", ("SMART-DISC-09",),
       "smart-configuration advertises sso-openid-connect but omits jwks_uri."),
    _f(Fault.RESPONSE_TYPES_MISSING, "discovery", ("SMART-DISC-12",),
       "smart-configuration has no response_types_supported."),
    _f(Fault.REVOCATION_NOT_ADVERTISED, "discovery", ("SMART-DISC-14",),
       "smart-configuration omits revocation_endpoint (the endpoint still works)."),
    _f(Fault.PERMISSION_V1_NOT_ADVERTISED, "discovery", ("SMART-SCOPE-01",),
       "a SMART 2 server that still accepts v1 scopes does not advertise permission-v1."),
    _f(Fault.AUTH_METHODS_POST_ONLY, "discovery", ("SMART-TOKEN-01", "SMART-DISC-10"),
       "token_endpoint_auth_methods_supported lists only client_secret_post for a symmetric confidential server."),
    _f(Fault.SMART_CONFIG_REQUIRES_TOKEN, "discovery", ("SMART-DISC-01", "CARIN-SEC-02"),
       "the well-known SMART configuration answers 401 to requests without a bearer token."),
    _f(Fault.OPENID_CONFIG_INCOMPLETE, "discovery", ("OIDC-DISC-01",),
       "openid-configuration omits subject_types_supported."),
    _f(Fault.OPENID_CONFIG_NO_RS256, "discovery", ("SMART-OIDC-04",),
       "openid-configuration advertises only ES256 for id_token signing."),
    _f(Fault.CAPABILITY_WRONG_FHIR_VERSION, "discovery", ("FHIR-CAP-02",),
       "the CapabilityStatement declares fhirVersion 4.3.0 on an R4 endpoint."),
    _f(Fault.CAPABILITY_NO_SECURITY_SERVICE, "discovery", ("FHIR-CAP-03",),
       "the CapabilityStatement's rest.security has no service coding."),
    # --- authorize -------------------------------------------------------------------------------------------
    _f(Fault.PKCE_PLAIN_ACCEPTED, "authorize", ("SMART-PKCE-02", "RFC7636-01"),
       "authorize accepts code_challenge_method=plain (and a challenge with no method, as plain); the token "
       "endpoint then compares the verifier to the challenge verbatim."),
    _f(Fault.PKCE_NOT_REQUIRED, "authorize", ("SMART-PKCE-05", "RFC7636-02"),
       "authorize accepts requests without code_challenge; such codes are exchanged without a verifier."),
    _f(Fault.REDIRECT_URI_PREFIX_MATCH, "authorize", ("OAUTHBCP-01", "SMART-AUTHZ-03", "RFC6749-01"),
       "redirect_uri is accepted when it merely starts with a registered URI (e.g. .../callback/../evil or "
       "...callback.attacker)."),
    _f(Fault.UNKNOWN_CLIENT_REDIRECTS, "authorize", ("RFC6749-01",),
       "an unknown client_id is answered with a redirect (error=unauthorized_client) to the supplied redirect_uri "
       "instead of an error page."),
    _f(Fault.STATE_NOT_ECHOED_ON_ERROR, "authorize", ("SMART-AUTHZ-04", "RFC6749-02"),
       "error redirects from authorize/consent leave out the state parameter."),
    _f(Fault.STATE_ALTERED, "authorize", ("SMART-AUTHZ-04",),
       "the success redirect percent-encodes state twice, so a state holding characters outside A-Z a-z 0-9 -._~ "
       "comes back altered."),
    _f(Fault.AUD_NOT_VALIDATED, "authorize", ("SMART-AUTHZ-05", "SMART-FHIR-04"),
       "authorize ignores aud/resource; a launch naming a foreign aud gets a token that works on this FHIR server."),
    _f(Fault.IMPLICIT_GRANT_ALLOWED, "authorize", ("OAUTHBCP-03", "SMART-AUTHZ-02"),
       "response_type=token is accepted: after consent the access token is returned in the redirect fragment."),
    _f(Fault.AUTHORIZE_POST_UNSUPPORTED, "authorize", ("SMART-AUTHZ-01",),
       "POST to the authorization endpoint answers 405 (only GET works)."),
    # --- member pages ----------------------------------------------------------------------------------------
    _f(Fault.LOGIN_NO_CSRF, "consent", ("RFC6749-10",),
       "the login and consent form posts are accepted without the CSRF token / browser binding cookie."),
    _f(Fault.LOGIN_ACCEPTS_ANY_PASSWORD, "consent", ("PDEX-SEC-02", "FHIR-SEC-06"),
       "sign-in accepts any password for a known username."),
    _f(Fault.CONSENT_SKIPPED, "consent", ("PDEX-SEC-03", "SAFETY-22"),
       "after sign-in the code is issued at once with every requested scope; no consent page is shown."),
    _f(Fault.CONSENT_IGNORES_UNTICKED, "consent", ("SMART-AUTHZ-09",),
       "the consent POST grants every requested scope, ignoring which checkboxes the member left ticked."),
    _f(Fault.DENY_RETURNS_CODE, "consent", ("SMART-AUTHZ-08",),
       "pressing Deny on the consent page still redirects with a code (the decision field is ignored)."),
    _f(Fault.CONSENT_PAGE_FRAMEABLE, "consent", ("OAUTHBCP-04",),
       "login and consent pages carry neither X-Frame-Options nor CSP frame-ancestors."),
    # --- token endpoint --------------------------------------------------------------------------------------
    _f(Fault.CODE_REUSE_ALLOWED, "token", ("RFC6749-04",),
       "an authorization code can be exchanged more than once; each use yields fresh tokens."),
    _f(Fault.CODE_NOT_BOUND_TO_REDIRECT, "token", ("RFC6749-06",),
       "the token request's redirect_uri is not compared with the one used at authorize (missing or different "
       "values pass)."),
    _f(Fault.CODE_NOT_BOUND_TO_CLIENT, "token", ("RFC6749-05",),
       "a code issued to one client can be exchanged by another authenticated client."),
    _f(Fault.PKCE_VERIFIER_NOT_CHECKED, "token", ("SMART-PKCE-03", "SMART-PKCE-04"),
       "the token endpoint ignores code_verifier: missing, blank or wrong verifiers are accepted."),
    _f(Fault.TOKEN_NO_STORE_MISSING, "token", ("SMART-TOKEN-06",),
       "token endpoint responses (success and error) lack Cache-Control: no-store and Pragma: no-cache."),
    _f(Fault.WRONG_SECRET_ACCEPTED, "token", ("SMART-TOKEN-02", "SMART-TOKEN-01"),
       "client authentication checks only that the client_id exists; any secret is accepted."),
    _f(Fault.INVALID_CLIENT_WITHOUT_401, "token", ("RFC6749-08",),
       "failed client authentication is answered 400 invalid_client without WWW-Authenticate."),
    _f(Fault.PASSWORD_GRANT_ALLOWED, "token", ("OAUTHBCP-03",),
       "grant_type=password with a member's username/password returns tokens."),
    _f(Fault.EXPIRES_IN_MISSING, "token", ("SMART-TOKEN-05", "SMART-REFRESH-02"),
       "token responses omit expires_in."),
    _f(Fault.SCOPE_WIDENED, "token", ("SMART-TOKEN-04", "SMART-AUTHZ-09"),
       "the token endpoint adds patient/*.rs to the granted scope: the token (and its scope field) covers every "
       "resource type whatever was consented."),
    _f(Fault.PATIENT_MISSING, "token", ("SMART-TOKEN-07", "SMART-AUTHZ-06"),
       "the token response has no `patient` even though patient scopes were granted."),
    _f(Fault.CODE_EXPIRES_IMMEDIATELY, "token", ("RFC6749-03", "CARIN-SEC-01"),
       "codes are stored already expired (a clock-unit bug): every code exchange fails with invalid_grant."),
    _f(Fault.TOKEN_TYPE_NOT_BEARER, "token", ("SMART-TOKEN-03",),
       "the token response says token_type JWT instead of Bearer."),
    _f(Fault.TOKEN_SCOPE_MISSING, "token", ("SMART-TOKEN-04",),
       "the token response omits scope."),
    _f(Fault.CONTEXT_WRONG_TYPES, "token", ("SMART-TOKEN-08",),
       "the token response carries need_patient_banner as the string \"false\" instead of a boolean."),
    _f(Fault.CODE_REUSE_KEEPS_TOKENS, "token", ("RFC6749-11",),
       "a replayed code is refused, but the tokens it produced keep working."),
    _f(Fault.TOKEN_GET_ACCEPTED, "token", ("RFC6749-12",),
       "the token endpoint also serves GET with the parameters in the query string."),
    _f(Fault.REFRESH_IGNORES_NARROWER_SCOPE, "refresh", ("SMART-REFRESH-04",),
       "a narrower scope asked for at refresh is ignored: the full original scope is granted again."),
    _f(Fault.INTROSPECT_UNKNOWN_ERROR, "introspection", ("RFC7662-01",),
       "introspecting a token the server cannot parse answers 400 instead of active: false."),
    _f(Fault.REPRESENTATIVE_FHIRUSER_PATIENT, "id_token", ("PDEX-SEC-04", "SMART-OIDC-02"),
       "for a personal representative, fhirUser names the dependent's Patient instead of the representative."),
    # --- id_token --------------------------------------------------------------------------------------------
    _f(Fault.ID_TOKEN_MISSING, "id_token", ("SMART-OIDC-01",),
       "no id_token is returned although openid and fhirUser were granted."),
    _f(Fault.ID_TOKEN_WRONG_AUD, "id_token", ("OIDC-02",),
       "id_token aud is the FHIR base URL instead of the client_id."),
    _f(Fault.ID_TOKEN_HS256, "id_token", ("SMART-OIDC-04", "OIDC-02"),
       "id_token is signed HS256 with a server secret (not verifiable with the JWKS)."),
    _f(Fault.ID_TOKEN_NO_KID, "id_token", ("OIDC-05",),
       "id_token header has no kid although the JWKS holds two keys."),
    _f(Fault.ID_TOKEN_BAD_SIGNATURE, "id_token", ("OIDC-02", "SMART-OIDC-05"),
       "id_token signature bytes are corrupted."),
    _f(Fault.ID_TOKEN_NONCE_NOT_ECHOED, "id_token", ("OIDC-03", "OIDC-01"),
       "id_token leaves out the nonce sent at authorize."),
    _f(Fault.ID_TOKEN_EXPIRED, "id_token", ("OIDC-02",),
       "id_token exp is already in the past when issued (computed from the wrong clock base)."),
    _f(Fault.FHIRUSER_OTHER_ORIGIN, "id_token", ("SMART-OIDC-02",),
       "the id_token's fhirUser is an absolute plain-http URL on another origin than the FHIR server "
       "($SMART_REFERENCE_FHIRUSER_ORIGIN, default http://127.0.0.1:9): a harness that follows it hands the member's "
       "token to that origin."),
    _f(Fault.FHIRUSER_MISSING, "id_token", ("SMART-OIDC-02",),
       "id_token has no fhirUser claim."),
    _f(Fault.SUB_UNSTABLE, "id_token", ("OIDC-04",),
       "id_token sub is a fresh random value at every launch instead of a stable member id."),
    # --- refresh ---------------------------------------------------------------------------------------------
    _f(Fault.OFFLINE_ACCESS_NO_REFRESH_TOKEN, "refresh", ("SMART-REFRESH-01", "SMART-CAP-02"),
       "offline_access is granted but no refresh_token is returned."),
    _f(Fault.REFRESH_WIDENS_SCOPE, "refresh", ("SMART-REFRESH-04",),
       "a scope parameter on refresh is granted as asked, even beyond the original grant."),
    _f(Fault.REFRESH_WITHOUT_CLIENT_AUTH, "refresh", ("SMART-REFRESH-02", "SMART-TOKEN-02"),
       "a refresh request without an Authorization header is served (client taken from the refresh token)."),
    _f(Fault.REFRESH_OTHER_CLIENT, "refresh", ("SMART-REFRESH-03",),
       "a refresh token issued to one client is accepted from another authenticated client."),
    # --- revocation / introspection --------------------------------------------------------------------------
    _f(Fault.REVOCATION_IGNORED, "revocation", ("RFC7009-01",),
       "revoking an access token answers 200 but the token keeps working."),
    _f(Fault.REVOCATION_WITHOUT_CLIENT_AUTH, "revocation", ("RFC7009-07",),
       "the revocation endpoint revokes a token for any caller that presents it, without client authentication."),
    _f(Fault.REFRESH_SURVIVES_REVOCATION, "revocation", ("RFC7009-01",),
       "revoking a refresh token ends its access tokens but the refresh token itself still refreshes."),
    _f(Fault.ACCESS_SURVIVES_REFRESH_REVOCATION, "revocation", ("RFC7009-02",),
       "revoking a refresh token leaves the access tokens of the same grant working."),
    _f(Fault.INTROSPECT_REVOKED_ACTIVE, "introspection", ("RFC7662-01",),
       "introspection reports revoked tokens as active with full details."),
    _f(Fault.INTROSPECT_MISSING_PATIENT, "introspection", ("SMART-INTRO-03",),
       "introspection of an active token omits the patient launch context."),
    _f(Fault.INTROSPECT_UNAUTHENTICATED, "introspection", ("RFC7662-01",),
       "introspection answers callers without client authentication."),
    # --- FHIR API: tokens ------------------------------------------------------------------------------------
    _f(Fault.TOKEN_IN_QUERY_ACCEPTED, "fhir-auth", ("RFC6750-02",),
       "the FHIR API accepts an access token in the access_token query parameter."),
    _f(Fault.EXPIRED_TOKEN_ACCEPTED, "fhir-auth", ("SMART-FHIR-02",),
       "the FHIR API does not check access token expiry."),
    _f(Fault.ALG_NONE_ACCEPTED, "fhir-auth", ("SMART-FHIR-01",),
       "the FHIR API accepts unsigned (alg: none) access tokens whose claims look right."),
    _f(Fault.TAMPERED_SIGNATURE_ACCEPTED, "fhir-auth", ("SMART-FHIR-01",),
       "the FHIR API does not verify the access token signature."),
    _f(Fault.REVOKED_TOKEN_ACCEPTED, "fhir-auth", ("SMART-FHIR-01", "RFC7009-01"),
       "the FHIR API checks signature and expiry but not the revocation list."),
    _f(Fault.REFUSAL_ECHOES_TOKEN, "fhir-auth", ("FHIR-SEC-14",),
       "a 401 for a bad access token repeats the rejected token in the OperationOutcome diagnostics."),
    _f(Fault.WWW_AUTHENTICATE_MISSING, "fhir-auth", ("RFC6750-03",),
       "401 answers from the FHIR API carry no WWW-Authenticate header."),
    # --- FHIR API: scopes and compartment --------------------------------------------------------------------
    _f(Fault.SCOPE_NOT_ENFORCED, "scopes", ("SMART-FHIR-03", "SMART-AUTHZ-09"),
       "the FHIR API does not check that granted scopes cover the resource type (403 never happens)."),
    _f(Fault.WRITES_ALLOWED, "scopes", ("SMART-FHIR-06",),
       "create/update/delete are accepted (201/200) under read-only scopes."),
    _f(Fault.V1_SCOPES_IGNORED, "scopes", ("SMART-SCOPE-01", "CARIN-SEC-05"),
       "v1 scopes (patient/Coverage.read) are granted, but the FHIR API only understands v2 suffixes, so a v1 "
       "token is refused (403) for the very types it was granted."),
    _f(Fault.COMPARTMENT_LEAK_READ, "compartment", ("SMART-FHIR-05", "HREX-SEC-01"),
       "reading a resource by id does not check the patient compartment: other members' records are returned."),
    _f(Fault.COMPARTMENT_LEAK_SEARCH, "compartment", ("SMART-FHIR-05", "FHIR-SEC-07"),
       "an explicit patient/beneficiary search parameter overrides the compartment: another member's data is found."),
    _f(Fault.COMPARTMENT_LEAK_INCLUDE, "compartment", ("FHIR-SEC-07", "SMART-FHIR-05"),
       "_include/_revinclude results are not compartment-filtered (e.g. Organization?_revinclude="
       "ExplanationOfBenefit:insurer returns every member's claims)."),
    _f(Fault.COMPARTMENT_LEAK_EVERYTHING, "compartment", ("FHIR-SEC-07", "SMART-FHIR-05"),
       "Patient/{id}/$everything works for any patient id, not only the one in context."),
    _f(Fault.EXISTENCE_ORACLE, "compartment", ("FHIR-SEC-08",),
       "reading another member's existing record answers 403, a missing id 404: existence leaks."),
    _f(Fault.COMPARTMENT_LEAK_CHAINED, "compartment", ("FHIR-SEC-07", "SMART-FHIR-05"),
       "chained parameters (ExplanationOfBenefit?patient.identifier=…, patient.name=…) are resolved before the "
       "compartment filter, so they find another member's claims and coverage."),
    _f(Fault.REPRESENTATIVE_OVER_REACH, "compartment", ("PDEX-SEC-04", "SMART-FHIR-05", "HREX-SEC-01"),
       "the compartment check is only made for Patient users: a representative's (fhirUser RelatedPerson) token "
       "reads and searches every member's records."),
    _f(Fault.SEARCH_UNFILTERED, "payer-data", ("CARIN-DATA-01", "CARIN-DATA-02", "SMART-FHIR-05"),
       "type-level searches ignore both the patient compartment and the patient/beneficiary parameter: a member's "
       "ExplanationOfBenefit?patient=… returns every member's claims."),
    _f(Fault.PAGING_LEAKS_OTHER_MEMBERS, "payer-data", ("FHIR-HTTP-03", "SMART-FHIR-05"),
       "search pages after the first (_offset > 0) are cut from every resource of the type, so following `next` "
       "reaches other members' claims and the totals disagree."),
    _f(Fault.EOB_INSURER_UNRESOLVABLE, "payer-data", ("CARIN-DATA-03",),
       "ExplanationOfBenefit.insurer points at a retired Organization (Organization/org-payer-retired-2019) that "
       "answers 404."),
    _f(Fault.INVALID_FHIR_DATES, "payer-data", ("SAFETY-10",),
       "ExplanationOfBenefit.created is served in US notation (02/01/2024), not as a FHIR dateTime."),
    # --- FHIR API: errors and headers ------------------------------------------------------------------------
    _f(Fault.ERROR_STACK_TRACE, "fhir-errors", ("FHIR-SEC-03", "SAFETY-41", "FHIR-SEC-13"),
       "a non-numeric _count crashes the search: 500 with a Python traceback in a text/plain body."),
    _f(Fault.ERROR_NOT_OPERATIONOUTCOME, "fhir-errors", ("SAFETY-41", "SAFETY-39"),
       "FHIR API errors are HTML pages instead of OperationOutcome JSON."),
    _f(Fault.SERVER_BANNER, "fhir-errors", ("FHIR-SEC-03",),
       "every response names the server software and version (Server: uvicorn/…, X-Powered-By: Starlette/…)."),
    _f(Fault.WRONG_CONTENT_TYPE, "fhir-errors", ("SAFETY-38",),
       "FHIR responses are labelled application/json instead of application/fhir+json."),
    _f(Fault.PATH_REFLECTED_IN_HTML, "fhir-errors", ("HTTP-HYG-05", "FHIR-SEC-12"),
       "an unknown resource type is answered with an HTML error page that echoes the path segment unescaped."),
    _f(Fault.NOSNIFF_MISSING, "fhir-errors", ("FHIR-SEC-12",),
       "responses lack X-Content-Type-Options: nosniff."),
    _f(Fault.CORS_WILDCARD_CREDENTIALS, "fhir-errors", ("SMART-SEC-01", "SAFETY-37"),
       "the FHIR and token endpoints reflect any Origin in Access-Control-Allow-Origin together with "
       "Access-Control-Allow-Credentials: true."),
    # --- TLS -------------------------------------------------------------------------------------------------
    _f(Fault.TLS_LEGACY_PROTOCOLS, "tls", ("TLS-02", "CARIN-SEC-06", "FHIR-SEC-02", "USCORE-SEC-01"),
       "the HTTPS listener also negotiates TLS 1.0 and 1.1 (OpenSSL security level 0)."),
    _f(Fault.TLS13_DISABLED, "tls", ("TLS-03",),
       "the HTTPS listener offers TLS 1.2 only (no TLS 1.3)."),
    _f(Fault.TLS_WEAK_CIPHERS, "tls", ("TLS-04", "FHIR-SEC-02"),
       "TLS 1.2 also offers static-RSA CBC suites without forward secrecy (AES128-SHA, AES256-SHA)."),
    _f(Fault.TLS12_DISABLED, "tls", ("TLS-03", "CARIN-SEC-06"),
       "the listener accepts TLS 1.3 only, locking out clients that (as BCP 195 allows) speak TLS 1.2."),
    _f(Fault.TLS_CBC_ONLY, "tls", ("TLS-04",),
       "TLS 1.2 offers only ECDHE with AES-CBC/SHA-1 suites: forward secret but no AEAD cipher."),
    _f(Fault.CERT_EXPIRING_SOON, "tls", ("TLS-08",),
       "the server certificate expires in 10 days."),
    _f(Fault.CERT_EXPIRED, "tls", ("TLS-05",),
       "the server certificate expired yesterday."),
    _f(Fault.CERT_WEAK_KEY_1024, "tls", ("TLS-05",),
       "the server certificate has a 1024-bit RSA key."),
    _f(Fault.CERT_CRITICAL_SAN, "tls", ("TLS-10",),
       "the server certificate marks its subjectAltName critical next to a non-empty subject (as trustme's leaves do): "
       "clients accept the chain, cryptography's strict RFC 5280 verifier does not."),
    _f(Fault.CERT_HOSTNAME_MISMATCH, "tls", ("TLS-05",),
       "the server certificate names only reference.invalid, not 127.0.0.1/localhost."),
    _f(Fault.HSTS_MISSING, "tls", ("TLS-06",),
       "no Strict-Transport-Security header on HTTPS responses."),
    _f(Fault.PLAINTEXT_HTTP_SERVED, "tls", ("TLS-06", "FHIR-SEC-01"),
       "the plain-http listener serves the whole server (discovery, auth, FHIR data) instead of redirecting to "
       "https."),
    # --- backend services (reference/backend.py; checks in suites/backend_services) ----------------------------
    _f(Fault.CLIENT_CREDENTIALS_NOT_ADVERTISED, "backend-services", ("BACKEND-01",),
       "smart-configuration grant_types_supported omits client_credentials although the grant works."),
    _f(Fault.PRIVATE_KEY_JWT_NOT_ADVERTISED, "backend-services", ("BACKEND-02",),
       "smart-configuration token_endpoint_auth_methods_supported omits private_key_jwt."),
    _f(Fault.ASYMMETRIC_CAPABILITY_MISSING, "backend-services", ("BACKEND-02",),
       "smart-configuration capabilities omits client-confidential-asymmetric."),
    _f(Fault.ASSERTION_ALGS_NOT_ADVERTISED, "backend-services", ("BACKEND-03",),
       "smart-configuration has no token_endpoint_auth_signing_alg_values_supported."),
    _f(Fault.SYSTEM_SCOPES_NOT_ADVERTISED, "backend-services", ("BACKEND-04",),
       "smart-configuration scopes_supported lists no system/ scopes."),
    _f(Fault.BACKEND_TOKEN_NO_EXPIRES_IN, "backend-services", ("BACKEND-05",),
       "the client_credentials token response has no expires_in."),
    _f(Fault.BACKEND_TOKEN_LONG_LIVED, "backend-services", ("BACKEND-06",),
       "backend access tokens live a day (expires_in 86400)."),
    _f(Fault.BACKEND_SCOPE_WIDENED, "backend-services", ("BACKEND-07", "BACKEND-08", "BACKEND-10"),
       "the client_credentials token adds system/*.rs to whatever was requested (and it works at the API)."),
    _f(Fault.BACKEND_REFRESH_TOKEN_ISSUED, "backend-services", ("BACKEND-09",),
       "the client_credentials token response carries a refresh_token."),
    _f(Fault.BACKEND_SCOPE_NOT_LIMITED, "backend-services", ("BACKEND-08",),
       "requested system/ scopes are granted as asked, beyond what the client is registered for."),
    _f(Fault.ASSERTION_TYPE_NOT_CHECKED, "backend-services", ("RFC7523-04",),
       "client_assertion_type is not checked: an assertion sent under another type authenticates the client."),
    _f(Fault.ASSERTION_ISS_SUB_NOT_CHECKED, "backend-services", ("ASYM-03", "RFC7523-03"),
       "the client is taken from the assertion's sub; iss is not compared with it."),
    _f(Fault.ASSERTION_KEY_BY_KID_ONLY, "backend-services", ("ASYM-03",),
       "the verification key is looked up by kid across all registered clients: an assertion naming an unknown "
       "iss, signed with a registered key, authenticates that key's client."),
    _f(Fault.ASSERTION_AUD_NOT_CHECKED, "backend-services", ("RFC7523-01",),
       "the assertion's aud is neither required nor compared with the token endpoint."),
    _f(Fault.ASSERTION_EXP_NOT_CHECKED, "backend-services", ("RFC7523-02",),
       "expired assertions are accepted (exp not verified)."),
    _f(Fault.ASSERTION_LIFETIME_NOT_LIMITED, "backend-services", ("ASYM-06",),
       "assertions whose exp is an hour ahead are accepted (no five-minute limit)."),
    _f(Fault.ASSERTION_JTI_REPLAY_ACCEPTED, "backend-services", ("ASYM-02",),
       "assertion jti values are not remembered: the same assertion authenticates twice."),
    _f(Fault.ASSERTION_SIGNATURE_NOT_VERIFIED, "backend-services", ("ASYM-01",),
       "the assertion's claims are checked but its signature is not verified."),
    _f(Fault.ASSERTION_UNKNOWN_KID_ACCEPTED, "backend-services", ("ASYM-04",),
       "an assertion whose kid matches no registered key is verified with the client's first key of that type."),
    _f(Fault.ASSERTION_ALG_NONE_ACCEPTED, "backend-services", ("ASYM-01", "JWTBCP-01"),
       "an unsigned assertion (alg none) is accepted."),
    _f(Fault.ASSERTION_HS256_CONFUSION, "backend-services", ("ASYM-01", "JWTBCP-01"),
       "algorithm confusion: an HS256 assertion is verified with the client's registered public key (PEM) as the "
       "HMAC secret."),
    _f(Fault.KEY_CLIENT_SECRET_ACCEPTED, "backend-services", ("ASYM-07",),
       "a key-only backend client is accepted with any client secret (no secret registered was taken as a match)."),
    _f(Fault.SYSTEM_TOKENS_REFUSED, "backend-services", ("BACKEND-10",),
       "the FHIR API refuses every system/ token (403: it expects a patient context)."),
    _f(Fault.SYSTEM_SCOPE_NOT_ENFORCED, "backend-services", ("BACKEND-10",),
       "a system/ token reads every resource type, whatever its scopes."),
    # --- bulk data export (reference/bulk.py; checks in suites/bulk_export) -----------------------------------
    _f(Fault.BULK_KICKOFF_WITHOUT_TOKEN, "bulk-data", ("BULK-01",),
       "$export kick-off without an Authorization header starts a job (of every type)."),
    _f(Fault.BULK_CONTENT_LOCATION_MISSING, "bulk-data", ("BULK-02",),
       "the kick-off's 202 has no Content-Location, so the client cannot find the status URL."),
    _f(Fault.BULK_RETRY_AFTER_MISSING, "bulk-data", ("BULK-03",),
       "in-progress status answers (202) carry no Retry-After."),
    _f(Fault.BULK_MANIFEST_INCOMPLETE, "bulk-data", ("BULK-04",),
       "the completed export's manifest has no requiresAccessToken."),
    _f(Fault.BULK_FILES_UNPROTECTED, "bulk-data", ("BULK-05",),
       "output files are served without a token although the manifest says requiresAccessToken true."),
    _f(Fault.BULK_TYPE_FILTER_IGNORED, "bulk-data", ("BULK-06",),
       "the export holds every resource type, whatever _type and the token's scopes say."),
    _f(Fault.BULK_NDJSON_INVALID, "bulk-data", ("BULK-07",),
       "output files are one pretty-printed JSON array instead of NDJSON."),
    _f(Fault.BULK_DELETE_IGNORED, "bulk-data", ("BULK-08",),
       "DELETE on the status URL answers 202 but the job and its manifest stay."),
    _f(Fault.BULK_STATUS_ANY_CLIENT, "bulk-data", ("BULK-09",),
       "any authenticated backend client can poll another client's export job and download its files."),
    # --- safety checklist --- (reference/fhir_search.py; checks in suites/fhir_safety)
    _f(Fault.SEARCH_PARAM_IGNORED, "fhir-safety", ("SAFETY-09", "FHIR-SRCH-01"),
       "the advertised _id search parameter is ignored (every match returned) yet still shown in the self link."),
    _f(Fault.UNADVERTISED_INTERACTION_SERVED, "fhir-safety", ("SAFETY-09",),
       "instance history (GET [type]/[id]/_history), not in the CapabilityStatement, is served with the record."),
    _f(Fault.MISSING_VALUE_500, "fhir-safety", ("SAFETY-17", "FHIR-HTTP-02"),
       "a search parameter with an empty value (patient=) crashes the search: HTTP 500 with a plain-text body."),
    _f(Fault.LENIENT_SELF_LINK_LISTS_IGNORED, "fhir-safety", ("FHIR-SRCH-01",),
       "under Prefer: handling=lenient the ignored unknown parameter is still listed in the self link."),
    _f(Fault.CLOCK_SKEWED, "fhir-safety", ("SAFETY-24",),
       "the server clock runs 3 hours ahead: Date headers, token iat/exp and introspection follow it."),
    _f(Fault.NARRATIVE_SCRIPT, "fhir-safety", ("SAFETY-34", "FHIR-NARR-01"),
       "the member's Patient narrative carries a <script> element and an onclick attribute."),
    _f(Fault.FORMAT_IGNORED_HTML, "fhir-safety", ("SAFETY-40", "FHIR-FMT-01"),
       "_format other than JSON is ignored and the server's HTML browse page is returned instead."),
    _f(Fault.MUST_SUPPORT_DROPPED, "fhir-safety", ("SAFETY-04", "CARIN-MS-01"),
       "Coverage is served without relationship, a must-support element its CARIN profile requires (1..1)."),
    # --- issue 13: member private_key_jwt (with its variant), jku, Patient/$export ---
    replace(_f(Fault.MEMBER_ASSERTION_SIGNATURE_NOT_CHECKED, "tokens", ("ASYM-01",), "the key-registered member "
               "client's assertion at the code exchange is accepted without checking its signature."),
            runs_with=(MEMBER_CLIENT_PRIVATE_KEY_JWT,)),
    replace(_f(Fault.MEMBER_ASSERTION_REPLAY_ACCEPTED, "tokens", ("ASYM-02",), "the key-registered member client's "
               "assertion is accepted again with a jti already used."), runs_with=(MEMBER_CLIENT_PRIVATE_KEY_JWT,)),
    _f(Fault.ASSERTION_JKU_TRUSTED, "backend-services", ("ASYM-08",),
       "a backend assertion's jku header is ignored: a jku the client never registered still authenticates."),
    _f(Fault.BULK_PATIENT_EXPORT_SCOPE_IGNORED, "bulk-data", ("BULK-06",),
       "Patient/$export exports every resource type, whatever the token's system/ scopes say."),
)

FAULTS: dict[Fault, FaultSpec] = {
    fault.name: replace(fault, takes_away=_TAKES_AWAY.get(fault.name, ())) for fault in _CATALOG
}


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
