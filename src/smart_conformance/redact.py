"""The one place that knows what is secret.

Everything the harness writes (Allure attachments, summaries, failure messages, curl commands, screenshots' URLs) passes
through here first. Two mechanisms work together:

* structural: header names, form fields, JSON keys, query parameters, target-file keys and login-recipe values that
  carry secrets by their name -- one vocabulary (:data:`SECRET_FIELDS`, :func:`is_secret_field`), used by the HTTP
  evidence, the target loader (which refuses literal secrets) and the browser (which masks recipe values);
* by value: exact secret strings the run knows about (client secrets, member passwords, every token and code seen),
  registered with :func:`register_secret`, scrubbed wherever they appear, even inside free text.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"})

SECRET_FIELDS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "code",
        "code_verifier",
        "client_secret",
        "client_assertion",
        "password",
        "passwd",
        "token",
        "assertion",
        "csrf_token",
        "_csrf",
        "session",
        "otp",
        "totp",
        "passcode",
        "pin",
        "private_key",
    }
)

_MIN_SECRET_LEN = 4
_lock = threading.Lock()
_known: set[str] = set()
# Longest first, so a secret that contains another is masked whole. Plain substring replacement, not one regex
# alternation: recompiling an alternation of a few hundred tokens at every new secret cost ~0.3 s each (benchmarks/).
_ordered: tuple[str, ...] = ()

_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]+=*")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")


class SecretValue(str):
    """A secret read from ``${ENV}`` or a file (a ``totp`` step's base32 secret): the type says it was not written
    literally in a recipe, and messages show it as the mask. Registered like any other secret."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(MASK)


def register_secret(*values: str | None) -> None:
    """Remember secret values so they are scrubbed wherever they show up later."""
    global _ordered
    added: list[str] = []
    with _lock:
        for value in values:
            if value and len(value) >= _MIN_SECRET_LEN and value not in _known:
                _known.add(value)
                added.append(value)
        if added:
            _ordered = tuple(sorted(_known, key=len, reverse=True))
            _log_for_tests(added)


SECRET_LOG_ENV = "SMART_CONFORMANCE_SECRET_LOG"


def _log_for_tests(values: list[str]) -> None:
    """Test-only: with $SMART_CONFORMANCE_SECRET_LOG set, every secret registered is appended there (one JSON string
    a line), so a test can search a run's reports for the tokens and codes the run obtained. Never set it in a
    real run: the file holds the secrets in clear."""
    log = os.environ.get(SECRET_LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as out:
            out.write("".join(json.dumps(v) + "\n" for v in values))


def known_secrets() -> frozenset[str]:
    with _lock:
        return frozenset(_known)


# Names that are secret only as OAuth parameters (query strings, forms); in FHIR JSON "code" is a coded value.
PARAMETER_ONLY = frozenset({"code", "token"})


def is_secret_field(name: str, *, in_json: bool = False) -> bool:
    """Does a value under this name hold a secret? A dotted name (``member.password``, a recipe placeholder) is
    judged by its last part. ``in_json``: FHIR resources use ``code`` and ``token`` for plain data."""
    lowered = name.rsplit(".", 1)[-1].lower()
    if in_json and lowered in PARAMETER_ONLY:
        return False
    return lowered in SECRET_FIELDS or lowered.endswith(("_secret", "_token", "password"))


def secret_values(values: Mapping[str, str | None], extra: Iterable[str | None] = ()) -> set[str]:
    """The values of secret-named entries (a login recipe's ``member.password``, ``member.totp_secret``...) plus
    ``extra``: what must never appear in a message, a screenshot's URL or a trace."""
    return {v for k, v in values.items() if v and is_secret_field(k)} | {v for v in extra if v}


def text(value: str) -> str:
    """Scrub known secret values, bearer/basic credentials and JWT-looking strings from free text."""
    if not value:
        return value
    for secret in _ordered:
        if secret in value:
            value = value.replace(secret, MASK)
    value = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", value)
    return _JWT.sub(MASK, value)


def headers(items: Iterable[tuple[str, str]] | Mapping[str, str]) -> list[tuple[str, str]]:
    pairs = items.items() if isinstance(items, Mapping) else items
    out: list[tuple[str, str]] = []
    for name, value in pairs:
        if name.lower() in SECRET_HEADERS:
            scheme = value.split(" ", 1)[0] if name.lower().endswith("authorization") and " " in value else ""
            out.append((name, f"{scheme} {MASK}".strip()))
        else:
            out.append((name, text(value)))
    return out


def query(qs: str) -> str:
    pairs = parse_qsl(qs, keep_blank_values=True)
    return urlencode([(k, MASK if is_secret_field(k) else text(v)) for k, v in pairs], safe="*/:")


def url(value: str) -> str:
    parts = urlsplit(value)
    q = query(parts.query) if parts.query else ""
    frag = query(parts.fragment) if "=" in parts.fragment else text(parts.fragment)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    return text(urlunsplit((parts.scheme, netloc, parts.path, q, frag)))


def data(value: Any) -> Any:
    """Scrub a JSON-like structure: secret keys masked, every string scrubbed as text."""
    if isinstance(value, Mapping):
        return {k: (MASK if isinstance(k, str) and is_secret_field(k, in_json=True) and isinstance(v, str) and v
                    else data(v))
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [data(v) for v in value]
    if isinstance(value, str):
        return text(value)
    return value


def body(content: str, content_type: str | None) -> str:
    """Scrub an HTTP body according to its media type."""
    ctype = (content_type or "").lower()
    if "json" in ctype or content.lstrip()[:1] in ("{", "["):
        try:
            return json.dumps(data(json.loads(content)), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    if "x-www-form-urlencoded" in ctype:
        return query(content)
    return text(content)


def learn(value: Any) -> None:
    """Register the values of secret-named fields found in a JSON-like structure or a query/form string."""
    if isinstance(value, str):
        pairs = parse_qsl(value, keep_blank_values=False)
        register_secret(*(v for k, v in pairs if is_secret_field(k)))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and is_secret_field(key, in_json=True) and isinstance(item, str):
                register_secret(item)
            elif isinstance(item, Mapping | list):
                learn(item)
    elif isinstance(value, list):
        for item in value:
            learn(item)
