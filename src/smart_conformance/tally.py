"""Counts a run keeps per target beside the results (password sign-ins, rate limits honoured, seconds waited).

Each process adds to its own ledger as it goes (:func:`add`); after every test phase the plugin drains it
(:func:`drain`) onto the test's report, which is how the counts cross from an xdist worker to the controller, like
the results do (``results.py``). The controller sums them (:func:`merge`) into ``RunResults.tallies``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

SIGN_INS = "sign_ins"  # password submissions (right or wrong) to the target's sign-in page
RATE_LIMITED = "rate_limited"  # answers of 429 (or 503 with Retry-After) the harness waited out and retried
RATE_LIMIT_WAIT_MS = "rate_limit_wait_ms"  # the time spent waiting them out

_lock = threading.Lock()
_ledger: dict[str, dict[str, int]] = {}


def add(target: str, name: str, amount: int = 1) -> None:
    """Count ``amount`` more of ``name`` for ``target`` in this process."""
    with _lock:
        row = _ledger.setdefault(target, {})
        row[name] = row.get(name, 0) + amount


def rate_limited(target: str, seconds: float) -> None:
    """One 429 / Retry-After answer waited out for ``target`` (by the HTTP client or the browser's sign-in), and the
    seconds it cost."""
    add(target, RATE_LIMITED)
    add(target, RATE_LIMIT_WAIT_MS, round(seconds * 1000))


def drain() -> dict[str, dict[str, int]]:
    """What this process counted since the last drain (and forget it)."""
    with _lock:
        out = {target: dict(row) for target, row in _ledger.items() if row}
        _ledger.clear()
    return out


def merge(into: dict[str, dict[str, int]], more: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """Sum ``more`` into ``into`` (per target, per count)."""
    for target, row in more.items():
        mine = into.setdefault(str(target), {})
        for name, amount in row.items():
            mine[str(name)] = mine.get(str(name), 0) + int(amount)
    return into
