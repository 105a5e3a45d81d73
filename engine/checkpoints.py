"""Named points in install and staging where a test may kill the process (``HOOK``), to prove restartability."""

from __future__ import annotations

from collections.abc import Callable

HOOK: Callable[[str], None] | None = None


def reached(name: str) -> None:
    if HOOK is not None:
        HOOK(name)
