"""Idempotent file edits: each helper changes the target only when the result would differ.

Modules use these so that running a stage twice leaves the tree exactly as the first run did (same bytes, same
modes, same links, no rewritten mtimes). Files: ``Target.ensure_file``.
"""

from __future__ import annotations

import os

from tether.target import Target, replace_symlink


def ensure_symlink(target: Target, path: str, dest: str) -> bool:
    """Make ``path`` a symlink to ``dest`` (a path as seen inside the target). True when it changed."""
    host = target.path_nofollow(path)
    if os.path.islink(host) and os.readlink(host) == dest:
        return False
    os.makedirs(os.path.dirname(host), exist_ok=True)
    replace_symlink(host, dest, fsync=target.durable(path))
    return True


def ensure_absent(target: Target, path: str) -> bool:
    host = target.path_nofollow(path)
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
