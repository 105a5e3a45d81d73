"""growpart and resizefs on real loop devices: enlarged image files, GPT and MBR, every mode, LVM."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import compat_dir
from tests.disks.conftest import (
    CAN_RESIZE_EXT4,
    PART_MIB,
    Disks,
    blkid,
    ctx_for,
    dm_available,
    fs_bytes,
    make_fs,
    require,
    sh,
)
from tether import blockdev, partgrow, yamlsafe
from tether.convert import convert
from tether.modules import growpart, resizefs
from tether.runner import Runner

GPT_ONE = f"label: gpt\nsize={PART_MIB}MiB, type=linux\n"
MBR_ONE = f"label: dos\nsize={PART_MIB}MiB, type=83\n"
DISK = PART_MIB + 8
BIG = DISK * 2
GAIN = (BIG - DISK - 8) << 20   # bytes a grown partition/filesystem gains at least


def _grow(ctx, cfg: dict) -> None:
    growpart.handle(ctx, convert(growpart.Config, cfg))


@pytest.mark.parametrize("mode,script", [("auto", GPT_ONE), ("tether", GPT_ONE), ("growpart", GPT_ONE),
                                         ("sgdisk", GPT_ONE), ("tether", MBR_ONE), ("growpart", MBR_ONE)])
def test_grows_mounted_partition_and_its_filesystem(disks: Disks, tmp_path: Path, mode: str, script: str) -> None:
    require({"growpart": "growpart", "sgdisk": "sgdisk"}.get(mode, "sfdisk"))
    lp = disks.loop(DISK, script)
    part = lp.part(1)
    make_fs(part)
    root = tmp_path / "root"
    mnt = disks.mount(part, root / "data")
    small = fs_bytes(mnt)
    lp.enlarge(BIG)
    ctx = ctx_for(root)
    _grow(ctx, {"growpart": {"mode": mode, "devices": ["/data"]}})
    assert ctx.warnings == []
    assert blockdev.by_path(part).size_bytes > (BIG - 2) << 20  # the partition reaches the new end
    assert fs_bytes(mnt) > small + GAIN                 # and the mounted filesystem grew with it
    if script == GPT_ONE:
        assert "No problems found" in sh("sgdisk", "--verify", lp.dev)


def test_second_run_is_a_fast_no_op(disks: Disks, tmp_path: Path) -> None:
    lp = disks.loop(DISK, GPT_ONE)
    make_fs(lp.part(1))
    root = tmp_path / "root"
    disks.mount(lp.part(1), root)
    lp.enlarge(BIG)
    runner = Runner()
    ctx = ctx_for(root, runner=runner)
    cfg = {"growpart": {"mode": "tether"}}
    _grow(ctx, cfg)
    resizefs.handle(ctx, convert(resizefs.Config, {}))
    assert blockdev.by_path(lp.part(1)).size_bytes > (BIG - 2) << 20
    table = lp.image.read_bytes()[:1 << 20]
    runner.history.clear()
    t0 = time.perf_counter()
    _grow(ctx, cfg)
    ms = (time.perf_counter() - t0) * 1000
    assert runner.history == []                      # no process at all, so no table write
    assert lp.image.read_bytes()[:1 << 20] == table
    assert ms <= 50, f"no-op growpart took {ms:.1f} ms"


def test_grows_a_partition_that_is_not_the_last_one(disks: Disks, tmp_path: Path) -> None:
    lp = disks.loop(96, "label: gpt\nsize=16MiB\nstart=64MiB, size=16MiB\n")
    p1, p2 = lp.part(1), lp.part(2)
    p2_before = (blockdev.by_path(p2).start_sectors, blockdev.by_path(p2).size_sectors)
    ctx = ctx_for(tmp_path / "root")
    _grow(ctx, {"growpart": {"mode": "tether", "devices": [p1]}})
    b1 = blockdev.by_path(p1)
    assert b1.start_sectors + b1.size_sectors == p2_before[0]   # filled the gap up to partition 2
    b2 = blockdev.by_path(p2)
    assert (b2.start_sectors, b2.size_sectors) == p2_before     # partition 2 untouched


def test_root_growth_with_resizefs(disks: Disks, tmp_path: Path) -> None:
    lp = disks.loop(DISK, GPT_ONE)
    make_fs(lp.part(1))
    root = disks.mount(lp.part(1), tmp_path / "root")
    before = fs_bytes(root)
    lp.enlarge(BIG)
    ctx = ctx_for(root)
    _grow(ctx, {})                                           # defaults: devices ["/"], mode auto
    assert fs_bytes(root) == before                          # growpart leaves / to resizefs
    resizefs.handle(ctx, convert(resizefs.Config, {"resize_rootfs": True}))
    assert fs_bytes(root) > before + GAIN
    assert ctx.warnings == []


@pytest.mark.parametrize("fs", ["xfs", "btrfs"])
def test_resizefs_xfs_and_btrfs_online(disks: Disks, tmp_path: Path, fs: str) -> None:
    require(f"mkfs.{fs}", "xfs_growfs" if fs == "xfs" else "btrfs")
    lp = disks.loop(400, "label: gpt\nsize=300MiB\n")
    sh(f"mkfs.{fs}", "-q" if fs == "xfs" else "-q", "-f", lp.part(1))
    root = disks.mount(lp.part(1), tmp_path / "root")
    before = fs_bytes(root)
    lp.enlarge(700)
    ctx = ctx_for(root)
    _grow(ctx, {})
    resizefs.handle(ctx, convert(resizefs.Config, {}))
    assert ctx.warnings == []
    assert fs_bytes(root) > before + (200 << 20)


def test_growroot_disabled_and_mode_off(disks: Disks, tmp_path: Path) -> None:
    lp = disks.loop(DISK, GPT_ONE)
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/growroot-disabled").write_text("")
    lp.enlarge(BIG)
    size = blockdev.by_path(lp.part(1)).size_sectors
    ctx = ctx_for(root)
    _grow(ctx, {"growpart": {"devices": [lp.part(1)]}})
    _grow(ctx, {"growpart": {"mode": "off", "devices": [lp.part(1)], "ignore_growroot_disabled": True}})
    _grow(ctx, {"growpart": {"mode": False, "devices": [lp.part(1)], "ignore_growroot_disabled": True}})
    assert blockdev.by_path(lp.part(1)).size_sectors == size
    _grow(ctx, {"growpart": {"devices": [lp.part(1)], "ignore_growroot_disabled": True}})
    assert blockdev.by_path(lp.part(1)).size_sectors > size


def test_offline_target_without_devices_only_logs(tmp_path: Path, make_ctx) -> None:
    ctx = make_ctx()   # FakeRunner: any command would fail the test
    growpart.handle(ctx, convert(growpart.Config, {}))
    resizefs.handle(ctx, convert(resizefs.Config, {}))
    assert ctx.runner.calls == [] and ctx.warnings == []


def test_lvm_partition_pv_and_lv_grow(disks: Disks, tmp_path: Path) -> None:
    """Partition -> pvresize -> lvextend by the extents gained (space left free in the VG stays free)."""
    require("pvcreate", "lvextend", "pvresize")
    lp = disks.loop(64, "label: gpt\nsize=40MiB, type=lvm\n")
    pv = lp.part(1)
    vg = disks.vg_name()
    devs = [lp.dev, pv]
    dev_opt = ["--devices", ",".join(devs)]
    sh("pvcreate", "-q", *dev_opt, pv)
    sh("vgcreate", "-q", *dev_opt, vg, pv)
    disks.vgs.append((vg, devs))
    # no device-mapper here? then the LV exists in metadata only (inactive), which is all lvextend needs
    nodm = () if dm_available() else ("--driverloaded", "n")
    act = [] if dm_available() else [*nodm, "--activate", "n", "--zero", "n"]
    sh("lvcreate", "-q", *dev_opt, *act, "-l", "5", "-n", "root", vg)
    lp.enlarge(128)
    free0 = int(sh("vgs", *dev_opt, "--noheadings", "-o", "vg_free_count", vg))
    lv0 = int(sh("lvs", *dev_opt, "--noheadings", "-o", "lv_size", "--units", "b", "--nosuffix", f"{vg}/root"))
    r = partgrow.grow_lvm_on(Runner(), [blockdev.by_path(pv)], f"{vg}/root", "tether", devices=devs, lvm_args=nodm)
    assert r.grown_partitions == [pv] and r.resized_pvs == [pv] and r.extended_by > 10
    lv1 = int(sh("lvs", *dev_opt, "--noheadings", "-o", "lv_size", "--units", "b", "--nosuffix", f"{vg}/root"))
    assert lv1 - lv0 >= 60 << 20
    assert int(sh("vgs", *dev_opt, "--noheadings", "-o", "vg_free_count", vg)) == free0   # pre-existing free kept
    assert blockdev.by_path(pv).size_bytes - blockdev.pv_recorded_size(pv) < 4 << 20   # LVM saw the growth
    runner = Runner()
    r2 = partgrow.grow_lvm_on(runner, [blockdev.by_path(pv)], f"{vg}/root", "tether", devices=devs, lvm_args=nodm)
    assert (r2.grown_partitions, r2.resized_pvs, r2.extended_by) == ([], [], 0) and runner.history == []


def test_lvm_root_mounted_through_module(disks: Disks, tmp_path: Path) -> None:
    require("pvcreate", "lvextend", "pvresize")
    if not dm_available():
        pytest.skip("kernel has no device-mapper (/dev/mapper/control): cannot mount a logical volume")
    lp = disks.loop(64, "label: gpt\nsize=40MiB, type=lvm\n")
    pv = lp.part(1)
    vg = disks.vg_name()
    devs = [lp.dev, pv]
    dev_opt = ["--devices", ",".join(devs)]
    sh("pvcreate", "-q", *dev_opt, pv)
    sh("vgcreate", "-q", *dev_opt, vg, pv)
    disks.vgs.append((vg, devs))
    sh("lvcreate", "-q", *dev_opt, "-l", "100%FREE", "-n", "root", vg)
    make_fs(f"/dev/{vg}/root", "ext4" if CAN_RESIZE_EXT4 else "xfs")
    root = disks.mount(f"/dev/{vg}/root", tmp_path / "root")
    before = fs_bytes(root)
    lp.enlarge(160)
    ctx = ctx_for(root)
    _grow(ctx, {})
    resizefs.handle(ctx, convert(resizefs.Config, {}))
    assert ctx.warnings == []
    assert fs_bytes(root) > before + (80 << 20)


@pytest.mark.parametrize("example", ["example1.yaml", "example2.yaml"])
def test_compat_growpart_examples(disks: Disks, tmp_path: Path, example: str) -> None:
    doc = yamlsafe.load((compat_dir("cloud-init", "doc/module-docs/cc_growpart") / example).read_text())
    if doc["growpart"].get("mode") == "growpart":
        require("growpart")
    root_lp = disks.loop(DISK, GPT_ONE)
    other = disks.loop(DISK, MBR_ONE)
    make_fs(root_lp.part(1))
    root = disks.mount(root_lp.part(1), tmp_path / "root")
    root_lp.enlarge(BIG)
    other.enlarge(BIG)
    doc["growpart"]["devices"] = [other.part(1) if d == "/dev/vdb1" else d for d in doc["growpart"]["devices"]]
    ctx = ctx_for(root)
    _grow(ctx, doc)
    assert ctx.warnings == []
    assert blockdev.by_path(root_lp.part(1)).size_bytes > (BIG - 2) << 20
    grew_other = blockdev.by_path(other.part(1)).size_bytes > (BIG - 2) << 20
    assert grew_other == ("/dev/vdb1" in str(yamlsafe.load((compat_dir("cloud-init", "doc/module-docs/cc_growpart")
                                                                / example).read_text())))
    assert blkid(root_lp.part(1))["TYPE"] in ("ext4", "btrfs")
