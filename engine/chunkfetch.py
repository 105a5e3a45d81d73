"""Byte ranges of an image's uncompressed data file, for adaptive downloads: ``file://`` paths are read in place,
``http(s)://`` URLs with one ``Range: bytes=A-B`` request per range on one kept-alive connection of the one HTTP
client (``tether.http``): its deadlines, retries, size caps and TLS verification apply to every request.

A server that ignores ``Range`` (answers 200, or a body longer than asked) raises ``NoRangeError``: the caller
then downloads the image whole. A ``Content-Range`` naming another total size than the index is an error: the
data file on the server is not the one the index describes.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from typing import Protocol

from tether.engine.sources import ImageSourceError
from tether.errors import TetherError

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class NoRangeError(TetherError):
    """The data file cannot be read by ranges (the server ignores Range requests)."""


class RangeReader(Protocol):
    def read(self, start: int, end: int) -> bytes: ...

    def close(self) -> None: ...


class FileRanges:
    def __init__(self, url: str, path: str, size: int) -> None:
        self.url = url
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise ImageSourceError(f"{url}: cannot open the image's data file: {e.strerror}") from None
        have = os.fstat(self.fd).st_size
        if have != size:
            os.close(self.fd)
            raise ImageSourceError(f"{url}: the data file has {have} bytes, its chunk index says {size}")

    def read(self, start: int, end: int) -> bytes:
        out = os.pread(self.fd, end - start, start)
        if len(out) != end - start:
            raise ImageSourceError(f"{self.url}: short read at byte {start}")
        return out

    def close(self) -> None:
        os.close(self.fd)


class HttpRanges:
    def __init__(self, url: str, size: int, net: dict[str, float]) -> None:
        from tether.http import Session, redact_url

        self.url = url
        self.shown = redact_url(url)
        self.size = size
        self.timeout = net.get("timeout", 30.0)
        self.retries = int(net.get("retries", 5))
        self.deadline = net.get("deadline")
        self.session = Session()
        self.read(0, 1)  # Range support, before anything is written

    def read(self, start: int, end: int) -> bytes:
        from tether.http import HttpError, request

        want = end - start
        try:
            resp = request(self.url, headers={"Range": f"bytes={start}-{end - 1}", "User-Agent": "tether-engine"},
                           session=self.session, max_body=want, timeout=self.timeout, retries=self.retries,
                           deadline=self.deadline)
        except HttpError as e:
            if e.kind == "size":
                raise NoRangeError(f"{self.shown}: the server does not support Range requests (asked for "
                                   f"{want} bytes, it announced more)") from None
            raise ImageSourceError(str(e), e.retryable) from None
        if resp.status != 206:
            raise NoRangeError(f"{self.shown}: the server does not support Range requests (HTTP {resp.status} "
                               "to a Range request)")
        m = _CONTENT_RANGE.match(resp.headers.get("content-range", "").strip())
        if m is None or int(m.group(1)) != start or int(m.group(2)) != end - 1 or len(resp.body) != want:
            raise ImageSourceError(f"{self.shown}: asked for bytes {start}-{end - 1}, the server answered "
                                   f"Content-Range {resp.headers.get('content-range', '')[:80]!r} with "
                                   f"{len(resp.body)} bytes")
        if m.group(3) != "*" and int(m.group(3)) != self.size:
            raise ImageSourceError(f"{self.shown}: the data file has {m.group(3)} bytes, its chunk index says "
                                   f"{self.size}")
        return resp.body

    def close(self) -> None:
        self.session.close()


def open_ranges(url: str, size: int, net: dict[str, float]) -> RangeReader:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "file":
        return FileRanges(url, urllib.parse.unquote(parsed.path), size)
    if parsed.scheme in ("http", "https"):
        return HttpRanges(url, size, net)
    raise ImageSourceError(f"{url}: unsupported URL scheme {parsed.scheme!r} for adaptive downloads")
