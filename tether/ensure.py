"""Idempotent file edits: each helper changes the target only when the result would differ.

Modules use these so that running a stage twice leaves the tree exactly as the first run did (same bytes, same
modes, same links, no rewritten mtimes).
"""

from __future__ import annotations

import os
import stat

from tether.target import Target


def _host_nofollow(target: Target, path: str) -> str:
    """Host path of ``path`` with its parent resolved inside the root but the last component not followed."""
    parent, _, name = path.rstrip("/").rpartition("/")
    return os.path.join(target.path(parent or "/"), name)


def ensure_file(target: Target, path: str, content: str | bytes, mode: int = 0o644,
                owner: tuple[int, int] | None = None) -> bool:
    """Write ``content`` at ``path`` unless it is already there with that mode. True when it changed."""
    data = content.encode() if isinstance(content, str) else content
    host = _host_nofollow(target, path)
    if os.path.islink(host):
        os.unlink(host)  # replace a link with the file itself rather than write through it
    else:
        try:
            st = os.stat(host)
            with open(host, "rb") as f:
                same = f.read() == data
            if same and stat.S_IMODE(st.st_mode) == mode and (owner is None or (st.st_uid, st.st_gid) == owner):
                return False
        except FileNotFoundError:
            pass
    target.write(path, data, mode=mode, owner=owner)
    return True


def ensure_symlink(target: Target, path: str, dest: str) -> bool:
    """Make ``path`` a symlink to ``dest`` (a path as seen inside the target). True when it changed."""
    host = _host_nofollow(target, path)
    if os.path.islink(host) and os.readlink(host) == dest:
        return False
    os.makedirs(os.path.dirname(host), exist_ok=True)
    tmp = f"{host}.tether-new"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(dest, tmp)
    os.replace(tmp, host)
    return True


def ensure_absent(target: Target, path: str) -> bool:
    host = _host_nofollow(target, path)
    if os.path.lexists(host):
        os.unlink(host)
        return True
    return False


def ensure_dir(target: Target, path: str, mode: int = 0o755) -> bool:
    host = target.path(path)
    if host.is_dir():
        return False
    host.mkdir(parents=True, exist_ok=True, mode=mode)
    return True
