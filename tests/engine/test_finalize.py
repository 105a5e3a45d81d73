"""Finalize: the staged slot's entry becomes the counted trial; clean install's finalize; and bad input that must
leave the running slot and the boot configuration as they were (root only, loop disks)."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest
import yaml

from tests.engine.conftest import BuiltImage, LoopDisk
from tests.engine.servicing_rig import (
    ROOT_A,
    Rig,
    config,
    kimages_fixture,  # noqa: F401  (the "kimages" fixture)
)
from tests.engine.test_servicing import sha
from tether.engine.boot_fake import FakeBoot
from tether.engine.cli import add_parsers
from tether.engine.commit import commit
from tether.engine.finalize import FinalizeError, finalize
from tether.engine.hostconfig import parse_host_config
from tether.engine.update import UpdateOptions, stage
from tether.runner import Runner


def cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default="/")
    add_parsers(parser.add_subparsers(dest="verb"))
    return parser.parse_args(argv)


def installed(rig: Rig, img: BuiltImage) -> None:
    """Clean install, finalize, first boot, commit: a provisioned host on slot A."""
    doc = rig.install(img)
    assert doc["servicingState"] == "clean-install-finalized"
    assert rig.boot() == doc["boot"]["entryId"]
    with rig.running() as live:
        assert commit(rig.env(live)).code == 0


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_clean_install_finalize_then_ab_update_finalize_and_commit(loopdisk: LoopDisk, kimages: dict[str, BuiltImage],
                                                                   tmp_path: Path) -> None:
    rig = Rig(loopdisk, tmp_path)
    doc = rig.install(kimages["v1"])
    entry_a = doc["boot"]["entryId"]
    (e,) = rig.fake.entries()
    assert (e.id, e.slot, e.tries_left, e.default) == (entry_a, "volume-a", None, True)  # no counter: no fallback
    opts = rig.fake.load()["entries"][entry_a]["options"]
    assert opts.startswith(f"root=PARTUUID={doc['partitionUuids']['root-a']} rw")
    assert "installer" not in opts  # the installer's own command line is not carried into the installed host
    assert Path(rig.fake.load()["entries"][entry_a]["kernel"]).name == "vmlinuz-6.1.0-1"

    assert rig.boot() == entry_a
    with rig.running() as live:
        res = commit(rig.env(live))
        assert res.code == 0 and "committed" in res.message
        st = rig.status(live)
        assert st["servicingState"] == "provisioned" and st["abActiveVolume"] == "volume-a"
        assert st["slots"]["volume-a"]["state"] == "committed"
        assert "nothing to commit: provisioned" in commit(rig.env(live)).message

        v2 = parse_host_config(config(loopdisk.device, kimages["v2"], "node-2", extra=["quiet"]))
        what, _ = stage(v2, Runner(), live, UpdateOptions())
        assert what == "staged into volume-b"
        a_before = sha(loopdisk.part(ROOT_A))
        msg, doc = finalize(rig.env(live))
        assert "volume-b" in msg
        assert doc["servicingState"] == "ab-update-finalized"
        entry_b = doc["boot"]["entryId"]
        assert doc["boot"]["previousEntryId"] == entry_a
        b = next(x for x in rig.fake.entries() if x.id == entry_b)
        assert (b.slot, b.tries_left, b.default) == ("volume-b", 3, True)  # the trial boots next, counted
        assert "already finalized" in finalize(rig.env(live))[0]
        # still the boot that finalized: commit waits for the reboot
        assert "waiting for the reboot" in commit(rig.env(live)).message
    assert sha(loopdisk.part(ROOT_A)) == a_before

    assert rig.boot() == entry_b
    cmdline = rig.machine.cmdline.read_text()
    assert f"root=PARTUUID={doc['partitionUuids']['root-b']} rw quiet tether.entry={entry_b}" in cmdline
    with rig.running() as live:
        assert (live.path("/etc/hostname").read_text()) == "node-2\n"
        res = commit(rig.env(live))
        assert res.code == 0, res.message
        st = rig.status(live)
        assert st["servicingState"] == "provisioned" and st["abActiveVolume"] == "volume-b"
        assert st["spec"]["os"]["hostname"] == "node-2" and st["lastError"] is None
        b = next(x for x in rig.fake.entries() if x.id == entry_b)
        assert b.good and b.default
        assert "ab-update-finalized" in rig.history(live) and rig.history(live)[-1] == "committed"


def test_finalize_with_nothing_staged_changes_nothing(loopdisk: LoopDisk, kimages: dict[str, BuiltImage],
                                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rig = Rig(loopdisk, tmp_path)
    installed(rig, kimages["v1"])
    boot_before = digest(rig.fake.path)
    with rig.running() as live:
        events = rig.history(live)
        args = cli(["--root", str(live.root), "update", "--allowed-operations", "finalize", "--no-reboot"])
        assert args.func(args) == 1
        assert "nothing staged to finalize (servicing state provisioned)" in capsys.readouterr().err
        assert rig.history(live) == events
    assert digest(rig.fake.path) == boot_before


def test_missing_esp_and_refusing_boot_store_leave_everything(loopdisk: LoopDisk, kimages: dict[str, BuiltImage],
                                                              tmp_path: Path) -> None:
    rig = Rig(loopdisk, tmp_path)
    installed(rig, kimages["v1"])
    boot_before = digest(rig.fake.path)
    a_before = sha(loopdisk.part(ROOT_A))
    with rig.running() as live:
        stage(parse_host_config(config(loopdisk.device, kimages["v2"], "node-2")), Runner(), live, UpdateOptions())
    with rig.running(esp=False) as live:
        env = rig.env(live, backend=None, backend_name="systemd-boot")
        with pytest.raises(FinalizeError, match="EFI system partition .* is not mounted at /boot/efi"):
            finalize(env)
        st = rig.status(live)
        assert st["servicingState"] == "ab-update-staged"
        assert st["lastError"]["category"] == "missing-esp"
    with rig.running() as live:
        refusing = FakeBoot(rig.fake.path, read_only=True)
        with pytest.raises(FinalizeError, match="refuses writes.*unchanged"):
            finalize(rig.env(live, backend=refusing))
        st = rig.status(live)
        assert st["servicingState"] == "ab-update-staged"
        assert st["lastError"]["category"] == "efi-variables"
        # the staged update can still be finalized once the store takes writes
        _msg, doc = finalize(rig.env(live))
        assert doc["servicingState"] == "ab-update-finalized"
    assert sha(loopdisk.part(ROOT_A)) == a_before
    assert boot_before != digest(rig.fake.path)


@pytest.mark.parametrize("case", ["wrong-hash", "unreachable-url", "storage-change"])
def test_bad_update_input_changes_nothing(loopdisk: LoopDisk, kimages: dict[str, BuiltImage], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str], case: str) -> None:
    rig = Rig(loopdisk, tmp_path)
    installed(rig, kimages["v1"])
    cfg = config(loopdisk.device, kimages["v2"], "node-2")
    if case == "wrong-hash":
        cfg["image"]["sha256"] = "0" * 64
        expect = "sha256 is"
    elif case == "unreachable-url":
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cfg["image"] = {"url": f"http://127.0.0.1:{port}/v2.img.zst", "sha256": "0" * 64}
        expect = "127.0.0.1"
    else:
        cfg["storage"]["disks"][0]["partitions"][0]["size"] = "32M"
        expect = "storage layout cannot change"
    f = tmp_path / "update.yaml"
    f.write_text(yaml.safe_dump(cfg))
    boot_before = digest(rig.fake.path)
    a_before = sha(loopdisk.part(ROOT_A))
    with rig.running() as live:
        args = cli(["--root", str(live.root), "update", str(f), "--no-reboot", "--progress", "none"])
        assert args.func(args) == 1
        assert expect in capsys.readouterr().err
        st = rig.status(live)
        assert st["servicingState"] == "provisioned" and st["abActiveVolume"] == "volume-a"
    assert digest(rig.fake.path) == boot_before
    assert sha(loopdisk.part(ROOT_A)) == a_before
