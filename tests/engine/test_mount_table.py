"""The engine reads the mount table through tether.blockdev, the one parser (mountinfo, octal escapes)."""

from __future__ import annotations

from pathlib import Path

import pytest

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
