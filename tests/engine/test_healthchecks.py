"""Health checks: scripts and systemd units, bounded by timeoutSeconds, reported by name."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeRunner
from tether.engine.healthchecks import HealthCheckFailed, run_checks
from tether.engine.hostconfig import HealthCheck, parse_host_config
from tether.errors import CommandError
from tether.runner import Result, Runner
from tether.target import Target


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Target:
    """A target that says it is live (systemd checks need that) but writes under tmp_path."""
    t = Target.at(tmp_path / "live")
    monkeypatch.setattr(Target, "live", property(lambda self: True))
    return t


def test_script_content_runs_with_its_interpreter_arguments_and_env(live: Target) -> None:
    runner = FakeRunner().expect("/bin/bash /run/tether/health/00-disk_ok --min 5", stdout="fine")
    check = HealthCheck(name="disk ok", content="df /\n", interpreter="/bin/bash", arguments=("--min", "5"),
                        environment_variables={"TOKEN": "s3cret-value"})
    report = run_checks([check], runner, live, servicing_type="ab-update")
    assert report.ok and report.summary() == "1 health check(s) passed"
    script = live.path("/run/tether/health/00-disk_ok")
    assert script.read_text() == "df /\n" and stat.S_IMODE(script.stat().st_mode) == 0o700


def test_failing_script_names_the_check_and_its_error_without_secrets(live: Target) -> None:
    runner = FakeRunner().expect("/bin/sh *", code=3, stderr="boom\ntoken s3cret-value rejected\n")
    check = HealthCheck(name="api", content="exit 3\n", environment_variables={"TOKEN": "s3cret-value"})
    report = run_checks([check], runner, live, servicing_type="ab-update")
    assert not report.ok
    assert report.summary() == "health check 'api' failed: exit code 3: token <redacted> rejected"
    with pytest.raises(HealthCheckFailed, match="'api' failed"):
        report.raise_for_failure()


def test_script_timeout_is_its_timeout_seconds(live: Target) -> None:
    seen: dict[str, Any] = {}

    def slow(argv: list[str], kw: dict[str, Any]) -> Result:
        seen.update(kw)
        raise CommandError(argv, None, reason="timed out after 7s")
    runner = FakeRunner().expect("/bin/sh *", handler=slow)
    report = run_checks([HealthCheck(name="slow", content="sleep 99", timeout_seconds=7)], runner, live,
                        servicing_type="all")
    assert seen["timeout"] == 7.0
    assert report.failures[0].detail == "did not finish within 7s"


def test_missing_script_path_fails_without_running_anything(live: Target) -> None:
    runner = FakeRunner()
    report = run_checks([HealthCheck(path="/opt/check.sh")], runner, live, servicing_type="ab-update")
    assert report.summary() == "health check '/opt/check.sh' failed: /opt/check.sh does not exist"
    assert runner.calls == []


def test_systemd_units_become_active_within_the_timeout(live: Target) -> None:
    answers = iter(["activating\nactive\n", "active\nactive\n"])
    runner = FakeRunner().expect("systemctl is-active -- sshd.service tether-commit.service",
                                 handler=lambda argv, kw: Result(argv, 3, next(answers), ""))
    clock = Clock()
    check = HealthCheck(systemd_services=("sshd.service", "tether-commit.service"), timeout_seconds=10)
    report = run_checks([check], runner, live, servicing_type="ab-update", clock=clock, sleep=clock.sleep)
    assert report.ok and clock.sleeps == [1.0]


def test_systemd_units_not_active_in_time_are_named_with_their_state(live: Target) -> None:
    runner = FakeRunner().expect("systemctl is-active *",
                                 handler=lambda argv, kw: Result(argv, 3, "active\nfailed\n", ""))
    clock = Clock()
    check = HealthCheck(name="services", systemd_services=("a.service", "b.service"), timeout_seconds=5)
    report = run_checks([check], runner, live, servicing_type="ab-update", clock=clock, sleep=clock.sleep)
    assert report.summary() == "health check 'services' failed: not active within 5s: b.service (failed)"
    assert sum(clock.sleeps) == pytest.approx(5.0) and len(runner.calls) == 6  # polled once a second, bounded


def test_systemd_check_needs_the_running_system(tmp_path: Path) -> None:
    report = run_checks([HealthCheck(systemd_services=("a.service",))], FakeRunner(), Target.at(tmp_path),
                        servicing_type="ab-update")
    assert "need the running system" in report.summary()


def test_run_on_selects_checks_for_the_servicing_type(live: Target) -> None:
    runner = FakeRunner().expect("/bin/sh *")
    checks = [HealthCheck(name="install-only", content="true", run_on=("clean-install",)),
              HealthCheck(name="update", content="true", run_on=("ab-update",))]
    report = run_checks(checks, runner, live, servicing_type="ab-update")
    assert [r.name for r in report.results] == ["update"] and report.skipped == ("install-only",)


def test_checks_from_a_host_configuration(live: Target) -> None:
    hc = parse_host_config({"health": {"checks": [
        {"name": "ok", "content": "true"},
        {"SystemdCheck": {"name": "units", "systemdServices": ["x.service"], "timeoutSeconds": 0}},
    ]}})
    runner = (FakeRunner().expect("/bin/sh *")
              .expect("systemctl is-active -- x.service", handler=lambda a, k: Result(a, 3, "inactive\n", "")))
    clock = Clock()
    report = run_checks(hc.health.checks, runner, live, servicing_type="ab-update", clock=clock, sleep=clock.sleep)
    assert [(r.name, r.ok) for r in report.results] == [("ok", True), ("units", False)]
    assert report.failures[0].detail == "not active within 0s: x.service (inactive)"


@pytest.mark.skipif(not os.path.exists("/bin/sh"), reason="needs /bin/sh")
def test_real_script_is_killed_at_its_timeout(tmp_path: Path) -> None:
    script = tmp_path / "slow.sh"
    script.write_text("#!/bin/sh\nsleep 30\n")
    script.chmod(0o755)
    ok = tmp_path / "ok.sh"
    ok.write_text("#!/bin/sh\n[ \"$1\" = yes ] && [ \"$MODE\" = strict ]\n")
    ok.chmod(0o755)
    checks = [HealthCheck(name="slow", path=str(script), timeout_seconds=1),
              HealthCheck(name="args", path=str(ok), arguments=("yes",), environment_variables={"MODE": "strict"})]
    report = run_checks(checks, Runner(), Target.at("/"), servicing_type="ab-update")
    assert [(r.name, r.ok) for r in report.results] == [("slow", False), ("args", True)]
    assert report.results[0].detail == "did not finish within 1s" and report.results[0].seconds < 5
