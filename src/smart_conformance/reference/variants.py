"""The variant catalog: legitimate behaviours that differ from the reference server's defaults.

Faults prove a check *can* fail; variants prove it fails *only for real*. Each variant is a behaviour some conformant
payer really has (another refusal status, another page flow, another revocation policy…), with the spec text that
allows it. Against the reference with any variant on, every suite must give 0 failed and no warning the variant does
not deserve (tests/test_variant_matrix.py).

A variant can also change the reference's target YAML (``target_patch``): a payer whose sign-in spans two pages
writes a two-page recipe, a payer that only takes ``client_secret_post`` says so in ``client.auth_method``. The patch
is what such a payer's QA engineer would write, nothing more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from smart_conformance.config import merge


@dataclass(frozen=True)
class Variant:
    """One legitimate behaviour: what it does, the spec text that allows it, and what a target file says of it."""

    name: str
    summary: str
    allowed_by: str  # the spec's words that make it conformant
    spec: str  # where those words are (a URL)
    target_patch: Mapping[str, Any] = field(default_factory=dict)
    excludes: tuple[str, ...] = ()  # variants it cannot share a server with
    # A check that rightly warns under a variant (a SHOULD the variant does not meet, which the spec allows) says
    # so itself: @warns_under(VARIANT) in suites/ (smart_conformance.testplan).


# Refusals a resource server may answer: RFC 6750 §3.1 (401 invalid_token, 403 insufficient_scope); FHIR and CARIN
# let a server hide a resource's existence with 404.
REFUSALS_AS_403 = "refusals-as-403"
REFUSALS_AS_404 = "refusals-as-404"
REVOKE_ALL_ON_REFRESH_REVOCATION = "revoke-all-on-refresh-revocation"
ROTATING_REFRESH_TOKENS = "rotating-refresh-tokens"
AUTHORIZE_REFUSAL_EMPTY_400 = "authorize-refusal-empty-400"
IMPLICIT_ERROR_IN_FRAGMENT = "implicit-error-in-fragment"
CONSENT_WITHOUT_SCOPE_CONTROLS = "consent-without-scope-controls"
TWO_PAGE_SIGN_IN = "two-page-sign-in"
SCRIPT_RENDERED_SIGN_IN = "script-rendered-sign-in"
SPLIT_ORIGIN_AUTH_SERVER = "split-origin-auth-server"
SMART_V1_DISCOVERY_ONLY = "smart-v1-discovery-only"
JWT_ACCESS_TOKENS = "jwt-access-tokens"
OPAQUE_ACCESS_TOKENS = "opaque-access-tokens"
CLIENT_SECRET_POST_ONLY = "client-secret-post-only"
TOKEN_401_WITHOUT_WWW_AUTHENTICATE = "token-401-without-www-authenticate"
ONLY_REFRESH_TOKENS_REVOCABLE = "only-refresh-tokens-revocable"
SHORT_LIVED_ACCESS_TOKENS = "short-lived-access-tokens"
# Backend Services and Bulk Data (reference/backend.py, reference/bulk.py)
BACKEND_TOKENS_ONE_HOUR = "backend-tokens-one-hour"
BACKEND_JWKS_URL = "backend-jwks-url"
BULK_FILES_WITHOUT_TOKEN = "bulk-files-without-token"
BULK_STATUS_429 = "bulk-status-429"
# --- issue 13: the member-facing client registered with a key (reference/client_auth.py) ---
MEMBER_CLIENT_PRIVATE_KEY_JWT = "member-client-private-key-jwt"
# --- issue 22: the attack-surface sweep (member-page cookies, CORS) ---
HOSTED_IDP_COOKIES = "hosted-idp-cookies"
CORS_OWN_ORIGIN_CREDENTIALS = "cors-own-origin-credentials"
FORMAT_HTML_RENDERED = "format-html-rendered"
# --- issue 22: search paging (reference/fhir_search.py) ---
PAGED_BY_DEFAULT = "paged-by-default"
OPAQUE_PAGE_CURSORS = "opaque-page-cursors"
# --- issue 21: a legitimate server that offers no _include/_revinclude (reference/fhir_search.py) ---
INCLUDES_NOT_SUPPORTED = "includes-not-supported"
# --- issue 19: the CMS-0057 payer APIs, Provider Access and Payer-to-Payer (reference/pdex.py) ---
OPTED_OUT_AS_NON_MATCHED = "opted-out-as-non-matched"
RETRY_AFTER_HTTP_DATE = "retry-after-http-date"
EXPORT_TYPE_DELTA_NEEDS_SINCE = "export-type-delta-needs-since"
MEMBER_MATCH_ASYNC = "member-match-async"
OPT_OUT_GROUP_VISIBLE = "opt-out-group-visible"
P2P_QUERIES_ONLY = "p2p-queries-only"
# --- issue 20: sign-ins as hosted identity providers run them (reference/idp.py) ---
TOTP_MFA = "totp-mfa"
SIGN_IN_PROMPTS = "sign-in-prompts"
LOCKOUT_AFTER_FAILURES = "lockout-after-failures"
SIGN_IN_RATE_LIMIT = "sign-in-rate-limit"
NO_SIGN_IN_SESSION = "no-sign-in-session"
REMEMBERED_CONSENT = "remembered-consent"
SEPARATE_IDP_ORIGIN = "separate-idp-origin"
# --- issue 20: rate limits at the token endpoints and the FHIR API (reference/rate_limit.py) ---
API_RATE_LIMIT = "api-rate-limit"

# The recipe a payer with a username page, then a password page, writes.
_TWO_PAGE_STEPS = [
    {"fill": {"selector": "#username", "value": "${member.username}"}},
    {"click": "button[type=submit]"},
    {"fill": {"selector": "#password", "value": "${member.password}"}},
    {"click": "button[type=submit]"},
]

# The reference's one-page sign-in, as fixtures/targets/reference.yaml writes it.
_SIGN_IN_STEPS = [
    {"fill": {"selector": "#username", "value": "${member.username}"}},
    {"fill": {"selector": "#password", "value": "${member.password}"}},
    {"click": "button[type=submit]"},
]
# Every member's authenticator secret, as a payer's QA team keeps it (a file written by the reference at start).
_TOTP_MEMBERS = {role: {"totp_secret": {"file": f"${{SMART_REFERENCE_{env}_TOTP_FILE}}"}}
                 for role, env in (("primary", "MEMBER"), ("other", "OTHER_MEMBER"), ("representative", "REP"))}

_CATALOG: tuple[Variant, ...] = (
    Variant(REFUSALS_AS_403, "A read of member data the token's patient may not see (another member's record, "
            "or an id that does not exist: the two look the same) is answered 403 Forbidden with an OperationOutcome "
            "instead of 404. A type outside the scopes or a write is 403 as by default; a request with no token or "
            "an invalid one is still 401 with a Bearer challenge, as RFC 6750 requires.",
            "CARIN BB STU2 (Authorization): a server may answer an unauthorized request with 401, 403 or 404; FHIR "
            "R4 security.html (Access Denied Response Handling): the status is the server's policy, chosen so it "
            "does not reveal whether a record exists; RFC 6750 §3.1: invalid_token is a 401.",
            "https://hl7.org/fhir/us/carin-bb/STU2/Authorization_Authentication_and_Registration.html",
            excludes=(REFUSALS_AS_404,)),
    Variant(REFUSALS_AS_404, "A request the token's scopes do not cover (a resource type outside them, any write) "
            "is answered 404 Not Found with an OperationOutcome (and the Bearer insufficient_scope challenge), as if "
            "nothing were there; another member's record is 404 as by default; a request with no token or an "
            "invalid one is still 401 with a Bearer challenge, as RFC 6750 requires.",
            "FHIR R4 security.html (Access Denied Response Handling): a server may answer 404 Not Found so as not "
            "to reveal that a resource exists; CARIN BB STU2 allows 401, 403 or 404 for unauthorized requests.",
            "https://hl7.org/fhir/R4/security.html#AccessDenied", excludes=(REFUSALS_AS_403,)),
    Variant(REVOKE_ALL_ON_REFRESH_REVOCATION, "Revoking a refresh token revokes every token the member holds for "
            "that client.",
            "RFC 7009 §2.1: 'If the particular token is a refresh token and the authorization server supports the "
            "revocation of access tokens, then the authorization server SHOULD also invalidate all access tokens "
            "based on the same authorization grant'; a server may invalidate more.",
            "https://www.rfc-editor.org/rfc/rfc7009#section-2.1"),
    Variant(ROTATING_REFRESH_TOKENS, "Every refresh issues a new refresh token and retires the one used.",
            "SMART App Launch 2.2 (Refresh): 'The authorization server MAY issue a new refresh token'; RFC 9700 "
            "§4.14.2: refresh token rotation.",
            "https://hl7.org/fhir/smart-app-launch/app-launch.html#step-5-later-app-uses-a-refresh-token-to-obtain-a-new-access-token"),
    Variant(AUTHORIZE_REFUSAL_EMPTY_400, "authorize refuses an untrusted client or redirect_uri with an empty-body "
            "HTTP 400 instead of an error page.",
            "RFC 6749 §4.1.2.1: the server 'SHOULD inform the resource owner of the error and MUST NOT "
            "automatically redirect'; how it informs is not prescribed.",
            "https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1"),
    Variant(IMPLICIT_ERROR_IN_FRAGMENT, "response_type=token is refused with the error in the redirect's fragment.",
            "RFC 6749 §4.2.2.1: for the implicit flow the error parameters are added 'to the fragment component of "
            "the redirection URI'.",
            "https://www.rfc-editor.org/rfc/rfc6749#section-4.2.2.1"),
    Variant(CONSENT_WITHOUT_SCOPE_CONTROLS, "The consent page has only Allow and Deny: no per-scope checkboxes "
            "(offline access included); Allow grants every requested scope the server supports.",
            "SMART App Launch 2.2 (Scopes): the server 'MAY grant a subset' of scopes; per-scope choice is not "
            "required of the consent screen.",
            "https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html",
            target_patch={"login": {"consent": {"untick": None}}}),
    Variant(TWO_PAGE_SIGN_IN, "The sign-in asks for the username on one page and the password on the next.",
            "Sign-in pages are the server's own: SMART App Launch 2.2 leaves the user interaction to it.",
            "https://hl7.org/fhir/smart-app-launch/app-launch.html#obtain-authorization-code",
            target_patch={"login": {"steps": _TWO_PAGE_STEPS}}),
    Variant(SCRIPT_RENDERED_SIGN_IN, "The sign-in form is rendered by JavaScript after the page loads (a "
            "single-page app).",
            "Sign-in pages are the server's own: SMART App Launch 2.2 leaves the user interaction to it.",
            "https://hl7.org/fhir/smart-app-launch/app-launch.html#obtain-authorization-code"),
    Variant(SPLIT_ORIGIN_AUTH_SERVER, "The authorization server (authorize, token, revoke, introspect, JWKS, pages) "
            "lives on another origin than the FHIR API.",
            "SMART App Launch 2.2 (Discovery): endpoints are absolute URLs published in the configuration; nothing "
            "requires them to share the FHIR server's origin.",
            "https://hl7.org/fhir/smart-app-launch/conformance.html"),
    Variant(SMART_V1_DISCOVERY_ONLY, "No .well-known/smart-configuration (404): endpoints are published only in the "
            "CapabilityStatement's oauth-uris extension and capabilities in its capabilities extensions (SMART on "
            "FHIR v1 discovery); no SMART 2 fields anywhere. The target file declares smart_version \"1\".",
            "SMART on FHIR v1 (docs.smarthealthit.org, 'Publishing OAuth2 URLs'): 'If a server requires SMART on "
            "FHIR authorization for access, its metadata must support automated discovery of OAuth2 endpoints by "
            "including' the oauth-uris extension on CapabilityStatement.rest.security. (SMART App Launch 1.0.0 "
            "added the well-known document as a second SHALL; a target that does not declare v1 is judged by it.)",
            "https://docs.smarthealthit.org/authorization/conformance-statement/",
            target_patch={"smart_version": "1"}),
    Variant(OPAQUE_ACCESS_TOKENS, "Member access tokens are opaque handles (random strings, not JWTs); the FHIR API and "
            "introspection look them up in the server's own store.",
            "RFC 6749 §1.4: an access token 'is usually opaque to the client'; SMART App Launch 2.2: the app treats "
            "the access token as opaque, and its format is the server's choice.",
            "https://www.rfc-editor.org/rfc/rfc6749#section-1.4", excludes=(JWT_ACCESS_TOKENS,)),
    Variant(JWT_ACCESS_TOKENS, "Access tokens follow RFC 9068's JWT profile (header typ at+jwt, with client_id, "
            "jti, iat and auth_time) instead of the reference's default plain signed JWT (typ JWT).",
            "SMART App Launch 2.2: the access token's format is the server's choice; apps treat it as opaque. "
            "RFC 9068 §2.1: JWT access tokens 'MUST include' typ at+jwt.",
            "https://hl7.org/fhir/smart-app-launch/app-launch.html#response-5"),
    Variant(CLIENT_SECRET_POST_ONLY, "The payer's clients are registered for client_secret_post: the token, "
            "introspection and revocation endpoints accept only that method from them (HTTP Basic from them is "
            "invalid_client); discovery lists client_secret_basic and client_secret_post.",
            "RFC 6749 §2.3.1: the body parameters 'MAY' be used; OpenID Connect Registration: a client's "
            "token_endpoint_auth_method. Advertising client_secret_post only would break RFC 6749 §2.3.1 ('MUST "
            "support the HTTP Basic authentication scheme') and SMART's symmetric client authentication: that is "
            "the fault auth-methods-post-only.",
            "https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1",
            target_patch={"client": {"auth_method": "client_secret_post"},
                          "other_client": {"auth_method": "client_secret_post"}}),
    Variant(TOKEN_401_WITHOUT_WWW_AUTHENTICATE, "A token request without client credentials gets 401 "
            "invalid_client with no WWW-Authenticate header.",
            "RFC 6749 §5.2: WWW-Authenticate is required 'If the client attempted to authenticate via the "
            "\"Authorization\" request header field'.",
            "https://www.rfc-editor.org/rfc/rfc6749#section-5.2"),
    Variant(ONLY_REFRESH_TOKENS_REVOCABLE, "The revocation endpoint revokes refresh tokens only; an access token "
            "gets unsupported_token_type and lives until it expires.",
            "RFC 7009 §2.1: the server 'MUST support the revocation of refresh tokens and SHOULD support the "
            "revocation of access tokens'; §2.2.1 defines unsupported_token_type.",
            "https://www.rfc-editor.org/rfc/rfc7009#section-2.2.1"),
    Variant(SHORT_LIVED_ACCESS_TOKENS, "Access tokens live 20 seconds, so expiry checks observe a token die.",
            "SMART App Launch 2.2: access tokens 'SHOULD' have a lifetime of no more than one hour; shorter is "
            "allowed.",
            "https://hl7.org/fhir/smart-app-launch/app-launch.html#response-5"),
    Variant(BACKEND_TOKENS_ONE_HOUR, "Backend (client_credentials) access tokens live 3600 s instead of 300 s.",
            "SMART Backend Services: tokens 'SHALL be short-lived; the expires_in value SHOULD NOT exceed 300': a "
            "longer lifetime is allowed and earns the SHOULD NOT warning.",
            "https://hl7.org/fhir/smart-app-launch/backend-services.html#issue-access-token"),
    Variant(BACKEND_JWKS_URL, "The backend client is registered by JWK Set URL: the server fetches the client's "
            "public keys from https://127.0.0.1:<port>/clients/<client_id>/jwks.json (TLS, loopback) when it "
            "verifies an assertion, instead of keeping a registered JWK Set.",
            "SMART client-confidential-asymmetric: servers 'SHALL support registration of client JWKs using both' a "
            "URL to the JWK Set ('strongly preferred') and the JWK Set directly.",
            "https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html"
            "#registering-a-client-communicating-public-keys",
            target_patch={"backend_client": {"jwks_url": "${SMART_REFERENCE_BACKEND_JWKS_URL}"}}),
    Variant(BULK_FILES_WITHOUT_TOKEN, "Bulk output files are served without a token (capability URLs); the manifest "
            "says requiresAccessToken false.",
            "Bulk Data 2.0 complete status: requiresAccessToken 'SHALL be true if both the file server and the FHIR "
            "API server control access using OAuth 2.0 bearer tokens. Value MAY be false for file servers that use "
            "access-control schemes other than OAuth 2.0, such as downloads from Amazon S3 bucket URLs'.",
            "https://hl7.org/fhir/uv/bulkdata/export.html#response---complete-status"),
    Variant(BULK_STATUS_429, "While an export runs, a second status poll gets 429 Too Many Requests with Retry-After "
            "instead of 202.",
            "Bulk Data 2.0 status request: 'the server SHOULD ... use 429 Too Many Requests ... with a Retry-After "
            "header' for clients that poll too often; clients honour Retry-After.",
            "https://hl7.org/fhir/uv/bulkdata/export.html#bulk-data-status-request"),
    # --- issue 13 ---
    Variant(MEMBER_CLIENT_PRIVATE_KEY_JWT, "The member-facing app is registered with a public key instead of a "
            "client secret: the token, introspection and revocation endpoints authenticate it only by a signed "
            "assertion (client_assertion_type jwt-bearer, RS384), and refuse any secret it presents.",
            "SMART App Launch 2.2 §Client Authentication: Asymmetric: a confidential client 'MAY' authenticate with "
            "a private_key_jwt assertion instead of a client secret, registered with its public key; the "
            "authorization-code flow is unchanged except for the client authentication at the token endpoint.",
            "https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html",
            target_patch={"client": {"client_secret": None, "auth_method": "private_key_jwt",
                                     "private_key": {"file": "${SMART_REFERENCE_MEMBER_KEY_FILE}"},
                                     "alg": "RS384", "kid": "${SMART_REFERENCE_MEMBER_KID}"}},
            excludes=(CLIENT_SECRET_POST_ONLY,)),
    # --- issue 22 ---
    Variant(HOSTED_IDP_COOKIES, "The sign-in sets cookies as hosted identity providers do: a script-readable "
            "double-submit anti-CSRF cookie (XSRF-TOKEN: Secure, SameSite=Strict, no HttpOnly) on the sign-in page, "
            "and after the password an identity-provider session cookie with SameSite=None (Secure, HttpOnly), "
            "which the provider's cross-site session checks need.",
            "OWASP ASVS 4.0.3 V3.4 asks for Secure, HttpOnly and SameSite on session cookies; the double-submit "
            "cookie pattern (OWASP CSRF Prevention Cheat Sheet) is read by the page's script, and RFC 6265bis "
            "§5.4.7 defines SameSite=None for cookies meant for cross-site requests, together with Secure.",
            "https://cheatsheetseries.owasp.org/cheatsheets/Cross-Site_Request_Forgery_Prevention_Cheat_Sheet.html"),
    Variant(CORS_OWN_ORIGIN_CREDENTIALS, "The FHIR and token endpoints grant credentialed CORS to the payer's own "
            "origins (a member portal served from them), matched exactly, and to no other origin.",
            "Fetch Standard, CORS protocol: a server may answer a credentialed request from an origin it trusts with "
            "that exact origin and Access-Control-Allow-Credentials: true; FHIR R4 security.html asks for a "
            "coherent CORS configuration, not for none.",
            "https://fetch.spec.whatwg.org/#cors-protocol-and-credentials"),
    Variant(FORMAT_HTML_RENDERED, "_format=html and _format=text/html are answered with an HTML page showing the "
            "request URL and the FHIR JSON answer, both escaped, as HAPI FHIR's browsable view does.",
            "FHIR R4 http.html (content types and encodings): for the _format parameter, 'in addition, the values "
            "html and text/html are allowed'.",
            "https://hl7.org/fhir/R4/http.html#mime-type"),
    Variant(PAGED_BY_DEFAULT, "Every search is paged by default at 2 matches a page (HAPI pages at 20): a search "
            "without _count returns its first page and a next link, so a member with 4 claims sees them over two "
            "pages; an explicit _count is honoured as by default.",
            "FHIR R4 http.html (Paging) and search.html (_count): the server chooses whether and how to page; it "
            "'SHALL NOT return more resources in a single page than requested' and 'may return less', and the "
            "client follows the Bundle's next links for the rest.",
            "https://hl7.org/fhir/R4/http.html#paging"),
    Variant(INCLUDES_NOT_SUPPORTED, "The FHIR API offers no _include or _revinclude: every search carrying one is "
            "answered 400 OperationOutcome (not-supported), and the CapabilityStatement lists no searchInclude or "
            "searchRevInclude.",
            "FHIR R4 search.html (Including other resources): servers are not required to support _include and "
            "_revinclude, and say which they support in CapabilityStatement.rest.resource.searchInclude / "
            "searchRevInclude; a server that does not support a parameter it is asked to process may return an "
            "error (search.html, Handling errors).",
            "https://hl7.org/fhir/R4/search.html#include"),
    Variant(OPAQUE_PAGE_CURSORS, "Page links (next, previous, and self after the first page) are opaque server-side "
            "cursors in HAPI's style (ExplanationOfBenefit?_getpages=<random id>&_getpagesoffset=N): they carry no "
            "search parameter and no patient id; the server keeps the search bound to the client and patient of the "
            "token that made it, and answers a cursor followed by anyone else as it answers an unknown one (404).",
            "FHIR R4 http.html (Paging): page links 'are opaque to the client, have no dictated structure, and only "
            "the server understands them'; the client uses the server's links to traverse the pages.",
            "https://hl7.org/fhir/R4/http.html#paging"),
    # --- issue 19 ---
    Variant(OPTED_OUT_AS_NON_MATCHED, "$provider-member-match returns an opted-out member in NonMatchedMembers, "
            "not in ConsentConstrainedMembers, so that the answer does not reveal that the member opted out.",
            "PDex Provider Access v2: a payer should fold opted-out members into the non-matched Group to keep "
            "opt-out status private (the privacy-favouring default the IG describes beside §pdex-261).",
            "https://hl7.org/fhir/us/davinci-pdex/provider-access-api-v2.html#how-does-provider-access-work",
            target_patch={"provider_access": {"opted_out_in": "NonMatchedMembers"}}),
    Variant(RETRY_AFTER_HTTP_DATE, "While an export runs, the status answer's Retry-After is an HTTP-date, not "
            "delay-seconds.",
            "RFC 9110 §10.2.3: Retry-After = HTTP-date / delay-seconds; Bulk Data 2.0 asks only for a Retry-After the "
            "client can honour.",
            "https://www.rfc-editor.org/rfc/rfc9110#section-10.2.3"),
    Variant(EXPORT_TYPE_DELTA_NEEDS_SINCE, "$davinci-data-export refuses (400) a request without exportType, and a "
            "provider-delta export without _since.",
            "PDex 2.1+: exportType is required of the client, and with provider-delta the client SHALL supply _since "
            "(§pdex-299); a server may insist on both.",
            "https://hl7.org/fhir/us/davinci-pdex/provider-access-api-v2.html#exporttype"),
    Variant(MEMBER_MATCH_ASYNC, "$provider-member-match and $bulk-member-match answer 202 with Content-Location; the "
            "finished job's manifest lists a Group NDJSON file with the MatchedMembers, NonMatchedMembers and "
            "ConsentConstrainedMembers Groups (instead of a 200 Parameters).",
            "PDex STU 2.2 Payer-to-Payer bulk §pdex-136, §pdex-148: the match runs asynchronously and returns its Groups "
            "as NDJSON through the completion manifest; STU 2.1 returned them in a Parameters.",
            "https://hl7.org/fhir/us/davinci-pdex/payertopayerbulkexchange.html#performing-bulk-data-exchange"),
    Variant(OPT_OUT_GROUP_VISIBLE, "Opt-out is recorded as a Group: besides its attribution list, the provider sees a "
            "Group of its attributed members who opted out (pa-opted-out-bulk); an export of that Group holds no data.",
            "PDex Provider Access v1 §Attribution List: the payer MAY keep a separate Group of a provider's opted-out "
            "members, and must then make sure the provider cannot download their data by a bulk export.",
            "https://hl7.org/fhir/us/davinci-pdex/provider-access-api.html#attribution-list",
            target_patch={"provider_access": {"attribution_group_ids": ["pa-attribution-bulk", "pa-opted-out-bulk"]}}),
    Variant(P2P_QUERIES_ONLY, "Payer-to-Payer is single-member only: HRex $member-match with Consent, then FHIR reads "
            "and searches of the matched member with the requesting payer's token; no $bulk-member-match (404, not "
            "advertised) and so no Payer-to-Payer $davinci-data-export. The target declares retrieval: [queries].",
            "PDex STU 2.0.0 Payer-to-Payer: exchange is for a single member, preceded by $member-match, by one of "
            "three methods (query each resource, $everything, bulk export); bulk exchange for groups of members was "
            "outside that version's scope (STU 2.1 added $bulk-member-match). PDex STU 2.1 single member §Data "
            "Retrieval Methods keeps the query method.",
            "https://hl7.org/fhir/us/davinci-pdex/STU2/payertopayerexchange.html",
            target_patch={"payer_to_payer": {"retrieval": ["queries"]}}),
    # --- issue 20 ---
    Variant(TOTP_MFA, "Every member is enrolled in TOTP two-step verification: after the right password comes a "
            "code page (#otp, RFC 6238: 6 digits, 30 s, SHA-1, one period of drift either way); the member is signed "
            "in only once the code is right. The reference accepts a code again within its period (RFC 6238 §5.2 "
            "asks a verifier not to), because the harness signs the same member in more often than once a period.",
            "Sign-in pages are the server's own: SMART App Launch 2.2 leaves the user interaction to it; NIST SP "
            "800-63B §5.1.4.1 (single-factor OTP devices, here the second factor after the password).",
            "https://pages.nist.gov/800-63-3/sp800-63b.html#sfotpd",
            target_patch={"members": _TOTP_MEMBERS,
                          "login": {"steps": [*_SIGN_IN_STEPS, {"totp": {"selector": "#otp",
                                                                          "submit": "button[type=submit]"}}]}}),
    Variant(SIGN_IN_PROMPTS, "After the password, a 'Remember this device?' page and a 'Stay signed in?' page, "
            "each answered Yes or No, come before the consent page, as Azure AD B2C and Okta ask them.",
            "Sign-in pages are the server's own: SMART App Launch 2.2 leaves the user interaction to it.",
            "https://hl7.org/fhir/smart-app-launch/app-launch.html#obtain-authorization-code",
            target_patch={"login": {"steps": [
                *_SIGN_IN_STEPS,
                {"click": "button[name=remember_device][value=no]", "optional": True},
                {"click": "button[name=stay_signed_in][value=no]", "optional": True}]}}),
    Variant(LOCKOUT_AFTER_FAILURES, "A member's account locks after 3 wrong passwords in a row (a right one resets "
            "the count): the sign-in then says 'Your account is locked' (403), whatever the password. The harness "
            "types one wrong password per run, so it never locks the account.",
            "OWASP ASVS 4.0.3 V2.2.1: anti-automation controls (account lockout after failed attempts) against "
            "credential guessing; NIST SP 800-63B §5.2.2 limits consecutive failed attempts to 100 at most.",
            "https://pages.nist.gov/800-63-3/sp800-63b.html#throttle"),
    Variant(SIGN_IN_RATE_LIMIT, "The sign-in page answers every 7th request a browser makes with 429 Too Many "
            "Requests and Retry-After: 1 (an identity provider's burst limit, made deterministic).",
            "RFC 6585 §4: 429 says the user sent too many requests in a given amount of time, and MAY carry "
            "Retry-After; NIST SP 800-63B §5.2.2 (rate limiting).",
            "https://www.rfc-editor.org/rfc/rfc6585#section-4"),
    Variant(NO_SIGN_IN_SESSION, "The identity provider keeps no session: every authorization shows the sign-in "
            "page again, even in a browser that signed in a moment ago (no single sign-on).",
            "Sign-in pages and sessions are the server's own: SMART App Launch 2.2 leaves the user interaction, and "
            "whether a session is remembered, to the authorization server.",
            "https://hl7.org/fhir/smart-app-launch/app-launch.html#obtain-authorization-code"),
    Variant(REMEMBERED_CONSENT, "The authorization server remembers, per member and client, the scopes the member "
            "approved (on the server, as Keycloak, Okta and Auth0 keep user consents). A later authorization of the "
            "same member and client asking for no more than that skips the consent page and redirects with a code "
            "at once, whatever the browser (a fresh one signs in first). A member who must choose whose records "
            "still sees the page. prompt=consent (OpenID Connect Core §3.1.2.1) shows the page anyway; the "
            "openid-configuration says so: prompt_values_supported [\"consent\"].",
            "OpenID Connect Core 1.0 §3.1.2.4: the server 'MUST obtain an authorization decision', which 'MAY be done "
            "through an interactive dialogue with the End-User ... or by establishing consent via conditions for "
            "processing the request or other means (for example, via previous administrative consent)'; §3.1.2.1: "
            "with prompt=consent the server 'SHOULD prompt the End-User for consent'. RFC 6749 §10.2: repeated "
            "authorization requests may be processed without the resource owner when the client is authenticated "
            "(every client here is confidential). OpenID Connect Prompt Create 1.0 §4.1 defines "
            "prompt_values_supported.",
            "https://openid.net/specs/openid-connect-core-1_0.html#Consent"),
    Variant(SEPARATE_IDP_ORIGIN, "The member signs in at an identity provider on an origin of its own (a third "
            "listener, same test CA): authorize redirects to https://127.0.0.1:<idp port>/idp/login?login_challenge=…, "
            "whose form (and, under two-page-sign-in, its two pages) posts back to it; after the password it sets its "
            "own cookies on its origin and sends the browser back to the authorization server "
            "(/auth/login/return?login_verifier=…), which goes on to consent. Single sign-on is the identity "
            "provider's session: the authorization server keeps none of its own. The identity provider is not in "
            "discovery (it serves no OAuth endpoint), as Ory Hydra's login app or a federated Azure AD B2C is not.",
            "Sign-in pages are the server's own: SMART App Launch 2.2 leaves the user interaction, and where it runs, "
            "to the authorization server; RFC 6749 §3.1: 'the way in which the authorization server authenticates "
            "the resource owner ... is beyond the scope of this specification'.",
            "https://www.rfc-editor.org/rfc/rfc6749#section-3.1",
            excludes=(TOTP_MFA, SIGN_IN_PROMPTS, SCRIPT_RENDERED_SIGN_IN)),
    Variant(API_RATE_LIMIT, "A gateway in front of the FHIR API and the token, introspection and revocation "
            "endpoints answers every 20th request carrying a token or client credentials with 429 Too Many Requests "
            "and Retry-After: 1, before the server sees it (a burst limit, made deterministic). Discovery documents "
            "are not limited.",
            "RFC 6585 §4: 429 'indicates that the user has sent too many requests in a given amount of time (\"rate "
            "limiting\")', its response 'MAY include a Retry-After header indicating how long to wait before making a "
            "new request', and the RFC 'does not define how the origin server identifies the user, nor how it "
            "counts requests'; RFC 9110 §10.2.3 (Retry-After).",
            "https://www.rfc-editor.org/rfc/rfc6585#section-4"),
)

VARIANTS: dict[str, Variant] = {variant.name: variant for variant in _CATALOG}


class ActiveVariants:
    """The variants switched on for one server; ``active()`` refuses names not in the catalog to catch typos."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        names = list(names)
        unknown = [name for name in names if name not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant(s) {', '.join(sorted(unknown))}; valid names: "
                             f"{', '.join(sorted(VARIANTS))}")
        for name in names:
            clash = [other for other in VARIANTS[name].excludes if other in names]
            if clash:
                raise ValueError(f"variant {name} cannot be combined with {', '.join(clash)}")
        self.names: frozenset[str] = frozenset(names)

    def active(self, name: str) -> bool:
        if name not in VARIANTS:
            raise KeyError(f"variant {name!r} is not in the catalog")
        return name in self.names

    def target_patch(self) -> dict[str, Any]:
        """The target-file changes of every active variant, combined (``None`` still marks a key to delete)."""
        out: dict[str, Any] = {}
        for name in sorted(self.names):
            out = merge(out, VARIANTS[name].target_patch, delete=False)
        return out

    def __repr__(self) -> str:
        return f"ActiveVariants({sorted(self.names)})"
