"""Stream an image into a partition with bounded memory: a reader thread fills a few page-aligned buffers
(read, hash, decompress) while this thread writes them with ``O_DIRECT``, so neither waits on the other and the
page cache is not flooded. One fsync at the end.

When the target range was discarded first and reads back as zeros, runs of zeros in the image are not written
(``ZERO_GRAIN`` granularity): a half-empty filesystem image then costs only its used blocks.
"""

from __future__ import annotations

import mmap
import os
import queue
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass

from tether.engine import blockdev
from tether.engine.formats import Reader
from tether.errors import TetherError

BUFFER = 4 << 20
BUFFERS = 4           # 16 MiB in flight, whatever the image size
ZERO_GRAIN = 64 << 10
_ZEROS = bytes(ZERO_GRAIN)

Progress = Callable[[int], None]


class WriteError(TetherError):
    pass


@dataclass
class WriteResult:
    written: int      # image bytes accounted for (written or skipped as zeros)
    skipped: int      # zero bytes not written because the target already reads as zeros
    discarded: bool


def prepare(device: str, discard: bool = True) -> bool:
    """Discard the whole target; True when it now reads back as zeros (zero runs may then be skipped)."""
    if not discard:
        return False
    fd = os.open(device, os.O_RDWR)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            size = os.fstat(fd).st_size
            os.ftruncate(fd, 0)
            os.ftruncate(fd, size)
            return True
        size = blockdev.size_of(device)
        if not blockdev.discard(fd, 0, size):
            return False
        return blockdev.discard_reads_zero(fd, size)
    finally:
        os.close(fd)


def _fill(reader: Reader, buf: mmap.mmap) -> int:
    mv = memoryview(buf)
    n = 0
    try:
        while n < len(buf):
            got = reader.readinto(mv[n:])
            if not got:
                break
            n += got
    finally:
        mv.release()
    return n


def write_image(reader: Reader, device: str, *, skip_zeros: bool, progress: Progress | None = None,
                limit: int | None = None) -> WriteResult:
    """Copy ``reader`` to ``device`` from offset 0. ``limit`` (default: the device size) caps the image size."""
    capacity = blockdev.size_of(device)
    limit = capacity if limit is None else min(limit, capacity)
    free: queue.Queue[mmap.mmap] = queue.Queue()
    full: queue.Queue[tuple[mmap.mmap, int] | BaseException | None] = queue.Queue()
    bufs = [mmap.mmap(-1, BUFFER) for _ in range(BUFFERS)]
    for b in bufs:
        free.put(b)
    stop = threading.Event()

    def produce() -> None:
        try:
            while not stop.is_set():
                b = free.get()
                if stop.is_set():
                    return
                n = _fill(reader, b)
                if n:
                    full.put((b, n))
                if n < BUFFER:
                    full.put(None)
                    return
        except BaseException as e:  # handed to the writer thread, which raises it
            full.put(e)

    worker = threading.Thread(target=produce, name="image-reader", daemon=True)
    flags = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
    direct = flags | getattr(os, "O_DIRECT", 0)
    try:
        fd = os.open(device, direct)
    except OSError:  # tmpfs and some files refuse O_DIRECT
        fd = os.open(device, flags)
    offset = skipped = 0
    worker.start()
    try:
        while True:
            item = full.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            b, n = item
            if offset + n > limit:
                raise WriteError(f"the image is larger than {device} ({limit} bytes); it does not fit")
            skipped += _write_block(fd, device, b, n, offset, skip_zeros)
            offset += n
            free.put(b)
            if progress is not None:
                progress(offset)
        os.fsync(fd)
    finally:
        stop.set()
        free.put(bufs[0])  # unblock a producer waiting for a buffer
        worker.join(timeout=30)
        os.close(fd)
        if not worker.is_alive():
            for b in bufs:
                try:
                    b.close()
                except BufferError:  # a slice is still referenced by an exception's traceback; GC frees it
                    pass
    return WriteResult(offset, skipped, skip_zeros)


def _write_block(fd: int, device: str, buf: mmap.mmap, n: int, offset: int, skip_zeros: bool) -> int:
    """Write ``buf[:n]`` at ``offset``; returns the bytes skipped as zeros."""
    mv = memoryview(buf)
    skipped = 0
    try:
        if not skip_zeros:
            _pwrite_all(fd, device, mv, 0, n, offset)
            return 0
        start = None  # start of the current non-zero run
        pos = 0
        while pos < n:
            end = min(pos + ZERO_GRAIN, n)
            # tobytes() + == is a memcmp; comparing memoryviews directly goes item by item (50x slower)
            zero = mv[pos:end].tobytes() == _ZEROS[:end - pos]
            if zero:
                if start is not None:
                    _pwrite_all(fd, device, mv, start, pos, offset)
                    start = None
                skipped += end - pos
            elif start is None:
                start = pos
            pos = end
        if start is not None:
            _pwrite_all(fd, device, mv, start, n, offset)
        return skipped
    finally:
        mv.release()


def _pwrite_all(fd: int, device: str, mv: memoryview, start: int, end: int, base: int) -> None:
    """pwrite ``mv[start:end]`` at ``base + start``; an unaligned tail goes through a buffered descriptor."""
    aligned_end = start + (end - start) // 4096 * 4096
    pos = start
    while pos < aligned_end:
        try:
            pos += os.pwrite(fd, mv[pos:aligned_end], base + pos)
        except OSError as e:
            raise WriteError(f"writing {device} at byte {base + pos}: {e.strerror}") from None
    if aligned_end < end:
        tail = os.open(device, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            os.pwrite(tail, mv[aligned_end:end], base + aligned_end)
            os.fsync(tail)
        finally:
            os.close(tail)
