"""When a finalized update may reboot the host: ``now`` (default), ``never`` (finalize, and the next reboot
by anyone switches), or ``window HH:MM-HH:MM`` in local time (a window may cross midnight).

Outside the window an update is staged (which disturbs nothing) but not finalized; the next check inside the
window finds it staged, finalizes it and reboots. So a crash outside the window still boots the old slot.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from tether.errors import TetherError

_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class PolicyError(TetherError):
    pass


@dataclass(frozen=True)
class Decision:
    finalize: bool
    reboot: bool
    reason: str


@dataclass(frozen=True)
class RebootPolicy:
    kind: str = "now"
    start: dt.time | None = None
    end: dt.time | None = None

    def describe(self) -> str:
        if self.kind == "window" and self.start and self.end:
            return f"window {self.start:%H:%M}-{self.end:%H:%M}"
        return self.kind

    def inside(self, now: dt.datetime) -> bool:
        assert self.start is not None and self.end is not None
        t = now.time().replace(second=0, microsecond=0)
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # crosses midnight

    def decide(self, now: dt.datetime | None = None) -> Decision:
        if self.kind == "never":
            return Decision(True, False, "reboot policy 'never': the new slot boots at the next reboot")
        if self.kind == "window":
            now = now or dt.datetime.now()
            if self.inside(now):
                return Decision(True, True, f"inside the maintenance {self.describe()}")
            return Decision(False, False, f"outside the maintenance {self.describe()} (now {now:%H:%M}); "
                                          "staged, finalized and rebooted by a check inside the window")
        return Decision(True, True, "reboot policy 'now'")


def parse_policy(words: list[str] | str | None) -> RebootPolicy:
    if words is None:
        return RebootPolicy()
    if isinstance(words, str):
        words = [words]
    text = " ".join(words).strip().replace("window=", "window ")
    if text in ("now", "never"):
        return RebootPolicy(text)
    parts = text.split()
    if len(parts) == 2 and parts[0] == "window":
        a, sep, b = parts[1].partition("-")
        ma, mb = _HHMM.match(a), _HHMM.match(b)
        if sep and ma and mb:
            start = dt.time(int(ma.group(1)), int(ma.group(2)))
            end = dt.time(int(mb.group(1)), int(mb.group(2)))
            if start == end:
                raise PolicyError(f"--reboot window {parts[1]}: the window is empty")
            return RebootPolicy("window", start, end)
    raise PolicyError(f"--reboot {text!r}: use now, never, or window HH:MM-HH:MM")
