"""The root being configured: ``/`` live, a temporary directory in tests, a new slot during staging.

Nothing in tether opens an absolute system path directly; it asks the target for it. ``path()`` resolves
symlinks *inside* the root so a link in the image can never make tether write outside it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from tether.atomicfile import fsync_dir, replace_symlink, write_atomic
from tether.errors import TetherError

__all__ = ["FOLLOW_LINK", "REPLACE_LINK", "Target", "TargetPathError", "fsync_dir", "replace_symlink", "write_atomic"]

_NOT_THERE = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)  # what Path.is_symlink() reads as False

_MAX_LINKS = 40


class TargetPathError(TetherError):
    pass



# What ``Target.ensure_file`` does when the file's own name is a symlink. Either way nothing outside the root is
# written: ``Target.path`` resolves every link inside the root.
REPLACE_LINK = "replace"  # the link is replaced by the file (its destination is left alone)
FOLLOW_LINK = "follow"    # the file the link names, resolved inside the root, is written (/etc/hostname -> ...)


class Target:
    """A root directory (plain class, not a dataclass: the generator imports this and every ms counts)."""

    __slots__ = ("root", "_defer_sync", "_sync_pending")

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._defer_sync = False
        self._sync_pending = False

    def defer_sync(self) -> None:
        """From now on durable writes skip their own fsyncs (the file's and its directory's) until ``sync()``: a
        stage flushes once at its end instead of twice per file (every fsync is a host-side flush of the VM's
        disk, slow under TCG). Files are still replaced atomically (temp file + rename)."""
        self._defer_sync = True

    def sync(self) -> None:
        """Flush what was written since ``defer_sync()`` (one ``sync()`` for all of it)."""
        if self._sync_pending:
            os.sync()
            self._sync_pending = False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Target) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    def __repr__(self) -> str:
        return f"Target(root={str(self.root)!r})"

    @classmethod
    def at(cls, root: str | os.PathLike[str]) -> Target:
        return cls(Path(os.path.abspath(root)))

    @property
    def live(self) -> bool:
        return str(self.root) == "/"

    def path(self, p: str | os.PathLike[str]) -> Path:
        """Host path of ``p`` (absolute within the target), resolving links inside the root.

        Called hundreds of times per boot, so plain strings and ``lstat`` (no Path per component); below a
        component that does not exist nothing can be a link, so the rest is joined without more system calls."""
        root = str(self.root)
        parts = [x for x in os.fspath(p).split("/") if x and x != "."]
        links = 0
        out: list[str] = []
        missing = False
        while parts:
            name = parts.pop(0)
            if name == "..":
                if out:
                    out.pop()
                missing = False
                continue
            if not missing:
                candidate = os.path.join(root, *out, name)
                try:
                    mode = os.lstat(candidate).st_mode
                except OSError as e:
                    if e.errno not in _NOT_THERE:
                        raise
                    missing = True
                else:
                    if stat.S_ISLNK(mode):
                        links += 1
                        if links > _MAX_LINKS:
                            raise TargetPathError(f"too many symlinks resolving {p} in {self.root}")
                        dest = os.readlink(candidate)
                        if dest.startswith("/"):
                            out = []
                        parts = [x for x in dest.split("/") if x and x != "."] + parts
                        continue
            out.append(name)
        return Path(os.path.join(root, *out))

    def path_nofollow(self, p: str) -> Path:
        """Like path(), but the last component is not followed when it is a symlink."""
        parent, _, name = str(p).rstrip("/").rpartition("/")
        return self.path(parent or "/") / name

    def exists(self, p: str) -> bool:
        return self.path(p).exists()

    def read_text(self, p: str, default: str | None = None) -> str:
        try:
            return self.path(p).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            if default is None:
                raise
            return default

    def read_bytes(self, p: str) -> bytes:
        return self.path(p).read_bytes()

    def makedirs(self, p: str, mode: int = 0o755) -> Path:
        host = self.path(p)
        host.mkdir(parents=True, exist_ok=True, mode=mode)
        return host

    def write(
        self,
        p: str,
        content: str | bytes,
        mode: int | None = None,
        owner: tuple[int, int] | None = None,
        append: bool = False,
    ) -> Path:
        """Write atomically (``write_atomic``: temp file, fsync, rename, directory fsync), or append in place with
        ``append``. The path is resolved inside the root, so a link in the target is followed within it.

        ``mode``/``owner`` of None keep those of an existing file; a new file gets 0644 and our own ids.
        """
        data = content.encode() if isinstance(content, str) else content
        durable = self.durable(p)
        host = self.path(p)
        host.parent.mkdir(parents=True, exist_ok=True)
        if not append:
            write_atomic(host, data, mode, owner, fsync=durable)
            return host
        try:
            st: os.stat_result | None = os.lstat(host)
        except FileNotFoundError:
            st = None
        if mode is None:
            mode = stat.S_IMODE(st.st_mode) if st is not None else 0o644
        if owner is None and st is not None and (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
            owner = (st.st_uid, st.st_gid)
        fd = os.open(host, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, mode)
        try:
            os.write(fd, data)
            if durable:
                os.fsync(fd)
            os.fchmod(fd, mode)
            if owner is not None:
                os.fchown(fd, owner[0], owner[1])
        finally:
            os.close(fd)
        return host

    def ensure_file(self, p: str, content: str | bytes, mode: int = 0o644, owner: tuple[int, int] | None = None,
                    *, links: str) -> bool:
        """Make ``p`` hold exactly ``content`` with ``mode`` (and ``owner``), writing only when something differs,
        so a re-run leaves the file, its mtime included, alone. True when it changed.

        ``links`` says what a symlink at ``p`` gets: ``REPLACE_LINK`` or ``FOLLOW_LINK`` (no default: each
        caller decides, e.g. a path a user controls, like ``~/.ssh/authorized_keys``, is never followed)."""
        if links not in (REPLACE_LINK, FOLLOW_LINK):
            raise ValueError(f"ensure_file({p!r}): links must be {REPLACE_LINK!r} or {FOLLOW_LINK!r}, not {links!r}")
        data = content.encode() if isinstance(content, str) else content
        host = self.path(p) if links == FOLLOW_LINK else self.path_nofollow(p)
        try:
            st: os.stat_result | None = os.lstat(host)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISLNK(st.st_mode):
            os.unlink(host)  # REPLACE_LINK: the file itself, never written through
        elif st is not None and stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == mode:
            if (owner is None or (st.st_uid, st.st_gid) == owner) and host.read_bytes() == data:
                return False
        host.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(host, data, mode, owner, fsync=self.durable(p))
        return True

    def durable(self, p: str) -> bool:
        """Whether a write to ``p`` fsyncs now. No for ``/run`` (tmpfs: nothing there survives a crash, and an
        fsync costs ms per file at boot), and no under ``defer_sync``, where the stage's one ``sync()`` does it."""
        if str(p).startswith("/run/"):
            return False
        if self._defer_sync:
            self._sync_pending = True
            return False
        return True

    def remove(self, p: str) -> bool:
        try:
            self.path(p).unlink()
            return True
        except FileNotFoundError:
            return False

    def has_system(self) -> bool:
        """True when commands can run chrooted in this root (it holds a shell and a loader)."""
        if self.live:
            return True
        sh = self.path("/bin/sh")
        return sh.exists() and os.access(sh, os.X_OK) and os.geteuid() == 0
