"""Target configuration: one YAML file per payer, validated against ``fixtures/schemas/target.schema.json``.

Every problem becomes a :class:`ConfigError` that names the file, the key path and the fix: a payer's QA engineer
should never see a traceback for a typo. Secrets only come from the environment or from files, and are registered with
:mod:`smart_conformance.redact` as soon as they are read.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from smart_conformance import paths, redact

_ENV = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A target file that cannot be used, explained in one line: file, key, what is wrong, how to fix it."""

    def __init__(self, file: Path | str, key: str, problem: str, fix: str) -> None:
        self.file, self.key, self.problem, self.fix = str(file), key, problem, fix
        super().__init__(f"{file}: {key or '(top level)'}: {problem}. Fix: {fix}")


@dataclass(frozen=True)
class Client:
    client_id: str
    redirect_uri: str
    client_secret: str | None = field(default=None, repr=False)
    auth_method: str = "client_secret_basic"
    private_key: str | None = field(default=None, repr=False)  # auth_method private_key_jwt: PEM or private JWK
    alg: str = "RS384"
    kid: str = ""


@dataclass(frozen=True)
class Member:
    username: str
    password: str = field(repr=False)
    patient_id: str
    fhir_user: str | None = None
    totp_secret: str | None = field(default=None, repr=False)

    def values(self, prefix: str = "member") -> dict[str, str]:
        """Placeholders a login recipe may use, e.g. ``${member.username}``."""
        out = {f"{prefix}.username": self.username, f"{prefix}.password": self.password,
               f"{prefix}.patient_id": self.patient_id}
        if self.totp_secret:
            out[f"{prefix}.totp_secret"] = self.totp_secret
        return out


@dataclass(frozen=True)
class Tls:
    ca_bundle: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    plain_http_port: int = 80
    insecure: bool = False


@dataclass(frozen=True)
class RateLimit:
    """``rate_limit``: how long in all the waits for one request to the token, introspection, revocation, discovery
    or FHIR endpoints may last when the target answers 429 (or 503 with Retry-After). 0: never wait."""

    max_wait_s: float = 30.0


@dataclass(frozen=True)
class Login:
    steps: tuple[Mapping[str, Any], ...]
    consent: Mapping[str, tuple[Mapping[str, Any], ...]]
    step_timeout_ms: int = 10_000
    script_readable_cookies: frozenset[str] = frozenset()  # cookies the page's script reads: HttpOnly not expected
    lockout: Any = None  # the recipe's lockout marker (browser/recipe.py reads these three)
    out_of_band_code: Any = None
    rate_limit: Any = None
    max_sign_ins: int | None = None  # the sign-in budget: password submissions per run and target (None: no cap)


@dataclass(frozen=True)
class BackendClient:
    """A SMART Backend Services client: client_credentials authenticated by an assertion signed with ``private_key``."""

    client_id: str
    private_key: str = field(repr=False)  # PEM or private JWK text; registered as a secret when read
    alg: str = "RS384"
    kid: str = ""
    scopes: str = ""
    jwks_url: str | None = None


@dataclass(frozen=True)
class Bulk:
    """Bulk Data export settings: the Group to export, the types expected, how long to wait for a job."""

    group_id: str
    resource_types: tuple[str, ...] = ()
    max_wait_s: float = 60.0
    other_client: BackendClient | None = None  # another backend client: must not see this client's jobs


@dataclass(frozen=True)
class PayerMember:
    """A test member as a $member-match needs it (synthetic or the payer's test account), by role."""

    patient_id: str
    family: str
    given: str
    birth_date: str
    gender: str
    subscriber_id: str


@dataclass(frozen=True)
class ProviderAccess:
    """CMS-0057 Provider Access: the provider's backend client, its Groups and its test members by role."""

    backend_client: BackendClient
    members: Mapping[str, PayerMember]  # attributed, opted_out, not_attributed
    other_client: BackendClient | None = None
    attribution_group_ids: tuple[str, ...] = ()
    other_group_id: str | None = None
    opted_out_in: str = "ConsentConstrainedMembers"
    financial_data_agreed: bool = False
    export_types: tuple[str, ...] = ("hl7.fhir.us.davinci-pdex#provider-delta",
                                     "hl7.fhir.us.davinci-pdex#provider-download",
                                     "hl7.fhir.us.davinci-pdex#provider-snapshot")
    max_wait_s: float = 60.0


@dataclass(frozen=True)
class PayerToPayer:
    """CMS-0057 Payer-to-Payer: the requesting payer's backend client, its identity in Consents, the test members."""

    backend_client: BackendClient
    requesting_payer: Mapping[str, str]  # {system, value}
    consent_policy: str
    members: Mapping[str, PayerMember]  # consenting, not_consenting
    wrong_scopes: str | None = None
    other_payer: Mapping[str, str] | None = None
    unacceptable_policy: str | None = None
    five_year_record: str | None = None
    max_wait_s: float = 60.0
    # How the new payer retrieves a matched member's data: "bulk-export" ($bulk-member-match, $davinci-data-export)
    # and/or "queries" (FHIR reads and searches after a single-member $member-match). Absent: bulk-export only.
    retrieval: tuple[str, ...] = ("bulk-export",)
    query_searches: tuple[str, ...] = ()  # the searches the query form offers, "{patient}" = the member's id

    def offers(self, form: str) -> bool:
        return form in self.retrieval


@dataclass(frozen=True)
class Target:
    name: str
    source: Path
    fhir_base_url: str
    smart_version: str
    client: Client
    members: Mapping[str, Member]
    scopes: Mapping[str, str]
    tls: Tls
    unauthorized_statuses: tuple[int, ...]
    carin_version: str
    other_client: Client | None = None
    login: Login | None = None
    other_patient_ids: tuple[str, ...] = ()
    missing_patient_id: str = "smart-conformance-no-such-patient"
    attestations: Path | None = None
    smart_configuration_url: str | None = None  # discovery.smart_configuration_url: where discovery lives if elsewhere
    backend_client: BackendClient | None = None  # backend_client: SMART Backend Services (None: not applicable)
    bulk: Bulk | None = None  # bulk: Bulk Data export of the backend client
    provider_access: ProviderAccess | None = None  # provider_access: CMS-0057 Provider Access (None: not applicable)
    payer_to_payer: PayerToPayer | None = None  # payer_to_payer: CMS-0057 Payer-to-Payer (None: not applicable)
    rate_limit: RateLimit = RateLimit()  # rate_limit: the back-off budget per request (http.RecordingClient)

    @property
    def member(self) -> Member:
        return self.members["primary"]


class _TextDates(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as text: the schemas (and the JSON they mirror) speak strings, and a bad date
    is then reported with its key instead of as a YAML crash."""


_TextDates.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(file: Path | str, *, what: str, missing_fix: str, error: type[ConfigError] = ConfigError,
              syntax: str = "YAML") -> Any:
    """The one way the harness reads its YAML files (targets, attestations, baselines; JSON too, YAML's subset).

    Every problem is an ``error`` naming the file, the line and column, and the fix -- never a traceback. ``what``
    names the kind of file in "not found" messages, ``missing_fix`` says where its path came from.
    """
    file = Path(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(file, "", f"{what} not found", missing_fix) from None
    except OSError as exc:
        raise error(file, "", f"cannot read file ({exc.strerror})", "check the path and permissions") from None
    except UnicodeDecodeError:
        raise error(file, "", "the file is not UTF-8 text", f"save the {what} as UTF-8") from None
    try:
        return yaml.load(text, Loader=_TextDates)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(file, "", f"not valid {syntax} at {where}: {problem.splitlines()[0] if problem else 'error'}",
                    f"fix the {syntax} syntax (indentation, quotes, a ':' after each key)") from None


def key_path(parts: Iterable[Any]) -> str:
    """A JSON-schema error path as it reads in a YAML file: ``members.primary.password``, ``attestations[2].date``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def first_schema_error(raw: Any, schema: dict[str, Any]) -> jsonschema.ValidationError | None:
    """The error to report: the shallowest, and an unknown key before anything else at that depth (a typo in a key
    name explains the "required key is missing" next to it)."""
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(raw),
                    key=lambda e: (len(list(e.absolute_path)), e.validator != "additionalProperties"))
    return errors[0] if errors else None


@cache
def _schema() -> dict[str, Any]:
    return json.loads(paths.schema_path("target.schema.json").read_text(encoding="utf-8"))


def _schema_error(file: Path, exc: jsonschema.ValidationError) -> ConfigError:
    key = key_path(exc.absolute_path)
    if exc.validator == "additionalProperties":
        allowed = sorted(exc.schema.get("properties", {}))
        extras = sorted(set(exc.instance) - set(allowed)) if isinstance(exc.instance, dict) else []
        bad = extras[0] if extras else "?"
        guess = difflib.get_close_matches(bad, allowed, n=1)
        hint = f"did you mean '{guess[0]}'?" if guess else f"allowed keys here: {', '.join(allowed)}"
        return ConfigError(file, key_path([*exc.absolute_path, bad]), f"unknown key '{bad}'", hint)
    if exc.validator == "required":
        missing = re.search(r"'([^']+)' is a required property", exc.message)
        name = missing.group(1) if missing else "?"
        return ConfigError(file, key_path([*exc.absolute_path, name]), "required key is missing",
                           f"add '{name}' (see fixtures/targets/example-payer.yaml)")
    if exc.validator == "propertyNames" or "propertyNames" in exc.schema_path:
        return ConfigError(file, key, f"unknown login step {exc.instance!r}",
                           "use one of goto, fill, click, check, uncheck, select, press, wait_for, expect_text, hook")
    if exc.validator == "enum":
        return ConfigError(file, key, f"{exc.instance!r} is not allowed",
                           f"use one of {', '.join(repr(v) for v in exc.validator_value)}")
    return ConfigError(file, key, exc.message, "correct the value; the schema is fixtures/schemas/target.schema.json")


def _interpolate(value: Any, file: Path, path: list[Any], env: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, file, [*path, k], env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, file, [*path, i], env) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(file, key_path(path), f"environment variable {name} is not set",
                          f"export {name}=... before the run (or give a default: ${{{name}:-value}})")

    return _ENV.sub(sub, value)


def _check_secrets(raw: Any, file: Path, path: list[Any]) -> None:
    """Secrets must be ${ENV} references or {file: ...}: a literal in a YAML file ends up in git."""
    if isinstance(raw, dict):
        for key, value in raw.items():
            if redact.is_secret_field(str(key)) and isinstance(value, str) and not _ENV.search(value):
                raise ConfigError(file, key_path([*path, key]), "secrets may not be written in the file",
                                  f"use {key}: ${{SOME_ENV_VAR}} or {key}: {{file: /path/to/secret}}")
            _check_secrets(value, file, [*path, key])
    elif isinstance(raw, list):
        for i, value in enumerate(raw):
            _check_secrets(value, file, [*path, i])


def _totp_steps(login: Any) -> Iterable[tuple[str, dict[str, Any]]]:
    """Every ``totp`` step of a login mapping, with its key path (``login.steps[3].totp``)."""
    if not isinstance(login, dict):
        return
    lists = [("login.steps", login.get("steps"))]
    lists += [(f"login.consent.{name}", steps) for name, steps in (login.get("consent") or {}).items()]
    for where, steps in lists:
        for i, step in enumerate(steps or ()):
            if isinstance(step, dict) and isinstance(step.get("totp"), dict):
                yield f"{where}[{i}].totp", step["totp"]


def _check_totp_secrets(raw: Mapping[str, Any], file: Path) -> set[str]:
    """A ``totp`` step's secret is ``${ENV}``, ``${member.totp_secret}`` or {file: path}, never written in the file.
    Returns the key paths whose secret comes from the environment (wrapped as secrets once interpolated)."""
    from smart_conformance.browser.recipe import totp_secret_source

    from_env: set[str] = set()
    for key, step in _totp_steps(raw.get("login")):
        source = totp_secret_source(step.get("secret"))
        if source == "literal":
            raise ConfigError(file, f"{key}.secret", "a TOTP secret may not be written in the file",
                              "use secret: ${SOME_ENV_VAR}, secret: {file: /path/to/secret}, or leave it out to use "
                              "the member's totp_secret (members.<role>.totp_secret: ${SOME_ENV_VAR})")
        if source == "placeholder" and _ENV.fullmatch(str(step["secret"]).strip()):
            from_env.add(key)
    return from_env


def _read_totp_secrets(login: dict[str, Any], from_env: set[str], file: Path) -> None:
    """Replace each ``totp`` step's ${ENV} or {file:} secret (interpolated by now) by the secret it names, marked as
    read from outside the file (``redact.SecretValue``) and registered for scrubbing."""
    for key, step in _totp_steps(login):
        secret = step.get("secret")
        if isinstance(secret, dict) or key in from_env:
            step["secret"] = redact.SecretValue(_secret(secret, file, f"{key}.secret") or "")


def _secret(value: Any, file: Path, key: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        secret_file = _resolve_path(value["file"], file)
        try:
            secret = secret_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(file, key, f"cannot read secret file {secret_file} ({exc.strerror})",
                              "point 'file' at a readable file holding only the secret") from None
    else:
        secret = str(value)
    if not secret:
        raise ConfigError(file, key, "the secret is empty", "set the environment variable or file to the secret")
    redact.register_secret(secret)
    return secret


def _resolve_path(value: str | None, file: Path) -> Path | None:
    if not value:
        return None
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (file.parent / path).resolve()


def _existing(value: str | None, file: Path, key: str) -> Path | None:
    path = _resolve_path(value, file)
    if path is not None and not path.is_file():
        raise ConfigError(file, key, f"file {path} does not exist", "give the path of an existing PEM file")
    return path


def _client(raw: Mapping[str, Any], file: Path, key: str) -> Client:
    method = raw.get("auth_method", "client_secret_basic")
    keyed = {name: raw[name] for name in ("private_key", "alg", "kid") if name in raw}
    if method != "private_key_jwt":
        if keyed:
            raise ConfigError(file, f"{key}.{next(iter(keyed))}", f"only used with auth_method private_key_jwt "
                              f"(auth_method is {method})", "set auth_method: private_key_jwt, or remove the key")
        return Client(client_id=raw["client_id"], redirect_uri=raw["redirect_uri"],
                      client_secret=_secret(raw.get("client_secret"), file, f"{key}.client_secret"),
                      auth_method=method)
    missing = [name for name in ("private_key", "alg", "kid") if name not in raw]
    if missing:
        raise ConfigError(file, f"{key}.{missing[0]}", f"auth_method private_key_jwt needs {', '.join(missing)}",
                          "add private_key ({file: ...} or ${ENV}), alg (RS384 or ES384) and the registered kid")
    if raw.get("client_secret") is not None:
        raise ConfigError(file, f"{key}.client_secret", "a client registered with a key has no client secret",
                          "remove client_secret, or use a client_secret_* auth_method")
    return Client(client_id=raw["client_id"], redirect_uri=raw["redirect_uri"], auth_method=method,
                  private_key=_private_key(raw, file, key), alg=raw["alg"], kid=raw["kid"])


def _check_fhir_user(fhir_user: str | None, fhir_base_url: str, file: Path, key: str) -> None:
    """fhir_user may be relative (``Patient/123``) or the absolute URL copied from the id_token's claim, but then
    under fhir_base_url: the harness sends the member's token nowhere else."""
    from smart_conformance.smart.idtoken import fhir_user_reference

    if fhir_user and fhir_user_reference(fhir_user, fhir_base_url) is None:
        raise ConfigError(file, key, f"{fhir_user!r} is not under fhir_base_url {fhir_base_url!r}",
                          "write it relative to the FHIR base (e.g. Patient/123) or as the absolute URL under it")


def _member(raw: Mapping[str, Any], file: Path, key: str) -> Member:
    return Member(username=raw["username"], password=_secret(raw["password"], file, f"{key}.password") or "",
                  patient_id=raw["patient_id"], fhir_user=raw.get("fhir_user"),
                  totp_secret=_secret(raw.get("totp_secret"), file, f"{key}.totp_secret"))


def merge(base: Mapping[str, Any], patch: Mapping[str, Any], *, delete: bool = True) -> dict[str, Any]:
    """Deep-merge ``patch`` into ``base``: mappings merge, anything else replaces, ``None`` deletes the key
    (with ``delete=False``, when combining patches, ``None`` is kept as the mark to delete later)."""
    out = dict(base)
    for key, value in patch.items():
        if value is None and delete:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value, delete=delete)
        else:
            out[key] = dict(value) if isinstance(value, Mapping) else value
    return out


def load_target(file: Path | str, env: Mapping[str, str] | None = None,
                patch: Mapping[str, Any] | None = None) -> Target:
    """Read, validate and build one target. Raises :class:`ConfigError` only.

    ``patch`` (the embedded reference's variants): changes merged into the file's mapping before validation."""
    file = Path(file)
    env = os.environ if env is None else env
    raw = load_yaml(file, what="target file", missing_fix="pass the path of a target YAML file to --target")
    if not isinstance(raw, dict):
        raise ConfigError(file, "", "the file does not hold a mapping", "start from fixtures/targets/example-payer.yaml")
    if patch:
        raw = merge(raw, patch)
    error = first_schema_error(raw, _schema())
    if error is not None:
        raise _schema_error(file, error)
    _check_secrets(raw, file, [])
    totp_from_env = _check_totp_secrets(raw, file)
    data = _interpolate(raw, file, [], env)
    if not re.match(r"^https?://[^/\s]+", data["fhir_base_url"]):
        raise ConfigError(file, "fhir_base_url", f"{data['fhir_base_url']!r} is not an absolute URL",
                          "write the full base, e.g. https://fhir.example.org/r4")
    members = {role: _member(m, file, f"members.{role}") for role, m in data["members"].items()}
    for role, member in members.items():
        _check_fhir_user(member.fhir_user, data["fhir_base_url"], file, f"members.{role}.fhir_user")
    tls_raw = data.get("tls") or {}
    port_raw = tls_raw.get("plain_http_port")
    try:
        plain_port = int(port_raw) if port_raw not in (None, "") else 80
    except ValueError:
        raise ConfigError(file, "tls.plain_http_port", f"{port_raw!r} is not a port number",
                          "give an integer such as 80") from None
    tls = Tls(ca_bundle=_existing(tls_raw.get("ca_bundle"), file, "tls.ca_bundle"),
              client_cert=_existing(tls_raw.get("client_cert"), file, "tls.client_cert"),
              client_key=_existing(tls_raw.get("client_key"), file, "tls.client_key"),
              plain_http_port=plain_port, insecure=bool(tls_raw.get("insecure", False)))
    login_raw = data.get("login")
    login = None
    if login_raw:
        _read_totp_secrets(login_raw, totp_from_env, file)
        consent = {k: tuple(v) for k, v in (login_raw.get("consent") or {}).items()}
        login = Login(steps=tuple(login_raw["steps"]), consent=consent,
                      step_timeout_ms=int(login_raw.get("step_timeout_ms", 10_000)),
                      script_readable_cookies=frozenset(login_raw.get("script_readable_cookies") or ()),
                      lockout=login_raw.get("lockout"), out_of_band_code=login_raw.get("out_of_band_code"),
                      rate_limit=login_raw.get("rate_limit"),
                      max_sign_ins=login_raw.get("max_sign_ins"))
    ig = data.get("ig") or {}
    carin = ig.get("carin_version", "STU2")
    statuses = tuple(ig.get("unauthorized_statuses") or ((401,) if carin == "STU1" else (401, 403, 404)))
    discovery_url = _discovery_url(data.get("discovery") or {}, file)
    isolation = data.get("isolation") or {}
    others = tuple(isolation.get("other_patient_ids") or ())
    if members["primary"].patient_id in others:
        raise ConfigError(file, "isolation.other_patient_ids", f"lists the primary member's own patient "
                          f"{members['primary'].patient_id!r}", "list only other members' patient ids")
    if not others and "other" in members:
        others = (members["other"].patient_id,)
    return Target(
        name=data["name"], source=file.resolve(), fhir_base_url=data["fhir_base_url"].rstrip("/"),
        smart_version=str(data.get("smart_version", "auto")), client=_client(data["client"], file, "client"),
        other_client=_client(data["other_client"], file, "other_client") if data.get("other_client") else None,
        members=members, scopes=dict(data.get("scopes") or {"full": "launch/patient openid fhirUser patient/*.read"}),
        tls=tls, unauthorized_statuses=statuses, carin_version=carin, login=login, other_patient_ids=others,
        missing_patient_id=isolation.get("missing_patient_id", "smart-conformance-no-such-patient"),
        attestations=_resolve_path(data.get("attestations"), file), smart_configuration_url=discovery_url,
        backend_client=_backend_client(data.get("backend_client"), file),
        bulk=_bulk(data.get("bulk"), file, data.get("backend_client")),
        provider_access=_provider_access(data.get("provider_access"), file),
        payer_to_payer=_payer_to_payer(data.get("payer_to_payer"), file),
        rate_limit=RateLimit(max_wait_s=float((data.get("rate_limit") or {}).get("max_wait_s", 30))),
    )


def _backend_client(raw: Mapping[str, Any] | None, file: Path, key: str = "backend_client") -> BackendClient | None:
    """``backend_client``: the key must load and fit ``alg`` (RS384: RSA; ES384: EC P-384), checked here so a wrong
    file is a configuration error, not a failed conformance check."""
    if not raw:
        return None
    key_text = _private_key(raw, file, key)
    scopes = str(raw["scopes"]).split()
    if not scopes or not all(s.startswith("system/") for s in scopes):
        raise ConfigError(file, f"{key}.scopes", "every scope must be a system/ scope",
                          "list the client's registered scopes, e.g. 'system/Patient.rs system/Coverage.rs'")
    jwks_url = raw.get("jwks_url") or None
    if jwks_url is not None and not re.match(r"^https://[^/\s?#]+", str(jwks_url)):
        raise ConfigError(file, f"{key}.jwks_url", f"{jwks_url!r} is not an absolute https URL",
                          "give the TLS-protected URL the client's JWK Set is registered under")
    return BackendClient(client_id=raw["client_id"], private_key=key_text, alg=raw["alg"], kid=raw["kid"],
                         scopes=" ".join(scopes), jwks_url=jwks_url)


def _private_key(raw: Mapping[str, Any], file: Path, key: str) -> str:
    """``private_key`` read ({file:} or ${ENV}); it must load and fit ``alg``, so a wrong file is a configuration
    error, not a failed conformance check."""
    from smart_conformance.smart.assertion import key_matches_alg, load_private_key

    key_text = _secret(raw["private_key"], file, f"{key}.private_key") or ""
    try:
        private = load_private_key(key_text)
    except ValueError as exc:
        raise ConfigError(file, f"{key}.private_key", str(exc),
                          "point private_key at the client's PEM (PKCS#8 or traditional) or private JWK") from None
    if not key_matches_alg(private, raw["alg"]):
        raise ConfigError(file, f"{key}.alg", f"the private key does not fit {raw['alg']}",
                          "use RS384 with an RSA key, ES384 with an EC P-384 key")
    return key_text


def _bulk(raw: Mapping[str, Any] | None, file: Path, backend: Any) -> Bulk | None:
    if not raw:
        return None
    if not backend:
        raise ConfigError(file, "bulk", "bulk export needs a backend_client",
                          "add a backend_client section (the export runs with its system/ token)")
    return Bulk(group_id=raw["group_id"], resource_types=tuple(raw.get("resource_types") or ()),
                max_wait_s=float(raw.get("max_wait_s", 60)),
                other_client=_backend_client(raw.get("other_client"), file, "bulk.other_client"))


def _payer_members(raw: Mapping[str, Any]) -> dict[str, PayerMember]:
    return {role: PayerMember(**{k: str(v) for k, v in m.items()}) for role, m in raw.items()}


def _required_client(raw: Mapping[str, Any], file: Path, key: str) -> BackendClient:
    client = _backend_client(raw, file, key)
    assert client is not None  # the schema requires the section
    return client


def _provider_access(raw: Mapping[str, Any] | None, file: Path) -> ProviderAccess | None:
    """``provider_access``: every assumption about the payer's Provider Access API (members by role, Groups)."""
    if not raw:
        return None
    extra = {k: tuple(raw[k]) for k in ("attribution_group_ids", "export_types") if raw.get(k)}
    return ProviderAccess(
        backend_client=_required_client(raw["backend_client"], file, "provider_access.backend_client"),
        members=_payer_members(raw["members"]),
        other_client=_backend_client(raw.get("other_client"), file, "provider_access.other_client"),
        other_group_id=raw.get("other_group_id") or None,
        opted_out_in=raw.get("opted_out_in", "ConsentConstrainedMembers"),
        financial_data_agreed=bool(raw.get("financial_data_agreed", False)),
        max_wait_s=float(raw.get("max_wait_s", 60)), **extra)


def _payer_to_payer(raw: Mapping[str, Any] | None, file: Path) -> PayerToPayer | None:
    """``payer_to_payer``: the requesting payer's client and identity, Consent policies, members by role."""
    if not raw:
        return None
    return PayerToPayer(
        backend_client=_required_client(raw["backend_client"], file, "payer_to_payer.backend_client"),
        requesting_payer=dict(raw["requesting_payer"]), consent_policy=str(raw["consent_policy"]),
        members=_payer_members(raw["members"]), wrong_scopes=raw.get("wrong_scopes") or None,
        other_payer=dict(raw["other_payer"]) if raw.get("other_payer") else None,
        unacceptable_policy=raw.get("unacceptable_policy") or None,
        five_year_record=raw.get("five_year_record") or None, max_wait_s=float(raw.get("max_wait_s", 60)),
        retrieval=tuple(raw.get("retrieval") or ("bulk-export",)),
        query_searches=tuple(str(q) for q in raw.get("query_searches") or ()))


def _discovery_url(raw: Mapping[str, Any], file: Path) -> str | None:
    """``discovery.smart_configuration_url``: the SMART configuration of a payer that serves it somewhere other than
    ``{fhir_base_url}/.well-known/smart-configuration`` (an authorization server on its own host). Absolute https
    only: the harness reads endpoints from it and sends tokens to them."""
    url = raw.get("smart_configuration_url")
    if url in (None, ""):
        return None
    if not re.match(r"^https://[^/\s?#]+(/[^\s#]*)?$", str(url)):
        raise ConfigError(file, "discovery.smart_configuration_url", f"{url!r} is not an absolute https URL",
                          "write the full URL of the JSON document, e.g. "
                          "https://auth.example.org/.well-known/smart-configuration")
    return str(url)


def target_files(paths_or_dirs: Iterable[str | Path]) -> list[Path]:
    """Expand --target arguments: files as given, folders to their *.yaml / *.yml files."""
    out: list[Path] = []
    for item in paths_or_dirs:
        path = Path(item)
        if path.is_dir():
            found = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
            if not found:
                raise ConfigError(path, "", "the folder holds no .yaml target files", "add a target file or name one")
            out.extend(found)
        else:
            out.append(path)
    return out


def load_targets(files: Iterable[str | Path], env: Mapping[str, str] | None = None) -> list[Target]:
    targets = [load_target(f, env) for f in target_files(files)]
    seen: dict[str, Path] = {}
    for target in targets:
        if target.name in seen:
            raise ConfigError(target.source, "name", f"the name '{target.name}' is also used by {seen[target.name]}",
                              "give each target a unique name")
        seen[target.name] = target.source
    return targets
