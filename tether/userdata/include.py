"""``#include`` / ``#include-once`` lists and the include-once cache.

An include list has one URL per line; ``#`` lines are comments, except that a line starting ``#include-once``
switches the following URLs to fetch-once and ``#include`` switches back (a URL may follow on the same line).
Include-once content is fetched on the first boot of an instance and re-read from the cache after that, so a
one-time URL (a pre-signed link, a token) keeps working on reboots.

Fetching (``Fetcher``) goes through the one HTTP client, bounded by the system config's ``include`` section:
``timeout`` (10 s per try for the headers, as much again for the body), ``retries`` (2), ``max_wait`` (60 s for
all the includes of one user-data together) and ``max_bytes`` (16 MiB per included document).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from tether.errors import TetherError

DEFAULTS = {"timeout": 10.0, "retries": 2, "max_wait": 60.0, "max_bytes": 16 * 1024 * 1024}


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
    """The URL without user:password and query string, which often carry tokens (the HTTP client's rule)."""
    from tether.http.urls import redact_url as redact

    return redact(url)


class Fetcher:
    """``#include`` fetching with the bounds of the system config's ``include`` section (module docstring)."""

    def __init__(self, settings: object = None) -> None:
        """``settings``: the system config's ``include`` section. A bad value is reported in ``problems`` and
        its default used: a typo in a bound must not stop the user-data."""
        self.problems: list[str] = []
        given: Mapping[str, Any] = {}
        if isinstance(settings, Mapping):
            given = settings
        elif settings is not None:
            self.problems.append(f"system config include: expected a mapping, got {type(settings).__name__}; "
                                 "the default bounds are used")
        self.limits: dict[str, float] = {}
        for key, default in DEFAULTS.items():
            v = given.get(key, default)
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                self.problems.append(f"system config include.{key}: expected a non-negative number, got "
                                     f"{type(v).__name__}; using {default}")
                v = default
            self.limits[key] = float(v)
        self.deadline = time.monotonic() + self.limits["max_wait"]

    def __call__(self, url: str) -> bytes:
        from tether.http import HttpError, request

        try:
            return request(url, timeout=self.limits["timeout"], retries=int(self.limits["retries"]),
                           deadline=self.deadline, max_body=int(self.limits["max_bytes"])).body
        except HttpError as e:
            # the caller names the (redacted) URL already; keep what went wrong
            raise FetchError(str(e).removeprefix(f"{e.url}: ")) from None


class FetchError(TetherError):
    """An include that could not be fetched; the message leaves the URL to the caller."""


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
        from tether.target import write_atomic

        write_atomic(self._file(url), content, 0o600)
