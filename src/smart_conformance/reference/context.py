"""What every request handler needs: URLs, faults, state, keys, data. One object on ``app.state.ctx``."""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request

from smart_conformance.reference.data import Dataset
from smart_conformance.reference.faults import ActiveFaults, Fault
from smart_conformance.reference.keys import KeySet
from smart_conformance.reference.store import Store
from smart_conformance.reference.variants import ActiveVariants

if TYPE_CHECKING:
    from smart_conformance.reference.idp import IdpState

ACCESS_TOKEN_TTL = 3600  # SMART: access tokens should live no longer than an hour
CODE_TTL = 60  # SMART notes about a minute is typical for codes
REFRESH_TOKEN_TTL = 30 * 24 * 3600
CLOCK_SKEW_S = 3 * 3600  # the clock-skewed fault: hours ahead, far beyond any sane tolerance

# The origin a request's X-Forwarded-Host / Forwarded header names, set per request by middleware.py only under the
# forwarded-host-trusted fault: the defect of building one's own URLs from headers any caller can send.
FORWARDED_ORIGIN: ContextVar[str | None] = ContextVar("forwarded_origin", default=None)


@dataclass
class Context:
    origin: str
    faults: ActiveFaults
    store: Store
    keys: KeySet
    data: Dataset
    cors_origins: frozenset[str] = field(default_factory=frozenset)
    access_token_ttl: int = ACCESS_TOKEN_TTL
    variants: ActiveVariants = field(default_factory=ActiveVariants)
    gateway_blocked: bool = False  # the gateway-blocks-after-refusal fault, once tripped
    rate_limit_count: int = 0  # credentialed requests the api-rate-limit variant's gateway counted (rate_limit.py)
    auth_origin: str = ""  # the authorization server's origin when it has its own listener (split deployment)
    idp_origin: str = ""  # the identity provider's own origin (separate-idp-origin): the member's sign-in pages
    idp: IdpState = field(default_factory=lambda: _idp_state())  # the identity provider's memory (reference/idp.py)

    @property
    def fhir_base(self) -> str:
        return (FORWARDED_ORIGIN.get() or self.origin) + "/fhir"

    @property
    def authorization_origin(self) -> str:
        """Where /auth/* lives: the FHIR origin by default, another listener in the split-origin variant."""
        return FORWARDED_ORIGIN.get() or self.auth_origin or self.origin

    @property
    def issuer(self) -> str:
        return self.authorization_origin + "/auth"

    def url(self, path: str) -> str:
        return self.origin + path

    def clock_skew(self) -> int:
        """Seconds this server's clock is off (0 unless the clock-skewed fault is on)."""
        return CLOCK_SKEW_S if self.faults.active(Fault.CLOCK_SKEWED) else 0

    def now(self) -> float:
        """The server's clock: what Date headers, token iat/exp and introspection are stamped with."""
        return time.time() + self.clock_skew()

    def auth_url(self, path: str) -> str:
        return self.authorization_origin + path

    def idp_url(self, path: str) -> str:
        """A page of the identity provider (its own origin under separate-idp-origin, else the server's)."""
        return (self.idp_origin or self.authorization_origin) + path


def _idp_state() -> IdpState:
    from smart_conformance.reference.idp import IdpState

    return IdpState()


def ctx_of(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx
