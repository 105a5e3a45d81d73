"""power_state_change: power off, reboot or halt once the boot's configuration is done.

Live only. ``handle`` starts a detached helper (``setsid -f``, so it outlives the final stage and is not
waited for) that waits until this tether process has exited (the final stage is finished) or ``timeout``
seconds have passed, whichever comes first; then evaluates ``condition`` (a command runs with a 60 s bound)
and, when it holds, runs ``shutdown`` with the mode, delay and message. Offline nothing happens: powering off
the machine that prepares an image is never what a cloud-config means.

The helper is this file run as ``python -m tether.modules.power_state_change``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from tether import log
from tether.convert import meta
from tether.errors import CommandError
from tether.module import Frequency, ModuleContext, ModuleError, Stage
from tether.runner import Runner

NAME = "power_state_change"
STAGE = Stage.FINAL
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("power_state",)
LOG = log.get(__name__)
MODE_FLAG = {"poweroff": "-P", "reboot": "-r", "halt": "-H"}
CONDITION_TIMEOUT = 60.0
POLL = 0.2


@dataclass(frozen=True)
class PowerState:
    mode: Literal["poweroff", "reboot", "halt"]
    delay: int | str = field(default="now", metadata=meta(doc="'now' or minutes"))
    message: str | None = None
    timeout: int = field(default=30, metadata=meta(doc="seconds to wait for tether to finish"))
    condition: bool | str | tuple[Any, ...] = field(default=True, metadata=meta(
        doc="true, false, or a command whose exit status 0 means go"))

    def __post_init__(self) -> None:
        shutdown_delay(self.delay)
        if self.timeout < 0:
            raise ValueError("timeout must not be negative")
        if isinstance(self.condition, tuple) and not self.condition:
            raise ValueError("condition: an empty command")


@dataclass(frozen=True)
class Config:
    power_state: PowerState | None = None


def shutdown_delay(delay: int | str) -> str:
    """``now`` or ``+N`` (minutes) for shutdown(8)."""
    if delay == "now":
        return "now"
    if isinstance(delay, int):
        if delay < 0:
            raise ValueError("delay must not be negative")
        return f"+{delay}"
    if re.match(r"^\+?[0-9]+$", delay):
        return "+" + delay.lstrip("+")
    raise ValueError(f"delay {delay!r} is not 'now' or a number of minutes")


def shutdown_argv(ps: PowerState) -> list[str]:
    argv = ["shutdown", MODE_FLAG[ps.mode], shutdown_delay(ps.delay)]
    if ps.message:
        argv.append(ps.message)
    return argv


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # fields after the command name: state is 3, start time 22
    if fields[0] == "Z":
        return None  # exited, waiting to be reaped: finished as far as we are concerned
    return fields[19]


def wait_for_exit(pid: int, start: str | None, timeout: float) -> bool:
    """True when ``pid`` (with that start time, so a reused pid does not count) exited within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        now_start = _start_time(pid)
        if now_start is None or (start is not None and now_start != start):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)


def condition_met(condition: bool | str | list[Any], runner: Runner) -> bool:
    if isinstance(condition, bool):
        return condition
    argv = ["sh", "-c", condition] if isinstance(condition, str) else [str(c) for c in condition]
    try:
        res = runner.run(argv, check=False, timeout=CONDITION_TIMEOUT)
    except CommandError as e:
        LOG.warning("power_state: condition %s could not run: %s", argv, e)
        return False
    return res.code == 0


def act(pid: int, start: str | None, timeout: float, condition: bool | str | list[Any], argv: list[str],
        runner: Runner) -> str:
    """The helper's work; returns what it did (for the log and tests)."""
    if not wait_for_exit(pid, start, timeout):
        LOG.warning("power_state: tether (pid %d) still running after %gs; going ahead", pid, timeout)
    if not condition_met(condition, runner):
        LOG.info("power_state: condition not met; no state change")
        return "condition-false"
    LOG.info("power_state: running %s", argv)
    runner.run(argv, timeout=60)
    return "done"


def handle(ctx: ModuleContext, cfg: Config) -> None:
    ps = cfg.power_state
    if ps is None:
        return
    if not ctx.live:
        LOG.info("power_state: not live; no power state change for an offline root")
        return
    me = os.getpid()
    cond: Any = list(ps.condition) if isinstance(ps.condition, tuple) else ps.condition
    argv = [sys.executable, "-m", "tether.modules.power_state_change", "--pid", str(me),
            "--start", _start_time(me) or "", "--timeout", str(ps.timeout), "--condition", json.dumps(cond),
            "--", *shutdown_argv(ps)]
    try:
        # capture=False: the forked helper must not hold our pipes open (the runner would wait for it).
        ctx.run(["setsid", "-f", *argv], capture=False, timeout=30)
    except CommandError as e:
        raise ModuleError(f"power_state: could not start the helper: {e}")
    LOG.info("power_state: %s scheduled after tether finishes (wait at most %ds)", ps.mode, ps.timeout)


def main(args: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tether-power-state", description="tether's power_state_change helper")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--start", default="")
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--condition", default="true")
    p.add_argument("shutdown", nargs="+")
    a = p.parse_args(args)
    logging.basicConfig(level=logging.INFO, format="tether power_state: %(message)s")
    act(a.pid, a.start or None, a.timeout, json.loads(a.condition), a.shutdown, Runner())
    return 0


if __name__ == "__main__":
    sys.exit(main())
