"""Create a disk's GPT partition table from the host configuration with sfdisk."""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass

from tether.engine import blockdev
from tether.engine.hostconfig import Disk
from tether.engine.parttypes import type_guid
from tether.engine.sizes import parse_size
from tether.errors import TetherError
from tether.runner import Runner

ALIGN = 1 << 20  # first partition at 1 MiB, every partition aligned to 1 MiB


class LayoutFitError(TetherError):
    """The partitions the host configuration asks for do not fit the disk."""


@dataclass(frozen=True)
class PartitionResult:
    id: str
    number: int
    device: str
    partuuid: str
    size: int


def sfdisk_script(disk: Disk, disk_size: int) -> tuple[str, list[tuple[str, str]]]:
    """The sfdisk input and the (id, partuuid) it assigns, in order. Fixed UUIDs are kept; others made here,
    so the result is known without reading the table back."""
    lines = ["label: gpt", "unit: sectors", "sector-size: 512", f"first-lba: {ALIGN // 512}"]
    assigned = []
    offset = ALIGN
    for part in disk.partitions:
        puuid = (part.uuid or str(uuidlib.uuid4())).lower()
        fields = [f"start={offset // 512}"]
        if part.size != "grow":
            size = parse_size(part.size)
            size = (size + ALIGN - 1) // ALIGN * ALIGN
            fields.append(f"size={size // 512}")
            offset += size
        fields += [f"type={type_guid(part.type)}", f"uuid={puuid}", f'name="{part.label or part.id}"']
        lines.append(", ".join(fields))
        assigned.append((part.id, puuid))
    if offset + ALIGN > disk_size:
        raise LayoutFitError(f"storage.disks[{disk.id}]: the partitions need {_mib(offset + ALIGN)} (with 1 MiB "
                             f"alignment and the backup GPT) but {disk.device} has {_mib(disk_size)}")
    return "\n".join(lines) + "\n", assigned


def planned_sizes(disk: Disk, disk_size: int) -> dict[str, int]:
    """Partition id -> size in bytes the partitioning will give it (a growing partition: up to the backup GPT).
    Raises LayoutFitError when the layout does not fit: checked before anything is written."""
    sfdisk_script(disk, disk_size)
    out: dict[str, int] = {}
    offset = ALIGN
    for part in disk.partitions:
        if part.size == "grow":
            out[part.id] = (disk_size - ALIGN - offset) // ALIGN * ALIGN
        else:
            size = (parse_size(part.size) + ALIGN - 1) // ALIGN * ALIGN
            out[part.id] = size
            offset += size
    return out


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def partition(runner: Runner, disk: Disk, device: str) -> list[PartitionResult]:
    size = blockdev.size_of(device)
    script, assigned = sfdisk_script(disk, size)
    # --wipe always: old filesystem signatures at the start of the disk must not survive a reinstall
    runner.run(["sfdisk", "--wipe", "always", "--wipe-partitions", "always", "-q", device], data=script,
               timeout=120)
    runner.run(["partx", "-u", device], check=False, timeout=60)
    nodes = [blockdev.partition_node(device, i + 1) for i in range(len(assigned))]
    blockdev.wait_for_nodes(nodes)
    out = []
    for i, ((pid, puuid), node) in enumerate(zip(assigned, nodes, strict=True)):
        out.append(PartitionResult(pid, i + 1, node, puuid, blockdev.size_of(node)))
    return out
