"""Health checks from the host configuration's ``health.checks``, run by commit before a boot is marked good.

Two kinds, as Trident defines them: a script (``content`` or ``path``, optional ``interpreter``, ``arguments``,
``environmentVariables``) that must exit 0, and ``systemdServices`` that must all be active within
``timeoutSeconds``. Every check is bounded by its ``timeoutSeconds`` (a script that runs longer is killed and
fails); ``runOn`` picks the servicing types a check applies to. Results name the failed check and why, for the
servicing state's last error; the values of environment variables never appear in logs or results.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tether import log
from tether.engine.hostconfig import HealthCheck
from tether.errors import CommandError, TetherError
from tether.runner import Runner
from tether.target import Target

LOG = log.get(__name__)

SCRIPT_DIR = "/run/tether/health"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
POLL_SECONDS = 1.0
MAX_TIMEOUT = 3600  # a timeoutSeconds beyond an hour is a typo; commit must not hang the boot on it
MIN_SCRIPT_TIMEOUT = 1
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_UNIT_RE = re.compile(r"^[A-Za-z0-9:_.\\@-]+$")


class HealthCheckFailed(TetherError):
    def __init__(self, report: HealthReport) -> None:
        self.report = report
        super().__init__(report.summary())


@dataclass(frozen=True)
class CheckResult:
    name: str
    kind: str          # "script" or "systemd"
    ok: bool
    detail: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class HealthReport:
    results: tuple[CheckResult, ...] = ()
    skipped: tuple[str, ...] = field(default=())  # names of checks whose runOn excludes this servicing type

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.ok]

    def summary(self) -> str:
        if self.ok:
            return f"{len(self.results)} health check(s) passed"
        return "; ".join(f"health check {r.name!r} failed: {r.detail}" for r in self.failures)

    def raise_for_failure(self) -> None:
        if not self.ok:
            raise HealthCheckFailed(self)


def check_name(check: HealthCheck, index: int) -> str:
    if check.name:
        return check.name
    if check.systemd_services is not None:
        return "systemd:" + ",".join(check.systemd_services)
    return check.path or f"checks[{index}]"


def applies(check: HealthCheck, servicing_type: str) -> bool:
    return "all" in check.run_on or servicing_type in check.run_on


def _timeout(check: HealthCheck) -> float:
    return float(min(check.timeout_seconds, MAX_TIMEOUT))


def run_checks(checks: Sequence[HealthCheck], runner: Runner, target: Target, *, servicing_type: str,
               clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
               poll_seconds: float = POLL_SECONDS) -> HealthReport:
    """Run every applicable check (all of them, so the report names every failure), in configuration order."""
    results: list[CheckResult] = []
    skipped: list[str] = []
    for i, check in enumerate(checks):
        name = check_name(check, i)
        if not applies(check, servicing_type):
            skipped.append(name)
            continue
        start = clock()
        if check.systemd_services is not None:
            ok, detail = _systemd_check(check, runner, target, clock=clock, sleep=sleep, poll=poll_seconds)
            kind = "systemd"
        else:
            ok, detail = _script_check(check, i, runner, target)
            kind = "script"
        res = CheckResult(name, kind, ok, detail, round(clock() - start, 3))
        LOG.info("health check %r: %s%s", name, "ok" if ok else "FAILED", f" ({detail})" if detail else "")
        results.append(res)
    return HealthReport(tuple(results), tuple(skipped))


def _script_check(check: HealthCheck, index: int, runner: Runner, target: Target) -> tuple[bool, str]:
    if check.content is not None:
        fname = _SAFE_NAME.sub("_", check.name or f"check-{index}")[:64]
        path = f"{SCRIPT_DIR}/{index:02d}-{fname}"
        try:
            target.write(path, check.content, mode=0o700)
        except OSError as e:
            return False, f"cannot write the script to {path}: {e.strerror or e}"
        argv = [check.interpreter or "/bin/sh", path, *check.arguments]
    else:
        assert check.path is not None
        if not target.exists(check.path):
            return False, f"{check.path} does not exist"
        argv = [check.interpreter, check.path, *check.arguments] if check.interpreter \
            else [check.path, *check.arguments]
    env = {"PATH": PATH, **check.environment_variables}
    secrets = [v for v in check.environment_variables.values() if len(v) >= 4]
    timeout = max(_timeout(check), MIN_SCRIPT_TIMEOUT)
    chroot = None if target.live else str(target.root)
    try:
        res = runner.run(argv, env=env, timeout=timeout, check=False, chroot=chroot, secrets=secrets)
    except CommandError as e:
        if e.code is None:
            return False, f"did not finish within {timeout:g}s"
        return False, _redact(str(e), secrets)
    if res.code != 0:
        tail = (res.stderr.strip() or res.stdout.strip()).splitlines()[-1:] or [""]
        return False, _redact(f"exit code {res.code}" + (f": {tail[0][:200]}" if tail[0] else ""), secrets)
    return True, ""


def _systemd_check(check: HealthCheck, runner: Runner, target: Target, *, clock: Callable[[], float],
                   sleep: Callable[[float], None], poll: float) -> tuple[bool, str]:
    units = list(check.systemd_services or ())
    bad = [u for u in units if not _UNIT_RE.match(u)]
    if bad:
        return False, f"not a unit name: {', '.join(bad)}"
    if not units:
        return True, ""
    if not target.live:
        return False, "systemd checks need the running system (the target is not the live root)"
    deadline = clock() + _timeout(check)
    states: dict[str, str] = {}
    while True:
        remaining = max(deadline - clock(), 0.0)
        try:
            res = runner.run(["systemctl", "is-active", "--", *units], check=False, timeout=max(min(remaining, 30), 5))
            lines = res.stdout.split()
            states = {u: (lines[i] if i < len(lines) else "unknown") for i, u in enumerate(units)}
        except CommandError as e:
            states = {u: f"unknown ({e})" for u in units}
        waiting = [u for u in units if states[u] != "active"]
        if not waiting:
            return True, ""
        if clock() >= deadline:
            what = ", ".join(f"{u} ({states[u]})" for u in waiting)
            return False, f"not active within {_timeout(check):g}s: {what}"
        sleep(min(poll, max(deadline - clock(), 0.0)))


def _redact(text: str, secrets: Sequence[str]) -> str:
    for s in secrets:
        text = text.replace(s, "<redacted>")
    return text
