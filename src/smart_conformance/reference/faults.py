"""The fault catalog: named, realistic defects the reference server can switch on.

Each fault is checked at exactly one spot in the server (``ctx.faults.active("name")``), so switching one on changes
one behaviour. The catalog doubles as the harness's own test plan: ``caught_by`` lists the suite checks expected to
fail when the fault is on (filled in by the suite authors).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Fault:
    """One defect: what it does, which requirements it breaks, and which suite checks catch it."""

    name: str
    summary: str
    breaks: tuple[str, ...]
    area: str
    caught_by: tuple[str, ...] = ()
    blocks: tuple[str, ...] = ()


def _f(name: str, area: str, breaks: tuple[str, ...], summary: str) -> Fault:
    return Fault(name=name, summary=summary, breaks=breaks, area=area)


_CATALOG: tuple[Fault, ...] = (
    # --- discovery -------------------------------------------------------------------------------------------
    _f("smart-config-missing-capability", "discovery", ("CARIN-SEC-04", "SMART-CAP-01"),
       "smart-configuration `capabilities` omits launch-standalone."),
    _f("pkce-plain-advertised", "discovery", ("SMART-DISC-08",),
       "smart-configuration code_challenge_methods_supported lists plain next to S256."),
    _f("smart-config-relative-urls", "discovery", ("SMART-DISC-03",),
       "smart-configuration endpoint URLs are relative paths (/auth/token) instead of absolute https URLs."),
    _f("smart-config-html-on-accept-html", "discovery", ("SMART-DISC-02",),
       "smart-configuration answers an HTML page when the request's Accept header prefers text/html."),
    _f("grant-types-missing", "discovery", ("SMART-DISC-07",),
       "smart-configuration has no grant_types_supported."),
    _f("scopes-supported-missing", "discovery", ("SMART-DISC-11", "CARIN-SEC-02"),
       "smart-configuration has no scopes_supported."),
    _f("issuer-mismatch", "discovery", ("OIDC-DISC-01", "SMART-DISC-09"),
       "openid-configuration `issuer` has a trailing slash, so it differs from the issuer URL it is served under, "
       "from smart-configuration's issuer and from id_token iss."),
    _f("jwks-missing-kid", "discovery", ("OIDC-05", "SMART-OIDC-03"),
       "JWKS keys (two: the active one and the next rotation key) carry no kid, so a verifier cannot pick one."),
    _f("capability-oauth-uris-mismatch", "discovery", ("SMART-DISC-15",),
       "CapabilityStatement oauth-uris `token` points at a stale path (/auth/oauth2/token) that answers 404."),
    _f("metadata-requires-token", "discovery", ("SMART-DISC-15", "SAFETY-09"),
       "GET /fhir/metadata demands a bearer token (401) instead of being public."),
    _f("capabilities-as-string", "discovery", ("SMART-DISC-04",),
       "smart-configuration `capabilities` is one space-separated string instead of an array."),
    _f("authorization-endpoint-missing", "discovery", ("SMART-DISC-06",),
       "smart-configuration advertises launch-standalone but has no authorization_endpoint."),
    _f("sso-without-jwks-uri", "discovery", ("SMART-DISC-09",),
       "smart-configuration advertises sso-openid-connect but omits jwks_uri."),
    _f("response-types-missing", "discovery", ("SMART-DISC-12",),
       "smart-configuration has no response_types_supported."),
    _f("revocation-not-advertised", "discovery", ("SMART-DISC-14",),
       "smart-configuration omits revocation_endpoint (the endpoint still works)."),
    _f("permission-v1-not-advertised", "discovery", ("SMART-SCOPE-01",),
       "a SMART 2 server that still accepts v1 scopes does not advertise permission-v1."),
    _f("auth-methods-post-only", "discovery", ("SMART-TOKEN-01", "SMART-DISC-10"),
       "token_endpoint_auth_methods_supported lists only client_secret_post for a symmetric confidential server."),
    _f("smart-config-requires-token", "discovery", ("SMART-DISC-01", "CARIN-SEC-02"),
       "the well-known SMART configuration answers 401 to requests without a bearer token."),
    _f("openid-config-incomplete", "discovery", ("OIDC-DISC-01",),
       "openid-configuration omits subject_types_supported."),
    _f("openid-config-no-rs256", "discovery", ("SMART-OIDC-04",),
       "openid-configuration advertises only ES256 for id_token signing."),
    _f("capability-wrong-fhir-version", "discovery", ("FHIR-CAP-02",),
       "the CapabilityStatement declares fhirVersion 4.3.0 on an R4 endpoint."),
    _f("capability-no-security-service", "discovery", ("FHIR-CAP-03",),
       "the CapabilityStatement's rest.security has no service coding."),
    # --- authorize -------------------------------------------------------------------------------------------
    _f("pkce-plain-accepted", "authorize", ("SMART-PKCE-02", "RFC7636-01"),
       "authorize accepts code_challenge_method=plain (and a challenge with no method, as plain); the token "
       "endpoint then compares the verifier to the challenge verbatim."),
    _f("pkce-not-required", "authorize", ("SMART-PKCE-05", "RFC7636-02"),
       "authorize accepts requests without code_challenge; such codes are exchanged without a verifier."),
    _f("redirect-uri-prefix-match", "authorize", ("OAUTHBCP-01", "SMART-AUTHZ-03", "RFC6749-01"),
       "redirect_uri is accepted when it merely starts with a registered URI (e.g. .../callback/../evil or "
       "...callback.attacker)."),
    _f("unknown-client-redirects", "authorize", ("RFC6749-01",),
       "an unknown client_id is answered with a redirect (error=unauthorized_client) to the supplied redirect_uri "
       "instead of an error page."),
    _f("state-not-echoed-on-error", "authorize", ("SMART-AUTHZ-04", "RFC6749-02"),
       "error redirects from authorize/consent leave out the state parameter."),
    _f("state-altered", "authorize", ("SMART-AUTHZ-04",),
       "the success redirect percent-encodes state twice, so a state holding characters outside A-Z a-z 0-9 -._~ "
       "comes back altered."),
    _f("aud-not-validated", "authorize", ("SMART-AUTHZ-05", "SMART-FHIR-04"),
       "authorize ignores aud/resource; a launch naming a foreign aud gets a token that works on this FHIR server."),
    _f("implicit-grant-allowed", "authorize", ("OAUTHBCP-03", "SMART-AUTHZ-02"),
       "response_type=token is accepted: after consent the access token is returned in the redirect fragment."),
    _f("authorize-post-unsupported", "authorize", ("SMART-AUTHZ-01",),
       "POST to the authorization endpoint answers 405 (only GET works)."),
    # --- member pages ----------------------------------------------------------------------------------------
    _f("login-no-csrf", "consent", ("RFC6749-10",),
       "the login and consent form posts are accepted without the CSRF token / browser binding cookie."),
    _f("login-accepts-any-password", "consent", ("PDEX-SEC-02", "FHIR-SEC-06"),
       "sign-in accepts any password for a known username."),
    _f("consent-skipped", "consent", ("PDEX-SEC-03", "SAFETY-22"),
       "after sign-in the code is issued at once with every requested scope; no consent page is shown."),
    _f("consent-ignores-unticked", "consent", ("SMART-AUTHZ-09",),
       "the consent POST grants every requested scope, ignoring which checkboxes the member left ticked."),
    _f("deny-returns-code", "consent", ("SMART-AUTHZ-08",),
       "pressing Deny on the consent page still redirects with a code (the decision field is ignored)."),
    _f("consent-page-frameable", "consent", ("OAUTHBCP-04",),
       "login and consent pages carry neither X-Frame-Options nor CSP frame-ancestors."),
    # --- token endpoint --------------------------------------------------------------------------------------
    _f("code-reuse-allowed", "token", ("RFC6749-04",),
       "an authorization code can be exchanged more than once; each use yields fresh tokens."),
    _f("code-not-bound-to-redirect", "token", ("RFC6749-06",),
       "the token request's redirect_uri is not compared with the one used at authorize (missing or different "
       "values pass)."),
    _f("code-not-bound-to-client", "token", ("RFC6749-05",),
       "a code issued to one client can be exchanged by another authenticated client."),
    _f("pkce-verifier-not-checked", "token", ("SMART-PKCE-03", "SMART-PKCE-04"),
       "the token endpoint ignores code_verifier: missing, blank or wrong verifiers are accepted."),
    _f("token-no-store-missing", "token", ("SMART-TOKEN-06",),
       "token endpoint responses (success and error) lack Cache-Control: no-store and Pragma: no-cache."),
    _f("wrong-secret-accepted", "token", ("SMART-TOKEN-02", "SMART-TOKEN-01"),
       "client authentication checks only that the client_id exists; any secret is accepted."),
    _f("invalid-client-without-401", "token", ("RFC6749-08",),
       "failed client authentication is answered 400 invalid_client without WWW-Authenticate."),
    _f("password-grant-allowed", "token", ("OAUTHBCP-03",),
       "grant_type=password with a member's username/password returns tokens."),
    _f("expires-in-missing", "token", ("SMART-TOKEN-05", "SMART-REFRESH-02"),
       "token responses omit expires_in."),
    _f("scope-widened", "token", ("SMART-TOKEN-04", "SMART-AUTHZ-09"),
       "the token endpoint adds patient/*.rs to the granted scope: the token (and its scope field) covers every "
       "resource type whatever was consented."),
    _f("patient-missing", "token", ("SMART-TOKEN-07", "SMART-AUTHZ-06"),
       "the token response has no `patient` even though patient scopes were granted."),
    _f("code-expires-immediately", "token", ("RFC6749-03", "CARIN-SEC-01"),
       "codes are stored already expired (a clock-unit bug): every code exchange fails with invalid_grant."),
    _f("token-type-not-bearer", "token", ("SMART-TOKEN-03",),
       "the token response says token_type JWT instead of Bearer."),
    _f("token-scope-missing", "token", ("SMART-TOKEN-04",),
       "the token response omits scope."),
    _f("context-wrong-types", "token", ("SMART-TOKEN-08",),
       "the token response carries need_patient_banner as the string \"false\" instead of a boolean."),
    _f("code-reuse-keeps-tokens", "token", ("RFC6749-11",),
       "a replayed code is refused, but the tokens it produced keep working."),
    _f("token-get-accepted", "token", ("RFC6749-12",),
       "the token endpoint also serves GET with the parameters in the query string."),
    _f("refresh-ignores-narrower-scope", "refresh", ("SMART-REFRESH-04",),
       "a narrower scope asked for at refresh is ignored: the full original scope is granted again."),
    _f("introspect-unknown-error", "introspection", ("RFC7662-01",),
       "introspecting a token the server cannot parse answers 400 instead of active: false."),
    _f("representative-fhiruser-patient", "id_token", ("PDEX-SEC-04", "SMART-OIDC-02"),
       "for a personal representative, fhirUser names the dependent's Patient instead of the representative."),
    # --- id_token --------------------------------------------------------------------------------------------
    _f("id-token-missing", "id_token", ("SMART-OIDC-01",),
       "no id_token is returned although openid and fhirUser were granted."),
    _f("id-token-wrong-aud", "id_token", ("OIDC-02",),
       "id_token aud is the FHIR base URL instead of the client_id."),
    _f("id-token-hs256", "id_token", ("SMART-OIDC-04", "OIDC-02"),
       "id_token is signed HS256 with a server secret (not verifiable with the JWKS)."),
    _f("id-token-no-kid", "id_token", ("OIDC-05",),
       "id_token header has no kid although the JWKS holds two keys."),
    _f("id-token-bad-signature", "id_token", ("OIDC-02", "SMART-OIDC-05"),
       "id_token signature bytes are corrupted."),
    _f("id-token-nonce-not-echoed", "id_token", ("OIDC-03", "OIDC-01"),
       "id_token leaves out the nonce sent at authorize."),
    _f("id-token-expired", "id_token", ("OIDC-02",),
       "id_token exp is already in the past when issued (computed from the wrong clock base)."),
    _f("fhiruser-other-origin", "id_token", ("SMART-OIDC-02",),
       "the id_token's fhirUser is an absolute plain-http URL on another origin than the FHIR server "
       "($SMART_REFERENCE_FHIRUSER_ORIGIN, default http://127.0.0.1:9): a harness that follows it hands the member's "
       "token to that origin."),
    _f("fhiruser-missing", "id_token", ("SMART-OIDC-02",),
       "id_token has no fhirUser claim."),
    _f("sub-unstable", "id_token", ("OIDC-04",),
       "id_token sub is a fresh random value at every launch instead of a stable member id."),
    # --- refresh ---------------------------------------------------------------------------------------------
    _f("offline-access-no-refresh-token", "refresh", ("SMART-REFRESH-01", "SMART-CAP-02"),
       "offline_access is granted but no refresh_token is returned."),
    _f("refresh-widens-scope", "refresh", ("SMART-REFRESH-04",),
       "a scope parameter on refresh is granted as asked, even beyond the original grant."),
    _f("refresh-without-client-auth", "refresh", ("SMART-REFRESH-02", "SMART-TOKEN-02"),
       "a refresh request without an Authorization header is served (client taken from the refresh token)."),
    _f("refresh-other-client", "refresh", ("SMART-REFRESH-03",),
       "a refresh token issued to one client is accepted from another authenticated client."),
    # --- revocation / introspection --------------------------------------------------------------------------
    _f("revocation-ignored", "revocation", ("RFC7009-01",),
       "revoking an access token answers 200 but the token keeps working."),
    _f("revocation-without-client-auth", "revocation", ("RFC7009-07",),
       "the revocation endpoint revokes a token for any caller that presents it, without client authentication."),
    _f("refresh-survives-revocation", "revocation", ("RFC7009-01",),
       "revoking a refresh token ends its access tokens but the refresh token itself still refreshes."),
    _f("access-survives-refresh-revocation", "revocation", ("RFC7009-02",),
       "revoking a refresh token leaves the access tokens of the same grant working."),
    _f("introspect-revoked-active", "introspection", ("RFC7662-01",),
       "introspection reports revoked tokens as active with full details."),
    _f("introspect-missing-patient", "introspection", ("SMART-INTRO-03",),
       "introspection of an active token omits the patient launch context."),
    _f("introspect-unauthenticated", "introspection", ("RFC7662-01",),
       "introspection answers callers without client authentication."),
    # --- FHIR API: tokens ------------------------------------------------------------------------------------
    _f("token-in-query-accepted", "fhir-auth", ("RFC6750-02",),
       "the FHIR API accepts an access token in the access_token query parameter."),
    _f("expired-token-accepted", "fhir-auth", ("SMART-FHIR-02",),
       "the FHIR API does not check access token expiry."),
    _f("alg-none-accepted", "fhir-auth", ("SMART-FHIR-01",),
       "the FHIR API accepts unsigned (alg: none) access tokens whose claims look right."),
    _f("tampered-signature-accepted", "fhir-auth", ("SMART-FHIR-01",),
       "the FHIR API does not verify the access token signature."),
    _f("revoked-token-accepted", "fhir-auth", ("SMART-FHIR-01", "RFC7009-01"),
       "the FHIR API checks signature and expiry but not the revocation list."),
    _f("refusal-echoes-token", "fhir-auth", ("FHIR-SEC-14",),
       "a 401 for a bad access token repeats the rejected token in the OperationOutcome diagnostics."),
    _f("www-authenticate-missing", "fhir-auth", ("RFC6750-03",),
       "401 answers from the FHIR API carry no WWW-Authenticate header."),
    # --- FHIR API: scopes and compartment --------------------------------------------------------------------
    _f("scope-not-enforced", "scopes", ("SMART-FHIR-03", "SMART-AUTHZ-09"),
       "the FHIR API does not check that granted scopes cover the resource type (403 never happens)."),
    _f("writes-allowed", "scopes", ("SMART-FHIR-06",),
       "create/update/delete are accepted (201/200) under read-only scopes."),
    _f("v1-scopes-ignored", "scopes", ("SMART-SCOPE-01", "CARIN-SEC-05"),
       "v1 scopes (patient/Coverage.read) are granted, but the FHIR API only understands v2 suffixes, so a v1 "
       "token is refused (403) for the very types it was granted."),
    _f("compartment-leak-read", "compartment", ("SMART-FHIR-05", "HREX-SEC-01"),
       "reading a resource by id does not check the patient compartment: other members' records are returned."),
    _f("compartment-leak-search", "compartment", ("SMART-FHIR-05", "FHIR-SEC-07"),
       "an explicit patient/beneficiary search parameter overrides the compartment: another member's data is found."),
    _f("compartment-leak-include", "compartment", ("FHIR-SEC-07", "SMART-FHIR-05"),
       "_include/_revinclude results are not compartment-filtered (e.g. Organization?_revinclude="
       "ExplanationOfBenefit:insurer returns every member's claims)."),
    _f("compartment-leak-everything", "compartment", ("FHIR-SEC-07", "SMART-FHIR-05"),
       "Patient/{id}/$everything works for any patient id, not only the one in context."),
    _f("existence-oracle", "compartment", ("FHIR-SEC-08",),
       "reading another member's existing record answers 403, a missing id 404: existence leaks."),
    _f("compartment-leak-chained", "compartment", ("FHIR-SEC-07", "SMART-FHIR-05"),
       "chained parameters (ExplanationOfBenefit?patient.identifier=…, patient.name=…) are resolved before the "
       "compartment filter, so they find another member's claims and coverage."),
    _f("representative-over-reach", "compartment", ("PDEX-SEC-04", "SMART-FHIR-05", "HREX-SEC-01"),
       "the compartment check is only made for Patient users: a representative's (fhirUser RelatedPerson) token "
       "reads and searches every member's records."),
    _f("search-unfiltered", "payer-data", ("CARIN-DATA-01", "CARIN-DATA-02", "SMART-FHIR-05"),
       "type-level searches ignore both the patient compartment and the patient/beneficiary parameter: a member's "
       "ExplanationOfBenefit?patient=… returns every member's claims."),
    _f("paging-leaks-other-members", "payer-data", ("FHIR-HTTP-03", "SMART-FHIR-05"),
       "search pages after the first (_offset > 0) are cut from every resource of the type, so following `next` "
       "reaches other members' claims and the totals disagree."),
    _f("eob-insurer-unresolvable", "payer-data", ("CARIN-DATA-03",),
       "ExplanationOfBenefit.insurer points at a retired Organization (Organization/org-payer-retired-2019) that "
       "answers 404."),
    _f("invalid-fhir-dates", "payer-data", ("SAFETY-10",),
       "ExplanationOfBenefit.created is served in US notation (02/01/2024), not as a FHIR dateTime."),
    # --- FHIR API: errors and headers ------------------------------------------------------------------------
    _f("error-stack-trace", "fhir-errors", ("FHIR-SEC-03", "SAFETY-41", "FHIR-SEC-13"),
       "a non-numeric _count crashes the search: 500 with a Python traceback in a text/plain body."),
    _f("error-not-operationoutcome", "fhir-errors", ("SAFETY-41", "SAFETY-39"),
       "FHIR API errors are HTML pages instead of OperationOutcome JSON."),
    _f("server-banner", "fhir-errors", ("FHIR-SEC-03",),
       "every response names the server software and version (Server: uvicorn/…, X-Powered-By: Starlette/…)."),
    _f("wrong-content-type", "fhir-errors", ("SAFETY-38",),
       "FHIR responses are labelled application/json instead of application/fhir+json."),
    _f("path-reflected-in-html", "fhir-errors", ("HTTP-HYG-05", "FHIR-SEC-12"),
       "an unknown resource type is answered with an HTML error page that echoes the path segment unescaped."),
    _f("nosniff-missing", "fhir-errors", ("FHIR-SEC-12",),
       "responses lack X-Content-Type-Options: nosniff."),
    _f("cors-wildcard-credentials", "fhir-errors", ("SMART-SEC-01", "SAFETY-37"),
       "the FHIR and token endpoints reflect any Origin in Access-Control-Allow-Origin together with "
       "Access-Control-Allow-Credentials: true."),
    # --- TLS -------------------------------------------------------------------------------------------------
    _f("tls-legacy-protocols", "tls", ("TLS-02", "CARIN-SEC-06", "FHIR-SEC-02", "USCORE-SEC-01"),
       "the HTTPS listener also negotiates TLS 1.0 and 1.1 (OpenSSL security level 0)."),
    _f("tls13-disabled", "tls", ("TLS-03",),
       "the HTTPS listener offers TLS 1.2 only (no TLS 1.3)."),
    _f("tls-weak-ciphers", "tls", ("TLS-04", "FHIR-SEC-02"),
       "TLS 1.2 also offers static-RSA CBC suites without forward secrecy (AES128-SHA, AES256-SHA)."),
    _f("tls12-disabled", "tls", ("TLS-03", "CARIN-SEC-06"),
       "the listener accepts TLS 1.3 only, locking out clients that (as BCP 195 allows) speak TLS 1.2."),
    _f("tls-cbc-only", "tls", ("TLS-04",),
       "TLS 1.2 offers only ECDHE with AES-CBC/SHA-1 suites: forward secret but no AEAD cipher."),
    _f("cert-expiring-soon", "tls", ("TLS-08",),
       "the server certificate expires in 10 days."),
    _f("cert-expired", "tls", ("TLS-05",),
       "the server certificate expired yesterday."),
    _f("cert-weak-key-1024", "tls", ("TLS-05",),
       "the server certificate has a 1024-bit RSA key."),
    _f("cert-critical-san", "tls", ("TLS-10",),
       "the server certificate marks its subjectAltName critical next to a non-empty subject (as trustme's leaves do): "
       "clients accept the chain, cryptography's strict RFC 5280 verifier does not."),
    _f("cert-hostname-mismatch", "tls", ("TLS-05",),
       "the server certificate names only reference.invalid, not 127.0.0.1/localhost."),
    _f("hsts-missing", "tls", ("TLS-06",),
       "no Strict-Transport-Security header on HTTPS responses."),
    _f("plaintext-http-served", "tls", ("TLS-06", "FHIR-SEC-01"),
       "the plain-http listener serves the whole server (discovery, auth, FHIR data) instead of redirecting to "
       "https."),
    # --- backend services (reference/backend.py; checks in suites/backend_services) ----------------------------
    _f("client-credentials-not-advertised", "backend-services", ("BACKEND-01",),
       "smart-configuration grant_types_supported omits client_credentials although the grant works."),
    _f("private-key-jwt-not-advertised", "backend-services", ("BACKEND-02",),
       "smart-configuration token_endpoint_auth_methods_supported omits private_key_jwt."),
    _f("asymmetric-capability-missing", "backend-services", ("BACKEND-02",),
       "smart-configuration capabilities omits client-confidential-asymmetric."),
    _f("assertion-algs-not-advertised", "backend-services", ("BACKEND-03",),
       "smart-configuration has no token_endpoint_auth_signing_alg_values_supported."),
    _f("system-scopes-not-advertised", "backend-services", ("BACKEND-04",),
       "smart-configuration scopes_supported lists no system/ scopes."),
    _f("backend-token-no-expires-in", "backend-services", ("BACKEND-05",),
       "the client_credentials token response has no expires_in."),
    _f("backend-token-long-lived", "backend-services", ("BACKEND-06",),
       "backend access tokens live a day (expires_in 86400)."),
    _f("backend-scope-widened", "backend-services", ("BACKEND-07", "BACKEND-08", "BACKEND-10"),
       "the client_credentials token adds system/*.rs to whatever was requested (and it works at the API)."),
    _f("backend-refresh-token-issued", "backend-services", ("BACKEND-09",),
       "the client_credentials token response carries a refresh_token."),
    _f("backend-scope-not-limited", "backend-services", ("BACKEND-08",),
       "requested system/ scopes are granted as asked, beyond what the client is registered for."),
    _f("assertion-type-not-checked", "backend-services", ("RFC7523-04",),
       "client_assertion_type is not checked: an assertion sent under another type authenticates the client."),
    _f("assertion-iss-sub-not-checked", "backend-services", ("ASYM-03", "RFC7523-03"),
       "the client is taken from the assertion's sub; iss is not compared with it."),
    _f("assertion-key-by-kid-only", "backend-services", ("ASYM-03",),
       "the verification key is looked up by kid across all registered clients: an assertion naming an unknown "
       "iss, signed with a registered key, authenticates that key's client."),
    _f("assertion-aud-not-checked", "backend-services", ("RFC7523-01",),
       "the assertion's aud is neither required nor compared with the token endpoint."),
    _f("assertion-exp-not-checked", "backend-services", ("RFC7523-02",),
       "expired assertions are accepted (exp not verified)."),
    _f("assertion-lifetime-not-limited", "backend-services", ("ASYM-06",),
       "assertions whose exp is an hour ahead are accepted (no five-minute limit)."),
    _f("assertion-jti-replay-accepted", "backend-services", ("ASYM-02",),
       "assertion jti values are not remembered: the same assertion authenticates twice."),
    _f("assertion-signature-not-verified", "backend-services", ("ASYM-01",),
       "the assertion's claims are checked but its signature is not verified."),
    _f("assertion-unknown-kid-accepted", "backend-services", ("ASYM-04",),
       "an assertion whose kid matches no registered key is verified with the client's first key of that type."),
    _f("assertion-alg-none-accepted", "backend-services", ("ASYM-01", "JWTBCP-01"),
       "an unsigned assertion (alg none) is accepted."),
    _f("assertion-hs256-confusion", "backend-services", ("ASYM-01", "JWTBCP-01"),
       "algorithm confusion: an HS256 assertion is verified with the client's registered public key (PEM) as the "
       "HMAC secret."),
    _f("key-client-secret-accepted", "backend-services", ("ASYM-07",),
       "a key-only backend client is accepted with any client secret (no secret registered was taken as a match)."),
    _f("system-tokens-refused", "backend-services", ("BACKEND-10",),
       "the FHIR API refuses every system/ token (403: it expects a patient context)."),
    _f("system-scope-not-enforced", "backend-services", ("BACKEND-10",),
       "a system/ token reads every resource type, whatever its scopes."),
    # --- bulk data export (reference/bulk.py; checks in suites/bulk_export) -----------------------------------
    _f("bulk-kickoff-without-token", "bulk-data", ("BULK-01",),
       "$export kick-off without an Authorization header starts a job (of every type)."),
    _f("bulk-content-location-missing", "bulk-data", ("BULK-02",),
       "the kick-off's 202 has no Content-Location, so the client cannot find the status URL."),
    _f("bulk-retry-after-missing", "bulk-data", ("BULK-03",),
       "in-progress status answers (202) carry no Retry-After."),
    _f("bulk-manifest-incomplete", "bulk-data", ("BULK-04",),
       "the completed export's manifest has no requiresAccessToken."),
    _f("bulk-files-unprotected", "bulk-data", ("BULK-05",),
       "output files are served without a token although the manifest says requiresAccessToken true."),
    _f("bulk-type-filter-ignored", "bulk-data", ("BULK-06",),
       "the export holds every resource type, whatever _type and the token's scopes say."),
    _f("bulk-ndjson-invalid", "bulk-data", ("BULK-07",),
       "output files are one pretty-printed JSON array instead of NDJSON."),
    _f("bulk-delete-ignored", "bulk-data", ("BULK-08",),
       "DELETE on the status URL answers 202 but the job and its manifest stay."),
    _f("bulk-status-any-client", "bulk-data", ("BULK-09",),
       "any authenticated backend client can poll another client's export job and download its files."),
)

# The test plan: which suite checks fail when each fault is on (exactly these, no others), and which checks honestly
# report "could not check" because the fault takes away what they need. tests/test_fault_matrix.py holds us to it.
CAUGHT_BY: dict[str, tuple[str, ...]] = {
    # discovery
    "smart-config-missing-capability": ("test_payer_standalone_capabilities",),
    "pkce-plain-advertised": ("test_pkce_s256_only",),
    "smart-config-relative-urls": ("test_oauth_uris_match_well_known", "test_smart_configuration_urls_absolute_https",
                                   "test_token_endpoint_advertised_and_answers"),
    "smart-config-html-on-accept-html": ("test_smart_configuration_json_whatever_accept",),
    "grant-types-missing": ("test_grant_types_supported",),
    "scopes-supported-missing": ("test_carin_scopes_advertised", "test_scopes_supported_listed"),
    "issuer-mismatch": ("test_issuer_identical_across_documents",),
    "jwks-missing-kid": ("test_jwks_has_usable_rsa_public_keys",),
    "capability-oauth-uris-mismatch": ("test_oauth_uris_match_well_known",),
    "metadata-requires-token": ("test_metadata_readable_without_token",),
    "capabilities-as-string": ("test_capabilities_is_array_of_strings",),
    "authorization-endpoint-missing": ("test_authorization_endpoint_advertised", "test_oauth_uris_match_well_known"),
    "sso-without-jwks-uri": ("test_openid_fields_when_sso",),
    "response-types-missing": ("test_response_types_supported",),
    "revocation-not-advertised": ("test_introspection_and_revocation_advertised", "test_oauth_uris_match_well_known"),
    "permission-v1-not-advertised": ("test_v1_scopes_accepted_on_v2",),
    "auth-methods-post-only": ("test_client_secret_basic_advertised",),
    "smart-config-requires-token": ("test_smart_configuration_served",),
    "openid-config-incomplete": ("test_openid_configuration_served",),
    "openid-config-no-rs256": ("test_openid_rs256_supported",),
    "capability-wrong-fhir-version": ("test_fhir_version_r4",),
    "capability-no-security-service": ("test_security_service_smart_on_fhir",),
    # authorize and member pages
    "pkce-plain-accepted": ("test_pkce_plain_refused",),
    "pkce-not-required": ("test_pkce_challenge_required",),
    "redirect-uri-prefix-match": ("test_unregistered_redirect_uri_not_redirected",),
    "unknown-client-redirects": ("test_unknown_client_not_redirected",),
    "state-not-echoed-on-error": ("test_state_returned_on_error",),
    "state-altered": ("test_state_returned_unchanged",),
    "aud-not-validated": ("test_wrong_aud_refused",),
    "implicit-grant-allowed": ("test_implicit_grant_refused",),
    "authorize-post-unsupported": ("test_authorize_by_post",),
    "login-accepts-any-password": ("test_wrong_password_refused",),
    "consent-skipped": ("test_consent_shown_before_code", "test_deny_returns_access_denied",
                        "test_unticked_scope_withheld_and_enforced"),
    "consent-ignores-unticked": ("test_unticked_scope_withheld_and_enforced",),
    "deny-returns-code": ("test_deny_returns_access_denied",),
    # token endpoint
    "code-expires-immediately": ("test_authorize_by_post", "test_standalone_launch_succeeds",
                                 "test_unticked_scope_withheld_and_enforced"),
    "code-reuse-allowed": ("test_code_reuse_revokes_tokens", "test_code_single_use"),
    "code-reuse-keeps-tokens": ("test_code_reuse_revokes_tokens",),
    "code-not-bound-to-redirect": ("test_code_bound_to_redirect_uri",),
    "code-not-bound-to-client": ("test_code_bound_to_client",),
    "pkce-verifier-not-checked": ("test_pkce_verifier_checked",),
    "token-no-store-missing": ("test_refresh_returns_new_access_token", "test_token_error_not_cached",
                               "test_token_response_not_cached"),
    "wrong-secret-accepted": ("test_client_authentication_required",),
    "invalid-client-without-401": ("test_client_authentication_required",),
    "password-grant-allowed": ("test_unsupported_grant_types_refused",),
    "token-get-accepted": ("test_token_endpoint_requires_post",),
    "expires-in-missing": ("test_refresh_returns_new_access_token", "test_token_expires_in"),
    "token-type-not-bearer": ("test_token_response_fields",),
    "token-scope-missing": ("test_refresh_returns_new_access_token", "test_token_response_scope"),
    "context-wrong-types": ("test_token_context_types",),
    "scope-widened": ("test_granted_scope_within_requested", "test_unticked_scope_withheld_and_enforced"),
    "patient-missing": ("test_introspection_of_live_token", "test_representative_launch",
                        "test_token_patient_context"),
    # id_token
    "id-token-missing": ("test_fhir_user_resolves_to_member", "test_id_token_claims", "test_id_token_issued",
                         "test_id_token_nonce", "test_id_token_signature", "test_sub_stable_per_member"),
    "id-token-wrong-aud": ("test_id_token_claims",),
    "id-token-hs256": ("test_id_token_signature",),
    "id-token-no-kid": ("test_id_token_signature",),
    "id-token-bad-signature": ("test_id_token_signature",),
    "id-token-nonce-not-echoed": ("test_id_token_nonce",),
    "id-token-expired": ("test_id_token_claims",),
    "fhiruser-missing": ("test_fhir_user_resolves_to_member", "test_representative_launch"),
    "fhiruser-other-origin": ("test_fhir_user_resolves_to_member", "test_representative_launch"),
    "sub-unstable": ("test_introspection_of_live_token", "test_sub_stable_per_member"),
    "representative-fhiruser-patient": ("test_representative_launch",),
    # refresh, revocation, introspection
    "offline-access-no-refresh-token": ("test_refresh_token_issued",),
    "refresh-widens-scope": ("test_refresh_never_widens_scope",),
    "refresh-ignores-narrower-scope": ("test_refresh_narrower_scope_honoured",),
    "refresh-without-client-auth": ("test_refresh_requires_client_authentication",),
    "refresh-other-client": ("test_refresh_token_bound_to_client",),
    "revocation-ignored": ("test_revoked_access_token_refused",),
    "refresh-survives-revocation": ("test_revoked_refresh_token_stops_refresh",),
    "revocation-without-client-auth": ("test_revocation_requires_client_authentication",),
    "introspect-unknown-error": ("test_introspection_of_unknown_token",),
    "access-survives-refresh-revocation": ("test_revoked_refresh_token_stops_refresh",),
    "introspect-revoked-active": ("test_revoked_access_token_refused",),
    "introspect-missing-patient": ("test_introspection_of_live_token",),
    "introspect-unauthenticated": ("test_introspection_requires_authentication",),
    "revoked-token-accepted": ("test_code_reuse_revokes_tokens", "test_revoked_access_token_refused",
                               "test_revoked_refresh_token_stops_refresh"),
    # TLS
    "tls-legacy-protocols": ("test_tls_legacy_tls_refused",),
    "tls13-disabled": ("test_tls_1_3_offered",),
    "tls-weak-ciphers": ("test_tls_forward_secrecy",),
    "tls12-disabled": ("test_tls_1_2_accepted",),
    "tls-cbc-only": ("test_tls_no_weak_cipher_suites",),
    "cert-expiring-soon": ("test_tls_certificate_not_expiring_soon",),
    "cert-expired": ("test_tls_certificate_chain_valid", "test_tls_certificate_not_expired"),
    "cert-weak-key-1024": ("test_tls_certificate_key_strength",),
    "cert-hostname-mismatch": ("test_tls_certificate_hostname_matches",),
    "cert-critical-san": ("test_tls_certificate_profile",),
    "hsts-missing": ("test_tls_hsts_header",),
    "plaintext-http-served": ("test_tls_plain_http_not_served",),
    # FHIR API: tokens (suites/fhir_security)
    "token-in-query-accepted": ("test_token_in_query_not_accepted",),  # a MAY-level advice, reported as a warning
    "refusal-echoes-token": ("test_made_up_token_refused", "test_tampered_signature_refused",
                             "test_unsigned_alg_none_token_refused"),
    "alg-none-accepted": ("test_unsigned_alg_none_token_refused",),
    # Without signature verification, alg:none tokens pass too.
    "tampered-signature-accepted": ("test_tampered_signature_refused", "test_unsigned_alg_none_token_refused"),
    "www-authenticate-missing": ("test_made_up_token_refused", "test_request_without_token_refused",
                                 "test_tampered_signature_refused", "test_unsigned_alg_none_token_refused"),
    # FHIR API: scopes and compartment (suites/scopes, suites/payer_data)
    "scope-not-enforced": ("test_type_outside_scopes_refused", "test_v1_scope_grants_only_its_type",
                           "test_v2_scope_grants_only_its_type"),
    "writes-allowed": ("test_writes_refused_under_read_scopes",),
    "v1-scopes-ignored": ("test_v1_scope_grants_only_its_type",),
    "compartment-leak-read": ("test_other_member_read_refused", "test_refusal_same_for_existing_and_missing",
                              "test_representative_reaches_only_represented_member"),
    "compartment-leak-search": ("test_other_member_search_refused",
                                "test_representative_reaches_only_represented_member"),
    "compartment-leak-include": ("test_other_member_include_refused",),
    "compartment-leak-everything": ("test_other_member_everything_refused",),
    "existence-oracle": ("test_refusal_same_for_existing_and_missing",),
    "compartment-leak-chained": ("test_other_member_chained_search_refused",),
    "representative-over-reach": ("test_representative_reaches_only_represented_member",),
    "search-unfiltered": ("test_coverage_search_returns_member_coverage_only", "test_eob_carin_must_haves",
                          "test_eob_search_returns_member_claims_only", "test_other_member_chained_search_refused",
                          "test_other_member_include_refused", "test_other_member_search_refused",
                          "test_representative_reaches_only_represented_member", "test_search_paging_consistent",
                          "test_v1_scope_grants_only_its_type", "test_v2_scope_grants_only_its_type"),
    "paging-leaks-other-members": ("test_search_paging_consistent",),
    "eob-insurer-unresolvable": ("test_eob_carin_must_haves",),
    "invalid-fhir-dates": ("test_member_resources_valid_fhir",),
    # FHIR API: errors, headers, CORS (suites/fhir_security)
    "error-stack-trace": ("test_errors_are_operationoutcome", "test_junk_input_refused_cleanly"),
    "error-not-operationoutcome": ("test_errors_are_operationoutcome", "test_input_not_reflected_as_html",
                                   "test_unsupported_methods_refused"),
    "server-banner": ("test_errors_are_operationoutcome", "test_no_server_banner",
                      "test_refusal_discloses_no_internals"),
    "wrong-content-type": ("test_fhir_json_content_type",),
    "nosniff-missing": ("test_nosniff_on_api_responses",),
    "cors-wildcard-credentials": ("test_cors_no_credentials_for_any_origin", "test_cors_preflight_sane"),
    # Member pages (area consent; the checks live in suites/fhir_security/test_member_pages.py)
    "consent-page-frameable": ("test_sign_in_pages_not_frameable",),
    "login-no-csrf": ("test_sign_in_form_resists_csrf",),
    # DELETE on metadata reaches the same unknown-type page, so it is an HTML error there too (SAFETY-41).
    "path-reflected-in-html": ("test_input_not_reflected_as_html", "test_unsupported_methods_refused"),
    # Backend services (suites/backend_services)
    "client-credentials-not-advertised": ("test_client_credentials_grant_advertised",),
    "private-key-jwt-not-advertised": ("test_private_key_jwt_advertised",),
    "asymmetric-capability-missing": ("test_asymmetric_capability_advertised",),
    "assertion-algs-not-advertised": ("test_assertion_signing_algs_advertised",),
    "system-scopes-not-advertised": ("test_system_scopes_advertised",),
    "backend-token-no-expires-in": ("test_backend_token_issued",),
    "backend-token-long-lived": ("test_backend_token_short_lived",),
    "backend-scope-widened": ("test_backend_token_scope_within_request", "test_system_read_outside_scopes_refused",
                              "test_backend_scope_outside_registration_not_granted"),
    "backend-refresh-token-issued": ("test_backend_no_refresh_token",),
    "backend-scope-not-limited": ("test_backend_scope_outside_registration_not_granted",),
    "assertion-type-not-checked": ("test_assertion_wrong_type_refused",),
    "assertion-iss-sub-not-checked": ("test_assertion_iss_sub_mismatch_refused",),
    "assertion-key-by-kid-only": ("test_assertion_unknown_issuer_refused",),
    "assertion-aud-not-checked": ("test_assertion_wrong_audience_refused",),
    "assertion-exp-not-checked": ("test_assertion_expired_refused",),
    "assertion-lifetime-not-limited": ("test_assertion_lifetime_over_five_minutes_refused",),
    "assertion-jti-replay-accepted": ("test_assertion_jti_replay_refused",),
    "assertion-signature-not-verified": ("test_assertion_unregistered_key_refused",
                                         "test_assertion_tampered_payload_refused"),
    "assertion-unknown-kid-accepted": ("test_assertion_unknown_kid_refused",),
    "assertion-alg-none-accepted": ("test_assertion_alg_none_refused",),
    "assertion-hs256-confusion": ("test_assertion_hs256_public_key_refused",),
    "key-client-secret-accepted": ("test_client_secret_refused_for_key_client",),
    "system-tokens-refused": ("test_system_read_of_granted_types",),
    "system-scope-not-enforced": ("test_system_read_outside_scopes_refused",),
    # Bulk Data export (suites/bulk_export)
    "bulk-kickoff-without-token": ("test_bulk_kickoff_requires_token",),
    "bulk-content-location-missing": ("test_bulk_kickoff_accepted",),
    "bulk-retry-after-missing": ("test_bulk_status_gives_retry_after",),
    "bulk-manifest-incomplete": ("test_bulk_manifest_complete",),
    "bulk-files-unprotected": ("test_bulk_files_require_token",),
    "bulk-type-filter-ignored": ("test_bulk_output_within_scope_and_type",),
    "bulk-ndjson-invalid": ("test_bulk_ndjson_parses",),
    "bulk-delete-ignored": ("test_bulk_delete_cancels_export",),
    "bulk-status-any-client": ("test_bulk_status_other_client_refused",),
}

BLOCKS: dict[str, tuple[str, ...]] = {
    # No launch ends in tokens, so the launch negatives have no positive control: a refusal proves nothing there.
    "code-expires-immediately": ("test_implicit_grant_refused", "test_pkce_challenge_required",
                                 "test_pkce_plain_refused", "test_unknown_client_not_redirected",
                                 "test_unregistered_redirect_uri_not_redirected", "test_wrong_aud_refused",
                                 "test_wrong_password_refused"),
    # An API that refuses system tokens leaves the refused-type check without its positive control.
    "system-tokens-refused": ("test_system_read_outside_scopes_refused",),
    # No status URL: nothing after the kick-off can be polled, so the checks of the job cannot run.
    "bulk-content-location-missing": (
        "test_bulk_status_gives_retry_after", "test_bulk_manifest_complete", "test_bulk_files_require_token",
        "test_bulk_output_within_scope_and_type", "test_bulk_ndjson_parses", "test_bulk_delete_cancels_export",
        "test_bulk_status_other_client_refused"),
    # Without requiresAccessToken the harness cannot tell whether it may send the token with a file request.
    "bulk-manifest-incomplete": ("test_bulk_files_require_token", "test_bulk_output_within_scope_and_type",
                                 "test_bulk_ndjson_parses", "test_bulk_status_other_client_refused"),
    # An authenticated revocation that does not revoke leaves the unauthenticated one without its positive control.
    "refresh-survives-revocation": ("test_revocation_requires_client_authentication",),
    # An expired chain is rejected by clients (test_tls_certificate_chain_valid); its strict profile cannot be judged.
    "cert-expired": ("test_tls_certificate_profile",),
    # No readable CapabilityStatement: the checks of its content cannot run.
    "metadata-requires-token": ("test_fhir_version_r4", "test_oauth_uris_match_well_known",
                                "test_security_service_smart_on_fhir"),
    # No readable smart-configuration: the checks that judge that document cannot run. The rest run from the
    # CapabilityStatement's oauth-uris (SMART v1 discovery) and the id_token's iss (OpenID discovery), as a client does.
    "smart-config-requires-token": (
        "test_authorization_endpoint_advertised", "test_capabilities_is_array_of_strings",
        "test_carin_scopes_advertised", "test_client_secret_basic_advertised", "test_grant_types_supported",
        "test_issuer_identical_across_documents", "test_openid_fields_when_sso", "test_payer_standalone_capabilities",
        "test_pkce_s256_only", "test_response_types_supported", "test_scopes_supported_listed",
        "test_smart_configuration_json_whatever_accept", "test_smart_configuration_urls_absolute_https",
        "test_v1_scopes_accepted_on_v2"),
}

FAULTS: dict[str, Fault] = {
    fault.name: replace(fault, caught_by=CAUGHT_BY.get(fault.name, ()), blocks=BLOCKS.get(fault.name, ()))
    for fault in _CATALOG
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
