"""The host configuration's storage resolved to devices: which partition is which, per A/B slot."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from tether.engine import blockdev
from tether.engine.hostconfig import FileSystem, HostConfiguration
from tether.engine.parttypes import type_guid
from tether.runner import Runner

VOLUME_A = "volume-a"
VOLUME_B = "volume-b"


def other(volume: str) -> str:
    return VOLUME_B if volume == VOLUME_A else VOLUME_A


@dataclass
class Layout:
    hc: HostConfiguration
    devices: dict[str, str] = field(default_factory=dict)     # partition id -> device node
    partuuids: dict[str, str] = field(default_factory=dict)   # partition id -> PARTUUID

    @property
    def pairs(self) -> dict[str, tuple[str, str]]:
        ab = self.hc.storage.ab_update
        return {p.id: (p.volume_a_id, p.volume_b_id) for p in ab.volume_pairs} if ab else {}

    def partition_for(self, device_id: str, volume: str) -> str:
        """Partition id backing ``device_id`` in ``volume`` (itself when it is not an A/B pair)."""
        pair = self.pairs.get(device_id)
        if pair is None:
            return device_id
        return pair[0] if volume == VOLUME_A else pair[1]

    def device(self, device_id: str, volume: str) -> str:
        return self.devices[self.partition_for(device_id, volume)]

    def is_ab(self, fs: FileSystem) -> bool:
        return fs.device_id in self.pairs

    def is_esp(self, fs: FileSystem) -> bool:
        mp = fs.mount
        if mp is not None and mp.path in ("/boot/efi", "/efi"):
            return True
        if fs.device_id is None or fs.device_id in self.pairs:
            return False
        for disk in self.hc.storage.disks:
            for p in disk.partitions:
                if p.id == fs.device_id:
                    return type_guid(p.type) == type_guid("esp")
        return False


def new_fs_type(layout: Layout, fs: FileSystem) -> str:
    if fs.type:
        return fs.type
    return "vfat" if layout.is_esp(fs) else "ext4"


def resolve_partuuid(runner: Runner, partuuid: str, hint: str | None = None) -> str | None:
    """Device node for a PARTUUID: the udev link, else the stored path if it still matches, else a blkid scan."""
    link = f"/dev/disk/by-partuuid/{partuuid}"
    if os.path.exists(link):
        return os.path.realpath(link)
    if hint and blockdev.is_block(hint):
        res = runner.run(["blkid", "-p", "-s", "PART_ENTRY_UUID", "-o", "value", hint], check=False, timeout=30)
        if res.stdout.strip().lower() == partuuid.lower():
            return hint
    res = runner.run(["blkid", "-c", "/dev/null", "-l", "-o", "device", "-t", f"PARTUUID={partuuid}"],
                     check=False, timeout=60)
    dev = res.stdout.strip()
    return dev or None
