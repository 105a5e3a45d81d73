"""resizefs skips resize2fs when the superblock says the filesystem already spans its device."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import needs_tool
from tether.modules.resizefs import ext_fills_device


@needs_tool("mkfs.ext4")
def test_superblock_against_device_size(tmp_path: Path) -> None:
    img = tmp_path / "fs.img"
    img.write_bytes(b"")
    os.truncate(img, 8 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True, timeout=60)
    assert ext_fills_device(str(img))                # freshly made: nothing to grow
    os.truncate(img, (8 << 20) + 1000)
    assert ext_fills_device(str(img))                # less than a block more: resize2fs would do nothing
    os.truncate(img, 16 << 20)
    assert not ext_fills_device(str(img))            # the device grew: resize2fs must run
    subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "64bit", "-b", "1024", str(img), "3000"], check=True, timeout=60)
    assert not ext_fills_device(str(img))            # 64-bit block count, smaller than the device


def test_not_ext_or_unreadable_means_unsure(tmp_path: Path) -> None:
    other = tmp_path / "zeros.img"
    other.write_bytes(bytes(4096))
    assert not ext_fills_device(str(other))
    assert not ext_fills_device(str(tmp_path / "missing"))
