"""The root being configured: ``/`` live, a temporary directory in tests, a new slot during staging.

Nothing in tether opens an absolute system path directly; it asks the target for it. ``path()`` resolves
symlinks *inside* the root so a link in the image can never make tether write outside it.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
from pathlib import Path

from tether.errors import TetherError

_NOT_THERE = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)  # what Path.is_symlink() reads as False

_MAX_LINKS = 40


class TargetPathError(TetherError):
    pass


_TMP_SEQ = itertools.count()


class Target:
    """A root directory (plain class, not a dataclass: the generator imports this and every ms counts)."""

    __slots__ = ("root", "_defer_sync", "_sync_pending")

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._defer_sync = False
        self._sync_pending = False

    def defer_sync(self) -> None:
        """From now on durable writes skip their own fsync until ``sync()``: a stage flushes once at its end
        instead of once per file (every fsync is a host-side flush of the VM's disk, slow under TCG). Files are
        still replaced atomically (temp file + rename)."""
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
        """Write atomically (temp file, fsync, rename), or append in place with ``append``.

        ``mode``/``owner`` of None keep those of an existing file; a new file gets 0644 and our own ids.
        """
        data = content.encode() if isinstance(content, str) else content
        # /run is tmpfs: nothing there survives a crash anyway, so no fsync (it costs ms per file at boot)
        durable = not str(p).startswith("/run/")
        host = self.path(p)
        host.parent.mkdir(parents=True, exist_ok=True)
        try:
            st: os.stat_result | None = os.lstat(host)
        except FileNotFoundError:
            st = None
        if mode is None:
            mode = stat.S_IMODE(st.st_mode) if st is not None else 0o644
        if owner is None and st is not None and (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
            owner = (st.st_uid, st.st_gid)
        if append:
            fd = os.open(host, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, mode)
            try:
                os.write(fd, data)
                if durable:
                    self._fsync(fd)
                os.fchmod(fd, mode)
                if owner is not None:
                    os.fchown(fd, owner[0], owner[1])
            finally:
                os.close(fd)
            return host
        tmp = host.parent / f".{host.name}.{os.getpid()}.{next(_TMP_SEQ)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), mode)
                if owner is not None:
                    os.fchown(f.fileno(), owner[0], owner[1])
                if durable:
                    self._fsync(f.fileno())
            os.replace(tmp, host)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return host

    def _fsync(self, fd: int) -> None:
        if self._defer_sync:
            self._sync_pending = True
        else:
            os.fsync(fd)

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
