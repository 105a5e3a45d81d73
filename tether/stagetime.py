"""Where a stage process's start-up time goes (Python, imports, set-up), for the log and ``tether analyze``.

Boot-time imports cost ~12x inside a VM without hardware acceleration, so the local stage logs how long after its
process started it reached ``main()`` and then its stage. Only ``os`` is used.
"""

from __future__ import annotations

import os

MARKS: dict[str, float] = {}


def process_age() -> float | None:
    """Seconds since this process started, from /proc (clock-tick resolution)."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            up = float(f.read().split()[0])
        return up - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def mark(name: str) -> None:
    age = process_age()
    if age is not None:
        MARKS[name] = age


def describe() -> str:
    """``main 0.41s, env 0.80s, init-local 0.93s`` (process ages), or "" when nothing was recorded."""
    return ", ".join(f"{k} {v:.2f}s" for k, v in MARKS.items())
