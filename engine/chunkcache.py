"""The local chunk cache of adaptive downloads: chunks fetched from an image server, one file per chunk named by
its SHA-256, so a staging killed half-way fetches only what it had not fetched yet when it runs again.

The directory is 0700 and each file 0600 (chunks are pieces of an OS image, which may hold secrets). Files are
written to a temporary name and renamed, so a kill never leaves a torn chunk under a digest's name; every chunk
read back is verified by the caller anyway. The cache is bounded: ``trim`` removes the oldest chunks once the
total passes ``max_bytes``.
"""

from __future__ import annotations

import os
from pathlib import Path

from tether import log
from tether.target import write_atomic

LOG = log.get(__name__)

DEFAULT_DIR = "/var/cache/tether/chunks"
DEFAULT_MAX_BYTES = 256 << 20


class ChunkCache:
    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self._pid = os.getpid()
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.dir, 0o700)
            self.usable = True
        except OSError as e:  # a read-only root: adaptive downloads still work, a rerun just fetches again
            LOG.warning("chunk cache %s: unusable (%s); fetched chunks are not kept", self.dir, e.strerror)
            self.usable = False

    def _path(self, digest: bytes) -> Path:
        return self.dir / digest.hex()

    def get(self, digest: bytes) -> bytes | None:
        if not self.usable:
            return None
        try:
            return self._path(digest).read_bytes()
        except OSError:
            return None

    def put(self, digest: bytes, data: bytes | memoryview) -> None:
        if not self.usable:
            return
        try:  # a cache: no fsync, a torn or missing chunk is fetched again
            write_atomic(self._path(digest), data, 0o600, fsync=False)
        except OSError as e:  # a full disk costs the cache, not the staging
            LOG.warning("chunk cache %s: cannot store a chunk: %s", self.dir, e.strerror)

    def trim(self) -> int:
        """Remove the oldest chunks (and stray temporary files) until the cache fits; returns the bytes removed."""
        if not self.usable:
            return 0
        entries = []
        total = 0
        for e in os.scandir(self.dir):
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if e.name.startswith("."):
                os.unlink(e.path)
                continue
            entries.append((st.st_mtime, st.st_size, e.path))
            total += st.st_size
        removed = 0
        entries.sort()
        for _mtime, size, path in entries:
            if total - removed <= self.max_bytes:
                break
            os.unlink(path)
            removed += size
        return removed
