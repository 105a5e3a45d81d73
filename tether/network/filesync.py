"""Keep a set of generated files in one directory of the target exactly as wanted: write what changed,
leave identical files alone (so a re-run with the same input touches nothing), remove our stale ones."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from tether.target import Target


@dataclass
class SyncReport:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def current(self) -> list[str]:
        return sorted(self.written + self.unchanged)

    def merge(self, other: SyncReport) -> SyncReport:
        return SyncReport(self.written + other.written, self.unchanged + other.unchanged,
                          self.removed + other.removed)


def sync_files(target: Target, directory: str, files: dict[str, str], *, owned_prefix: str,
               owned_suffixes: tuple[str, ...], mode: int = 0o644) -> SyncReport:
    """Make ``directory`` hold ``files`` (name -> content); remove other files named ``owned_prefix*suffix``."""
    report = SyncReport()
    for name in sorted(files):
        path = f"{directory}/{name}"
        data = files[name].encode()
        host = target.path(path)
        try:
            same = host.read_bytes() == data and (os.stat(host).st_mode & 0o777) == mode
        except OSError:
            same = False
        if same:
            report.unchanged.append(path)
        else:
            target.write(path, data, mode=mode)
            report.written.append(path)
    try:
        present = sorted(os.listdir(target.path(directory)))
    except OSError:
        present = []
    for name in present:
        if name.startswith(owned_prefix) and name.endswith(owned_suffixes) and name not in files:
            target.remove(f"{directory}/{name}")
            report.removed.append(f"{directory}/{name}")
    return report
