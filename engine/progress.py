"""Progress of long writes: a bar on a terminal, JSON lines for automation, nothing otherwise."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import TextIO

from tether.engine.sizes import human

ProgressFn = Callable[[str, int, int | None], None]
MODES = ("auto", "bar", "json", "none")


def make(mode: str = "auto", out: TextIO | None = None) -> ProgressFn | None:
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "none"
    if mode == "none":
        return None
    if mode == "json":
        return _Json(out or sys.stdout)
    return _Bar(out or sys.stderr)


class _Json:
    def __init__(self, out: TextIO, interval: float = 1.0) -> None:
        self.out, self.interval = out, interval
        self._last = 0.0
        self._printed: tuple[str, int] = ("", -1)
        self._start = time.monotonic()

    def __call__(self, what: str, done: int, total: int | None) -> None:
        t = time.monotonic()
        final = total is not None and done >= total
        if (t - self._last < self.interval and not final) or (what, done) == self._printed:
            return
        self._last, self._printed = t, (what, done)
        rate = done / max(t - self._start, 1e-6)
        self.out.write(json.dumps({"event": "progress", "what": what, "bytes": done, "total": total,
                                   "bytesPerSecond": int(rate)}) + "\n")
        self.out.flush()


class _Bar:
    def __init__(self, out: TextIO, width: int = 30) -> None:
        self.out, self.width = out, width
        self._last = 0.0
        self._printed: tuple[str, int] = ("", -1)
        self._start = time.monotonic()

    def __call__(self, what: str, done: int, total: int | None) -> None:
        t = time.monotonic()
        final = total is not None and done >= total
        if (t - self._last < 0.2 and not final) or (what, done) == self._printed:
            return
        self._last, self._printed = t, (what, done)
        rate = done / max(t - self._start, 1e-6)
        if total:
            frac = min(done / total, 1.0)
            bar = "#" * int(frac * self.width)
            line = f"\r{what:<10} [{bar:<{self.width}}] {frac * 100:5.1f}% {human(done)} {human(rate)}/s"
        else:
            line = f"\r{what:<10} {human(done)} {human(rate)}/s"
        self.out.write(line + ("\n" if final else ""))
        self.out.flush()
