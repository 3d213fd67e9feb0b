"""Small FHIR REST helpers for checks: bearer calls through the recording client, readers of refusals, and the
positive controls every refusal verdict rests on."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from smart_conformance.checks import could_not_check, not_applicable
from smart_conformance.http import Exchange, RecordingClient, current_evidence, rate_limit_note

FHIR_JSON = "application/fhir+json"

# Text that betrays the server's internals when it appears in an error body.
DISCLOSURE = re.compile(
    r"Traceback \(most recent call last\)|\bat [\w.$]+\([\w]+\.java:\d+\)|File \"[^\"]+\.py\", line \d+|"
    r"\bException in thread\b|System\.[A-Za-z]+Exception|stack ?trace|/usr/(?:local/)?lib/python|"
    r"node_modules/|\bat Object\.<anonymous>|Whitelabel Error Page|Apache Tomcat/\d|nginx/\d|Microsoft-IIS/\d|"
    r"uvicorn|gunicorn|Werkzeug/|Express\b|PHP/\d|X-Powered-By", re.IGNORECASE)


@dataclass(frozen=True)
class Reply:
    response: httpx.Response
    exchange: Exchange | None

    @property
    def status(self) -> int:
        return self.response.status_code

    def json(self) -> Any:
        try:
            return self.response.json()
        except ValueError:
            return None

    @property
    def resource_type(self) -> str | None:
        body = self.json()
        return body.get("resourceType") if isinstance(body, dict) else None


def call(http: RecordingClient, method: str, url: str, *, token: str | None = None,
         headers: dict[str, str] | None = None, **kwargs: Any) -> Reply:
    sent = {"Accept": FHIR_JSON, **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    response = http.request(method, url, headers=sent, **kwargs)
    return Reply(response, http.exchange_for(response))


def leaked_data(reply: Reply) -> str | None:
    """Describe any resource data in a refusal: a refusal must carry none."""
    body = reply.json()
    if not isinstance(body, dict):
        return None
    kind = body.get("resourceType")
    if kind == "Bundle":
        entries = [e.get("resource", {}).get("resourceType") for e in body.get("entry") or [] if isinstance(e, dict)]
        entries = [e for e in entries if e and e != "OperationOutcome"]
        return f"a Bundle with {len(entries)} resources ({', '.join(sorted(set(entries)))})" if entries else None
    if kind and kind != "OperationOutcome":
        return f"a {kind} resource"
    return None


def disclosure(reply: Reply) -> str | None:
    """The first sign of server internals (stack traces, framework banners) in an error response."""
    text = reply.response.text[:20000]
    match = DISCLOSURE.search(text)
    if match:
        start = max(match.start() - 40, 0)
        return f"body contains {text[start:match.end() + 40]!r}"
    for name in ("server", "x-powered-by", "x-aspnet-version", "x-aspnetmvc-version"):
        value = reply.response.headers.get(name)
        if value and re.search(r"\d", value):
            return f"header {name}: {value}"
    return None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unsigned_jwt(claims: dict[str, Any]) -> str:
    """A JWT with ``alg: none``: a server that accepts it accepts anyone."""
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}."


def tampered_signature(token: str) -> str:
    """The token with one signature character changed (a middle one: every bit of it is significant); an opaque
    token with its last character changed."""
    parts = token.split(".")
    if len(parts) == 3 and len(parts[2]) > 2:
        sig, at = parts[2], len(parts[2]) // 2
        parts[2] = sig[:at] + ("A" if sig[at] != "A" else "B") + sig[at + 1:]
        return ".".join(parts)
    return token[:-1] + ("A" if token[-1:] != "A" else "B")


def echoed_credential(reply: Reply, credential: str) -> str | None:
    """Where a refusal repeats the token it refused (body or a header): the echo lands in logs and proxies."""
    if len(credential) < 8:
        return None
    needles = {credential, credential[-24:]}  # the tail: a token's signature end, unique to it
    for name, value in reply.response.headers.items():
        if any(n in value for n in needles):
            return f"header {name} repeats the refused token"
    text = reply.response.text[:200000]
    if any(n in text for n in needles):
        return "the response body repeats the refused token"
    return None


# --- positive controls ------------------------------------------------------------------------------------------
# A refusal only means something when the same request with valid credentials succeeds, in the same run: a URL that
# answers 404 to everything "refuses" every token. Controls are made once per recording client (one per target and
# worker) and attached, with their exchange, as evidence to every check that relies on them.

@dataclass(frozen=True)
class Control:
    """One request made with valid credentials, and why it does not count as a success (None when it does)."""

    label: str
    reply: Reply
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _succeeded(reply: Reply, path: str) -> str | None:
    """None when ``reply`` is the success ``GET path`` must give: the resource itself for a read, a Bundle otherwise."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    got = f"HTTP {reply.status} {reply.resource_type or reply.response.headers.get('content-type', '(no body)')}"
    if reply.status != 200:
        return got + rate_limit_note(reply.response)  # a 429 beyond the back-off budget says which budget
    body = reply.json()
    if len(parts) == 2 and not parts[1].startswith(("$", "_")):
        if reply.resource_type != parts[0] or not isinstance(body, dict) or str(body.get("id")) != parts[1]:
            return f"{got} instead of {parts[0]}/{parts[1]}"
        return None
    if reply.resource_type != "Bundle":
        return f"{got} instead of a Bundle"
    return None


def attach(control: Control) -> None:
    """Put a control's exchange (made by whichever check asked first) into the running check's evidence."""
    evidence = current_evidence()
    if evidence is None:
        return
    exchange = control.reply.exchange
    if exchange is not None and not any(e is exchange for e in evidence.exchanges):
        evidence.exchanges.insert(0, exchange)
    note = f"positive control: {control.label} -> {control.problem or f'HTTP {control.reply.status} (succeeded)'}"
    if note not in evidence.notes:
        evidence.notes.append(note)


def control(http: RecordingClient, base: str, path: str, token: str, *, params: dict[str, str] | None = None,
            who: str = "the member's own token") -> Control:
    """``GET {base}/{path}`` with a valid token, made in the running check, beside the negatives it backs (made once
    per check and reused there; never carried over from an earlier check, which may have run minutes before)."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    key = (id(http), base, path, tuple(sorted((params or {}).items())), digest)
    evidence = current_evidence()
    cache: dict[Any, Any] = evidence.controls if evidence is not None else {}
    if key not in cache:
        reply = call(http, "GET", f"{base}/{path}", token=token, params=params)
        query = "&".join(f"{k}={v}" for k, v in (params or {}).items())
        cache[key] = Control(f"GET {path}{'?' + query if query else ''} with {who}", reply, _succeeded(reply, path))
    found = cache[key]
    attach(found)
    return found


def require(*controls: Control, verdict: str) -> None:
    """Could-not-check unless every control succeeded: ``verdict`` (e.g. "a refusal without a token") needs them."""
    for ctl in controls:
        attach(ctl)
    failed = [c for c in controls if not c.ok]
    if failed:
        first = failed[0]
        could_not_check(f"no positive control for {verdict}: {first.label} answered {first.problem}, so a refusal "
                        "of the same request proves nothing (is fhir_base_url the FHIR API, and can the member read "
                        "their own data?)")


# --- FHIR surfaces beyond the single read ---------------------------------------------------------------------------
# The same negatives (no token, forged tokens, crafted origins) belong on every way into the member's data, not on one
# read: a search, a page link, an _include search and an operation are often served by other code paths.

FHIR_SURFACES = ("search", "next link", "include", "$everything")
INCLUDE = "ExplanationOfBenefit:patient"  # CARIN Blue Button: EOB searches support _include of the patient


@dataclass(frozen=True)
class Surface:
    """One request on a FHIR surface, made with the member's token as its positive control.

    ``absent`` says why the target does not offer the surface (a refused ``_include`` or ``$everything``, a search
    without a next link): a check of it is then not applicable. ``url`` is empty only when there is nothing to ask."""

    name: str
    url: str
    params: dict[str, str] | None
    control: Control
    absent: str | None = None


def fhir_surface(http: RecordingClient, base: str, patient_id: str, token: str, name: str) -> Surface:
    """The member's request on surface ``name`` (one of ``FHIR_SURFACES``) and its control: the search
    ``ExplanationOfBenefit?patient=``, the next link of that search with ``_count=1`` (on the FHIR base only: the
    token goes nowhere else), the search with ``_include=ExplanationOfBenefit:patient``, ``Patient/{id}/$everything``."""
    claims = {"patient": patient_id}
    if name == "next link":
        first = control(http, base, "ExplanationOfBenefit", token, params={**claims, "_count": "1"})
        if not first.ok:
            return Surface(name, f"{base}/ExplanationOfBenefit", {**claims, "_count": "1"}, first)
        from smart_conformance.members import next_link  # members builds on this module

        link = next_link(first.reply.json())
        if link is None:
            return Surface(name, "", None, first, f"the first page of ExplanationOfBenefit?patient={patient_id}"
                                                  "&_count=1 has no next link: the member's claims fit on one page")
        url = urljoin(str(first.reply.response.url), link)
        if urlsplit(url)[:2] != urlsplit(base)[:2] or not urlsplit(url).path.startswith(urlsplit(base).path):
            return Surface(name, "", None, first, f"the next link {url} leads off the FHIR base {base}")
        reply = call(http, "GET", url, token=token)
        found = Control(f"GET {url} (the next link of ExplanationOfBenefit?patient={patient_id}&_count=1) with the "
                        "member's own token", reply, _succeeded(reply, "ExplanationOfBenefit"))
        attach(found)
        return Surface(name, url, None, found)
    if name == "search":
        path, params = "ExplanationOfBenefit", claims
    elif name == "include":
        path, params = "ExplanationOfBenefit", {**claims, "_include": INCLUDE}
    elif name == "$everything":
        path, params = f"Patient/{patient_id}/$everything", None
    else:
        raise ValueError(f"unknown FHIR surface {name!r}; one of {FHIR_SURFACES}")
    ctl = control(http, base, path, token, params=params)
    absent = None
    if name != "search" and not ctl.ok and 400 <= ctl.reply.status < 500 and ctl.reply.status != 401:
        # a 401 is the member's token refused, not a surface missing: no control, so require() says could not check
        absent = f"the member's own token gets {ctl.problem} from {ctl.label.split(' with ')[0]}: not offered"
    return Surface(name, f"{base}/{path}", params, ctl, absent)


def require_surface(surface: Surface, *, verdict: str) -> None:
    """Not applicable where the target does not offer the surface; could-not-check unless its control succeeded."""
    if surface.absent is not None:
        attach(surface.control)
        not_applicable(surface.absent)
    require(surface.control, verdict=verdict)
