"""The one way tether makes a file durable: ``write_atomic`` (temporary file, fsync, rename, directory fsync).

Everything that replaces a file goes through here: ``Target.write``/``Target.ensure_file`` in the root being
configured, the engine's boot partition files (boot entries, grubenv, loader.conf), detection records, caches.
tests/core/test_lint.py fails when another file renames a temporary file into place itself.

Only ``os`` at import: the systemd generator writes its detection record with it.
"""

from __future__ import annotations

import itertools
import os
import stat

TYPE_CHECKING = False  # the generator imports this module; typing costs it ~10 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO

_TMP_SEQ = itertools.count()


def write_atomic(path: str | os.PathLike[str], data: bytes | memoryview | BinaryIO, mode: int | None = None,
                 owner: tuple[int, int] | None = None, *, fsync: bool = True, strict_mode: bool = True) -> None:
    """The one way tether replaces a file: a temporary file beside it, written, fsynced, renamed over ``path``,
    then the directory fsynced, so after a crash ``path`` holds the old file or the whole new one.

    ``data`` is the content, or a binary file to stream it from (a kernel, an initrd). ``mode``/``owner`` of None
    keep those of an existing file; a new file gets 0644 and our own ids. ``fsync=False`` leaves both fsyncs to
    the caller (``Target.defer_sync``: one ``sync()`` at the end of a stage) or skips them where nothing needs
    to survive a crash (tmpfs, a cache rebuilt when missing). ``strict_mode=False`` ignores a filesystem that
    has no modes or owners (vfat boot partitions). ``path`` itself is never followed: a link there is replaced.
    """
    host = os.fspath(path)
    try:
        st: os.stat_result | None = os.lstat(host)
    except FileNotFoundError:
        st = None
    if mode is None:
        mode = stat.S_IMODE(st.st_mode) if st is not None and stat.S_ISREG(st.st_mode) else 0o644
    if owner is None and st is not None and (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
        owner = (st.st_uid, st.st_gid)

    def fill(tmp: str) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, bytes | bytearray | memoryview):
                f.write(data)
            else:
                import shutil
                shutil.copyfileobj(data, f, 1 << 20)
            f.flush()
            try:
                os.fchmod(f.fileno(), mode)
                if owner is not None:
                    os.fchown(f.fileno(), owner[0], owner[1])
            except OSError:
                if strict_mode:
                    raise
            if fsync:
                os.fsync(f.fileno())

    _put_in_place(host, fill, fsync)


def replace_symlink(path: str | os.PathLike[str], dest: str, *, fsync: bool = True) -> None:
    """Make ``path`` a symlink to ``dest`` in one step (a new link renamed over whatever is there)."""
    _put_in_place(os.fspath(path), lambda tmp: os.symlink(dest, tmp), fsync)


def _put_in_place(host: str, make: Callable[[str], None], fsync: bool) -> None:
    """``make`` a temporary file beside ``host`` and rename it over ``host``; on any failure the temporary file
    is removed and ``host`` is as it was."""
    parent, name = os.path.split(host)
    tmp = os.path.join(parent, f".{name}.{os.getpid()}.{next(_TMP_SEQ)}.tmp")
    try:
        try:
            make(tmp)
        except FileExistsError:
            # left by a process that had our pid when the power went (early-boot pids repeat from boot to boot)
            os.unlink(tmp)
            make(tmp)
        os.replace(tmp, host)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if fsync:
        fsync_dir(parent or ".")


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename in ``path`` durable. Best effort: some filesystems (vfat through some drivers) refuse to
    fsync a directory, and the rename has happened either way."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
