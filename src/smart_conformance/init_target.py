"""``smart-conformance init-target``: a payer's first target file, written from what its server publishes.

It reads the SMART configuration (``{base}/.well-known/smart-configuration``, else the CapabilityStatement's
oauth-uris, as a SMART client would) and the CapabilityStatement, and writes a commented YAML that the config loader
accepts as it stands: the detected endpoints and capabilities as comments, the SMART version, the client
authentication method, the scopes to request (only ones the server advertises), and every secret, user name and
patient id as an ``${ENV}`` reference, so the file can be committed and CI fills it from its secrets. The sign-in
recipe comes from a Playwright codegen recording (``--from-codegen``, see :mod:`smart_conformance.codegen`), or is
left as a commented skeleton with the recording instructions.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from smart_conformance import codegen, paths
from smart_conformance.http import Backoff, RecordingClient, ssl_context
from smart_conformance.smart import discovery
from smart_conformance.smart.pdex import advertised_operations

CARIN_TYPES = ("Patient", "Coverage", "ExplanationOfBenefit", "Organization", "Practitioner")
REDIRECT_URI = "http://127.0.0.1:8765/callback"
OTHER_REDIRECT_URI = "http://127.0.0.1:8766/callback"


class InitError(Exception):
    """Why no target file could be written, with the fix; ``unreachable`` tells a network problem from bad input."""

    def __init__(self, problem: str, fix: str, *, unreachable: bool = False) -> None:
        self.unreachable = unreachable
        super().__init__(f"{problem}. Fix: {fix}")


@dataclass
class Detected:
    """What the server published, and the choices made from it (each choice explained in ``notes``)."""

    fhir_base_url: str
    source: str  # discovery.WELL_KNOWN | discovery.CAPABILITY_STATEMENT
    source_url: str
    config: dict[str, Any]
    smart_version: str
    auth_method: str
    carin_version: str
    scopes: dict[str, str]
    resource_types: list[str]
    fhir_version: str | None
    backend: bool
    group_export: bool
    notes: list[str] = field(default_factory=list)
    payer_operations: frozenset[str] = frozenset()  # CMS-0057 operations the CapabilityStatement lists


def _reason(exc: Exception) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"certificate not trusted ({cause.verify_message or cause.reason})"
        cause = cause.__cause__ or cause.__context__
    return (str(exc) or type(exc).__name__).split("\n")[0]


def _get(client: RecordingClient, url: str, accept: str, ca_bundle: Path | None) -> discovery.Document:
    try:
        return discovery.fetch_json(client, url, accept=accept)
    except httpx.ConnectError as exc:
        reason = _reason(exc)
        if "certificate" in reason or "CERTIFICATE" in reason:
            fix = (f"the CA bundle {ca_bundle} did not issue this server's certificate: pass the payer's CA chain"
                   if ca_bundle else "pass --ca-bundle PEM with the CA that issued the server's certificate (a "
                                     "private staging CA); it is written to tls.ca_bundle")
            raise InitError(f"cannot verify the TLS certificate of {url}: {reason}", fix, unreachable=True) from None
        raise InitError(f"cannot connect to {url} ({reason})",
                        "check the FHIR base URL, DNS and any proxy or VPN between here and the payer",
                        unreachable=True) from None
    except httpx.TimeoutException:
        raise InitError(f"no answer from {url} within 15 s", "check the URL and that the server is up",
                        unreachable=True) from None
    except httpx.HTTPError as exc:
        raise InitError(f"{url}: {_reason(exc)}", "check the FHIR base URL", unreachable=True) from None
    except (httpx.InvalidURL, ValueError) as exc:
        raise InitError(f"{url} is not a usable URL ({_reason(exc)})", "check the FHIR base URL") from None


def detect(fhir_base_url: str, ca_bundle: Path | None = None, smart_configuration_url: str | None = None) -> Detected:
    """Fetch discovery and the CapabilityStatement, and decide what the target file says."""
    base = fhir_base_url.rstrip("/")
    if not re.match(r"^https?://[^/\s]+", base) or re.search(r"[\s\x00-\x1f\x7f]", base):
        raise InitError(f"{fhir_base_url!r} is not an absolute URL", "give the FHIR base, e.g. https://fhir.example.org/r4")
    try:
        urlsplit(base).port  # noqa: B018 - raises for a port out of range
    except ValueError as exc:
        raise InitError(f"{fhir_base_url!r}: {exc}", "give the FHIR base with a valid port") from None
    if ca_bundle is not None and not ca_bundle.is_file():
        raise InitError(f"--ca-bundle {ca_bundle} does not exist", "give the path of a PEM file")
    try:
        verify = ssl_context(ca_bundle)
    except (ssl.SSLError, OSError) as exc:
        raise InitError(f"--ca-bundle {ca_bundle} is not a readable PEM CA bundle ({_reason(exc)})",
                        "give a PEM file with one or more '-----BEGIN CERTIFICATE-----' blocks") from None
    with RecordingClient(verify=verify, cacert=ca_bundle, backoff=Backoff()) as client:  # a busy payer: wait, do not fail
        well_known = _get(client, smart_configuration_url or discovery.smart_configuration_url(base),
                          "application/json", ca_bundle)
        statement = _get(client, discovery.metadata_url(base), "application/fhir+json", ca_bundle)
    found = discovery.discover(well_known, statement)
    if found is None:
        raise InitError(f"no SMART endpoints at {base}: {well_known.url} answered HTTP {well_known.status} and the "
                        f"CapabilityStatement (HTTP {statement.status}) has no oauth-uris",
                        "check the FHIR base URL; if the SMART configuration lives elsewhere, pass "
                        "--smart-configuration-url")
    return _decide(base, found, statement)


def _list(value: Any) -> list[Any]:
    """A field that should be a JSON array, or [] when the document has something else there."""
    return value if isinstance(value, list) else []


def _resource_types(statement: discovery.Document) -> list[str]:
    rests = [r for r in _list((statement.json or {}).get("rest")) if isinstance(r, dict)] if statement.ok else []
    return [str(r.get("type")) for rest in rests for r in _list(rest.get("resource")) if isinstance(r, dict)]


def _group_export(statement: discovery.Document) -> bool:
    if not statement.ok:
        return False
    for rest in _list((statement.json or {}).get("rest")):
        if not isinstance(rest, dict):
            continue
        ops = list(_list(rest.get("operation")))
        for res in _list(rest.get("resource")):
            if isinstance(res, dict) and res.get("type") == "Group":
                ops += _list(res.get("operation"))
        if any(isinstance(op, dict) and op.get("name") == "export" for op in ops):
            return True
    return False


def _carin_version(statement: discovery.Document, notes: list[str]) -> str:
    doc = statement.json if statement.ok and isinstance(statement.json, dict) else {}
    canon = [str(u) for u in [*_list(doc.get("instantiates")), *_list(doc.get("implementationGuide"))]
             if "carin-bb" in str(u)]
    versions = [u.split("|", 1)[1] for u in canon if "|" in u]
    if any(v.startswith("1.") for v in versions):
        return "STU1"
    if not any(v.startswith("2.") for v in versions):
        notes.append("CARIN BB version: " + ("the CapabilityStatement names CARIN BB without a version"
                                             if canon else "the CapabilityStatement does not name CARIN BB")
                     + "; STU2 assumed (STU1 payers refuse with 401 only: set ig.carin_version: STU1)")
    return "STU2"


def _auth_method(config: dict[str, Any], notes: list[str]) -> str:
    methods = config.get("token_endpoint_auth_methods_supported")
    if not isinstance(methods, list):
        notes.append("token_endpoint_auth_methods_supported not published: client_secret_basic assumed")
        return "client_secret_basic"
    for method in ("client_secret_basic", "client_secret_post"):
        if method in methods:
            return method
    notes.append(f"the server lists no client-secret method ({', '.join(map(str, methods))}): "
                 "client_secret_basic written; set client.auth_method to your client's registration")
    return "client_secret_basic"


def choose_scopes(config: dict[str, Any], version: str, types: list[str], notes: list[str]) -> dict[str, str]:
    """The scopes to request: launch/patient, OpenID, offline access and read access to the CARIN types the server
    serves, in the SMART version's syntax, each kept only when ``scopes_supported`` lists it (or its wildcard)."""
    listed = config.get("scopes_supported")
    advertised = {str(s) for s in listed} if isinstance(listed, list) else None
    if advertised is None:
        notes.append("scopes_supported not published: scopes chosen from the capabilities and the CapabilityStatement;"
                     " confirm them with the payer")
    caps = {str(c) for c in _list(config.get("capabilities"))}

    def ok(scope: str) -> bool:
        return advertised is None or scope in advertised

    def resource(suffix: str, kinds: tuple[str, ...]) -> list[str]:
        wanted = [f"patient/{t}{suffix}" for t in kinds if not types or t in types]
        chosen = [s for s in wanted if ok(s) or ok(f"patient/*{suffix}")]
        if not chosen and ok(f"patient/*{suffix}"):
            chosen = [f"patient/*{suffix}"]
        return chosen

    def base(offline: bool = True) -> list[str]:
        out = [s for s in ("launch/patient", "openid", "fhirUser") if ok(s)]
        if offline and ok("offline_access") and (advertised is not None or "permission-offline" in caps):
            out.append("offline_access")
        return out

    suffix = ".rs" if version == "2" else ".read"
    full = base() + resource(suffix, CARIN_TYPES)
    if not any(s.startswith("patient/") for s in full):
        notes.append(f"no patient/*{suffix} read scope is advertised: scopes.full requests none; add the scopes your "
                     "registered client may use")
    scopes = {"full": " ".join(full)}
    limited = [s for s in ("launch/patient",) if ok(s)] + resource(suffix, ("Patient",))
    if len(limited) > 0 and any(s.startswith("patient/") for s in limited):
        scopes["limited"] = " ".join(limited)
    if version == "2" and "permission-v1" in caps:
        v1 = base() + resource(".read", CARIN_TYPES)
        if any(s.startswith("patient/") for s in v1):
            scopes["v1"] = " ".join(v1)
    related = resource(suffix, ("RelatedPerson",))
    if related and related[0] != f"patient/*{suffix}":
        scopes["representative"] = " ".join(base(offline=False) + resource(suffix, CARIN_TYPES) + related)
    return scopes


def _decide(base: str, found: discovery.Discovery, statement: discovery.Document) -> Detected:
    notes: list[str] = []
    config = found.config
    if found.source == discovery.WELL_KNOWN:
        version = discovery.detect_smart_version({**config, "capabilities": _list(config.get("capabilities"))})
    else:
        version = "1"
        notes.append(f"no SMART configuration at {found.well_known.url} (HTTP {found.well_known.status}): endpoints "
                     "from the CapabilityStatement's oauth-uris, smart_version \"1\" declared")
    types = _resource_types(statement)
    doc = statement.json if statement.ok and isinstance(statement.json, dict) else {}
    caps = _list(config.get("capabilities"))
    backend = "client-confidential-asymmetric" in caps or any(str(s).startswith("system/")
                                                             for s in _list(config.get("scopes_supported")))
    return Detected(
        fhir_base_url=base, source=found.source, source_url=found.document.url, config=config, smart_version=version,
        auth_method=_auth_method(config, notes), carin_version=_carin_version(statement, notes),
        scopes=choose_scopes(config, version, types, notes), resource_types=types,
        fhir_version=doc.get("fhirVersion"), backend=backend, group_export=_group_export(statement), notes=notes,
        payer_operations=frozenset(advertised_operations(doc) & set(PAYER_OPERATIONS)))


# --- writing the file ------------------------------------------------------------------------------------------------

def default_name(fhir_base_url: str) -> str:
    host = urlsplit(fhir_base_url).netloc.lower()
    return re.sub(r"[^a-z0-9]+", "-", host).strip("-") or "payer"


def env_names(prefix: str) -> dict[str, str]:
    """The environment variables a generated file reads (CI sets them from its secrets)."""
    keys = ("CLIENT_ID", "CLIENT_SECRET", "MEMBER_USERNAME", "MEMBER_PASSWORD", "MEMBER_PATIENT_ID",
            "OTHER_MEMBER_USERNAME", "OTHER_MEMBER_PASSWORD", "OTHER_MEMBER_PATIENT_ID")
    return {k: f"{prefix}_{k}" for k in keys}


def authorize_example(detected: Detected, prefix: str) -> str:
    """An authorize URL to start a codegen recording at (client id from the environment, a throwaway PKCE pair)."""
    endpoint = detected.config.get("authorization_endpoint") or "AUTHORIZE_ENDPOINT"
    query = urlencode({"response_type": "code", "client_id": f"${prefix}_CLIENT_ID", "redirect_uri": REDIRECT_URI,
                       "scope": detected.scopes.get("full", ""), "state": "recording", "aud": detected.fhir_base_url,
                       "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                       "code_challenge_method": "S256"}, safe="/:$")
    return f"{endpoint}?{query}"


_Q = codegen.flow
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def _c(value: Any) -> str:
    """Server-supplied text for a comment: one line, so a crafted document cannot add keys to the file."""
    return _LINE_BREAKS.sub(" ", str(value))


def render(detected: Detected, *, name: str, prefix: str, ca_bundle: Path | None,
           recipe: codegen.Recipe | None = None, deny: codegen.Recipe | None = None,
           smart_configuration_url: str | None = None) -> str:
    """The target YAML, comments included."""
    env = env_names(prefix)
    cfg = detected.config
    lines = [f"# yaml-language-server: $schema={paths.schema_path('target.schema.json').as_uri()}",
             f"# Written by 'smart-conformance init-target {detected.fhir_base_url}'. Check it, then run:",
             "#     smart-conformance doctor --target THIS_FILE && smart-conformance run --target THIS_FILE",
             "# Every secret, user name and patient id is an ${ENV} reference: export these before a run (in CI, map",
             "# them from the CI secrets; see examples/ci/):",
             *[f"#     {v}" for v in env.values()],
             "",
             f"name: {_Q(name)}",
             f"fhir_base_url: {_Q(detected.fhir_base_url)}",
             (f"# FHIR {_c(detected.fhir_version or '(version not stated)')}; resources: "
              f"{_c(', '.join(detected.resource_types) or '(none listed)')}"),
             f"smart_version: {_Q(detected.smart_version)}                 # detected; 'auto' re-detects on every run",
             (f"# Discovery: {'SMART configuration' if detected.source == discovery.WELL_KNOWN else 'oauth-uris'}"
              f" at {_c(detected.source_url)}")]
    for key in discovery.URL_FIELDS:
        if isinstance(cfg.get(key), str):
            lines.append(f"#   {key}: {_c(cfg[key])}")
    for key in ("capabilities", "grant_types_supported", "code_challenge_methods_supported",
                "token_endpoint_auth_methods_supported", "scopes_supported"):
        if isinstance(cfg.get(key), list):
            lines.append(f"#   {key}: {_c(' '.join(map(str, cfg[key])))}")
    if smart_configuration_url:
        lines += ["discovery:", f"  smart_configuration_url: {_Q(smart_configuration_url)}"]
    else:
        lines.append("# discovery: {smart_configuration_url: https://...}   # only if the configuration is elsewhere")
    lines += ["", "ig:", (f"  carin_version: {detected.carin_version}                 # STU1: refusals are 401; "
                          "STU2: 401, 403 or 404"),
              "  # unauthorized_statuses: [401, 403]    # or exactly the statuses your API refuses with",
              "", "tls:",
              (f"  ca_bundle: {_Q(str(ca_bundle.resolve())) if ca_bundle else 'null'}"
               "   # PEM of a private CA; null = the system trust store"),
              "  # plain_http_port: 80                  # where plain http:// must be refused or redirected",
              "", "client:                                  # a confidential app registered with the payer",
              f"  client_id: ${{{env['CLIENT_ID']}}}",
              f"  client_secret: ${{{env['CLIENT_SECRET']}}}",
              f"  redirect_uri: {REDIRECT_URI}   # register it; captured in the browser, nothing listens",
              f"  auth_method: {detected.auth_method}",
              "# other_client:                          # optional second app: codes and refresh tokens are bound",
              f"#   client_id: ${{{prefix}_OTHER_CLIENT_ID}}",
              f"#   client_secret: ${{{prefix}_OTHER_CLIENT_SECRET}}",
              f"#   redirect_uri: {OTHER_REDIRECT_URI}",
              "", "members:",
              "  primary:                               # a test member who can sign in and consent",
              f"    username: ${{{env['MEMBER_USERNAME']}}}",
              f"    password: ${{{env['MEMBER_PASSWORD']}}}",
              f"    patient_id: ${{{env['MEMBER_PATIENT_ID']}}}   # the Patient id the launch must put in context",
              "  other:                                 # a second member: the primary must never reach their data",
              f"    username: ${{{env['OTHER_MEMBER_USERNAME']}}}",
              f"    password: ${{{env['OTHER_MEMBER_PASSWORD']}}}",
              f"    patient_id: ${{{env['OTHER_MEMBER_PATIENT_ID']}}}",
              "  # representative:                      # a parent/guardian; patient_id is the dependent",
              f"  #   username: ${{{prefix}_REP_USERNAME}}",
              f"  #   password: ${{{prefix}_REP_PASSWORD}}",
              f"  #   patient_id: ${{{prefix}_REP_PATIENT_ID}}",
              "", *_login_lines(detected, prefix, recipe, deny), "",
              "scopes:                                  # only scopes the server advertises (scopes_supported)"]
    for key in ("full", "limited", "v1"):
        if key in detected.scopes:
            lines.append(f"  {key}: {_Q(detected.scopes[key])}")
    if "representative" in detected.scopes:
        lines.append(f"  # representative: {_Q(detected.scopes['representative'])}")
    lines += _later_lines(detected)
    if detected.notes:
        lines += ["", "# Notes from init-target:"] + [f"#   - {_c(n)}" for n in detected.notes]
    return "\n".join(lines) + "\n"


RECORDING_HELP = """\
# How to record the sign-in recipe (the harness drives your sign-in and consent pages headless from these steps):
#   1. Record once with Playwright's recorder, starting at your authorize endpoint (client id filled in):
#        python -m playwright codegen --target python -o signin.py "{url}"
#      Sign in as the test member, approve on the consent page, close the browser. Record a second time and press
#      Deny instead (-o deny.py) for the refusal checks.
#   2. Convert: smart-conformance init-target {base} --from-codegen signin.py --deny-codegen deny.py ...
#      or copy by hand, one step per recorded action:
#        page.get_by_label("Username").fill("x")  ->
#          - fill: {{selector: 'internal:label="Username"i', value: "${{member.username}}"}}
#        page.fill("#password", "x")              ->  - fill: {{selector: "#password", value: "${{member.password}}"}}
#        page.get_by_role("button", name="Sign in").click()  ->  - click: 'internal:role=button[name="Sign in"i]'
#        page.locator("#otp").press("Enter")      ->  - press: {{selector: "#otp", key: Enter}}
#        page.click("text=Allow")                 ->  - click: "text=Allow"   (under consent.approve)
#      Typed values of the member are never written: ${{member.username}}, ${{member.password}}. A one-time code
#      needs a hook step (hook: my_hooks:answer_totp). Step kinds: goto, fill, click, check, uncheck, select, press,
#      wait_for {{selector|url|text}}, expect_text, hook. Selectors are Playwright's (CSS, text=, internal:role=...)."""


def _login_lines(detected: Detected, prefix: str, recipe: codegen.Recipe | None,
                 deny: codegen.Recipe | None) -> list[str]:
    help_text = RECORDING_HELP.format(url=_c(authorize_example(detected, prefix)), base=detected.fhir_base_url)
    if recipe is None:
        return [help_text, "# login:", "#   step_timeout_ms: 10000", "#   steps:",
                '#     - fill: {selector: "#username", value: "${member.username}"}',
                '#     - fill: {selector: "#password", value: "${member.password}"}',
                '#     - click: "button[type=submit]"', "#   consent:",
                '#     approve: [{click: "text=Allow"}]', '#     deny: [{click: "text=Deny"}]',
                "#     untick: [{uncheck: \"input[value='${scope}']\"}]   # run once per scope to withhold",
                "# Without login the launch, tokens, scopes and payer_data checks report 'could not check'."]
    out = [help_text, "login:                                   # converted from a codegen recording",
           "  step_timeout_ms: 10000", "  steps:", *codegen.step_lines(recipe.steps, "    "), "  consent:"]
    out += (["    approve:", *codegen.step_lines(recipe.approve, "      ")] if recipe.approve
            else ["    # approve: no consent page was recorded (none needed when the server asks for no consent)"])
    deny_steps = deny.approve if deny is not None else []
    out += (["    deny:", *codegen.step_lines(deny_steps, "      ")] if deny_steps
            else ["    # deny:                                # record with --deny-codegen, or write the Deny click",
                  '    #   - click: "text=Deny"'])
    untick = recipe.untick or (deny.untick if deny is not None else [])
    out += (["    untick:                               # run once per scope to withhold; ${scope} is that scope",
             *codegen.step_lines(untick, "      ")] if untick
            else ["    # untick:                              # run once per scope to withhold; ${scope} is the scope",
                  "    #   - uncheck: \"input[value='${scope}']\""])
    notes = [*recipe.notes, *(f"deny recording: {n}" for n in (deny.notes if deny is not None else []))]
    return out + [f"  # check: {_c(n)}" for n in notes]


def _later_lines(detected: Detected) -> list[str]:
    out = ["", "# attestations: attestations.yaml        # Safety Checklist items a person answers (relative path)"]
    if detected.backend:
        out += ["", "# The server advertises SMART Backend Services: register a backend client and fill this in",
                "# (the backend_services suite is not applicable without it). The key is never written here.",
                "# backend_client:", "#   client_id: provider-access-test-client",
                "#   private_key: {file: ~/.secrets/backend-client.pem}   # PEM (PKCS#8) or a private JWK",
                "#   alg: RS384                                          # or ES384 (EC P-384)",
                "#   kid: my-key-id", '#   scopes: "system/Patient.rs system/Coverage.rs"']
    if detected.group_export:
        out += ["# bulk:                                  # the CapabilityStatement lists Group $export",
                "#   group_id: attributed-members-123", "#   resource_types: [Patient, Coverage, ExplanationOfBenefit]",
                "#   max_wait_s: 60"]
    return out + _payer_api_lines(detected.payer_operations)


PAYER_OPERATIONS = ("provider-member-match", "davinci-data-export", "member-match", "bulk-member-match")
_MEMBER = "{patient_id: \"${%s}\", family: Doe, given: Jane, birth_date: \"1980-01-01\", gender: female, subscriber_id: \"${%s}\"}"


def _advertised(found: frozenset[str], names: tuple[str, ...]) -> str:
    listed = [f"${n}" for n in names if n in found]
    missing = [f"${n}" for n in names if n not in found]
    return (f"lists {', '.join(listed)}" if listed else "lists none of them") + \
        (f"; not listed: {', '.join(missing)}" if missing else "")


def _payer_api_lines(found: frozenset[str]) -> list[str]:
    """The CMS-0057 sections, commented, with what the CapabilityStatement advertises: a payer fills them in with
    its test members (the provider_access / payer_to_payer suites are not applicable without them)."""
    client = ["#   backend_client:                       # the shape of backend_client (key never written here)",
              "#     client_id: my-backend-client", "#     private_key: {file: ~/.secrets/backend-client.pem}",
              "#     alg: RS384", "#     kid: my-key-id",
              '#     scopes: "system/Patient.rs system/Coverage.rs system/ExplanationOfBenefit.rs"']
    return [
        "", (f"# Provider Access (CMS-0057): the CapabilityStatement "
            f"{_advertised(found, ('provider-member-match', 'davinci-data-export'))}."),
        "# provider_access:", *client,
        "#   attribution_group_ids: [attribution-group-id]   # v1 attribution Groups of this provider, if any",
        "#   members:                            # test members by role: demographics and coverage a match needs",
        "#     attributed: " + _MEMBER % ("SMART_TARGET_PA_ATTRIBUTED_ID", "SMART_TARGET_PA_ATTRIBUTED_SUB"),
        "#     opted_out: " + _MEMBER % ("SMART_TARGET_PA_OPTED_OUT_ID", "SMART_TARGET_PA_OPTED_OUT_SUB"),
        "#     not_attributed: " + _MEMBER % ("SMART_TARGET_PA_NOT_ATTRIBUTED_ID", "SMART_TARGET_PA_NOT_ATTRIBUTED_SUB"),
        "", (f"# Payer-to-Payer (CMS-0057): the CapabilityStatement "
            f"{_advertised(found, ('member-match', 'bulk-member-match', 'davinci-data-export'))}."),
        "# payer_to_payer:", *client,
        "#   requesting_payer: {system: http://example.org/payer-ids, value: MY-PAYER-ID}   # the Consent recipient",
        "#   consent_policy: http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html#regular",
        "#   retrieval: [bulk-export]             # add queries if a matched member's data can be read and searched",
        '#   query_searches: ["ExplanationOfBenefit?patient={patient}", "Coverage?beneficiary={patient}"]  # queries',
        "#   members:",
        "#     consenting: " + _MEMBER % ("SMART_TARGET_P2P_CONSENTING_ID", "SMART_TARGET_P2P_CONSENTING_SUB"),
        "#     not_consenting: " + _MEMBER % ("SMART_TARGET_P2P_NOT_CONSENTING_ID", "SMART_TARGET_P2P_NOT_CONSENTING_SUB"),
    ]


def write(fhir_base_url: str, output: Path | None, *, ca_bundle: Path | None = None, name: str | None = None,
          prefix: str = "SMART_TARGET", from_codegen: Path | None = None, deny_codegen: Path | None = None,
          smart_configuration_url: str | None = None, force: bool = False) -> tuple[str, Detected]:
    """Detect, render, and write ``output`` (not when it exists, unless ``force``); returns the text."""
    name = name or default_name(fhir_base_url)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", name):
        raise InitError(f"--name {name!r} is not a valid target name", "use letters, digits, '.', '_' and '-'")
    if not re.match(r"^[A-Z_][A-Z0-9_]*$", prefix):
        raise InitError(f"--env-prefix {prefix!r} is not an environment variable prefix",
                        "use upper-case letters, digits and '_', e.g. ACME_STAGING")
    if output is not None and output.exists() and not force:
        raise InitError(f"{output} exists", "pass --force to overwrite it, or another --output")
    try:
        recipe = codegen.convert_file(from_codegen) if from_codegen else None
        deny = codegen.convert_file(deny_codegen) if deny_codegen else None
    except codegen.CodegenError as exc:
        raise InitError(*str(exc).split(". Fix: ", 1)) from None
    detected = detect(fhir_base_url, ca_bundle, smart_configuration_url)
    text = render(detected, name=name, prefix=prefix, ca_bundle=ca_bundle, recipe=recipe, deny=deny,
                  smart_configuration_url=smart_configuration_url)
    if output is not None:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InitError(f"cannot write {output} ({exc.strerror})", "choose a writable --output path") from None
    return text, detected
