"""A refusal judged twice, apart: did the server protect (nothing issued), and did it say so in the defined format?

A server that answers a replayed code with ``403 invalid_code`` protects its members; it only refuses in a format
RFC 6749 §5.2 does not define. Judging both in one check turned that one deviation into eleven "broken protections"
on a real server. So a check of a protection judges only the protection (:func:`refused`: nothing issued, and a
decision made: a 5xx or a 429 is none), and notes a non-standard format when it sees one. The format of every refusal
is recorded here and judged by one check per endpoint family (token, revocation and introspection in
``suites/tokens/test_error_responses.py``; the FHIR API's Bearer challenge in ``suites/fhir_security``), which runs
after the other checks of its target and lists every deviating exchange of the run, its own probes first.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx

from smart_conformance.checks import could_not_check, expect, not_applicable
from smart_conformance.http import Exchange, RecordingClient, current_evidence, rate_limit_note
from smart_conformance.oauth import issued_tokens, not_a_decision, oauth_error


class Family(StrEnum):
    """Endpoints whose refusals share one defined format, each judged by one format check."""

    AUTHORIZE = "authorization endpoint"
    TOKEN = "token endpoint"
    REVOCATION = "revocation endpoint"
    INTROSPECTION = "introspection endpoint"
    FHIR = "FHIR API"


@dataclass(frozen=True)
class Shape:
    """What a spec defines a refusal of one kind to look like: statuses, error codes and the requirement it cites.

    ``client_auth``: a failed client authentication, where RFC 6749 §5.2 owes HTTP 401 with WWW-Authenticate to a
    client that authenticated with the Authorization header (400 or 401 otherwise)."""

    family: Family
    errors: tuple[str, ...]
    statuses: tuple[int, ...] = (400,)
    requirement: str = "RFC6749-08"
    client_auth: bool = False

    def deviation(self, response: httpx.Response) -> str | None:
        """How ``response`` departs from this shape, in words; None when it conforms."""
        if self.family is Family.FHIR:
            return _bearer_deviation(response, self.statuses)
        err = oauth_error(response)
        used_header = "authorization" in {k.lower() for k in response.request.headers}
        statuses = (401,) if self.client_auth and used_header else self.statuses
        problems: list[str] = []
        if err.status not in statuses:
            problems.append(f"HTTP {err.status} where {' or '.join(map(str, statuses))} is defined"
                            + (" (the client authenticated with the Authorization header)"
                               if self.client_auth and used_header else ""))
        media = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if not isinstance(err.body, dict):
            problems.append("no JSON error body" + (f" ({media or 'no content type'})" if media != "application/json"
                                                    else ""))
        elif err.error is None:
            problems.append("a JSON body without an error code")
        elif err.error not in self.errors:
            problems.append(f"error={err.error!r} where {' or '.join(self.errors)} is defined")
        elif media != "application/json":
            problems.append(f"Content-Type {media or '(none)'} where application/json is defined")
        if self.client_auth and used_header and err.status == 401 and not err.www_authenticate:
            problems.append("no WWW-Authenticate on the 401 (the client used the Authorization header)")
        return "; ".join(problems) or None


def _bearer_deviation(response: httpx.Response, statuses: tuple[int, ...]) -> str | None:
    """RFC 6750 §3: a resource server refusing a missing or bad token answers 401 with a Bearer challenge."""
    problems: list[str] = []
    if response.status_code not in statuses:
        problems.append(f"HTTP {response.status_code} where {' or '.join(map(str, statuses))} is defined")
    challenge = response.headers.get("www-authenticate", "")
    if response.status_code == 401 and not challenge.strip().lower().startswith("bearer"):
        problems.append(f"WWW-Authenticate {challenge!r} on the 401 where a Bearer challenge is defined"
                        if challenge else "no WWW-Authenticate on the 401 (RFC 6750 §3: a Bearer challenge)")
    return "; ".join(problems) or None


def bearer_refusal(allowed: tuple[int, ...] = ()) -> Shape:
    """A refused token at the FHIR API: 401 with a Bearer challenge (or a status the target's guide allows)."""
    return Shape(Family.FHIR, (), tuple(dict.fromkeys((401, *allowed))), requirement="RFC6750-03")


def token_error(*errors: str) -> Shape:
    """A refused grant at the token endpoint (RFC 6749 §5.2): HTTP 400 and one of ``errors``."""
    return Shape(Family.TOKEN, errors or ("invalid_grant",))


INVALID_CLIENT = Shape(Family.TOKEN, ("invalid_client",), (400, 401), client_auth=True)


def assertion_error(errors: tuple[str, ...] = ("invalid_client",), requirement: str = "ASYM-05") -> Shape:
    """A refused client assertion (SMART asymmetric client authentication): 400/401 and one of ``errors``."""
    return Shape(Family.TOKEN, errors, (400, 401), requirement=requirement, client_auth=True)


UNSUPPORTED_GRANT = Shape(Family.TOKEN, ("unsupported_grant_type", "unauthorized_client", "invalid_grant"),
                          requirement="RFC6749-13")
REVOCATION_INVALID_CLIENT = Shape(Family.REVOCATION, ("invalid_client",), (400, 401), requirement="RFC7009-09",
                                  client_auth=True)
INTROSPECTION_INVALID_CLIENT = Shape(Family.INTROSPECTION, ("invalid_client",), (400, 401),
                                     requirement="RFC7662-03", client_auth=True)


# RFC 6749 §4.1.2.1, then the codes OpenID Connect Core 1.0 §3.1.2.6 adds for its own requests.
AUTHORIZE_ERRORS = ("invalid_request", "unauthorized_client", "access_denied", "unsupported_response_type",
                    "invalid_scope", "server_error", "temporarily_unavailable", "interaction_required",
                    "login_required", "account_selection_required", "consent_required", "invalid_request_uri",
                    "invalid_request_object", "request_not_supported", "request_uri_not_supported",
                    "registration_not_supported")


def error_redirect(*errors: str, requirement: str = "RFC6749-02") -> Shape:
    """An authorization error sent back to the redirect_uri (RFC 6749 §4.1.2.1): ``errors`` (default: any defined)."""
    return Shape(Family.AUTHORIZE, errors or AUTHORIZE_ERRORS, (), requirement=requirement)


@dataclass(frozen=True)
class Observation:
    """One refusal the run saw: which check provoked it, where, and how its format departed from its shape."""

    check: str
    endpoint: str
    shape: Shape
    exchange: Exchange | None
    deviation: str | None

    def line(self) -> str:
        what = (f"{self.exchange.method} {self.exchange.url.split('?')[0]} → HTTP {self.exchange.status}"
                if self.exchange else f"an error redirect from {self.endpoint}" if self.shape.family is
                Family.AUTHORIZE else self.endpoint)
        return f"{self.check or '(this check)'}: {what}: {self.deviation or 'as defined'}"


_ledger: list[Observation] = []
_check: contextvars.ContextVar[str] = contextvars.ContextVar("smart_conformance_refusal_check", default="")


@contextmanager
def in_check(name: str) -> Iterator[None]:
    """Refusals recorded inside are attributed to check ``name`` (the plugin wraps every check in it)."""
    token = _check.set(name)
    try:
        yield
    finally:
        _check.reset(token)


def _endpoint(response: httpx.Response) -> str:
    return str(response.request.url.copy_with(query=None, fragment=None))


def record(http: RecordingClient, response: httpx.Response, shape: Shape) -> Observation | None:
    """Keep a refusal's format for its family's check. Only a 4xx is a refusal to word: a 5xx or 429 is no decision,
    and an answer that refused nothing (tokens, active: true) is the protection's finding, not a wording."""
    return _keep(response, http.exchange_for(response), shape)


def record_reply(reply: Any, shape: Shape) -> Observation | None:
    """:func:`record` for a FHIR :class:`~smart_conformance.fhir.Reply` (its response and exchange)."""
    return _keep(reply.response, reply.exchange, shape)


def _keep(response: httpx.Response, exchange: Exchange | None, shape: Shape) -> Observation | None:
    if not 400 <= response.status_code < 500 or response.status_code == 429:
        return None
    return _append(_endpoint(response), shape, exchange, shape.deviation(response))


def _append(endpoint: str, shape: Shape, exchange: Exchange | None, deviation: str | None) -> Observation:
    observation = Observation(_check.get(), endpoint, shape, exchange, deviation)
    _ledger.append(observation)
    return observation


def record_error_redirect(endpoint: str, error: str, shape: Shape) -> Observation:
    """Keep the ``error`` of an authorization error redirect (seen in the browser, so no HTTP exchange) for
    the authorization endpoint's wording check."""
    if error in shape.errors:
        deviation = None
    elif shape.errors == AUTHORIZE_ERRORS:
        deviation = f"error={error!r}, not a code RFC 6749 §4.1.2.1 (or OpenID Connect Core §3.1.2.6) defines"
    else:
        deviation = f"error={error!r} where {' or '.join(shape.errors)} is defined"
    return _append(str(httpx.URL(endpoint).copy_with(query=None, fragment=None)), shape, None, deviation)


def observed(family: Family, endpoint: str) -> list[Observation]:
    """Every refusal of ``family`` recorded so far in this run at ``endpoint`` (for the FHIR API: under its base)."""
    base = str(httpx.URL(endpoint).copy_with(query=None, fragment=None)).rstrip("/")
    return [o for o in _ledger if o.shape.family is family
            and (o.endpoint == base or (family is Family.FHIR and o.endpoint.startswith(base + "/")))]


def judge_wording(family: Family, endpoint: str, probes: list[Observation | None], *, section: str,
                  defined: str) -> None:
    """Every refusal of ``family`` at ``endpoint`` (the check's own ``probes``, then the run's) worded as ``section``
    defines. One finding, citing the ids of the kinds of refusal that deviated, every deviating exchange in its
    detail; the protections themselves are the business of the checks named there."""
    own = [o for o in probes if o is not None]
    others = [o for o in observed(family, endpoint) if not any(o is mine for mine in own)]
    seen = own + others
    if not seen:
        not_applicable(f"no refusal of the {family} was seen in this run (each probe got a server error, a rate "
                       "limit or no refusal at all, which the protection checks judge)")
    evidence = current_evidence()
    for observation in others:  # the report shows every exchange judged
        if evidence is not None and observation.exchange is not None and observation.exchange not in \
                evidence.exchanges:
            evidence.exchanges.append(observation.exchange)
    deviating = [o for o in seen if o.deviation]
    first = deviating[0] if deviating else None
    expect(first is None,
           expected=f"every refusal of the {family} worded as {section} defines: {defined}",
           actual=f"{len(deviating)} of {len(seen)} refusals deviate; first: {first.line() if first else ''}",
           requirement=tuple(dict.fromkeys(o.shape.requirement for o in deviating)) or None,
           exchange=first.exchange if first else None,
           detail="Each deviating refusal (the protection is judged by the check named):\n"
                  + "\n".join(f"- {o.line()}" for o in deviating))


def forget() -> None:
    """A new run starts with an empty ledger (the harness's own tests run several in one process)."""
    _ledger.clear()


def decided(response: httpx.Response, what: str) -> None:
    """A 5xx or 429 says nothing about ``what``: could not check, naming the status."""
    if not_a_decision(response.status_code):
        could_not_check(f"{what}: HTTP {response.status_code} is a server error or a rate limit, not a refusal the "
                        f"server decided; run again when the server is healthy{rate_limit_note(response)}")


def refused(http: RecordingClient, response: httpx.Response, *, what: str, shape: Shape,
            requirement: str | tuple[str, ...] | None = None) -> None:
    """The protection held: the token endpoint decided (no 5xx, no 429) and issued no token for ``what``. Its format is
    recorded for the family's check and noted on this one when non-standard; it never fails a protection."""
    decided(response, what)
    exchange = http.exchange_for(response)
    expect(not issued_tokens(response), expected=f"{what}: refused, no tokens",
           actual=f"HTTP {response.status_code} with tokens", requirement=requirement, exchange=exchange)
    note_format(record(http, response, shape), what)


def note_format(observation: Observation | None, what: str) -> None:
    """Say on the check that its refusal came in a non-standard format, and which check judges that."""
    evidence = current_evidence()
    if observation is None or observation.deviation is None or evidence is None:
        return
    note = (f"{what}: refused, in a non-standard format ({observation.deviation}); the {observation.shape.family}'s "
            "wording of refusals is judged apart, once, by a check of its own")
    if note not in evidence.notes:
        evidence.notes.append(note)
