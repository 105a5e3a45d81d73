"""Snapshots of a target root, to assert exactly which files a module wrote (and that a re-run writes none)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

Entry = tuple[str, int, bytes]   # kind, mode, content (or link target)


def snapshot(root: Path) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = "/" + str(p.relative_to(root))
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, os.readlink(p).encode())
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), b"")
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes())
    return out


def diff(before: dict[str, Entry], after: dict[str, Entry]) -> dict[str, str]:
    """{path: "added" | "removed" | "changed"} for every difference."""
    out = {}
    for k in sorted(set(before) | set(after)):
        if k not in after:
            out[k] = "removed"
        elif k not in before:
            out[k] = "added"
        elif before[k] != after[k]:
            out[k] = "changed"
    return out
