"""Per-example timing for the fuzz tests (printed by tests/fuzz/conftest.py at the end of the run)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
STATS: dict[str, list[float]] = {}


def timed(fn: F) -> F:
    """Record how long each example of ``fn`` takes (under ``@given``, above the test function)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            STATS.setdefault(f"{fn.__module__.rsplit('.', 1)[-1]}::{fn.__name__}", []).append(
                time.perf_counter() - t0)
    return wrapper  # type: ignore[return-value]


def scaled(factor: float) -> int:
    """The profile's ``max_examples`` times ``factor``: for a test parametrized over many cases, so the suite's
    budget stays what the profile says."""
    from hypothesis import settings
    return max(5, int(settings.default.max_examples * factor))
