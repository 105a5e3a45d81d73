from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import needs_tool
from tests.fakes import FakeRunner
from tests.modules.sysmod_support import config_errors, parse
from tether.modules import power_state_change as mod


def test_good_and_bad_configs():
    ps = parse(mod, {"power_state": {"delay": 30, "mode": "reboot", "message": "Rebooting machine",
                                     "condition": "test -f /var/tmp/reboot_me"}}).power_state
    assert mod.shutdown_argv(ps) == ["shutdown", "-r", "+30", "Rebooting machine"]
    ps = parse(mod, {"power_state": {"mode": "poweroff", "delay": "now", "timeout": 2}}).power_state
    assert mod.shutdown_argv(ps) == ["shutdown", "-P", "now"] and ps.condition is True
    assert mod.shutdown_delay("+5") == "+5" and mod.shutdown_delay("5") == "+5"
    assert config_errors(mod.Config, {"power_state": {"mode": "sleep"}}) == [
        "power_state.mode: expected one of 'poweroff', 'reboot', 'halt', got a string ('sleep')"]
    assert config_errors(mod.Config, {"power_state": {"delay": 1}}) == ["power_state.mode: missing required key"]
    assert any("not 'now' or a number" in e for e in config_errors(mod.Config, {"power_state": {
        "mode": "halt", "delay": "soon"}}))


def test_live_starts_a_detached_helper(make_ctx, fake_runner):
    seen = {}
    fake_runner.expect("setsid -f *", handler=lambda argv, kw: seen.update(kw))
    data = {"power_state": {"mode": "poweroff", "message": "bye", "timeout": 5, "condition": ["test", "-f", "/x"]}}
    mod.handle(make_ctx(live=True), parse(mod, data))
    argv = fake_runner.calls[0]
    assert argv[:5] == ["setsid", "-f", sys.executable, "-m", "tether.modules.power_state_change"]
    assert argv[argv.index("--timeout") + 1] == "5"
    assert json.loads(argv[argv.index("--condition") + 1]) == ["test", "-f", "/x"]
    assert argv[argv.index("--") + 1:] == ["shutdown", "-P", "now", "bye"]
    assert seen["capture"] is False


def test_offline_does_nothing(make_ctx, fake_runner):
    mod.handle(make_ctx(), parse(mod, {"power_state": {"mode": "reboot"}}))
    assert fake_runner.calls == []


def test_helper_waits_for_the_process_then_acts():
    proc = subprocess.Popen(["sleep", "0.4"])  # not reaped while act() waits: a zombie counts as exited
    try:
        runner = FakeRunner().expect("shutdown -r now")
        t0 = time.monotonic()
        assert mod.act(proc.pid, mod._start_time(proc.pid), 10, True, ["shutdown", "-r", "now"], runner) == "done"
        assert time.monotonic() - t0 >= 0.3
        assert runner.commands() == ["shutdown -r now"]
    finally:
        proc.wait()


def test_helper_timeout_and_conditions():
    proc = subprocess.Popen(["sleep", "30"])
    try:
        runner = FakeRunner().expect("sh -c test -f /nope", code=1)
        t0 = time.monotonic()
        assert mod.act(proc.pid, mod._start_time(proc.pid), 0.3, "test -f /nope", ["shutdown", "-H", "now"],
                       runner) == "condition-false"
        assert time.monotonic() - t0 < 5
        assert runner.commands() == ["sh -c test -f /nope"]
        assert mod.act(proc.pid, mod._start_time(proc.pid), 0, False, ["shutdown"], FakeRunner()) == "condition-false"
    finally:
        proc.kill()
        proc.wait()


@needs_tool("setsid")
def test_real_detached_helper_runs_after_its_parent_exits(tmp_path):
    marker = tmp_path / "done"
    parent = subprocess.Popen(["sleep", "0.5"])
    subprocess.run(["setsid", "-f", sys.executable, "-m", "tether.modules.power_state_change", "--pid",
                    str(parent.pid), "--timeout", "10", "--condition", json.dumps(["true"]), "--", "touch",
                    str(marker)], check=True, timeout=10)
    assert not marker.exists()  # still waiting for its "tether" process
    parent.wait()
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if not marker.exists():
        pytest.fail("the helper did not run its command after the parent exited")
