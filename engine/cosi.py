"""Composable OS Image (COSI) 1.0-1.2: a plain tar file holding ``metadata.json`` and zstd-compressed images.

The specification recommends (SHOULD) that ``metadata.json`` come first, and then the file is read in one pass as a
stream (an HTTP download is never buffered): ``cosi-marker`` (1.2), ``metadata.json``, the images. When images come
first, a source that can seek (a file, or an HTTP server honouring Range requests) has its tar headers walked to find
``metadata.json``; the images then stream from their offsets. ``metadata.json`` is read per revision into typed
documents (``cosi_metadata``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, cast

from tether import log
from tether.engine.cosi_metadata import CosiError, parse_metadata

# the metadata model, where the readers of COSI files have always imported it from
from tether.engine.cosi_metadata import CosiMetadata as CosiMetadata
from tether.engine.cosi_metadata import validate_metadata as validate_metadata
from tether.engine.formats import Reader
from tether.engine.sources import RangeUnsupportedError

LOG = log.get(__name__)
MAX_METADATA = 16 << 20


# --- tar: read in order, or walked header by header when the source can seek ------------------------------------

SEEK_MIN = 64 << 10  # gaps shorter than this are read through: cheaper than a new HTTP request
_DATA_KINDS = (b"0", b"\0", b"7")


class SeekableReader(Protocol):
    def readinto(self, buf: memoryview) -> int: ...

    def seek(self, offset: int) -> None: ...


@dataclass
class _Member:
    name: str
    size: int
    kind: bytes
    start: int  # offset of its first header block, GNU long-name and pax headers included


class EntryReader:
    """The bytes of one tar member; reading past them is impossible, leaving them unread is fine."""

    def __init__(self, tar: TarStream, size: int) -> None:
        self._tar = tar
        self.remaining = size

    def readinto(self, buf: memoryview) -> int:
        if self.remaining <= 0:
            return 0
        want = min(len(buf), self.remaining)
        n = self._tar.read(buf[:want])
        if not n:
            raise CosiError("the COSI file ends inside a member (truncated download?)")
        self.remaining -= n
        return n


class TarStream:
    """A tar file read in order from ``src``. Once ``use_seeks`` is called, data that is not read (other members,
    gaps of ``SEEK_MIN`` bytes or more) is seeked over instead, lazily: one seek before the next read."""

    def __init__(self, src: Reader) -> None:
        self.src = src
        self.pos = 0  # absolute offset in the file of the next byte read
        self.headers = 0  # 512-byte header blocks read
        self._seeker: SeekableReader | None = None
        self._seek_pending = False
        self._current: EntryReader | None = None
        self._pad = 0

    def can_seek(self) -> bool:
        check = getattr(self.src, "seekable", None)
        if callable(check):
            return bool(check())
        return callable(getattr(self.src, "seek", None))

    def use_seeks(self) -> None:
        self._seeker = cast(SeekableReader, self.src)

    def seek_to(self, offset: int) -> None:
        """Restart reading headers at ``offset`` (the start of a member's first header block)."""
        assert self._seeker is not None
        self._current = None
        self._pad = 0
        self.pos = offset
        self._seek_pending = True

    def read(self, buf: memoryview) -> int:
        if self._seek_pending:
            assert self._seeker is not None
            self._seeker.seek(self.pos)
            self._seek_pending = False
        n = self.src.readinto(buf)
        self.pos += n
        return n

    def read_exact(self, n: int) -> bytes:
        buf = bytearray(n)
        got = 0
        while got < n:
            k = self.read(memoryview(buf)[got:])
            if not k:
                raise CosiError("the COSI file is truncated (tar header cut short)")
            got += k
        return bytes(buf)

    def _skip(self, n: int) -> None:
        if n <= 0:
            return
        if self._seeker is not None and (self._seek_pending or n >= SEEK_MIN):
            self.pos += n
            self._seek_pending = True
            return
        scratch = bytearray(min(n, 1 << 20))
        while n > 0:
            k = self.read(memoryview(scratch)[:min(n, len(scratch))])
            if not k:
                raise CosiError("the COSI file is truncated")
            n -= k

    def _finish_current(self) -> None:
        if self._current is not None:
            self._skip(self._current.remaining)
            self._current = None
        if self._pad:
            self._skip(self._pad)
            self._pad = 0

    def members(self) -> Iterator[tuple[_Member, EntryReader]]:
        long_name: str | None = None
        pax: dict[str, str] = {}
        start: int | None = None
        while True:
            self._finish_current()
            if start is None:
                start = self.pos
            hdr = self.read_exact(512)
            self.headers += 1
            if hdr == bytes(512):
                return  # end-of-archive; anything after it is not tar (the spec allows trailing data)
            if not _checksum_ok(hdr):
                raise CosiError(f"not a COSI file: bad tar header checksum at byte {self.pos - 512}")
            name = hdr[0:100].split(b"\0", 1)[0].decode("utf-8", "replace")
            prefix = hdr[345:500].split(b"\0", 1)[0].decode("utf-8", "replace") if hdr[257:262] == b"ustar" else ""
            if prefix:
                name = f"{prefix}/{name}"
            size = _tar_number(hdr[124:136])
            kind = hdr[156:157]
            pad = (-size) % 512
            if kind in (b"L", b"x", b"g"):
                data = self.read_exact(size)
                self._skip(pad)
                if kind == b"L":
                    long_name = data.split(b"\0", 1)[0].decode("utf-8", "replace")
                elif kind == b"x":
                    pax = _parse_pax(data)
                continue
            if long_name is not None:
                name, long_name = long_name, None
            if "path" in pax:
                name = pax["path"]
            if "size" in pax:
                size = int(pax["size"])
                pad = (-size) % 512
            pax = {}
            if name.startswith("./"):
                name = name[2:]
            self._current = EntryReader(self, size if kind in _DATA_KINDS else 0)
            self._pad = pad if kind in _DATA_KINDS else 0
            member = _Member(name, size, kind, start)
            start = None
            yield member, self._current


def _checksum_ok(block: bytes) -> bool:
    try:
        want = int(block[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    return want == sum(block[:148]) + 8 * 32 + sum(block[156:])


def _tar_number(field: bytes) -> int:
    if field[0] & 0x80:  # GNU base-256 for members over 8 GiB
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _parse_pax(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        sp = data.index(b" ", pos)
        length = int(data[pos:sp])
        rec = data[sp + 1:pos + length - 1].decode("utf-8", "replace")
        k, _, v = rec.partition("=")
        out[k] = v
        pos += length
    return out


class CosiStream:
    """Opens a COSI file: finds ``metadata.json`` and keeps its raw bytes (for the pinned hash).

    When ``metadata.json`` comes first (as the specification recommends) everything is one pass over a stream.
    When images come first, the source must seek: the tar headers are walked (the images' data is seeked over,
    never read) up to ``metadata.json``, then reading restarts at the first image, which streams as usual.
    """

    def __init__(self, src: Reader) -> None:
        self.tar = TarStream(src)
        self._iter = self.tar.members()
        self.metadata_bytes = b""
        self.walked = False  # metadata.json came after an image: its headers were walked
        seen_marker = False
        resume = 0
        try:
            for member, reader in self._iter:
                if member.name == "cosi-marker":
                    seen_marker = True
                    continue
                if member.name == "metadata.json":
                    if member.size > MAX_METADATA:
                        raise CosiError(f"metadata.json is {member.size} bytes; over the {MAX_METADATA} limit")
                    self.metadata_bytes = self.tar.read_exact(member.size)
                    reader.remaining = 0
                    break
                if member.name.startswith("images/") and not self.walked:
                    if not self.tar.can_seek():
                        raise CosiError("metadata.json is not at the start of the COSI file and this source cannot "
                                        "seek: metadata.json must come before the images to be read as a stream")
                    self.tar.use_seeks()
                    self.walked = True
                    resume = member.start
            else:
                raise CosiError("not a COSI file: no metadata.json")
        except RangeUnsupportedError as e:
            raise CosiError(f"{e.url}: this server does not support Range requests, and metadata.json is not at the "
                            "start of the COSI file (it follows the images); serve the file from a server that "
                            "honours Range requests, or rebuild it with metadata.json first") from None
        if self.walked:
            LOG.info("metadata.json follows the images in the COSI file: found it at byte %d after %d tar "
                     "headers; streaming the images from byte %d", self.tar.pos, self.tar.headers, resume)
            self.tar.seek_to(resume)
            self._iter = self.tar.members()
        self.metadata = parse_metadata(self.metadata_bytes)
        if self.metadata.version >= "1.2" and not seen_marker:
            raise CosiError("COSI 1.2 requires a cosi-marker file before metadata.json")

    def images(self) -> Iterator[tuple[str, EntryReader]]:
        for member, reader in self._iter:
            if member.name.startswith("images/") and member.kind in _DATA_KINDS:
                yield member.name, reader
