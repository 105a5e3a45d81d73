"""Times seen by the hostile-server cases, printed at the end of the run (conftest.py)."""

from __future__ import annotations

SEEN: list[tuple[float, float, str, str]] = []      # (elapsed, bound, target, scenario)


def record(target: str, scenario: str, elapsed: float, bound: float) -> None:
    SEEN.append((elapsed, bound, target, scenario))


def summary() -> list[str]:
    import resource

    if not SEEN:
        return []
    lines = [f"hostile servers: {len(SEEN)} cases; slowest against their bound:"]
    for elapsed, bound, target, scenario in sorted(SEEN, key=lambda s: s[0] - s[1], reverse=True)[:5]:
        lines.append(f"  {target} / {scenario}: {elapsed:.2f}s (bound {bound:g}s)")
    worst = max(SEEN)
    lines.append(f"worst time: {worst[0]:.2f}s ({worst[2]} / {worst[3]}); peak RSS of the test process: "
                 f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")
    return lines
