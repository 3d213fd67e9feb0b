"""Revocation verdicts with their positive control.

"The token was refused after revocation" means something only if the very same FHIR request with that token
succeeded before, in the same run, and the server then decided against it: a URL that answers 404 to everything
would otherwise pass every revocation check. So a check first takes a :class:`Watch` (the member's own Patient,
read with the token: 200), acts, then polls the same request until the server refuses it. Without a working control
the check is could-not-check, saying why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from smart_conformance.config import Target
from smart_conformance.fhir import Control, Reply, call, control, require
from smart_conformance.http import RecordingClient

REFUSAL_WAIT_S = 10.0
REFUSAL_POLL_S = 0.25


@dataclass(frozen=True)
class Watch:
    """A FHIR request that worked with a token before the check acted on the token."""

    url: str
    token: str
    control: Control


def refusal_statuses(target: Target) -> tuple[int, ...]:
    """What a refusal of a dead token may look like: 401/403 (RFC 6750 §3.1), or what the target's IG allows (a
    404 that hides existence). Only meaningful after a control saw the same request answered 200."""
    return tuple(sorted({401, 403, *target.unauthorized_statuses} - {200}))


def watch(http: RecordingClient, target: Target, token: str, verdict: str, patient: str | None = None) -> Watch:
    """Read the member's own Patient with ``token`` (the positive control); anything but that Patient is
    could-not-check for ``verdict``."""
    path = f"Patient/{patient or target.member.patient_id}"
    ctl = control(http, target.fhir_base_url, path, token, who="the check's own token, before it acted")
    require(ctl, verdict=verdict)
    return Watch(f"{target.fhir_base_url}/{path}", token, ctl)


def wait_for_refusal(http: RecordingClient, target: Target, watched: Watch,
                     wait: float = REFUSAL_WAIT_S) -> tuple[float | None, Reply]:
    """Repeat the control's request until the server refuses it; the delay is the measurement reported."""
    statuses = refusal_statuses(target)
    started = time.monotonic()
    reply = call(http, "GET", watched.url, token=watched.token)
    while reply.status not in statuses and time.monotonic() - started < wait:
        time.sleep(REFUSAL_POLL_S)  # polling the target's behaviour, not waiting for a server to start
        reply = call(http, "GET", watched.url, token=watched.token)
    return (time.monotonic() - started if reply.status in statuses else None), reply
