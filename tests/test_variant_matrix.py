"""The variant matrix: every check fails only for real.

Faults prove a check can fail (tests/test_fault_matrix.py). Variants prove the opposite: against the reference server
behaving in a way the specs allow but its defaults do not (other refusal statuses, other page flows, split origins,
other revocation policies…), the whole suite gives no failure and no warning the variant does not deserve. Only
passes, not-applicable with a reason and the warnings the checks declare for the variant (``@warns_under``: a SHOULD
it does not meet) are accepted; nothing may be left unchecked.

Variants that can coexist share a server, to keep CI within budget. Every run here goes in a seeded random order
(pytest-randomly), so the matrix doubles as an order-independence check; the seed is in pytest's header line and in
every failure message, and ``SMART_CONFORMANCE_ORDER_SEED=<seed>`` replays it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from smart_conformance.reference import variants as v
from smart_conformance.reference.variants import VARIANTS, ActiveVariants
from smart_conformance.testplan import plan
from tests.conftest import order_seed
from tests.suite_runner import SuiteRun, run_suites, suite_checks

# Each group: variants that one reference server can show at once. Every variant is in exactly one group.
GROUPS: dict[str, tuple[str, ...]] = {
    "statuses-403-revoke-all-two-page-split-origin": (
        v.REFUSALS_AS_403, v.REVOKE_ALL_ON_REFRESH_REVOCATION, v.AUTHORIZE_REFUSAL_EMPTY_400, v.TWO_PAGE_SIGN_IN,
        v.SPLIT_ORIGIN_AUTH_SERVER, v.JWT_ACCESS_TOKENS, v.BACKEND_TOKENS_ONE_HOUR, v.BACKEND_JWKS_URL,
        v.CORS_OWN_ORIGIN_CREDENTIALS, v.PAGED_BY_DEFAULT, v.OPAQUE_PAGE_CURSORS, v.OPT_OUT_GROUP_VISIBLE,
        v.P2P_QUERIES_ONLY, v.LOCKOUT_AFTER_FAILURES, v.SIGN_IN_RATE_LIMIT, v.SEPARATE_IDP_ORIGIN),
    "statuses-404-rotation-fragment-script-post": (
        v.REFUSALS_AS_404, v.ROTATING_REFRESH_TOKENS, v.IMPLICIT_ERROR_IN_FRAGMENT, v.SCRIPT_RENDERED_SIGN_IN,
        v.CLIENT_SECRET_POST_ONLY, v.TOKEN_401_WITHOUT_WWW_AUTHENTICATE, v.ONLY_REFRESH_TOKENS_REVOCABLE,
        v.OPAQUE_ACCESS_TOKENS, v.BULK_FILES_WITHOUT_TOKEN, v.HOSTED_IDP_COOKIES, v.MEMBER_MATCH_ASYNC, v.TOTP_MFA,
        v.REMEMBERED_CONSENT),
    "v1-discovery-plain-consent-short-tokens": (
        v.SMART_V1_DISCOVERY_ONLY, v.CONSENT_WITHOUT_SCOPE_CONTROLS, v.SHORT_LIVED_ACCESS_TOKENS, v.BULK_STATUS_429,
        v.MEMBER_CLIENT_PRIVATE_KEY_JWT, v.FORMAT_HTML_RENDERED, v.OPTED_OUT_AS_NON_MATCHED, v.RETRY_AFTER_HTTP_DATE,
        v.EXPORT_TYPE_DELTA_NEEDS_SINCE, v.INCLUDES_NOT_SUPPORTED, v.SIGN_IN_PROMPTS,
        v.NO_SIGN_IN_SESSION, v.API_RATE_LIMIT),
}


def all_suites() -> list[str]:
    return sorted({module.split("/")[0] for module in suite_checks().values()})


def test_every_variant_is_in_exactly_one_group() -> None:
    grouped = [name for group in GROUPS.values() for name in group]
    assert sorted(grouped) == sorted(VARIANTS), "add the new variant to one group of GROUPS"
    for group in GROUPS.values():
        ActiveVariants(group)  # raises when two variants of a group exclude each other


def test_every_variant_says_what_allows_it() -> None:
    for variant in VARIANTS.values():
        assert variant.allowed_by.strip() and variant.spec.startswith("https://"), variant.name


def _judge(run: SuiteRun, names: tuple[str, ...], seed: int) -> None:
    deserved = {check for name in names for check in plan().warned(name)}
    where = f"(variants {', '.join(names)}; random order seed {seed})\n{run.output}"
    assert run.checks_with("failed") == set(), f"false failures {where}"
    assert run.checks_with("warning") == deserved, f"warnings differ from the variants' deserved ones {where}"
    assert run.checks_with("broken") == set(), f"checks that could not run under legitimate variants {where}"
    assert run.totals().get("passed", 0) > 0, where


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_variants_give_no_false_findings(group: str, tmp_path: Path) -> None:
    names, seed = GROUPS[group], order_seed()
    _judge(run_suites(all_suites(), tmp_path, variants=names, order_seed=seed), names, seed)


def test_random_order_gives_the_sequential_outcomes(tmp_path: Path) -> None:
    """The clean reference passes everything in file order, and a seeded random order gives the same outcomes.
    The two runs (each with a server of its own) go side by side."""
    seed = order_seed()
    with ThreadPoolExecutor(max_workers=2) as pool:
        in_order = pool.submit(run_suites, all_suites(), tmp_path / "sequential")
        in_random = pool.submit(run_suites, all_suites(), tmp_path / "random", order_seed=seed)
        sequential, shuffled = in_order.result(), in_random.result()
    totals = sequential.totals()
    assert totals.get("failed", 0) == 0 and totals.get("warning", 0) == 0, sequential.output
    assert totals.get("broken", 0) == 0 and totals.get("passed", 0) > 0, sequential.output
    assert sequential.returncode == 0, sequential.output
    before = sequential.summary["targets"]["reference"]["results"]
    after = shuffled.summary["targets"]["reference"]["results"]
    differ = {node: (before.get(node), after.get(node)) for node in set(before) | set(after)
              if before.get(node) != after.get(node)}
    assert not differ, f"random order (seed {seed}) changed outcomes (sequential, random): {differ}\n{shuffled.output}"
