"""Reading a seed drive's files: mounted read-only in a private directory, or read in user space.

ISO 9660 seeds are read in user space first (no mount/umount: each a process, the first one maybe loading isofs,
and umount waits for the unmount, which costs seconds early in a TCG boot). When the kernel cannot mount a device
(no iso9660/vfat driver, as in containers) the wanted files are read in user space instead (ISO 9660 directly,
vfat through mtools). A directory is used as is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tether import log
from tether.errors import CommandError
from tether.isoread import IsoError, read_files
from tether.runner import Result, Runner

LOG = log.get(__name__)


@contextlib.contextmanager
def mounted_readonly(runner: Runner, device: str, wanted: tuple[str, ...] = (),
                     timeout: float = 20) -> Iterator[Path]:
    """A read-only view of ``device``'s files in a private temporary directory (see the module's notes)."""
    if os.path.isdir(device):
        yield Path(device)
        return
    tmp = tempfile.mkdtemp(prefix="tether-mnt-")
    try:
        if wanted and _read_iso(device, wanted, Path(tmp)):
            yield Path(tmp)
            return
        res = runner.run(["mount", "-o", "ro,nodev,nosuid,noexec", device, tmp], timeout=timeout, check=False)
        if res.code == 0:
            try:
                yield Path(tmp)
            finally:
                runner.run(["umount", tmp], check=False, timeout=timeout)
            return
        if not wanted:
            raise CommandError(res.argv, res.code, res.stdout, res.stderr)
        LOG.debug("mount %s failed (%s); reading it in user space", device, res.stderr.strip())
        _extract(runner, device, wanted, Path(tmp), res)
        yield Path(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _store(files: dict[str, bytes], dest: Path) -> None:
    for rel, data in files.items():
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)


def _read_iso(device: str, wanted: tuple[str, ...], dest: Path) -> bool:
    try:
        files = read_files(device, list(wanted))
    except (IsoError, OSError, ValueError) as e:
        LOG.debug("%s: not read as ISO 9660 (%s); mounting it", device, e)
        return False
    except Exception as e:  # a malformed image must not fail the seed: the kernel's reader gets its turn
        LOG.debug("%s: ISO 9660 reader failed (%s: %s); mounting it", device, type(e).__name__, e)
        return False
    _store(files, dest)
    return True


def _extract(runner: Runner, device: str, wanted: tuple[str, ...], dest: Path, mount_res: Result) -> None:
    try:
        files: dict[str, bytes] | None = read_files(device, list(wanted))
    except IsoError:
        files = _mtools_read(runner, device, wanted)
    if files is None:
        raise CommandError(mount_res.argv, mount_res.code, mount_res.stdout, mount_res.stderr)
    _store(files, dest)


def _mtools_read(runner: Runner, device: str, wanted: tuple[str, ...]) -> dict[str, bytes] | None:
    probe = runner.run(["mdir", "-i", device, "::"], check=False, timeout=10)
    if probe.code != 0:
        return None
    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="tether-mtools-") as d:
        for rel in wanted:
            dest = Path(d) / rel.replace("/", "_")
            r = runner.run(["mcopy", "-n", "-i", device, f"::{rel}", str(dest)], check=False, timeout=10)
            if r.code == 0 and dest.exists():
                out[rel] = dest.read_bytes()
    return out
