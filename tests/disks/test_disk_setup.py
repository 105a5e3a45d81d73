"""disk_setup + fs_setup on blank and used loop disks, the compat corpus examples, and the error paths."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import compat_dir
from tests.disks.conftest import Disks, blkid, ctx_for, require, sh
from tests.fakes import FakeRunner
from tether import blockdev, yamlsafe
from tether.convert import convert
from tether.modules import disk_setup

GUID_SWAP = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
GUID_LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


def run(ctx, cfg: dict[str, Any]) -> None:
    disk_setup.handle(ctx, convert(disk_setup.Config, {k: v for k, v in cfg.items() if k in disk_setup.KEYS}))


def table(dev: str) -> dict[str, Any]:
    import json
    return json.loads(sh("sfdisk", "--json", dev))["partitiontable"]


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_blank_disk_gets_gpt_and_labelled_ext4(disks: Disks, tmp_path: Path) -> None:
    lp = disks.loop(64)
    ctx = ctx_for(tmp_path / "root")
    cfg = {"device_aliases": {"data_disk": lp.dev},
           "disk_setup": {"data_disk": {"table_type": "gpt", "layout": True, "overwrite": False}},
           "fs_setup": [{"label": "data", "filesystem": "ext4", "device": "data_disk", "partition": "auto"}]}
    run(ctx, cfg)
    assert ctx.warnings == []
    assert table(lp.dev)["label"] == "gpt"
    info = blkid(lp.part(1))
    assert (info["TYPE"], info["LABEL"]) == ("ext4", "data")
    assert disk_setup.device_for(ctx_for(tmp_path / "r2"), lp.dev) == lp.dev
    before = sha(lp.image)
    run(ctx, cfg)                                       # a second run changes nothing
    assert sha(lp.image) == before and ctx.warnings == []


def test_existing_filesystem_left_byte_identical(disks: Disks, tmp_path: Path) -> None:
    lp = disks.loop(48)
    sh("mkfs.ext4", "-q", "-L", "precious", lp.dev)
    before = sha(lp.image)
    ctx = ctx_for(tmp_path / "root")
    run(ctx, {"disk_setup": {lp.dev: {"table_type": "gpt", "layout": [50, 50], "overwrite": False}},
              "fs_setup": [{"label": "x", "filesystem": "ext4", "device": lp.dev, "partition": "none"},
                           {"label": "y", "filesystem": "ext4", "device": lp.dev, "partition": "auto"},
                           {"label": "z", "filesystem": "xfs", "device": lp.dev, "partition": "any"}]})
    assert sha(lp.image) == before
    assert blkid(lp.dev)["LABEL"] == "precious"


def test_existing_partitions_kept_unless_overwrite(disks: Disks, tmp_path: Path) -> None:
    lp = disks.loop(48, "label: dos\nsize=10MiB, type=83\n")
    sh("mkfs.ext4", "-q", "-L", "old", lp.part(1))
    before = sha(lp.image)
    ctx = ctx_for(tmp_path / "root")
    cfg = {"disk_setup": {lp.dev: {"table_type": "gpt", "layout": [[30, 82], 70]}},
           "fs_setup": [{"label": "new", "filesystem": "ext4", "device": lp.dev, "partition": 1}]}
    run(ctx, cfg)
    assert sha(lp.image) == before
    cfg["disk_setup"][lp.dev]["overwrite"] = True
    cfg["fs_setup"][0]["overwrite"] = True
    cfg["fs_setup"][0]["partition"] = 2
    run(ctx, cfg)
    assert ctx.warnings == []
    t = table(lp.dev)
    assert t["label"] == "gpt" and [p["type"] for p in t["partitions"]] == [GUID_SWAP, GUID_LINUX]
    assert blkid(lp.part(2))["LABEL"] == "new"
    assert "TYPE" not in blkid(lp.part(1))             # the old ext4 inside the new partition 1 was wiped


def test_compat_disk_setup_example(disks: Disks, tmp_path: Path) -> None:
    require("mkswap")
    doc = yamlsafe.load((compat_dir("cloud-init", "doc/module-docs/cc_disk_setup") / "example1.yaml").read_text())
    sdb, sdc, sdd = disks.loop(64), disks.loop(32), disks.loop(32)
    subst = {"/dev/sdb": sdb.dev, "/dev/sdc": sdc.dev, "/dev/sdd": sdd.dev}
    doc["device_aliases"] = {k: subst[v] for k, v in doc["device_aliases"].items()}
    doc["disk_setup"] = {subst.get(k, k): v for k, v in doc["disk_setup"].items()}
    for fs in doc["fs_setup"]:
        fs["device"] = fs["device"].replace("/dev/sdd", sdd.dev + "p")
    ctx = ctx_for(tmp_path / "root")
    run(ctx, doc)
    assert ctx.warnings == []
    assert table(sdb.dev)["label"] == "gpt" and len(table(sdb.dev)["partitions"]) == 2
    assert (blkid(sdb.part(1))["LABEL"], blkid(sdb.part(2))["LABEL"]) == ("fs1", "fs2")
    assert table(sdc.dev)["partitions"][0]["type"] == GUID_SWAP
    assert blkid(sdc.part(1))["TYPE"] == "swap"
    assert table(sdd.dev)["label"] == "dos" and blkid(sdd.part(1))["LABEL"] == "fs3"
    assert disk_setup.device_for(ctx_for(tmp_path / "r", ), sdb.dev) == sdb.dev
    ctx.cloud_config = {"device_aliases": doc["device_aliases"]}
    assert disk_setup.device_for(ctx, "my_alias.2") == sdb.part(2)      # what mounts resolves


def test_compat_disk_setup_examples_file(disks: Disks, tmp_path: Path) -> None:
    """doc/examples/cloud-config-disk-setup.txt (repeated keys: the last of each wins, as in YAML)."""
    require("mkfs.btrfs", "mkfs.ext3")
    doc = yamlsafe.load((compat_dir("cloud-init", "doc/examples") / "cloud-config-disk-setup.txt").read_text())
    eph, xvdh, xvda = disks.loop(48), disks.loop(400), disks.loop(32)
    doc["device_aliases"] = {"ephemeral0": eph.dev}
    doc["disk_setup"] = {(xvdh.dev if k == "/dev/xvdh" else k): v for k, v in doc["disk_setup"].items()}
    for fs in doc["fs_setup"]:
        fs["device"] = {"/dev/xvdh": xvdh.dev, "/dev/xvda1": xvda.dev}.get(fs["device"], fs["device"])
    ctx = ctx_for(tmp_path / "root")
    run(ctx, doc)
    assert ctx.warnings == []
    assert table(eph.dev)["label"] == "dos"
    assert (blkid(eph.part(1))["TYPE"], blkid(eph.part(1))["LABEL"]) == ("ext3", "ephemeral0")
    types = [p["type"] for p in table(xvdh.dev)["partitions"]]
    assert types == [GUID_LINUX, GUID_SWAP, "44479540-F297-41B2-9AF7-D131D5F0458A"]
    assert blkid(xvdh.part(1))["LABEL"] == "mylabl3" and blkid(xvdh.part(1))["TYPE"] == "btrfs"
    assert blkid(xvda.dev)["LABEL"] == "mylabl2"


def test_ephemeral_name_from_block_device_mapping(disks: Disks, tmp_path: Path) -> None:
    lp = disks.loop(32)
    ctx = ctx_for(tmp_path / "root", metadata={"block-device-mapping": {"ephemeral0": lp.dev}})
    run(ctx, {"disk_setup": {"ephemeral0": {"layout": True}},
              "fs_setup": [{"label": "eph", "filesystem": "ext4", "device": "ephemeral0.1"}]})
    assert ctx.warnings == [] and blkid(lp.part(1))["LABEL"] == "eph"


def test_errors_are_per_entry_and_the_rest_goes_on(disks: Disks, tmp_path: Path) -> None:
    good = disks.loop(32)
    ctx = ctx_for(tmp_path / "root")
    run(ctx, {"disk_setup": {"/dev/tether-nope": {"layout": True},
                             good.dev: {"table_type": "gpt", "layout": [60, 50]}},
              "fs_setup": [{"filesystem": "nosuchfs", "device": good.dev},
                           {"filesystem": "ext4", "device": "unknown_alias"},
                           {"filesystem": "ext4", "device": good.dev, "partition": 3},
                           {"filesystem": "ext4", "label": "ok", "device": good.dev, "partition": "none"}]})
    text = "\n".join(ctx.warnings)
    assert "/dev/tether-nope does not exist" in text
    assert "110% of the disk; that does not fit" in text
    assert "unknown filesystem 'nosuchfs'" in text
    assert "'unknown_alias' is neither a path" in text
    assert "has no partition 3" in text
    assert len(ctx.warnings) == 5
    assert blkid(good.dev)["LABEL"] == "ok"


def test_cmd_is_an_argv_never_a_shell_line(disks: Disks, tmp_path: Path) -> None:
    lp = disks.loop(32)
    ctx = ctx_for(tmp_path / "root")
    label = "a;touch ${HOME}x"[:16]
    run(ctx, {"fs_setup": [{"label": label, "filesystem": "ext4", "device": lp.dev, "partition": "none",
                            "cmd": "mkfs -t %(filesystem)s -L %(label)s %(device)s"}]})
    assert ctx.warnings == []
    assert sh("blkid", "-p", "-s", "LABEL", "-o", "value", lp.dev).strip() == label   # one argument, verbatim


def test_offline_target_with_real_disk_only_logs(make_ctx) -> None:
    ctx = make_ctx()        # FakeRunner: any command fails the test
    root = next(iter(blockdev.root_disks()), None)
    if root is None or blockdev.by_name(root).loop_backed():
        pytest.skip("no non-loop root disk on this host")
    run(ctx, {"disk_setup": {f"/dev/{root}": {"layout": True, "overwrite": True}},
              "fs_setup": [{"filesystem": "ext4", "device": f"/dev/{root}", "overwrite": True}]})
    assert ctx.runner.calls == [] and ctx.warnings == []


def test_live_refuses_the_running_root_disk(make_ctx) -> None:
    root = next(iter(blockdev.root_disks()), None)
    if root is None:
        pytest.skip("the running / is not on a block device here")
    ctx = make_ctx(live=True, runner=FakeRunner())
    run(ctx, {"disk_setup": {f"/dev/{root}": {"layout": True, "overwrite": True}},
              "fs_setup": [{"filesystem": "ext4", "device": f"/dev/{root}", "partition": "none", "overwrite": True}]})
    assert ctx.runner.calls == []
    assert len(ctx.warnings) == 2 and all("disk of the running root" in w for w in ctx.warnings)


def test_plan_layout_and_types() -> None:
    spec = disk_setup.DiskSpec(table_type="mbr", layout=[33, [33, 82], [34, "8e"]])
    plan = disk_setup.plan_layout(spec, 1026 << 20, "d")
    assert [p.type for p in plan] == ["83", "82", "8e"]
    assert [p.size_mib for p in plan] == [337, 337, None]
    with pytest.raises(disk_setup.EntryError, match="holds 4 primary"):
        disk_setup.plan_layout(disk_setup.DiskSpec(layout=[20] * 5), 1 << 30, "d")
    with pytest.raises(disk_setup.EntryError, match="unknown"):
        disk_setup.type_code("gpt", "zz99")
    assert disk_setup.type_code("gpt", 82) == GUID_SWAP


def test_a_disk_whose_udev_link_appears_late_is_waited_for(disks: Disks, tmp_path: Path) -> None:
    """Live, a missing device gets one bounded ``udevadm settle`` before it is called missing; a link that
    appears meanwhile (udev catching up early in a boot) is used."""
    from tether.runner import Runner
    disk = disks.loop(32)
    link = tmp_path / "by-id" / "virtio-late"
    link.parent.mkdir()
    real = Runner()

    def settle(argv: list[str], kw: dict) -> int:
        link.symlink_to(disk.dev)              # what udev would have done
        return 0

    runner = FakeRunner().expect("udevadm settle --timeout=10", handler=settle)
    runner.expect("*", handler=lambda argv, kw: real.run(argv, **{k: v for k, v in kw.items() if k != "chroot"}))
    ctx = ctx_for(tmp_path / "root", live=True, runner=runner)
    run(ctx, {"disk_setup": {str(link): {"table_type": "gpt", "layout": True}}})
    assert ctx.warnings == []
    assert runner.calls[0] == ["udevadm", "settle", "--timeout=10"]
    assert blkid(disk.dev)["PTTYPE"] == "gpt"
    missing = ctx_for(tmp_path / "root2", live=True, runner=FakeRunner().expect("udevadm settle *"))
    run(missing, {"disk_setup": {str(tmp_path / "by-id/never"): {"layout": True}}})
    assert "does not exist" in "\n".join(missing.warnings)
