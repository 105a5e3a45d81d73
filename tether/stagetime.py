"""Where a stage process's start-up time goes (Python, imports, set-up), for the log and ``tether analyze``.

Boot-time imports cost ~12x inside a VM without hardware acceleration, so the local stage logs how long after its
process started it reached ``main()`` and then its stage. Only ``os`` is used.
"""

from __future__ import annotations

import os

MARKS: dict[str, tuple[float, float]] = {}  # name -> (process age, CPU seconds used by then)


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


def cpu_time() -> float:
    """CPU seconds (user + system) this process has used."""
    t = os.times()
    return t.user + t.system


def mark(name: str) -> None:
    age = process_age()
    if age is not None:
        MARKS[name] = (age, cpu_time())


def describe() -> str:
    """``main 0.41s (cpu 0.20s), imports 0.80s (cpu 0.52s)``: process ages and the CPU time the process had used
    by then (the gap between the two is waiting: for the disk, or for a CPU other units hold), or "" when nothing
    was recorded."""
    return ", ".join(f"{k} {age:.2f}s (cpu {cpu:.2f}s)" for k, (age, cpu) in MARKS.items())


def since(name: str) -> str:
    """``1.20s (cpu 0.95s)``: time and CPU time since mark ``name`` (the rest was waiting), or "" without it."""
    start = MARKS.get(name)
    age = process_age()
    if start is None or age is None:
        return ""
    return f"{age - start[0]:.2f}s (cpu {cpu_time() - start[1]:.2f}s)"
