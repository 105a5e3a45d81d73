"""gzip detection and bounded decompression (a gzip bomb is stopped while it inflates, not after)."""

from __future__ import annotations

import zlib

from tether.userdata.limits import MAX_DECOMPRESSED_BYTES, LimitExceeded

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 256 * 1024


class DecompressError(Exception):
    pass


def is_gzip(data: bytes) -> bool:
    return data[:2] == GZIP_MAGIC


def gunzip(data: bytes, limit: int = MAX_DECOMPRESSED_BYTES) -> bytes:
    """Inflate every gzip member in ``data``; raise LimitExceeded as soon as the output passes ``limit``."""
    out: list[bytes] = []
    total = 0
    rest = data
    while rest:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        buf = rest
        while True:
            try:
                chunk = d.decompress(buf, _CHUNK)
            except zlib.error as e:
                raise DecompressError(f"corrupt gzip data ({e})") from None
            total += len(chunk)
            if total > limit:
                raise LimitExceeded(f"gzip data inflates to more than {limit >> 20} MiB (a gzip bomb?)")
            out.append(chunk)
            buf = d.unconsumed_tail
            if d.eof:
                break
            if not buf and not chunk:
                # input ended before the stream did: truncated upload
                raise DecompressError("truncated gzip data")
        rest = d.unused_data
        if rest and not is_gzip(rest):
            # trailing bytes after the last member (padding); gzip(1) ignores them too
            break
    return b"".join(out)
