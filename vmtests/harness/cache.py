"""The image cache: a directory outside the repository, artifacts keyed by a hash of their recipe, file-locked
so concurrent sessions (pytest-xdist workers, the demo, the benchmark) build each artifact once."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

DEFAULT_CACHE = "/var/cache/tether-vmtests"
LOCK_TIMEOUT = 1800.0  # a cold build by another process takes ~2 min; never wait forever


def cache_dir() -> Path:
    path = Path(os.environ.get("TETHER_VM_CACHE", DEFAULT_CACHE))
    path.mkdir(parents=True, exist_ok=True)
    return path


def recipe_hash(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:16]


def file_hash(*paths: Path) -> str:
    return recipe_hash(*(p.read_bytes() for p in sorted(paths)))


@contextlib.contextmanager
def locked(name: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold an exclusive flock on ``<cache>/<name>.lock``; raise TimeoutError after ``timeout`` seconds."""
    lock_path = cache_dir() / f"{name}.lock"
    with open(lock_path, "a") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{lock_path}: still locked after {timeout:.0f} s")
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def publish(tmp: Path, final: Path) -> Path:
    """Atomically move a finished artifact into place, so a crash never leaves a half-built cache entry."""
    os.replace(tmp, final)
    return final


def prune(keep: Path, pattern: str) -> None:
    """Remove older cache entries of one kind (``pattern`` globbed in the cache) once ``keep`` replaced them."""
    import shutil

    for old in cache_dir().glob(pattern):
        if old != keep and not old.name.endswith(".lock"):
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
