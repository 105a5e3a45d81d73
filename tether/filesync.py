"""Write a file in the target only when its content, mode or owner differ, so re-running a module is a no-op."""

from __future__ import annotations

import os
import stat

from tether.target import Target


def ensure_file(target: Target, path: str, content: str | bytes, mode: int = 0o644,
                owner: tuple[int, int] | None = None) -> bool:
    """Make ``path`` hold exactly ``content`` with ``mode`` (and ``owner``). Returns True when it changed."""
    data = content.encode() if isinstance(content, str) else content
    host = target.path(path)
    try:
        st = host.lstat()
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        same_owner = owner is None or (st.st_uid, st.st_gid) == owner
        if stat.S_IMODE(st.st_mode) == mode and same_owner and host.read_bytes() == data:
            return False
    target.write(path, data, mode=mode, owner=owner)
    return True


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
