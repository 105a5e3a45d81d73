"""Directories in the target changed only when they differ, so re-running a module is a no-op (files:
``Target.ensure_file``)."""

from __future__ import annotations

import os
import stat

from tether.target import Target


def ensure_dir(target: Target, path: str, mode: int = 0o755, owner: tuple[int, int] | None = None) -> bool:
    """Make ``path`` a directory with ``mode`` (and ``owner``). Returns True when anything changed."""
    host = target.path(path)
    changed = False
    if not host.is_dir():
        host.mkdir(parents=True, exist_ok=True)
        changed = True
    st = host.stat()
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(host, mode)
        changed = True
    if owner is not None and (st.st_uid, st.st_gid) != owner:
        os.chown(host, owner[0], owner[1])
        changed = True
    return changed


def remove_file(target: Target, path: str) -> bool:
    return target.remove(path)
