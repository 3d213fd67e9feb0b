"""The harness's own tests: one random-order seed per run, chosen once and shown in the header; the longest tests
(whole-suite runs of the variant matrix, then the fault matrix) scheduled first, so xdist's workers finish together."""

from __future__ import annotations

import os
import random

import pytest

SEED_ENV = "SMART_CONFORMANCE_ORDER_SEED"


def order_seed() -> int:
    """The seed for suite runs in random order: $SMART_CONFORMANCE_ORDER_SEED replays a run."""
    value = os.environ.get(SEED_ENV, "")
    return int(value) if value.isdigit() else 0


def pytest_configure(config: pytest.Config) -> None:
    # Chosen in the controller before xdist starts its workers, which inherit the environment.
    if not os.environ.get(SEED_ENV, "").isdigit():
        os.environ[SEED_ENV] = str(random.SystemRandom().randrange(1, 2**31))


def pytest_report_header(config: pytest.Config) -> str:
    return f"suites in random order with seed {os.environ.get(SEED_ENV)} (replay: {SEED_ENV}=<seed>)"


# Tests that run suites in subprocesses, longest first: xdist hands tests out in collection order.
LONG_FIRST = ("tests/test_variant_matrix.py::test_variants", "tests/test_variant_matrix.py::test_random",
              "tests/test_fault_matrix.py::")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        return next((i for i, prefix in enumerate(LONG_FIRST) if item.nodeid.startswith(prefix)), len(LONG_FIRST))

    items.sort(key=rank)  # stable: the order within each rank is kept

