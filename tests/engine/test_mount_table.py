"""The engine reads the mount table through tether.blockdev, the one parser (mountinfo, octal escapes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.conftest import LoopDisk
from tether import blockdev as kernel
from tether.engine import blockdev, boot_uefi, mounts, selinux

MOUNTINFO = """\
22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw
30 22 0:26 / /sys/firmware/efi/efivars rw,nosuid shared:2 - efivarfs efivarfs rw
31 22 8:1 / /boot/my\\040esp rw,relatime shared:3 - vfat /dev/sda1 rw
40 22 7:0 / /run/tether-engine/new rw shared:4 - xfs /dev/loop0 rw
41 40 7:1 / /run/tether-engine/new rw shared:5 - ext4 /dev/loop1 rw
"""


@pytest.fixture(name="table")
def table_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    p = tmp_path / "mountinfo"
    p.write_text(MOUNTINFO)
    monkeypatch.setattr(kernel, "MOUNTINFO", p)
    return p


def test_engine_mount_queries_read_the_one_parser(table: Path) -> None:
    assert blockdev.mounts() == [("/dev/sda2", "/"), ("efivarfs", "/sys/firmware/efi/efivars"),
                                 ("/dev/sda1", "/boot/my esp"), ("/dev/loop0", "/run/tether-engine/new"),
                                 ("/dev/loop1", "/run/tether-engine/new")]
    assert mounts.is_mounted(Path("/boot/my esp"))
    assert not mounts.is_mounted(Path("/boot"))
    assert boot_uefi._is_efivarfs(Path("/sys/firmware/efi/efivars"))
    assert not boot_uefi._is_efivarfs(Path("/boot/my esp"))
    assert selinux._fstype(Path("/run/tether-engine/new")) == "ext4"   # the topmost of two stacked mounts
    assert selinux._fstype(Path("/nowhere")) == ""


def test_an_unreadable_mount_table_means_no_mounts(table: Path) -> None:
    table.unlink()
    assert blockdev.mounts() == []
    assert selinux._fstype(Path("/")) == "" and not boot_uefi._is_efivarfs(Path("/sys/firmware/efi/efivars"))


@pytest.mark.root
def test_a_disk_with_a_mounted_partition_is_refused_until_it_is_unmounted(loopdisk: LoopDisk, tmp_path: Path) -> None:
    import os
    import subprocess

    subprocess.run(["sfdisk", "-q", loopdisk.device], input=b"label: gpt\n,,L\n", check=True)
    subprocess.run(["partx", "-u", loopdisk.device], check=False)   # as engine/partitioning.py does
    part = loopdisk.part(1)
    blockdev.wait_for_nodes([part])
    subprocess.run(["mkfs.ext4", "-q", part], check=True)
    blockdev.check_disk_free(loopdisk.device)                     # nothing mounted: free
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", part, str(mnt)], check=True)
    try:
        with pytest.raises(blockdev.BlockDeviceError, match=f"mounted filesystem at {mnt}"):
            blockdev.check_disk_free(loopdisk.device)
        assert blockdev.disks_in_use()[os.path.basename(loopdisk.device)] == str(mnt)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    blockdev.check_disk_free(loopdisk.device)
