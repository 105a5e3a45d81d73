"""Image formats: raw, zstd, xz or gzip compressed raw (told apart by magic bytes), and COSI (a tar file).

Every reader here has ``readinto(buf) -> int`` and keeps memory bounded: decompressors are fed small input
blocks, and zstd refuses frames whose window exceeds ``MAX_ZSTD_WINDOW`` rather than allocating it.
"""

from __future__ import annotations

import hashlib
import lzma
import zlib
from typing import Any, Protocol

from tether.engine.zstdframes import FrameTracker
from tether.errors import TetherError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ\x00"
GZIP_MAGIC = b"\x1f\x8b"
MAX_ZSTD_WINDOW = 1 << 27  # 128 MiB is zstd's own default limit; COSI says which window it used
INPUT_BLOCK = 1 << 20


class ImageFormatError(TetherError):
    pass


class Reader(Protocol):
    def readinto(self, buf: memoryview) -> int: ...


class PeekReader:
    """Lets the format be sniffed from the first bytes without losing them."""

    def __init__(self, inner: Reader, head: int = 512) -> None:
        self.inner = inner
        b = bytearray(head)
        n = 0
        while n < head:
            got = inner.readinto(memoryview(b)[n:])
            if not got:
                break
            n += got
        self.head = bytes(b[:n])
        self._pos = 0

    def readinto(self, buf: memoryview) -> int:
        if self._pos < len(self.head):
            n = min(len(buf), len(self.head) - self._pos)
            buf[:n] = self.head[self._pos:self._pos + n]
            self._pos += n
            return n
        return self.inner.readinto(buf)

    def seekable(self) -> bool:
        return callable(getattr(self.inner, "seek", None))

    def seek(self, offset: int) -> None:
        """Seek the wrapped source to an absolute offset (COSI tar walks); the sniffed bytes are not replayed."""
        seek = getattr(self.inner, "seek", None)
        if seek is None:
            raise ImageFormatError("this image source cannot seek")
        self._pos = len(self.head)
        seek(offset)


class HashingReader:
    """Hashes exactly the bytes read through it (the compressed bytes, when it wraps a source)."""

    def __init__(self, inner: Reader, algorithm: str) -> None:
        self.inner = inner
        self.hash = hashlib.new(algorithm)
        self.count = 0

    def readinto(self, buf: memoryview) -> int:
        n = self.inner.readinto(buf)
        if n:
            self.hash.update(buf[:n])
            self.count += n
        return n

    def hexdigest(self) -> str:
        return self.hash.hexdigest()


class _StreamDecompressor:
    """Common loop for lzma/zlib style decompressors with ``max_length`` output limits."""

    def __init__(self, inner: Reader, what: str) -> None:
        self.inner = inner
        self.what = what
        self._in = bytearray(INPUT_BLOCK)
        self._pending = b""
        self._eof = False

    def _decompress(self, data: bytes, limit: int) -> bytes:
        raise NotImplementedError

    def _finished_member(self) -> bool:
        raise NotImplementedError

    def _restart(self, rest: bytes) -> None:
        raise NotImplementedError

    def readinto(self, buf: memoryview) -> int:
        while True:
            out = self._decompress(self._pending, len(buf))
            self._pending = b""
            if out:
                buf[:len(out)] = out
                return len(out)
            if self._finished_member():
                rest = self._unused()
                if rest or not self._eof:
                    n = rest or self._read_more()
                    if not n:
                        return 0
                    self._restart(n if isinstance(n, bytes) else b"")
                    continue
                return 0
            if self._eof:
                raise ImageFormatError(f"{self.what} stream is truncated")
            more = self._read_more()
            if not more:
                self._eof = True
                if not self._finished_member():
                    raise ImageFormatError(f"{self.what} stream is truncated")
                return 0
            self._pending = more

    def _read_more(self) -> bytes:
        n = self.inner.readinto(memoryview(self._in))
        if not n:
            self._eof = True
            return b""
        return bytes(self._in[:n])

    def _unused(self) -> bytes:
        return b""


class XzReader(_StreamDecompressor):
    def __init__(self, inner: Reader) -> None:
        super().__init__(inner, "xz")
        self._d = lzma.LZMADecompressor(memlimit=256 << 20)

    def _decompress(self, data: bytes, limit: int) -> bytes:
        if self._d.eof:
            return b""
        try:
            return self._d.decompress(data, max_length=limit)
        except lzma.LZMAError as e:
            raise ImageFormatError(f"xz data is corrupt: {e}") from None

    def _finished_member(self) -> bool:
        return self._d.eof

    def _unused(self) -> bytes:
        return self._d.unused_data

    def _restart(self, rest: bytes) -> None:
        rest = rest.lstrip(b"\0")  # stream padding between concatenated xz streams
        self._d = lzma.LZMADecompressor(memlimit=256 << 20)
        self._pending = rest


class GzipReader(_StreamDecompressor):
    def __init__(self, inner: Reader) -> None:
        super().__init__(inner, "gzip")
        self._d = zlib.decompressobj(wbits=31)

    def _decompress(self, data: bytes, limit: int) -> bytes:
        if self._d.eof:
            return b""
        try:
            out = self._d.decompress(self._d.unconsumed_tail + data if self._d.unconsumed_tail else data, limit)
        except zlib.error as e:
            raise ImageFormatError(f"gzip data is corrupt: {e}") from None
        if not out and self._d.unconsumed_tail:
            out = self._d.decompress(self._d.unconsumed_tail, limit)
        return out

    def _finished_member(self) -> bool:
        return self._d.eof

    def _unused(self) -> bytes:
        return self._d.unused_data

    def _restart(self, rest: bytes) -> None:
        self._d = zlib.decompressobj(wbits=31)
        self._pending = rest


class ZstdReader:
    def __init__(self, inner: Reader, max_window: int = MAX_ZSTD_WINDOW) -> None:
        try:
            import zstandard
        except ImportError:
            raise ImageFormatError("zstd images need the 'zstandard' module (a dependency of tether: reinstall "
                                   "tether)") from None
        self._zstd: Any = zstandard
        d = zstandard.ZstdDecompressor(max_window_size=max_window)
        self._frames = FrameTracker()
        source: Any = _RawAdapter(inner, self._frames)  # file-like enough: zstandard only calls read()
        self._r = d.stream_reader(source, read_size=INPUT_BLOCK, read_across_frames=True)

    def readinto(self, buf: memoryview) -> int:
        try:
            n = int(self._r.readinto(buf))
        except self._zstd.ZstdError as e:
            raise ImageFormatError(f"zstd data is corrupt: {e}") from None
        if self._frames.error:
            raise ImageFormatError(f"zstd data is corrupt: {self._frames.error}")
        if not n and not self._frames.complete:
            raise ImageFormatError("zstd stream is truncated (it ends inside a frame)")
        return n


class _RawAdapter:
    """The file-like face zstandard's stream_reader wants (``read(n)``), watching frame boundaries."""

    def __init__(self, inner: Reader, frames: FrameTracker) -> None:
        self.inner = inner
        self.frames = frames
        self._buf = bytearray(INPUT_BLOCK)

    def read(self, n: int = -1) -> bytes:
        size = INPUT_BLOCK if n is None or n < 0 else min(n, INPUT_BLOCK)
        got = self.inner.readinto(memoryview(self._buf)[:size])
        out = bytes(self._buf[:got])
        self.frames.feed(out)
        return out


def sniff(head: bytes) -> str:
    """'zstd', 'xz', 'gzip', 'cosi' (a tar file) or 'raw'."""
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if len(head) >= 512 and head[257:262] == b"ustar" and _tar_checksum_ok(head[:512]):
        return "cosi"
    return "raw"


def _tar_checksum_ok(block: bytes) -> bool:
    try:
        want = int(block[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    return want == sum(block[:148]) + 8 * 32 + sum(block[156:])


def decompressing(kind: str, inner: Reader) -> Reader:
    if kind == "zstd":
        return ZstdReader(inner)
    if kind == "xz":
        return XzReader(inner)
    if kind == "gzip":
        return GzipReader(inner)
    if kind == "raw":
        return inner
    raise ImageFormatError(f"cannot decompress {kind!r}")

