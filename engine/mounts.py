"""Mount a new root and its filesystems under one private directory, and always take them down again.

The directory is named after the device, under /run/tether-engine, so a run killed mid-way leaves its mounts
where the next run finds and removes them before starting over.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from tether.engine import blockdev
from tether.runner import Runner

BASE = Path("/run/tether-engine")


def work_dir(name: str) -> Path:
    return BASE / name


def is_mounted(path: Path) -> bool:
    p = os.path.realpath(path)
    return any(mp == p for _src, mp in blockdev.mounts())


def clear(runner: Runner, path: Path) -> None:
    """Unmount everything at or below ``path`` (left over from a killed run)."""
    real = os.path.realpath(path)
    below = sorted({mp for _s, mp in blockdev.mounts() if mp == real or mp.startswith(real + "/")},
                   key=len, reverse=True)
    for mp in below:
        runner.run(["umount", mp], timeout=120)


@contextlib.contextmanager
def mounted(runner: Runner, path: Path, entries: Sequence[tuple[str, str, str | None, str]]) -> Iterator[Path]:
    """Mount ``(device, mount point, fstype, options)`` entries under ``path`` (the root entry first)."""
    clear(runner, path)
    path.mkdir(parents=True, exist_ok=True)
    try:
        for device, mp, fstype, options in sorted(entries, key=lambda e: e[1].count("/") if e[1] != "/" else 0):
            where = path / mp.lstrip("/")
            where.mkdir(parents=True, exist_ok=True)
            argv = ["mount", *(["-t", fstype] if fstype else []), *(["-o", options] if options else []),
                    device, str(where)]
            runner.run(argv, timeout=120)
        yield path
    finally:
        clear(runner, path)


def release(runner: Runner, device: str) -> None:
    """Make sure ``device`` is not mounted: our own leftovers (a killed run) are unmounted, anything else is an
    error, since writing under a mounted filesystem corrupts it."""
    real = os.path.realpath(device)
    for src, mp in sorted(blockdev.mounts(), key=lambda m: len(m[1]), reverse=True):
        if not src.startswith("/dev/") or os.path.realpath(src) != real:
            continue
        if mp == str(BASE) or mp.startswith(str(BASE) + "/"):
            clear(runner, Path(mp))
        else:
            raise blockdev.BlockDeviceError(f"{device} is mounted at {mp}; refusing to write it")
