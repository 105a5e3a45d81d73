"""Hypothesis profiles for the fuzz suite, and a summary of what it ran.

``TETHER_FUZZ_PROFILE`` picks the budget: ``ci`` (default; the whole suite in about a minute on 2 cores) or ``long``
(``scripts/fuzz``). Each test's examples are timed (``timed``); the end of the run prints, per test, the number of
examples run and the worst time one took.
"""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.configuration import set_hypothesis_home_dir

from tests.fuzz.timing import STATS

# hypothesis's caches (unicode tables, constants) outside the checkout, which several sessions share
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "tether-hypothesis"))
_COMMON = {"database": None, "print_blob": True,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
# deadline: the bound one example may take, enforced by hypothesis (it re-runs a slow example to confirm)
# ci: no shrinking (it may take minutes); a failure prints its example and a blob to replay it (@reproduce_failure)
settings.register_profile("ci", max_examples=60, deadline=timedelta(seconds=5),
                          phases=[Phase.explicit, Phase.generate], **_COMMON)  # type: ignore[arg-type]
settings.register_profile("long", max_examples=3000, deadline=timedelta(seconds=20),
                          **_COMMON)  # type: ignore[arg-type]
PROFILE = os.environ.get("TETHER_FUZZ_PROFILE", "ci")
settings.load_profile(PROFILE)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not STATS:
        return
    tr = terminalreporter
    tr.section(f"fuzz: examples run and worst time per example (profile {PROFILE})")
    total = 0
    for name in sorted(STATS):
        times = STATS[name]
        total += len(times)
        tr.write_line(f"{name:<64} {len(times):>6} examples  worst {max(times) * 1000:9.1f} ms")
    tr.write_line(f"{'all':<64} {total:>6} examples  worst {max(max(t) for t in STATS.values()) * 1000:9.1f} ms")
