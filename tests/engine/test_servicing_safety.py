"""Servicing that cannot brick a host (issue 15): the cases a new user hit, each as it should behave now.

- an update staged, a second one staged over it and killed part-way through the write, then finalize;
- a clean install whose raw image fails its hash, or whose partitions do not fit the disk;
- an update whose image cannot be read, or does not fit its slot.
(root only: loop disks, the file-backed fake boot loader of ``servicing_rig``)
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import BuiltImage, LoopDisk, build_image
from tests.engine.servicing_rig import (
    Rig,
    config,
    kimages_fixture,  # noqa: F401  (the "kimages" fixture)
)
from tests.engine.test_finalize import cli, digest, installed
from tests.engine.test_servicing import ROOT_B, sha
from tether.engine import slots, state, transitions
from tether.engine.commit import commit
from tether.engine.finalize import FinalizeError, finalize
from tether.engine.hostconfig import parse_host_config
from tether.engine.images import ImageHashError
from tether.engine.install import InstallOptions, install
from tether.engine.partitioning import LayoutFitError
from tether.engine.preflight import PreflightError
from tether.engine.update import UpdateOptions, stage
from tether.errors import TetherError
from tether.runner import Runner


def _killed_while_writing(hc: Any, live: Any, after_bytes: int = 1) -> None:
    """Stage ``hc`` in a child that dies (no unwinding, like SIGKILL) once ``after_bytes`` are written."""
    pid = os.fork()
    if pid == 0:
        def progress(_what: str, done: int, _total: int | None) -> None:
            if done >= after_bytes:
                os._exit(77)
        try:
            stage(hc, Runner(), live, UpdateOptions(progress=progress, discard=False))
        finally:
            os._exit(1)
    _, code = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(code) == 77


def test_restage_killed_mid_write_then_finalize_is_refused(loopdisk: LoopDisk, kimages: dict[str, BuiltImage],
                                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rig = Rig(loopdisk, tmp_path)
    installed(rig, kimages["v1"])
    with rig.running() as live:
        v2 = parse_host_config(config(loopdisk.device, kimages["v2"], "node-2"))
        assert stage(v2, Runner(), live, UpdateOptions())[0] == "staged into volume-b"
        boot_before = digest(rig.fake.path)
        v3 = parse_host_config(config(loopdisk.device, kimages["v3"], "node-3"))
        _killed_while_writing(v3, live)

        st = rig.status(live)
        # the staged update was given up when its slot started to be rewritten: the state says so
        assert st["servicingState"] == "provisioned" and st["spec"]["os"]["hostname"] == "node-1"
        assert st["slots"]["volume-b"]["state"] == "writing"
        args = cli(["--root", str(live.root), "update", "--allowed-operations", "finalize", "--no-reboot"])
        assert args.func(args) == 1
        err = capsys.readouterr().err
        assert "nothing staged to finalize (servicing state provisioned)" in err
        assert digest(rig.fake.path) == boot_before  # no entry for the half-written slot

        # tether get status says what was interrupted, which slot is untrusted and what to run
        args = cli(["--root", str(live.root), "get", "status", "--format", "json"])
        assert args.func(args) == 0
        import json
        pending = json.loads(capsys.readouterr().out)["pending"]
        assert pending["state"] == "interrupted" and pending["untrustedSlots"] == ["volume-b"]
        assert pending["operation"] == "ab-update" and pending["step"] == "writing"
        assert "tether update" in pending["resume"]

    # the host goes down and comes back: it boots A, and tether commit records what was interrupted in lastError
    assert rig.boot() is not None and rig.booted_slot() == "volume-a"
    with rig.running() as live:
        assert commit(rig.env(live)).code == 0
        err = rig.status(live)["lastError"]
        assert err["category"] == "interrupted"
        assert "ab-update into volume-b" in err["message"] and "at step writing" in err["message"]
        assert "untrusted: volume-b" in err["message"] and "tether update FILE" in err["message"]
        assert rig.history(live)[-1] == "interrupted"
        assert commit(rig.env(live)).code == 0
        assert rig.history(live)[-1] == "interrupted"  # noted once
        st = rig.status(live)
        boot_before = digest(rig.fake.path)

        # even a datastore that still claimed the old staged update cannot make finalize boot this slot:
        # the slot's own marker went with the rewrite
        with state.StateStore(state.datastore_location(live)) as store:
            doc = store.current()
            doc.update(servicingState=state.AB_UPDATE_STAGED, spec=parse_and_data(loopdisk, kimages["v2"], "node-2"),
                       specOld=st["spec"], staging=None)
            doc["slots"]["volume-b"] = slots.record(slots.STAGED, doc["spec"], 9)
            store._append(doc, "forged-for-the-test")
        with pytest.raises(FinalizeError, match=r"volume-b has no slot marker"):
            finalize(rig.env(live))
        assert digest(rig.fake.path) == boot_before
        with state.StateStore(state.datastore_location(live)) as store:
            store._append(st, "restored-for-the-test")

        # the same staging run again completes, and that slot is what boots next
        assert stage(v3, Runner(), live, UpdateOptions())[0] == "staged into volume-b"
        assert "volume-b" in finalize(rig.env(live))[0]
    rig.boot()
    assert rig.booted_slot() == "volume-b"
    with rig.running() as live:
        assert live.path("/etc/hostname").read_text() == "node-3\n"
        assert commit(rig.env(live)).code == 0
        assert rig.status(live)["slots"]["volume-b"]["state"] == "committed"


def parse_and_data(disk: LoopDisk, img: BuiltImage, hostname: str) -> dict[str, Any]:
    from tether.engine.hostconfig import to_data
    return to_data(parse_host_config(config(disk.device, img, hostname)))


def _pre_servicing(cfg: dict[str, Any], marker: Path) -> dict[str, Any]:
    cfg["scripts"] = {"preServicing": [{"name": "pre", "runOn": ["all"], "content": f"touch {marker}\n"}]}
    return cfg


def _blank(disk: LoopDisk) -> bool:
    return subprocess.run(["sfdisk", "--dump", disk.device], capture_output=True).returncode != 0


def test_install_with_a_raw_image_failing_its_hash_leaves_the_disk_blank(loopdisk: LoopDisk,
                                                                         kimages: dict[str, BuiltImage],
                                                                         tmp_path: Path) -> None:
    v1 = kimages["v1"]
    ran = tmp_path / "pre-ran"
    cfg = _pre_servicing(config(loopdisk.device, v1), ran)
    cfg["image"] = {"url": f"file://{v1.raw}", "sha256": "0" * 64}
    with pytest.raises(ImageHashError, match="nothing was written"):
        install(parse_host_config(cfg), Runner(), InstallOptions())
    assert _blank(loopdisk) and not ran.exists()
    # the same with the right hash installs (so the check above is not refusing everything)
    cfg["image"]["sha256"] = v1.sha256(v1.raw)
    doc = install(parse_host_config(cfg), Runner(), InstallOptions())
    assert doc["servicingState"] == "clean-install-staged" and ran.exists()


def test_install_whose_partitions_do_not_fit_is_one_clear_error(loopdisk: LoopDisk, kimages: dict[str, BuiltImage],
                                                                tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    ran = tmp_path / "pre-ran"
    cfg = _pre_servicing(config(loopdisk.device, kimages["v1"]), ran)
    cfg["storage"]["disks"][0]["partitions"][1]["size"] = "1G"
    cfg["storage"]["disks"][0]["partitions"][2]["size"] = "1G"
    with pytest.raises(LayoutFitError, match=r"storage.disks\[os\]: the partitions need .* MiB .* has 128.0 MiB"):
        install(parse_host_config(cfg), Runner(), InstallOptions())
    assert _blank(loopdisk) and not ran.exists()
    import yaml
    path = tmp_path / "hc.yaml"
    path.write_text(yaml.safe_dump(cfg))
    args = cli(["install", str(path), "--no-reboot"])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("tether: storage.disks[os]: the partitions need") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_update_whose_image_cannot_be_read_or_does_not_fit_changes_nothing(loopdisk: LoopDisk,
                                                                           kimages: dict[str, BuiltImage],
                                                                           tmp_path: Path) -> None:
    rig = Rig(loopdisk, tmp_path)
    installed(rig, kimages["v1"])
    big = build_image(tmp_path / "big", "big", {"etc/os-release": b"ID=test\n"}, size_mb=48)  # slot: 40 MiB
    b_before = sha(loopdisk.part(ROOT_B))
    with rig.running() as live:
        events = rig.history(live)
        missing = config(loopdisk.device, kimages["v2"], "node-2")
        missing["image"] = {"url": f"file://{tmp_path}/nope.img.zst", "sha256": "1" * 64}
        with pytest.raises(TetherError, match="cannot open image"):
            stage(parse_host_config(missing), Runner(), live, UpdateOptions())
        st = rig.status(live)
        assert st["lastError"]["category"] == "image" and "nope.img.zst" in st["lastError"]["message"]
        assert "volume-b" not in st["slots"] and st["servicingState"] == "provisioned"
        assert rig.history(live) == [*events, "image-check-failed"]

        toobig = config(loopdisk.device, kimages["v2"], "node-2")
        toobig["image"] = {"url": f"file://{big.raw}", "sha256": big.sha256(big.raw)}
        with pytest.raises(PreflightError, match=r"for / is 50331648 bytes but its partition has only 41943040"):
            stage(parse_host_config(toobig), Runner(), live, UpdateOptions())
        assert rig.status(live)["lastError"]["category"] == "image"
    assert sha(loopdisk.part(ROOT_B)) == b_before


def test_an_illegal_transition_is_refused_at_the_store(tmp_path: Path) -> None:
    with state.StateStore(tmp_path / "ds.sqlite") as store:
        with pytest.raises(transitions.TransitionError, match="cannot move the host from not-provisioned to "
                                                              "ab-update-finalized"):
            store.update("ab-update-finalized", servicingState=state.AB_UPDATE_FINALIZED)
        with pytest.raises(transitions.TransitionError, match="unknown servicing event"):
            store.update("made-up", servicingState=state.NOT_PROVISIONED)
        assert store.history() == []
    mode = stat.S_IMODE((tmp_path / "ds.sqlite").stat().st_mode)
    assert mode == 0o600, oct(mode)  # it holds image URLs that may carry tokens
    with pytest.raises(transitions.TransitionError, match="cannot stage an update in servicing state "
                                                          "ab-update-finalized: an update is finalized"):
        transitions.require("stage", state.AB_UPDATE_FINALIZED)


def test_every_operation_and_event_state_is_known_and_the_docs_show_the_table() -> None:
    for op, edges in transitions.OPERATIONS.items():
        assert set(edges) <= set(state.STATES) and set(edges.values()) <= set(state.STATES), op
    for ev, pairs in transitions.EVENTS.items():
        assert all(a in state.STATES and b in state.STATES for a, b in pairs), ev
    docs = (Path(__file__).parents[2] / "docs/engine.md").read_text()
    assert transitions.markdown() in docs, "docs/engine.md: paste `python -m tether.engine.transitions`"


def test_a_trial_entry_lost_before_it_was_tried_is_not_held_against_the_configuration(
        loopdisk: LoopDisk, kimages: dict[str, BuiltImage], tmp_path: Path) -> None:
    """A power cut right after finalize could leave the new entry unreadable on a vfat ESP (found by the QEMU power
    cuts): the loader never tries it and starts the old slot. That is no verdict on the configuration: commit
    abandons the update without rejecting it, so the metadata watch stages it again."""
    from tether.engine.commit import spec_digest

    rig = Rig(loopdisk, tmp_path)
    installed(rig, kimages["v1"])
    with rig.running() as live:
        v2 = parse_host_config(config(loopdisk.device, kimages["v2"], "node-2"))
        stage(v2, Runner(), live, UpdateOptions())
        _msg, doc = finalize(rig.env(live))
        entry_b, spec = doc["boot"]["entryId"], doc["spec"]
    rig.fake.remove_entry(entry_b)  # what the cut left: no usable entry
    assert rig.boot() is not None and rig.booted_slot() == "volume-a"
    with rig.running() as live:
        res = commit(rig.env(live))
        assert res.code == 0 and "was never tried" in res.message and "not rejected" in res.message
        st = rig.status(live)
        assert st["servicingState"] == "provisioned" and st["abActiveVolume"] == "volume-a"
        assert st["lastError"]["category"] == "boot-entry-lost"
        assert spec_digest(spec) not in (st.get("rejectedSpecs") or [])
        assert stage(v2, Runner(), live, UpdateOptions())[0] == "staged into volume-b"
