"""How a run is spread: over xdist workers (by target) and over CI jobs (``--shard i/n``, by target too).

A target's checks share one sign-in per worker (``launcher.py``), so they belong together: with ``-n`` a suite run
uses ``--dist loadgroup`` with one group per target (scheduled by :func:`make_scheduler`), and CI shards split the
targets, never a target's checks (``report/merge.py`` folds the shards' reports back into one).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from smart_conformance import paths

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` → (i, n), 1 ≤ i ≤ n. Raises ValueError with the fix."""
    found = _SHARD.match(text or "")
    if not found or not 1 <= int(found.group(1)) <= int(found.group(2)):
        raise ValueError(f"--shard {text!r}: write i/n with 1 <= i <= n, e.g. --shard 1/3 for the first of three "
                         "CI jobs")
    return int(found.group(1)), int(found.group(2))


def shard_targets(names: Sequence[str], shard: tuple[int, int] | None) -> list[str]:
    """The targets shard ``i/n`` runs: by sorted name, every n-th starting at the i-th, so every job computes the same
    split from the same target files, whatever order they were given in, and the jobs' sizes differ by one at most."""
    if shard is None:
        return list(names)
    index, count = shard
    return [name for k, name in enumerate(sorted(names)) if k % count == index - 1]


def default_to_loadgroup(config: pytest.Config) -> None:
    """``-n`` without ``--dist`` on a suite run: ``--dist loadgroup`` (each target's checks on one worker). Called
    before xdist turns a bare ``-n`` into ``--dist load``; the harness's own tests keep xdist's default."""
    option = config.option
    if (getattr(option, "numprocesses", None) and getattr(option, "dist", None) == "no"
            and not getattr(option, "distload", False) and _is_suite_run(config)):
        option.dist = "loadgroup"


def target_scope(nodeid: str, targets: Sequence[str]) -> str:
    """The scheduling unit of a test: its target. xdist's own loadgroup appends ``@group`` to node ids in the workers,
    which pytest 9 (whose node ids are structured) no longer takes up; so the target is read from the test's parameter
    ids, where the target's id is its name. A test that names no target is a unit of its own."""
    if nodeid.rfind("@") > nodeid.rfind("]"):
        return nodeid.rsplit("@", 1)[1]
    tail = nodeid.rsplit("::", 1)[-1]
    if tail.endswith("]") and "[" in tail:
        ids = "-" + tail[tail.index("[") + 1:-1] + "-"
        for name in sorted(targets, key=len, reverse=True):  # "acme-staging" before "acme"
            if f"-{name}-" in ids:
                return name
    return nodeid


def make_scheduler(config: pytest.Config, log: object, targets: Sequence[str]) -> object | None:
    """Under ``--dist loadgroup``: xdist's scope scheduling with one scope per target (see :func:`target_scope`)."""
    if config.getvalue("dist") != "loadgroup" or not _is_suite_run(config):
        return None  # xdist's own scheduler
    from xdist.scheduler import LoadScopeScheduling

    class TargetScheduling(LoadScopeScheduling):
        """Every test of a target on one worker; the targets spread over the workers."""

        def _split_scope(self, nodeid: str) -> str:
            return target_scope(nodeid, targets)

    return TargetScheduling(config, log)


def _is_suite_run(config: pytest.Config) -> bool:
    """Targets given, or a path to run under the suites folder."""
    if config.getoption("--target", default=None):
        return True
    root = paths.suites_dir().resolve()
    for arg in [*config.args, str(config.rootpath)]:
        path = Path(arg.split("::", 1)[0])
        path = (path if path.is_absolute() else Path(config.invocation_params.dir) / path).resolve()
        if path == root or root in path.parents:
            return True
    return False
