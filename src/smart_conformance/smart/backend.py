"""A SMART Backend Services client as the suites use it: one target's backend client, its token endpoint, and the
judgement of a token endpoint's answer to a good or a deliberately broken client assertion.

A refusal counts only next to a positive control: after each negative, :meth:`BackendSession.control` sends a fresh,
good assertion with the same scopes and must get a token, or the check reports *could not check* (the server may
refuse everything, which proves nothing about the one thing the negative changed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from smart_conformance import refusals
from smart_conformance.checks import could_not_check, not_applicable
from smart_conformance.config import BackendClient, Target
from smart_conformance.http import RecordingClient
from smart_conformance.oauth import covered_by, oauth_error, scope_set
from smart_conformance.smart.assertion import (
    Signer,
    load_private_key,
    request_token,
    token_form,
)


@dataclass
class Grant:
    """The answer to a client_credentials request."""

    response: httpx.Response
    body: Any

    @property
    def token(self) -> str | None:
        value = self.body.get("access_token") if isinstance(self.body, dict) else None
        return value if isinstance(value, str) and value else None

    @property
    def scope(self) -> str | None:
        value = self.body.get("scope") if isinstance(self.body, dict) else None
        return value if isinstance(value, str) else None


def _grant(response: httpx.Response) -> Grant:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    return Grant(response, body)


class BackendSession:
    """One target's backend client talking to its token endpoint through the recording client."""

    def __init__(self, http: RecordingClient, client: BackendClient, token_endpoint: str) -> None:
        self.http = http
        self.client = client
        self.token_endpoint = token_endpoint
        self.signer = Signer(client.client_id, load_private_key(client.private_key), client.alg, client.kid)

    @classmethod
    def at(cls, http: RecordingClient, client: BackendClient, smart_config: Mapping[str, Any], who: str) -> BackendSession:
        """The session at the token endpoint discovery names; could-not-check when it names no https one."""
        endpoint = smart_config.get("token_endpoint")
        if not isinstance(endpoint, str) or not endpoint.startswith("https://"):
            could_not_check(f"discovery gives no https token_endpoint ({endpoint!r}) for {who}")
        return cls(http, client, endpoint)

    @property
    def scopes(self) -> str:
        return self.client.scopes

    def claims(self, **kwargs: Any) -> dict[str, Any]:
        return self.signer.claims(self.token_endpoint, **kwargs)

    def send(self, assertion: str, *, scope: str | None = None, extra: Mapping[str, str] | None = None,
             assertion_type: str | None = None, headers: Mapping[str, str] | None = None) -> Grant:
        form = token_form(assertion, self.scopes if scope is None else scope,
                          **({"assertion_type": assertion_type} if assertion_type is not None else {}))
        form.update(extra or {})
        return _grant(request_token(self.http, self.token_endpoint, form, headers))

    def good(self, *, scope: str | None = None) -> Grant:
        """A request a conformant server must accept: a fresh, well-formed assertion and the registered scopes."""
        return self.send(self.signer.assertion(self.token_endpoint), scope=scope)

    def control(self, what: str) -> Grant:
        """The positive control of a negative: the same request with a good assertion gets a token."""
        grant = self.good()
        if grant.token is None:
            err = oauth_error(grant.response)
            could_not_check(f"positive control failed: a good assertion got HTTP {err.status} error={err.error!r}, so "
                            f"the refusal of {what} proves nothing about that one change")
        return grant

    def refused(self, grant: Grant, *, what: str, requirement: str | Sequence[str],
                errors: tuple[str, ...] = ("invalid_client",), error_requirement: str = "ASYM-05") -> None:
        """The token endpoint refused ``what`` (no token, a decision made), and the positive control then succeeds.
        The refusal's wording (``errors``, HTTP 400/401) is recorded for the token endpoint's error-responses check, not judged here."""
        refusals.refused(self.http, grant.response, what=what, requirement=tuple([requirement] if isinstance(
            requirement, str) else requirement), shape=refusals.assertion_error(errors, error_requirement))
        self.control(what)


def granted_types(scope: str) -> list[str]:
    """Concrete resource types a system/ scope string lets the client read (wildcards left out)."""
    out: list[str] = []
    for item in scope.split():
        if item.startswith("system/") and "." in item:
            rtype = item[len("system/"):].split(".", 1)[0]
            if rtype != "*" and rtype not in out and covered_by(f"system/{rtype}.r", {item}):
                out.append(rtype)
    return out


def outside_types(supported: Sequence[str], scope: str) -> list[str]:
    """Supported types the scope string does not let the client read."""
    granted = scope_set(scope)
    return [t for t in supported if not covered_by(f"system/{t}.r", granted)]


def supported_types(statement: Any) -> list[str]:
    """Resource types a CapabilityStatement lists with read or search-type."""
    out: list[str] = []
    try:
        for rest in statement.get("rest") or []:
            for resource in rest.get("resource") or []:
                codes = {i.get("code") for i in resource.get("interaction") or []}
                if codes & {"read", "search-type"} and isinstance(resource.get("type"), str):
                    out.append(resource["type"])
    except AttributeError:
        return []
    return out


def configured_backend_client(target: Target) -> BackendClient:
    """The target's backend client: without one, every backend and bulk check is not applicable, never a failure."""
    if target.backend_client is None:
        not_applicable("no backend client configured (add a backend_client section to the target file)")
    return target.backend_client


def must_have_token(grant: Grant, why: str) -> str:
    if grant.token is None:
        err = oauth_error(grant.response)
        could_not_check(f"{why}: the backend client got no access token (HTTP {err.status} error={err.error!r}); "
                        "the backend token check judges that")
    return grant.token


def system_search(http: RecordingClient, fhir_base_url: str, rtype: str, token: str) -> httpx.Response:
    """GET {base}/{type}?_count=1 with the backend token (the target's own FHIR base only)."""
    return http.get(f"{fhir_base_url}/{rtype}", params={"_count": "1"},
                    headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"})


def has_resources(response: httpx.Response, rtype: str) -> bool:
    """Did a search answer hand out resources of ``rtype``? (What a refusal must never do.)"""
    if response.status_code != 200:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    if isinstance(body, dict) and body.get("resourceType") == rtype:
        return True
    entries = body.get("entry") if isinstance(body, dict) else None
    return any(isinstance(e, dict) and isinstance(e.get("resource"), dict)
               and e["resource"].get("resourceType") == rtype for e in entries or [])
