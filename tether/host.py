"""What tether reads from the running machine: kernel command line, DMI, block devices by label, mounts.

``Host(sysroot=...)`` points at a fake tree in tests (``proc/cmdline``, ``sys/class/dmi/id/*``,
``dev/disk/by-label/*``); live it is ``/``. Nothing here touches the network.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.errors import CommandError

if TYPE_CHECKING:
    from tether.runner import Result, Runner
DMI_KEYS = ("sys_vendor", "product_name", "product_serial", "product_uuid", "chassis_asset_tag",
            "board_vendor", "bios_vendor")


def _log() -> Any:
    import logging  # not at import time: the generator imports this module
    return logging.getLogger(__name__)


def split_cmdline(text: str) -> list[str]:
    """The kernel's own splitting: whitespace separates, double quotes group (and are dropped)."""
    out: list[str] = []
    cur: list[str] = []
    quoted = has = False
    for ch in text:
        if ch == '"':
            quoted, has = not quoted, True
        elif ch.isspace() and not quoted:
            if has:
                out.append("".join(cur))
            cur, has = [], False
        else:
            cur.append(ch)
            has = True
    if has:
        out.append("".join(cur))
    return out


class Host:
    """The running machine as tether reads it (plain class: the generator imports this)."""

    def __init__(self, sysroot: Path | str = Path("/"), runner: Runner | None = None) -> None:
        self.sysroot = Path(sysroot)
        self._runner = runner
        self._cmdline: str | None = None
        self._args: list[str] | None = None

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            from tether.runner import Runner
            self._runner = Runner()
        return self._runner

    def read(self, rel: str) -> str | None:
        try:
            return (self.sysroot / rel.lstrip("/")).read_text(errors="replace")
        except OSError:
            return None

    @property
    def cmdline(self) -> str:
        if self._cmdline is None:
            self._cmdline = (self.read("proc/cmdline") or "").strip()
        return self._cmdline

    def cmdline_args(self) -> list[str]:
        if self._args is None:
            self._args = split_cmdline(self.cmdline)
        return self._args

    def cmdline_value(self, key: str) -> str | None:
        """Last ``key=value`` on the kernel command line (the kernel's own rule: last one wins)."""
        val = None
        for arg in self.cmdline_args():
            if arg.startswith(key + "="):
                val = arg[len(key) + 1:]
        return val

    def dmi(self, key: str) -> str | None:
        v = self.read(f"sys/class/dmi/id/{key}")
        return v.strip() if v is not None else None

    def dmi_all(self) -> dict[str, str]:
        return {k: v for k in DMI_KEYS if (v := self.dmi(k))}

    def devices_by_label(self, *labels: str) -> list[str]:
        """Block devices whose filesystem label matches any of ``labels``, case-insensitively."""
        want = {x.lower() for x in labels}
        found: list[str] = []
        d = self.sysroot / "dev/disk/by-label"
        try:
            for entry in sorted(os.listdir(d)):
                if _unescape_label(entry).lower() in want:
                    found.append(os.path.realpath(d / entry) if self.sysroot == Path("/") else str(d / entry))
        except OSError:
            pass
        if found or self.sysroot != Path("/"):
            return found
        return self._blkid_labels(want)

    def _blkid_labels(self, want: set[str]) -> list[str]:
        # No udev links (early boot, containers): ask blkid directly, bypassing its cache.
        try:
            res = self.runner.run(["blkid", "-c", "/dev/null", "-o", "export"], check=False, timeout=10)
        except Exception as e:
            _log().debug("blkid: %s", e)
            return []
        found, dev = [], None
        for line in res.stdout.splitlines() + [""]:
            if line.startswith("DEVNAME="):
                dev = line.split("=", 1)[1]
            elif line.startswith("LABEL=") and dev and line.split("=", 1)[1].lower() in want:
                found.append(dev)
        return found

    @contextlib.contextmanager
    def mounted_readonly(self, device: str, wanted: tuple[str, ...] = (), timeout: float = 20) -> Iterator[Path]:
        """A read-only view of ``device``'s files in a private temporary directory.

        The device is mounted read-only; when the kernel cannot mount it (no iso9660/vfat driver, as in
        containers) the ``wanted`` files are read in user space instead (ISO 9660 directly, vfat through
        mtools). A directory is used as is.
        """
        import shutil
        import tempfile
        if os.path.isdir(device):
            yield Path(device)
            return
        tmp = tempfile.mkdtemp(prefix="tether-mnt-")
        try:
            if wanted and self._read_iso(device, wanted, Path(tmp)):
                # an ISO 9660 seed is read in user space first: no mount/umount (each a process, the first one
                # maybe loading isofs, and umount waits for the unmount), which costs seconds early in a TCG boot
                yield Path(tmp)
                return
            res = self.runner.run(["mount", "-o", "ro,nodev,nosuid,noexec", device, tmp], timeout=timeout,
                                  check=False)
            if res.code == 0:
                try:
                    yield Path(tmp)
                finally:
                    self.runner.run(["umount", tmp], check=False, timeout=timeout)
                return
            if not wanted:
                raise CommandError(res.argv, res.code, res.stdout, res.stderr)
            _log().debug("mount %s failed (%s); reading it in user space", device, res.stderr.strip())
            self._extract(device, wanted, Path(tmp), res)
            yield Path(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _read_iso(self, device: str, wanted: tuple[str, ...], dest: Path) -> bool:
        from tether.isoread import IsoError, read_files
        try:
            files = read_files(device, list(wanted))
        except (IsoError, OSError, ValueError) as e:
            _log().debug("%s: not read as ISO 9660 (%s); mounting it", device, e)
            return False
        except Exception as e:  # a malformed image must not fail the seed: the kernel's reader gets its turn
            _log().debug("%s: ISO 9660 reader failed (%s: %s); mounting it", device, type(e).__name__, e)
            return False
        for rel, data in files.items():
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
        return True

    def _extract(self, device: str, wanted: tuple[str, ...], dest: Path, mount_res: Result) -> None:
        from tether.isoread import IsoError, read_files
        try:
            files: dict[str, bytes] | None = read_files(device, list(wanted))
        except IsoError:
            files = self._mtools_read(device, wanted)
        if files is None:
            raise CommandError(mount_res.argv, mount_res.code, mount_res.stdout, mount_res.stderr)
        for rel, data in files.items():
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)

    def _mtools_read(self, device: str, wanted: tuple[str, ...]) -> dict[str, bytes] | None:
        import tempfile
        probe = self.runner.run(["mdir", "-i", device, "::"], check=False, timeout=10)
        if probe.code != 0:
            return None
        out: dict[str, bytes] = {}
        with tempfile.TemporaryDirectory(prefix="tether-mtools-") as d:
            for rel in wanted:
                dest = Path(d) / rel.replace("/", "_")
                r = self.runner.run(["mcopy", "-n", "-i", device, f"::{rel}", str(dest)], check=False, timeout=10)
                if r.code == 0 and dest.exists():
                    out[rel] = dest.read_bytes()
        return out


def _unescape_label(s: str) -> str:
    # udev escapes spaces and slashes in by-label links as \x20, \x2f
    if "\\x" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        if s.startswith("\\x", i) and i + 4 <= len(s):
            try:
                out.append(chr(int(s[i + 2:i + 4], 16)))
                i += 4
                continue
            except ValueError:
                pass
        out.append(s[i])
        i += 1
    return "".join(out)
