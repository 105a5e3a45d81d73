"""Chunk indexes for adaptive downloads: the format of ``IMAGE.chunks`` and the publisher's ``tether image index``.

An index describes the *uncompressed* filesystem image in fixed-size chunks (4 KiB by default, a filesystem
block): line 1 ``tether-chunks 1``, line 2 a JSON object (``chunkSize``, ``size`` and ``sha256`` of the whole
uncompressed image, ``data``: the file next to the index that holds those bytes, fetched with Range requests),
then one 32-byte SHA-256 per chunk (the last chunk may be short). Fixed-size chunks rather than content-defined
ones: a filesystem keeps data at block-aligned offsets, so a changed file moves content by whole blocks, which
fixed chunks of the block size find again by their hashes; and hashing fixed chunks runs at hashlib's speed,
where a rolling hash in Python would cost minutes per GiB. For a raw image ``data`` is the image itself; for a
compressed one the publisher writes the uncompressed bytes to ``IMAGE.data`` (sparse: zero chunks are holes).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from tether.engine.formats import PeekReader, Reader, decompressing, sniff
from tether.errors import TetherError
from tether.target import write_atomic

MAGIC = b"tether-chunks 1\n"
SUFFIX = ".chunks"
DATA_SUFFIX = ".data"
DIGEST = 32
DEFAULT_CHUNK = 4096
MAX_HEADER = 4096
_NAME = re.compile(r"^[A-Za-z0-9._+@-]+$")


class ChunkIndexError(TetherError):
    """An index that cannot be used: malformed, or inconsistent with itself."""


@dataclass(frozen=True)
class ChunkIndex:
    chunk_size: int
    size: int            # bytes of the uncompressed image
    sha256: str          # of the whole uncompressed image
    data: str            # file name, next to the index, holding the uncompressed bytes
    digests: bytes       # count x 32 bytes

    @property
    def count(self) -> int:
        return len(self.digests) // DIGEST

    def digest(self, i: int) -> bytes:
        return self.digests[i * DIGEST:(i + 1) * DIGEST]

    def span(self, i: int) -> tuple[int, int]:
        """Byte range [start, end) of chunk ``i`` in the image."""
        start = i * self.chunk_size
        return start, min(start + self.chunk_size, self.size)

    def zero_digest(self, i: int) -> bytes:
        start, end = self.span(i)
        return _zero_digest(end - start)

    def encode(self) -> bytes:
        head = {"chunkSize": self.chunk_size, "size": self.size, "sha256": self.sha256, "data": self.data}
        return MAGIC + json.dumps(head, sort_keys=True).encode() + b"\n" + self.digests


_ZEROS: dict[int, bytes] = {}


def _zero_digest(n: int) -> bytes:
    d = _ZEROS.get(n)
    if d is None:
        d = _ZEROS[n] = hashlib.sha256(bytes(n)).digest()
    return d


def parse(raw: bytes, where: str) -> ChunkIndex:
    """The index in ``raw``; errors name ``where`` (the index's URL) and what is wrong."""
    if not raw.startswith(MAGIC):
        raise ChunkIndexError(f"{where}: not a chunk index (it does not start with {MAGIC.strip().decode()!r})")
    end = raw.find(b"\n", len(MAGIC), len(MAGIC) + MAX_HEADER)
    if end < 0:
        raise ChunkIndexError(f"{where}: the header line is missing or longer than {MAX_HEADER} bytes")
    try:
        head = json.loads(raw[len(MAGIC):end])
    except ValueError as e:
        raise ChunkIndexError(f"{where}: the header is not JSON ({e})") from None
    if not isinstance(head, dict):
        raise ChunkIndexError(f"{where}: the header is not a JSON object")
    cs, size, sha, data = head.get("chunkSize"), head.get("size"), head.get("sha256"), head.get("data")
    if not isinstance(cs, int) or isinstance(cs, bool) or cs < 512 or cs > (16 << 20) or cs % 512:
        raise ChunkIndexError(f"{where}: chunkSize must be a multiple of 512 between 512 and 16 MiB, not {cs!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise ChunkIndexError(f"{where}: size must be a positive integer, not {size!r}")
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise ChunkIndexError(f"{where}: sha256 must be 64 lower-case hex digits")
    if not isinstance(data, str) or not _NAME.match(data) or data in (".", ".."):
        raise ChunkIndexError(f"{where}: data must be a file name next to the index (letters, digits, . _ + @ -), "
                              f"not {data!r}")
    digests = raw[end + 1:]
    want = -(-size // cs)
    if len(digests) != want * DIGEST:
        raise ChunkIndexError(f"{where}: {len(digests)} bytes of chunk hashes, but {size} bytes in chunks of {cs} "
                              f"need {want * DIGEST}")
    return ChunkIndex(cs, size, sha, data, digests)


def _fill(r: Reader, buf: memoryview) -> int:
    n = 0
    while n < len(buf):
        got = r.readinto(buf[n:])
        if not got:
            break
        n += got
    return n


def build(image: Path, chunk_size: int = DEFAULT_CHUNK) -> tuple[Path, Path]:
    """Write ``IMAGE.chunks`` (and, for a compressed image, ``IMAGE.data``). Returns (index, data file)."""
    if chunk_size < 4096 or chunk_size % 4096 or chunk_size > (16 << 20):
        raise ChunkIndexError(f"--chunk-size must be a multiple of 4096 up to 16 MiB, not {chunk_size}")
    try:
        f = open(image, "rb", buffering=0)  # noqa: SIM115 - closed below
    except OSError as e:
        raise ChunkIndexError(f"{image}: cannot open image: {e.strerror}") from None
    with f:
        peek = PeekReader(f)
        kind = sniff(peek.head)
        if kind == "cosi":
            raise ChunkIndexError(f"{image}: a COSI file cannot be indexed (index a raw or compressed raw image)")
        reader: Reader = decompressing(kind, peek) if kind != "raw" else peek
        data = image if kind == "raw" else image.with_name(image.name + DATA_SUFFIX)
        return _write(image, reader, data, chunk_size, copy=kind != "raw")


def _write(image: Path, reader: Reader, data: Path, chunk_size: int, copy: bool) -> tuple[Path, Path]:
    index = image.with_name(image.name + SUFFIX)
    tmp_data = data.with_name(data.name + ".tmp")
    out = open(tmp_data, "wb") if copy else None  # noqa: SIM115 - closed below
    whole = hashlib.sha256()
    digests = bytearray()
    block = bytearray(chunk_size * 256)
    size = 0
    try:
        while n := _fill(reader, memoryview(block)):
            mv = memoryview(block)[:n]
            whole.update(mv)
            for k in range(0, n, chunk_size):
                piece = mv[k:k + chunk_size]
                d = hashlib.sha256(piece).digest()
                digests += d
                if out is not None and d != _zero_digest(len(piece)):
                    out.seek(size + k)
                    out.write(piece)
            size += n
        if size == 0:
            raise ChunkIndexError(f"{image}: the image is empty")
        if out is not None:
            out.truncate(size)
            out.flush()
            os.fsync(out.fileno())
            out.close()
            os.replace(tmp_data, data)
        idx = ChunkIndex(chunk_size, size, whole.hexdigest(), data.name, bytes(digests))
        write_atomic(index, idx.encode())  # its directory fsync also makes the data file's rename durable
    finally:
        if out is not None and not out.closed:
            out.close()
        tmp_data.unlink(missing_ok=True)
    return index, data
