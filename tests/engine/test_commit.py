"""Commit at every boot: health checks decide, a failed slot goes back to the old one, a boot counter that ran out
is noticed and recorded, a never-serviced host is left alone (root only, loop disks, simulated boots)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tests.engine.conftest import BuiltImage, LoopDisk
from tests.engine.servicing_rig import (
    Rig,
    config,
    kimages_fixture,  # noqa: F401  (the "kimages" fixture)
)
from tether.engine.cli import add_parsers
from tether.engine.commit import commit, spec_digest
from tether.engine.finalize import finalize
from tether.engine.hostconfig import parse_host_config
from tether.engine.update import UpdateOptions, stage
from tether.runner import Runner

OK = {"name": "always-ok", "content": "exit 0\n", "timeoutSeconds": 5}
BAD = {"name": "app-ready", "content": "echo 'app not listening on :8080' >&2; exit 3\n", "timeoutSeconds": 5}




def test_failed_health_check_returns_to_the_old_slot(loopdisk: LoopDisk, kimages: dict[str, BuiltImage],
                                                     tmp_path: Path) -> None:
    rig = Rig(loopdisk, tmp_path)
    doc = rig.install(kimages["v1"], checks=[OK])
    entry_a = doc["boot"]["entryId"]
    rig.boot()
    with rig.running() as live:
        assert commit(rig.env(live)).code == 0
        stage(parse_host_config(config(loopdisk.device, kimages["v2"], "node-2", checks=[OK, BAD])), Runner(),
              live, UpdateOptions())
        _m, doc = finalize(rig.env(live))
        entry_b = doc["boot"]["entryId"]
    assert rig.boot() == entry_b
    with rig.running() as live:
        res = commit(rig.env(live))
        assert res.code == 1  # the unit fails: boot-complete.target is not reached, nothing blesses the entry
        assert "health check 'app-ready' failed: exit code 3: app not listening on :8080" in res.message
        assert rig.runner.reboots == 1
        st = rig.status(live)
        assert st["servicingState"] == "ab-update-health-check-failed"
        assert st["slots"]["volume-b"]["state"] == "bad"
        b = next(e for e in rig.fake.entries() if e.id == entry_b)
        assert b.bad  # no tries left: the old entry boots next
    assert rig.boot() == entry_a
    with rig.running() as live:
        res = commit(rig.env(live))
        assert res.code == 0 and "back on volume-a" in res.message
        st = rig.status(live)
        assert st["servicingState"] == "provisioned" and st["abActiveVolume"] == "volume-a"
        assert st["spec"]["os"]["hostname"] == "node-1" and st["specOld"] is None
        assert st["lastError"]["category"] == "health-check-failed"
        assert "app-ready" in st["lastError"]["message"]
        assert "nothing to commit" in commit(rig.env(live)).message
    assert rig.runner.reboots == 1


def test_boot_counter_runs_out_and_commit_records_the_fallback(loopdisk: LoopDisk, kimages: dict[str, BuiltImage],
                                                               tmp_path: Path) -> None:
    rig = Rig(loopdisk, tmp_path)
    entry_a = rig.install(kimages["v1"])["boot"]["entryId"]
    rig.boot()
    with rig.running() as live:
        assert commit(rig.env(live)).code == 0
        stage(parse_host_config(config(loopdisk.device, kimages["v2"], "node-2")), Runner(), live, UpdateOptions())
        _m, doc = finalize(rig.env(live))
        entry_b = doc["boot"]["entryId"]
    # the new slot panics before commit runs, three times: its tries are used up
    assert [rig.boot() for _ in range(3)] == [entry_b] * 3
    assert rig.boot() == entry_a
    with rig.running() as live:
        res = commit(rig.env(live))
        assert res.code == 0 and res.message.startswith("rolled back")
        st = rig.status(live)
        assert st["servicingState"] == "provisioned" and st["abActiveVolume"] == "volume-a"
        assert st["spec"]["os"]["hostname"] == "node-1"
        assert st["lastError"]["category"] == "boot-fallback"
        assert f"{entry_b} (volume-b) did not come up" in st["lastError"]["message"]
        assert "tries left 0, done 3" in st["lastError"]["message"]
        assert spec_digest(doc["spec"]) in st["rejectedSpecs"]
    assert rig.runner.reboots == 0


def test_commit_on_a_never_serviced_host_is_a_no_op(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default="/")
    add_parsers(parser.add_subparsers(dest="verb"))
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    args = parser.parse_args(["--root", str(root), "commit"])
    assert args.func(args) == 0
    assert "nothing to commit: this host was never serviced by tether" in capsys.readouterr().out
    assert not (root / "var").exists()  # no datastore created
