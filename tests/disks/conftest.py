"""Loop-device fixtures for the disk module tests: image files, loop devices, mounts, test volume groups.

Everything a test sets up is torn down even when it fails: mounts first, then volume groups (deactivated,
restricted to the test's own devices so the host's LVM is never scanned), then loop devices.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tether import blockdev
from tether.instance import InstanceData
from tether.module import ModuleContext
from tether.runner import Runner
from tether.target import Target

TOOLS_PACKAGES = {"growpart": "cloud-guest-utils", "sgdisk": "gdisk", "pvcreate": "lvm2", "mkfs.xfs": "xfsprogs",
                  "mkfs.btrfs": "btrfs-progs", "mkfs.ext4": "e2fsprogs", "sfdisk": "fdisk", "wipefs": "util-linux"}
_apt_tried = False


def sh(*argv: str, data: str | None = None, check: bool = True) -> str:
    p = subprocess.run(argv, input=data, capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def require(*tools: str) -> None:
    """Install missing tools with apt once (bounded), or skip naming what is missing."""
    global _apt_tried
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices)")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing and not _apt_tried and shutil.which("apt-get"):
        _apt_tried = True
        pkgs = sorted({TOOLS_PACKAGES.get(t, t) for t in TOOLS_PACKAGES})
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            subprocess.run(["apt-get", "install", "-y", "-q", *pkgs], env=env, capture_output=True, timeout=300)
        except subprocess.TimeoutExpired:
            pass
        missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt packages {', '.join(TOOLS_PACKAGES.get(t, t) for t in missing)})")
    if not os.path.exists("/dev/loop-control"):
        pytest.skip("needs loop device support (/dev/loop-control)")


def dm_available() -> bool:
    return os.path.exists("/dev/mapper/control") and "device-mapper" in Path("/proc/misc").read_text()


@dataclass
class Loop:
    image: Path
    dev: str

    @property
    def block(self) -> blockdev.BlockDev:
        bd = blockdev.by_path(self.dev)
        assert bd is not None
        return bd

    def part(self, n: int) -> str:
        p = self.block.partition(n)
        assert p is not None, f"{self.dev} has no partition {n}"
        return p.path

    def enlarge(self, size_mib: int) -> None:
        os.truncate(self.image, size_mib << 20)
        sh("losetup", "--set-capacity", self.dev)

    def rescan(self) -> None:
        sh("partx", "--add", self.dev, check=False)
        sh("partx", "--update", self.dev, check=False)


@dataclass
class Disks:
    tmp: Path
    loops: list[Loop] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    vgs: list[tuple[str, list[str]]] = field(default_factory=list)

    def loop(self, size_mib: int, script: str | None = None) -> Loop:
        img = self.tmp / f"disk{len(self.loops)}.img"
        with open(img, "wb") as f:
            f.truncate(size_mib << 20)
        if script is not None:
            sh("sfdisk", "--quiet", str(img), data=script)
        dev = sh("losetup", "--find", "--show", "--partscan", str(img)).strip()
        lp = Loop(img, dev)
        self.loops.append(lp)
        if script is not None:
            lp.rescan()
        return lp

    def mount(self, dev: str, where: Path) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        sh("mount", dev, str(where))
        self.mounts.append(str(where))
        return where

    def vg_name(self) -> str:
        name = f"tethertest{uuid.uuid4().hex[:8]}"
        return name

    def cleanup(self) -> None:
        for m in reversed(self.mounts):
            sh("umount", "-l", m, check=False)
        for vg, devs in self.vgs:
            sh("vgchange", "--devices", ",".join(devs), "-an", vg, check=False)
        for lp in self.loops:
            sh("losetup", "-d", lp.dev, check=False)


@pytest.fixture
def disks(tmp_path: Path) -> Iterator[Disks]:
    require("sfdisk", "wipefs", "blkid", "partx", "losetup", "mkfs.ext4")
    d = Disks(tmp_path)
    try:
        yield d
    finally:
        d.cleanup()


def ctx_for(root: Path, live: bool = False, metadata: dict | None = None,
            runner: Runner | None = None) -> ModuleContext:
    root.mkdir(parents=True, exist_ok=True)
    return ModuleContext(target=Target.at(root), runner=runner or Runner(),
                         instance=InstanceData(datasource="NoCloud", instance_id="iid-disks",
                                               metadata=metadata or {}),
                         cloud_config={}, system_config={}, live=live)


def fs_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


def blkid(dev: str) -> dict[str, str]:
    out = sh("blkid", "-p", "-o", "export", dev, check=False)
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _has_cap(bit: int) -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return False


# ext4 online growth needs CAP_SYS_RESOURCE (bit 24); sandboxes often drop it, btrfs only needs SYS_ADMIN.
CAN_RESIZE_EXT4 = _has_cap(24)
ONLINE_FS = "ext4" if CAN_RESIZE_EXT4 else "btrfs"
PART_MIB = 24 if ONLINE_FS == "ext4" else 128   # btrfs needs ~110 MiB at least


def make_fs(dev: str, fs: str | None = None) -> None:
    fs = fs or ONLINE_FS
    require(f"mkfs.{fs}")
    sh(f"mkfs.{fs}", "-q", "-F" if fs.startswith("ext") else "-f", dev)
