"""``#include`` / ``#include-once`` lists and the include-once cache.

An include list has one URL per line; ``#`` lines are comments, except that a line starting ``#include-once``
switches the following URLs to fetch-once and ``#include`` switches back (a URL may follow on the same line).
Include-once content is fetched on the first boot of an instance and re-read from the cache after that, so a
one-time URL (a pre-signed link, a token) keeps working on reboots.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol


def parse(text: str, *, once: bool = False) -> list[tuple[str, bool]]:
    """[(url, include_once)] in order."""
    out: list[tuple[str, bool]] = []
    for raw in text.splitlines():
        line = raw.strip()
        low = line.lower()
        if low.startswith("#include-once"):
            once = True
            line = line[len("#include-once"):].strip()
        elif low.startswith("#include"):
            once = False
            line = line[len("#include"):].strip()
        if not line or line.startswith("#"):
            continue
        out.append((line, once))
    return out


def redact_url(url: str) -> str:
    """The URL without user:password and query string, which often carry tokens."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        s = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    host = s.hostname or ""
    if s.port:
        host = f"{host}:{s.port}"
    tail = "?…" if s.query else ""
    return urlunsplit((s.scheme, host, s.path, "", "")) + tail


class IncludeCache(Protocol):
    """What the include-once cache needs: a plain dict works (one process), DirCache persists."""

    def get(self, url: str, default: None = None) -> bytes | None: ...

    def __setitem__(self, url: str, content: bytes) -> None: ...


class DirCache:
    """Include-once cache in a directory (0700), one 0600 file per URL named by its SHA-256.

    The caller passes a directory inside the target root (e.g. the instance directory's ``urlcache``), so a new
    instance starts with an empty cache."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)

    def _file(self, url: str) -> Path:
        import hashlib

        return self.dir / hashlib.sha256(url.encode()).hexdigest()

    def get(self, url: str, default: None = None) -> bytes | None:
        try:
            return self._file(url).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return default

    def __setitem__(self, url: str, content: bytes) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        final = self._file(url)
        tmp = final.with_name(f".{final.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
