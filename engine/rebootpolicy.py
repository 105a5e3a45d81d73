"""When a finalized update may reboot the host: ``now`` (default), ``never`` (finalize, and the next reboot
by anyone switches), ``window HH:MM-HH:MM`` in local time (a window may cross midnight), or ``sentinel``
(finalize, then ask for a reboot the way Debian's update-notifier does: ``/run/reboot-required`` and the package
name in ``/run/reboot-required.pkgs``, so kured or an operator reboots when the cluster allows).

Outside the window an update is staged (which disturbs nothing) but not finalized; the next check inside the
window finds it staged, finalizes it and reboots. So a crash outside the window still boots the old slot.

A reboot by tether (``now``, ``window``) honours systemd's block inhibitor locks on ``shutdown``: it waits a
bounded time for them to go, then leaves the update finalized, and the next check reboots once they are gone.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from tether import log
from tether.errors import CommandError, TetherError
from tether.runner import Runner
from tether.target import Target

LOG = log.get(__name__)

SENTINEL = "/run/reboot-required"
SENTINEL_PKGS = "/run/reboot-required.pkgs"
SENTINEL_TEXT = "*** System restart required ***\n"  # what update-notifier-common writes
PACKAGE = "tether"
INHIBITOR_WAIT = 60.0   # seconds a reboot waits for block inhibitors before it is deferred to the next check
INHIBITOR_POLL = 5.0
BUSCTL_TIMEOUT = 10.0

_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class PolicyError(TetherError):
    pass


@dataclass(frozen=True)
class Decision:
    finalize: bool
    reboot: bool
    reason: str
    sentinel: bool = False


@dataclass(frozen=True)
class RebootPolicy:
    kind: str = "now"
    start: dt.time | None = None
    end: dt.time | None = None
    inhibitor_wait: float = INHIBITOR_WAIT

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
        if self.kind == "sentinel":
            return Decision(True, False, f"reboot policy 'sentinel': {SENTINEL} asks kured or an operator to "
                                         "reboot", sentinel=True)
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
    if text in ("now", "never", "sentinel"):
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
    raise PolicyError(f"--reboot {text!r}: use now, never, sentinel, or window HH:MM-HH:MM")


def request_reboot(root: Target, package: str = PACKAGE) -> str:
    """Create the reboot-required sentinel and list ``package`` in its .pkgs file (once). Returns a message."""
    root.write(SENTINEL, SENTINEL_TEXT, mode=0o644)
    pkgs = root.read_text(SENTINEL_PKGS, default="").splitlines()
    if package not in pkgs:
        root.write(SENTINEL_PKGS, "".join(f"{p}\n" for p in [*pkgs, package] if p), mode=0o644)
    return f"created {SENTINEL}; kured or an operator reboots into the new slot"


@dataclass(frozen=True)
class Inhibitor:
    what: str
    who: str
    why: str
    mode: str
    uid: int
    pid: int

    def describe(self) -> str:
        return f"{self.who} (pid {self.pid}): {self.why}"


def shutdown_blockers(runner: Runner) -> list[Inhibitor]:
    """The block inhibitor locks on ``shutdown`` logind holds now (its ListInhibitors call). When logind cannot be
    asked (no system bus, a container), nothing is known to block: logged, and an empty list."""
    argv = ["busctl", "--json=short", "call", "org.freedesktop.login1", "/org/freedesktop/login1",
            "org.freedesktop.login1.Manager", "ListInhibitors"]
    try:
        res = runner.run(argv, timeout=BUSCTL_TIMEOUT, check=False)
    except CommandError as e:
        LOG.warning("cannot ask logind for inhibitor locks (%s); rebooting without that check", e)
        return []
    if res.code != 0:
        LOG.warning("cannot ask logind for inhibitor locks (%s); rebooting without that check",
                    res.stderr.strip() or f"exit code {res.code}")
        return []
    try:
        rows = json.loads(res.stdout)["data"][0]
        found = [Inhibitor(str(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4]), int(r[5])) for r in rows]
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise PolicyError(f"busctl ListInhibitors: unexpected answer ({e}): {res.stdout[:200]!r}") from None
    return [i for i in found if i.mode == "block" and "shutdown" in i.what.split(":")]


def wait_for_blockers(runner: Runner, wait: float = INHIBITOR_WAIT, *, poll: float = INHIBITOR_POLL,
                      sleep: Callable[[float], None] = time.sleep,
                      clock: Callable[[], float] = time.monotonic) -> list[Inhibitor]:
    """Wait at most ``wait`` seconds for the shutdown block inhibitors to go; those still held then."""
    end = clock() + wait
    while True:
        held = shutdown_blockers(runner)
        if not held:
            return []
        left = end - clock()
        if left <= 0:
            return held
        LOG.info("reboot waits for inhibitor lock(s): %s", "; ".join(i.describe() for i in held))
        sleep(min(poll, left))


def deferred_reason(held: list[Inhibitor], wait: float = INHIBITOR_WAIT) -> str:
    return (f"reboot deferred: shutdown is blocked by inhibitor lock(s) held by "
            f"{'; '.join(i.describe() for i in held)} (waited {wait:g}s); the next check reboots once they are "
            "released")
