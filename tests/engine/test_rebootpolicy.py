"""Reboot policies: sentinel (/run/reboot-required like update-notifier), systemd block inhibitor locks that make a
reboot wait and then defer, parsing (fake logind answers; the metadata path on a loop disk as root)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import BuiltImage, LoopDisk
from tests.engine.servicing_rig import (
    BootRunner,
    Rig,
    config,
    kimages_fixture,  # noqa: F401  (the "kimages" fixture)
)
from tests.engine.test_metadata_update import provisioned, seed
from tests.fakes import FakeRunner
from tether.engine import rebootpolicy as rp
from tether.engine.metadata_update import from_metadata
from tether.host import Host
from tether.runner import Result
from tether.target import Target

BUSCTL = "busctl --json=short call org.freedesktop.login1 *ListInhibitors"


def logind(*rows: list[Any]) -> str:
    return json.dumps({"type": "a(ssssuu)", "data": [list(rows)]})


UPGRADE = ["shutdown", "apt", "unattended-upgrades is installing packages", "block", 0, 4242]
DELAY = ["shutdown:sleep", "NetworkManager", "NetworkManager needs to turn off networks", "delay", 0, 600]
SLEEP_ONLY = ["sleep:idle", "gnome", "screen locked", "block", 1000, 900]


def test_sentinel_policy_parses_and_decides() -> None:
    pol = rp.parse_policy("sentinel")
    d = pol.decide()
    assert (d.finalize, d.reboot, d.sentinel) == (True, False, True)
    assert "/run/reboot-required" in d.reason
    assert not rp.parse_policy("now").decide().sentinel
    with pytest.raises(rp.PolicyError, match="use now, never, sentinel, or window"):
        rp.parse_policy("kured")


def test_request_reboot_writes_the_sentinel_like_update_notifier(tmp_path: Path) -> None:
    root = Target.at(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run/reboot-required.pkgs").write_text("linux-image-amd64\n")
    msg = rp.request_reboot(root)
    assert "created /run/reboot-required" in msg
    assert (tmp_path / "run/reboot-required").read_text() == "*** System restart required ***\n"
    rp.request_reboot(root)  # a second check: listed once
    assert (tmp_path / "run/reboot-required.pkgs").read_text() == "linux-image-amd64\ntether\n"
    assert (tmp_path / "run/reboot-required").stat().st_mode & 0o777 == 0o644


def test_only_block_inhibitors_on_shutdown_count() -> None:
    runner = FakeRunner().expect(BUSCTL, stdout=logind(UPGRADE, DELAY, SLEEP_ONLY))
    held = rp.shutdown_blockers(runner)
    assert [i.who for i in held] == ["apt"]
    assert held[0].describe() == "apt (pid 4242): unattended-upgrades is installing packages"
    assert runner.calls[0][:3] == ["busctl", "--json=short", "call"]


def test_logind_unreachable_blocks_nothing_and_garbage_is_an_error(caplog: pytest.LogCaptureFixture) -> None:
    down = FakeRunner().expect(BUSCTL, code=1, stderr="Failed to connect to bus: No such file or directory")
    assert rp.shutdown_blockers(down) == []
    assert "cannot ask logind for inhibitor locks (Failed to connect to bus" in caplog.text
    missing = FakeRunner().expect(BUSCTL, code=127, stderr="busctl: command not found")
    assert rp.shutdown_blockers(missing) == []
    with pytest.raises(rp.PolicyError, match="busctl ListInhibitors: unexpected answer"):
        rp.shutdown_blockers(FakeRunner().expect(BUSCTL, stdout="{not json"))


class Clock:
    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


def test_reboot_waits_for_an_inhibitor_that_goes_away() -> None:
    answers = [logind(UPGRADE), logind(UPGRADE), logind(DELAY)]
    runner = FakeRunner().expect(BUSCTL, handler=lambda argv, kw: answers.pop(0))
    clock = Clock()
    assert rp.wait_for_blockers(runner, 60, poll=5, sleep=clock.sleep, clock=lambda: clock.t) == []
    assert clock.sleeps == [5, 5]


def test_reboot_wait_is_bounded_then_deferred() -> None:
    runner = FakeRunner().expect(BUSCTL, stdout=logind(UPGRADE))
    clock = Clock()
    held = rp.wait_for_blockers(runner, 12, poll=5, sleep=clock.sleep, clock=lambda: clock.t)
    assert [i.who for i in held] == ["apt"] and clock.sleeps == [5, 5, 2]
    reason = rp.deferred_reason(held, 12)
    assert reason == ("reboot deferred: shutdown is blocked by inhibitor lock(s) held by apt (pid 4242): "
                      "unattended-upgrades is installing packages (waited 12s); the next check reboots once they "
                      "are released")


@dataclasses.dataclass
class InhibitedRunner(BootRunner):
    """The rig's runner, with logind answering ``held`` (a shutdown block inhibitor while True)."""

    held: bool = True

    def run(self, argv: Any, **kw: Any) -> Result:  # type: ignore[override]
        if list(argv[:1]) == ["busctl"]:
            return Result([str(a) for a in argv], 0, logind(UPGRADE) if self.held else logind(), "")
        return super().run(argv, **kw)


def test_metadata_update_defers_reboot_while_inhibited_then_reboots(loopdisk: LoopDisk,
                                                                    kimages: dict[str, BuiltImage],
                                                                    tmp_path: Path) -> None:
    rig = Rig(loopdisk, tmp_path)
    provisioned(rig, kimages["v1"])
    rig.runner = InhibitedRunner()
    now = dataclasses.replace(rp.parse_policy("now"), inhibitor_wait=0)
    host = Host(sysroot=rig.mroot, runner=rig.runner)
    with rig.running() as live:
        seed(live, config(loopdisk.device, kimages["v2"], "node-2"))
        out = from_metadata(rig.env(live), now, host=host)
        assert (out.code, out.action) == (0, "finalized"), out.reason
        assert "reboot deferred: shutdown is blocked by inhibitor lock(s) held by apt (pid 4242)" in out.reason
        assert rig.runner.reboots == 0
        assert rig.status(live)["servicingState"] == "ab-update-finalized"
        out = from_metadata(rig.env(live), now, host=host)  # still held at the next check
        assert out.action == "finalized" and rig.runner.reboots == 0
        rig.runner.held = False
        out = from_metadata(rig.env(live), now, host=host)
        assert (out.code, out.action) == (0, "rebooting"), out.reason
        assert rig.runner.reboots == 1


def test_metadata_update_with_sentinel_policy(loopdisk: LoopDisk, kimages: dict[str, BuiltImage],
                                              tmp_path: Path) -> None:
    rig = Rig(loopdisk, tmp_path)
    provisioned(rig, kimages["v1"])
    with rig.running() as live:
        seed(live, config(loopdisk.device, kimages["v2"], "node-2"))
        out = from_metadata(rig.env(live), rp.parse_policy("sentinel"), host=Host(sysroot=rig.mroot))
        assert (out.code, out.action) == (0, "finalized"), out.reason
        assert "created /run/reboot-required" in out.reason and out.record["policy"] == "sentinel"
        assert rig.runner.reboots == 0
        assert rig.status(live)["servicingState"] == "ab-update-finalized"
        assert live.read_text("/run/reboot-required") == "*** System restart required ***\n"
        assert live.read_text("/run/reboot-required.pkgs") == "tether\n"
        live.remove("/run/reboot-required")  # cleared by someone; the next check asks again
        out = from_metadata(rig.env(live), rp.parse_policy("sentinel"), host=Host(sysroot=rig.mroot))
        assert out.action == "finalized" and live.exists("/run/reboot-required")
        assert rig.runner.reboots == 0
