"""Byte ranges of an image's uncompressed data file, for adaptive downloads: ``file://`` paths are read in place,
``http(s)://`` URLs on one kept-alive connection of the one HTTP client (``tether.http``), whose deadlines,
retries, size caps and TLS verification apply to every request.

Several ranges go in one request (``Range: bytes=A-B,C-D,...``, at most ``MAX_RANGES`` and ``MAX_BATCH`` bytes),
answered as ``multipart/byteranges`` (RFC 9110 14.6), as zchunk does: a 1% change scattered over a 1 GiB image is
~2,600 ranges, which one range per request would make ~2,600 round trips. A server that answers a multi-range
request with one part covering them all is fine too; one that answers it with the whole file (too large for the
size cap) is asked one range per request from then on. A server that ignores ``Range`` altogether raises
``NoRangeError``, and the caller downloads the image whole. A ``Content-Range`` naming another total size than
the index is an error: the data file on the server is not the one the index describes.
"""

from __future__ import annotations

import bisect
import os
import re
import urllib.parse
from collections.abc import Iterator
from typing import Protocol

from tether.engine.sources import ImageSourceError
from tether.errors import TetherError

MAX_RANGES = 200              # ranges in one request (~3.5 KB of Range header)
MAX_BATCH = 16 << 20          # bytes asked for in one request
PART_OVERHEAD = 256           # multipart headers per part, for the body cap
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?')

Range = tuple[int, int]       # [start, end)


class NoRangeError(TetherError):
    """The data file cannot be read by ranges (the server ignores Range requests)."""


class RangeReader(Protocol):
    requests: int

    def read_many(self, ranges: list[Range]) -> Iterator[tuple[Range, bytes]]:
        """The bytes of each range (ascending, not overlapping), in that order."""
        ...

    def close(self) -> None: ...


def batches(ranges: list[Range], max_ranges: int = MAX_RANGES, max_bytes: int = MAX_BATCH) -> Iterator[list[Range]]:
    batch: list[Range] = []
    size = 0
    for r in ranges:
        if batch and (len(batch) >= max_ranges or size + r[1] - r[0] > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(r)
        size += r[1] - r[0]
    if batch:
        yield batch


class FileRanges:
    def __init__(self, url: str, path: str, size: int) -> None:
        self.url = url
        self.requests = 0
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise ImageSourceError(f"{url}: cannot open the image's data file: {e.strerror}") from None
        have = os.fstat(self.fd).st_size
        if have != size:
            os.close(self.fd)
            raise ImageSourceError(f"{url}: the data file has {have} bytes, its chunk index says {size}")

    def read_many(self, ranges: list[Range]) -> Iterator[tuple[Range, bytes]]:
        for start, end in ranges:
            out = os.pread(self.fd, end - start, start)
            if len(out) != end - start:
                raise ImageSourceError(f"{self.url}: short read at byte {start}")
            yield (start, end), out

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
        self.multi = True
        self.requests = 0
        list(self.read_many([(0, 1)]))  # Range support, before anything is written

    def read_many(self, ranges: list[Range]) -> Iterator[tuple[Range, bytes]]:
        for batch in batches(ranges, MAX_RANGES if self.multi else 1):
            parts = self._fetch(batch)
            starts = [p[0] for p in parts]
            for start, end in batch:
                k = bisect.bisect_right(starts, start) - 1
                if k < 0 or parts[k][0] + len(parts[k][1]) < end:
                    raise ImageSourceError(f"{self.shown}: the answer to a Range request lacks bytes "
                                           f"{start}-{end - 1}")
                off = start - parts[k][0]
                yield (start, end), parts[k][1][off:off + end - start]

    def _fetch(self, batch: list[Range]) -> list[tuple[int, bytes]]:
        from tether.http import HttpError, request

        want = sum(e - s for s, e in batch)
        spec = ",".join(f"{s}-{e - 1}" for s, e in batch)
        try:
            resp = request(self.url, headers={"Range": f"bytes={spec}", "User-Agent": "tether-engine"},
                           session=self.session, max_body=want + PART_OVERHEAD * len(batch) + 1024,
                           timeout=self.timeout, retries=self.retries, deadline=self.deadline)
            self.requests += 1
        except HttpError as e:
            if e.kind != "size":
                raise ImageSourceError(str(e), e.retryable) from None
            if len(batch) > 1 and self.multi:   # a server that answers several ranges with the whole file
                self.multi = False
                return [p for r in batch for p in self._fetch([r])]
            raise NoRangeError(f"{self.shown}: the server does not support Range requests (asked for {want} "
                               "bytes, it announced more)") from None
        if resp.status != 206:
            raise NoRangeError(f"{self.shown}: the server does not support Range requests (HTTP {resp.status} "
                               "to a Range request)")
        ctype = resp.headers.get("content-type", "")
        if ctype.lower().startswith("multipart/byteranges"):
            m = _BOUNDARY.search(ctype)
            if m is None:
                raise ImageSourceError(f"{self.shown}: multipart/byteranges answer without a boundary")
            return self._parts(resp.body, m.group(1).encode())
        return [self._part(resp.headers.get("content-range", ""), resp.body)]

    def _part(self, crange: str, body: bytes) -> tuple[int, bytes]:
        m = _CONTENT_RANGE.match(crange.strip())
        if m is None or int(m.group(2)) - int(m.group(1)) + 1 != len(body):
            raise ImageSourceError(f"{self.shown}: a Range answer with Content-Range {crange[:80]!r} and "
                                   f"{len(body)} bytes")
        if m.group(3) != "*" and int(m.group(3)) != self.size:
            raise ImageSourceError(f"{self.shown}: the data file has {m.group(3)} bytes, its chunk index says "
                                   f"{self.size}")
        return int(m.group(1)), body

    def _parts(self, body: bytes, boundary: bytes) -> list[tuple[int, bytes]]:
        delim = b"--" + boundary
        parts: list[tuple[int, bytes]] = []
        pos = body.find(delim)
        while pos >= 0:
            pos += len(delim)
            if body.startswith(b"--", pos):
                return sorted(parts)
            head_end = body.find(b"\r\n\r\n", pos)
            if head_end < 0:
                break
            crange = ""
            for line in body[pos:head_end].decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-range":
                    crange = value.strip()
            m = _CONTENT_RANGE.match(crange)
            if m is None:
                break
            length = int(m.group(2)) - int(m.group(1)) + 1
            data = body[head_end + 4:head_end + 4 + length]
            parts.append(self._part(crange, data))
            pos = body.find(delim, head_end + 4 + length)
        raise ImageSourceError(f"{self.shown}: a malformed multipart/byteranges answer (after {len(parts)} parts)")

    def close(self) -> None:
        self.session.close()


def open_ranges(url: str, size: int, net: dict[str, float]) -> RangeReader:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "file":
        return FileRanges(url, urllib.parse.unquote(parsed.path), size)
    if parsed.scheme in ("http", "https"):
        return HttpRanges(url, size, net)
    raise ImageSourceError(f"{url}: unsupported URL scheme {parsed.scheme!r} for adaptive downloads")
