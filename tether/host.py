"""What tether reads from the running machine: kernel command line, DMI, block devices by label, mounts.

``Host(sysroot=...)`` points at a fake tree in tests (``proc/cmdline``, ``sys/class/dmi/id/*``,
``dev/disk/by-label/*``); live it is ``/``. Nothing here touches the network.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tether.runner import Runner

LOG = logging.getLogger(__name__)
DMI_KEYS = ("sys_vendor", "product_name", "product_serial", "product_uuid", "chassis_asset_tag",
            "board_vendor", "bios_vendor")


@dataclass
class Host:
    sysroot: Path = Path("/")
    runner: Runner = field(default_factory=Runner)
    _cmdline: str | None = None

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
        try:
            return shlex.split(self.cmdline)
        except ValueError:
            return self.cmdline.split()

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
            LOG.debug("blkid: %s", e)
            return []
        found, dev = [], None
        for line in res.stdout.splitlines() + [""]:
            if line.startswith("DEVNAME="):
                dev = line.split("=", 1)[1]
            elif line.startswith("LABEL=") and dev and line.split("=", 1)[1].lower() in want:
                found.append(dev)
        return found

    @contextlib.contextmanager
    def mounted_readonly(self, device: str, timeout: float = 20) -> Iterator[Path]:
        """Mount ``device`` read-only in a private temporary directory; a directory is used as is."""
        if os.path.isdir(device):
            yield Path(device)
            return
        tmp = tempfile.mkdtemp(prefix="tether-mnt-")
        try:
            self.runner.run(["mount", "-o", "ro,nodev,nosuid,noexec", device, tmp], timeout=timeout)
            try:
                yield Path(tmp)
            finally:
                self.runner.run(["umount", tmp], check=False, timeout=timeout)
        finally:
            with contextlib.suppress(OSError):
                os.rmdir(tmp)


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
