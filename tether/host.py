"""What tether reads from the running machine: kernel command line, DMI, block devices by label, mounts.

``Host(sysroot=...)`` points at a fake tree in tests (``proc/cmdline``, ``sys/class/dmi/id/*``,
``dev/disk/by-label/*``, ``sys/class/block/*`` with image files as ``dev/NAME``); live it is ``/``. Nothing here
touches the network.

The systemd generator imports this module, so at import time it needs ``os`` only: paths are strings here, and
``pathlib``, ``logging`` and the command runner are imported when something asks for them.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing itself costs the generator ~10 ms; mypy still reads the block below

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from pathlib import Path

    from tether.runner import Runner
DMI_KEYS = ("sys_vendor", "product_name", "product_serial", "product_uuid", "chassis_asset_tag",
            "board_vendor", "bios_vendor")


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

    def __init__(self, sysroot: str | os.PathLike[str] = "/", runner: Runner | None = None) -> None:
        self.root = os.path.abspath(os.fspath(sysroot))
        self._runner = runner
        self._cmdline: str | None = None
        self._args: list[str] | None = None

    @property
    def sysroot(self) -> Path:
        from pathlib import Path
        return Path(self.root)

    @property
    def live(self) -> bool:
        return self.root == "/"

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            from tether.runner import Runner
            self._runner = Runner()
        return self._runner

    def read(self, rel: str) -> str | None:
        try:
            with open(os.path.join(self.root, rel.lstrip("/")), errors="replace") as f:
                return f.read()
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
        """Block devices whose filesystem label matches any of ``labels``, case-insensitively.

        udev's ``/dev/disk/by-label`` links first; when they name none of the labels (early boot before udev,
        containers, a host without udev) each block device's superblock is read directly (tether.fslabel).
        """
        want = {x.lower() for x in labels}
        found: list[str] = []
        d = os.path.join(self.root, "dev/disk/by-label")
        try:
            for entry in sorted(os.listdir(d)):
                if _unescape_label(entry).lower() in want:
                    link = os.path.join(d, entry)
                    found.append(os.path.realpath(link) if self.live else link)
        except OSError:
            pass
        if found:
            return found
        from tether.fslabel import devices_with_labels
        return devices_with_labels(self.root, want)

    def mounted_readonly(self, device: str, wanted: tuple[str, ...] = (),
                         timeout: float = 20) -> AbstractContextManager[Path]:
        """A read-only view of ``device``'s files in a private temporary directory (tether.seedmount)."""
        from tether.seedmount import mounted_readonly
        return mounted_readonly(self.runner, device, wanted, timeout)


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
