"""Manual rollback: the other slot's committed image boots again through finalize and commit (root only)."""

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
from tether.engine.commit import commit
from tether.engine.finalize import finalize
from tether.engine.hostconfig import parse_host_config
from tether.engine.rollback import RollbackError, check, rollback
from tether.engine.update import UpdateOptions, stage
from tether.runner import Runner


def test_rollback_to_the_previous_slot_and_when_there_is_none(loopdisk: LoopDisk, kimages: dict[str, BuiltImage],
                                                             tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    rig = Rig(loopdisk, tmp_path)
    rig.install(kimages["v1"])
    rig.boot()
    with rig.running() as live:
        assert commit(rig.env(live)).code == 0
        ok, why = check(rig.env(live))
        assert not ok and "volume-b holds no committed image" in why
        parser = argparse.ArgumentParser()
        parser.add_argument("--root", default="/")
        add_parsers(parser.add_subparsers(dest="verb"))
        args = parser.parse_args(["--root", str(live.root), "rollback", "--check"])
        assert args.func(args) == 1
        assert "no committed image" in capsys.readouterr().err
        with pytest.raises(RollbackError):
            rollback(rig.env(live))
        stage(parse_host_config(config(loopdisk.device, kimages["v2"], "node-2")), Runner(), live, UpdateOptions())
        finalize(rig.env(live))
    rig.boot()
    with rig.running() as live:
        assert commit(rig.env(live)).code == 0
        assert rig.status(live)["abActiveVolume"] == "volume-b"
        ok, why = check(rig.env(live))
        assert ok and why.startswith("can roll back to volume-a")
        msg, doc = rollback(rig.env(live))
        assert "volume-a" in msg and doc["boot"]["operation"] == "rollback"
        entry = doc["boot"]["entryId"]
        assert doc["spec"]["os"]["hostname"] == "node-1"
        e = next(x for x in rig.fake.entries() if x.id == entry)
        assert e.slot == "volume-a" and e.tries_left == 3 and e.default  # a counted trial like any update
    assert rig.boot() == entry
    with rig.running() as live:
        assert live.path("/etc/hostname").read_text() == "node-1\n"
        assert commit(rig.env(live)).code == 0
        st = rig.status(live)
        assert st["servicingState"] == "provisioned" and st["abActiveVolume"] == "volume-a"
        assert st["spec"]["os"]["hostname"] == "node-1"
        ok, why = check(rig.env(live))
        assert ok and "volume-b" in why  # one level back and forth
