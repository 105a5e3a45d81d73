"""Growing a written filesystem image to fill its device (root only, real loop devices)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.engine.conftest import mounts_under, sh
from tether.engine import filesystems, mounts
from tether.runner import Runner

XFS_TOOLS = ("mkfs.xfs", "xfs_repair", "xfs_growfs", "xfs_db", "xfs_admin")


def xfs_blocks(dev: str) -> int:
    out = sh("xfs_db", "-r", "-c", "sb 0", "-c", "p dblocks", dev)
    return int(out.split("=")[1])


def test_xfs_image_grows_to_fill_its_device(engine_tools: None, tmp_path: Path) -> None:
    if "xfs" not in Path("/proc/filesystems").read_text() or any(shutil.which(t) is None for t in XFS_TOOLS):
        pytest.skip("needs the xfs kernel driver and xfsprogs")
    image = tmp_path / "xfs.img"
    with open(image, "wb") as f:
        f.truncate(300 << 20)   # xfsprogs 6 refuses smaller filesystems
    sh("mkfs.xfs", "-q", "-f", str(image))
    backing = tmp_path / "disk.img"
    with open(backing, "wb") as f:
        f.truncate(400 << 20)
    dev = sh("losetup", "-f", "--show", str(backing)).strip()
    try:
        sh("dd", f"if={image}", f"of={dev}", "bs=4M", "conv=sparse,notrunc", "status=none")
        assert xfs_blocks(dev) * 4096 == 300 << 20
        filesystems.check_and_grow(Runner(), dev, "xfs")
        assert xfs_blocks(dev) * 4096 == 400 << 20
        assert not mounts_under(str(mounts.work_dir("grow-")))   # the temporary mount is gone
        sh("xfs_repair", "-n", dev)
        filesystems.new_uuid(Runner(), dev, "xfs")   # a clean log after the unmount: xfs_admin can run
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True)


def test_damaged_xfs_is_not_grown(engine_tools: None, tmp_path: Path) -> None:
    if any(shutil.which(t) is None for t in XFS_TOOLS):
        pytest.skip("needs xfsprogs")
    backing = tmp_path / "disk.img"
    with open(backing, "wb") as f:
        f.truncate(64 << 20)
    dev = sh("losetup", "-f", "--show", str(backing)).strip()
    try:
        with pytest.raises(filesystems.FilesystemError, match=rf"xfs_repair -n {dev} found errors"):
            filesystems.check_and_grow(Runner(), dev, "xfs")
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True)
