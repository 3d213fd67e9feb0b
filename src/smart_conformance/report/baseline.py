"""Kept importable from here: baselines moved to :mod:`smart_conformance.baseline` (the exit status needs them, and
``results.py`` must not depend on ``report/``)."""

from smart_conformance.baseline import FAILING, Baseline, BaselineError, Entry, apply, load

__all__ = ["FAILING", "Baseline", "BaselineError", "Entry", "apply", "load"]
