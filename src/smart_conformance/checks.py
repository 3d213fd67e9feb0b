"""How a check says what it found.

A check is an ordinary test body that calls :func:`expect` (or raises one of the outcomes below). The outcomes are kept
apart on purpose: *failed* means the target broke a requirement; *broken* means the harness could not check; *skipped*
means the check does not apply, with the reason. Nothing here ever turns an unknown into a pass.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Sequence
from typing import Any, NoReturn

import pytest

from smart_conformance import redact, requirements
from smart_conformance.http import Exchange, current_evidence

_cited: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("smart_conformance_cited", default=())


def set_cited(ids: tuple[str, ...]) -> contextvars.Token[tuple[str, ...]]:
    return _cited.set(ids)


def reset_cited(token: contextvars.Token[tuple[str, ...]]) -> None:
    _cited.reset(token)


class ConformanceFailure(AssertionError):
    """The target broke a requirement. The text holds everything a reader needs to reproduce and fix it."""

    def __init__(self, *, expected: str, actual: str, requirement_ids: Sequence[str],
                 exchange: Exchange | None = None, detail: str | None = None) -> None:
        self.expected = expected
        self.actual = actual
        self.requirement_ids = tuple(requirement_ids)
        self.exchange = exchange
        self.requirements = requirements.lookup(self.requirement_ids)
        top = requirements.strongest(self.requirements)
        self.level = top.level if top else "SHALL"
        self.warning = bool(top and top.is_warning_level)
        super().__init__(self._render(detail))

    def _render(self, detail: str | None) -> str:
        tag = f"[{self.level}] " if self.warning else ""
        lines = [f"{tag}{', '.join(self.requirement_ids) or 'uncited'} ({self.level})"]
        for req in self.requirements:
            lines.append(f"  Requirement: {req.id} — {req.text}")
        lines.append(f"  Expected: {redact.text(self.expected)}")
        lines.append(f"  Actual:   {redact.text(self.actual)}")
        for req in self.requirements:
            lines.append(f"  Spec:     {req.url}")
        if detail:
            lines.append(f"  Detail:   {redact.text(detail)}")
        if self.exchange is not None:
            lines.append(f"  Evidence: {self.exchange.summary()}")
            lines.append("  Reproduce with:")
            lines.append(f"    {self.exchange.to_curl()}")
        return "\n".join(lines)


class MixedLevels(Exception):
    """A harness bug, not a finding: an expectation left un-narrowed in a check that cites ids of different levels.

    Taking the strongest cited level would turn a SHOULD-only violation into a SHALL failure (this happened for CORS
    with credentials), so such an expectation must say which id it breaks with ``requirement=``. Reported as broken.
    """


class CouldNotCheck(Exception):
    """The harness could not reach a verdict (network, configuration, a page that changed): reported as broken."""

    def __init__(self, reason: str) -> None:
        super().__init__(redact.text(reason))


def _resolve_ids(requirement: str | Sequence[str] | None) -> tuple[str, ...]:
    if requirement is None:
        cited = _cited.get()
        levels = {requirements.LEVEL_RANK.get(r.level) for r in requirements.lookup(cited)}
        if len(levels) > 1:
            raise MixedLevels(f"this check cites requirements of different levels "
                              f"({', '.join(r.cite().split(':')[0] for r in requirements.lookup(cited))}) and an "
                              "expectation did not say which one it breaks: pass requirement='ID' to expect()/fail()")
        return cited
    if isinstance(requirement, str):
        return (requirement,)
    return tuple(requirement)


def fail(*, expected: str, actual: str, requirement: str | Sequence[str] | None = None,
         exchange: Exchange | None = None, detail: str | None = None) -> NoReturn:
    """Fail the check. ``requirement`` narrows which of the test's cited ids this finding breaks."""
    if exchange is None:
        evidence = current_evidence()
        exchange = evidence.last if evidence else None
    raise ConformanceFailure(expected=expected, actual=actual, requirement_ids=_resolve_ids(requirement),
                             exchange=exchange, detail=detail)


def expect(ok: bool, *, expected: str, actual: Any, requirement: str | Sequence[str] | None = None,
           exchange: Exchange | None = None, detail: str | None = None) -> None:
    if not ok:
        fail(expected=expected, actual=describe(actual), requirement=requirement, exchange=exchange, detail=detail)


def could_not_check(reason: str) -> NoReturn:
    raise CouldNotCheck(reason)


def not_applicable(reason: str) -> NoReturn:
    pytest.skip(f"not applicable: {reason}")


def describe(value: Any, limit: int = 400) -> str:
    """A short, redacted rendering of what came back."""
    if isinstance(value, str):
        out = value
    else:
        try:
            out = json.dumps(redact.data(value), ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            out = repr(value)
    out = redact.text(out)
    return out if len(out) <= limit else out[:limit] + "…"
