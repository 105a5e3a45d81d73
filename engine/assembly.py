"""Assemble an image in a slot from chunks: the active slot's, zeros, the slot's own, the cache's, the server's.

Four passes, each bounded in memory (a few 4 MiB buffers, 32 bytes per chunk):

1. **scan**: the active slot is read at the image's offsets and hashed chunk by chunk (up to 4 threads: hashlib
   releases the GIL), noting which chunks already hold the new image's bytes at their place ("hits").
2. **local**: every other chunk comes, if it can, from zeros, the slot's own bytes at that place, a seed's chunk
   elsewhere with the same hash (moved), or the chunk cache; each is checked against its hash and written.
3. **fetch**: the rest is fetched from the image's data file, several ranges per request; each chunk's hash is
   checked as it arrives, then it is cached (so a rerun after a kill does not fetch it again) and written.
4. **assemble**: in image order, each 4 MiB block is read from the active slot, the chunks that were not hits
   are taken from the slot (written in 2-3), the block is written, and a second thread hashes it: the SHA-256 of
   the whole image, compared with the index's (and the pinned hash of a raw image). A live active slot whose
   block changed between the scan and this pass makes the digest differ: then every chunk of the slot is checked
   against the index, the wrong ones fetched again, and the slot read back and hashed once more.
"""

from __future__ import annotations

import hashlib
import hmac
import mmap
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tether import log
from tether.engine import blockdev, checkpoints, chunks
from tether.engine.chunkcache import ChunkCache
from tether.engine.chunkfetch import RangeReader
from tether.errors import TetherError

LOG = log.get(__name__)

BLOCK = 4 << 20
SCAN_THREADS = max(1, min(4, os.cpu_count() or 1))   # hashlib releases the GIL while it hashes
Progress = Callable[[int, int], None]   # (bytes done, total)


class AssemblyError(TetherError):
    """A chunk or the assembled image does not match the index."""


@dataclass
class Stats:
    size: int = 0
    chunks: int = 0
    from_active: int = 0       # chunks, by where they came from
    moved: int = 0
    zeros: int = 0
    in_place: int = 0
    cached: int = 0
    fetched: int = 0
    repaired: int = 0
    fetched_bytes: int = 0     # chunk bytes received (the index not included)
    index_bytes: int = 0
    requests: int = 0
    sources: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)   # per pass

    def describe(self) -> str:
        return (f"{self.chunks} chunks: {self.from_active} from the active slot, {self.moved} moved, {self.zeros} "
                f"zero, {self.in_place} already in place, {self.cached} cached, {self.fetched} fetched "
                f"({self.fetched_bytes} bytes in {self.requests} requests, index {self.index_bytes} bytes)"
                + (f", {self.repaired} fetched again after the active slot changed" if self.repaired else "")
                + "; seconds: " + ", ".join(f"{k} {v:g}" for k, v in self.seconds.items()))


def spans_of(idx: chunks.ChunkIndex, numbers: list[int]) -> list[tuple[int, int]]:
    """Byte ranges [start, end) covering the chunks ``numbers`` (ascending), adjacent chunks in one range."""
    runs: list[list[int]] = []   # chunk numbers [a, b)
    for i in numbers:
        if runs and runs[-1][1] == i:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    return [(idx.span(a)[0], idx.span(b - 1)[1]) for a, b in runs]


def check_chunk(idx: chunks.ChunkIndex, i: int, piece: bytes | memoryview, where: str) -> None:
    got = hashlib.sha256(piece).digest()
    if got != idx.digest(i):
        s, e = idx.span(i)
        raise AssemblyError(f"{where}: chunk {i} (bytes {s}-{e - 1}) has sha256 {got.hex()}, the chunk index says "
                            f"{idx.digest(i).hex()}; the image server holds corrupt or mismatched data")


def _pread(fd: int, mv: memoryview, offset: int) -> int:
    n = 0
    while n < len(mv):
        got = os.preadv(fd, [mv[n:]], offset + n)
        if got <= 0:
            break
        n += got
    return n


class Assembly:
    def __init__(self, idx: chunks.ChunkIndex, data_url: str, device: str, ranges: RangeReader,
                 cache: ChunkCache, progress: Progress | None = None) -> None:
        self.idx = idx
        self.data_url = data_url
        self.device = device
        self.ranges = ranges
        self.cache = cache
        self.progress = progress
        self.hit = bytearray(idx.count)      # 1: the first seed holds chunk i at its place
        self.done = bytearray(idx.count)     # 1: chunk i is in place (a hit, or written by the local/fetch passes)
        self.missing: dict[bytes, list[int]] = {}
        self.stats = Stats(size=idx.size, chunks=idx.count)
        self.fd = -1
        self.block = max(1, BLOCK // idx.chunk_size) * idx.chunk_size

    def run(self, seeds: Sequence[str], pin: tuple[str, str] | None) -> Stats:
        capacity = blockdev.size_of(self.device)
        if self.idx.size > capacity:
            raise TetherError(f"{self.data_url}: the image is {self.idx.size} bytes, larger than {self.device} "
                              f"({capacity} bytes); it does not fit")
        self.fd = os.open(self.device, os.O_RDWR | os.O_CLOEXEC)
        seen: list[tuple[int, int, bytearray]] = []   # (fd, bytes scanned, chunk digests)
        clock = [time.monotonic()]

        def lap(what: str) -> None:
            now = time.monotonic()
            self.stats.seconds[what] = round(now - clock[0], 3)
            clock[0] = now
        try:
            for k, seed in enumerate(seeds):
                sfd = os.open(seed, os.O_RDONLY | os.O_CLOEXEC)
                limit = min(blockdev.size_of(seed), self.idx.size)
                seen.append((sfd, limit, self._scan(sfd, limit, positional=k == 0)))
                self.stats.sources.append(seed)
            lap("scan")
            self._local(seen)
            lap("local")
            self._fetch()
            lap("fetch")
            first = seen[0][:2] if seen else None
            if not self._assemble(first, pin):
                self._repair(pin)
            os.fsync(self.fd)
            lap("assemble")
        finally:
            os.close(self.fd)
            for sfd, _limit, _d in seen:
                os.close(sfd)
        self.stats.requests = self.ranges.requests
        self.cache.trim()
        return self.stats

    def _tick(self, done: int) -> None:
        if self.progress is not None:
            self.progress(min(done, self.idx.size), self.idx.size)

    def _write(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        mv = memoryview(data)
        n = 0
        while n < len(mv):
            try:
                n += os.pwrite(self.fd, mv[n:], offset + n)
            except OSError as e:
                raise TetherError(f"writing {self.device} at byte {offset + n}: {e.strerror}") from None

    def _put(self, i: int, data: bytes | bytearray | memoryview) -> None:
        self._write(data, i * self.idx.chunk_size)
        self.done[i] = 1

    # -- 1. scan ------------------------------------------------------------------------------------------------

    def _scan(self, sfd: int, limit: int, positional: bool) -> bytearray:
        idx, cs = self.idx, self.idx.chunk_size
        digests = bytearray(idx.count * chunks.DIGEST)
        block = self.block
        blocks = list(range(0, limit, block))
        want, hit = idx.digests, self.hit
        errors: list[BaseException] = []

        def work(mine: list[int]) -> None:
            try:
                buf = bytearray(block)
                mv = memoryview(buf)
                sha256, size = hashlib.sha256, chunks.DIGEST
                for pos in mine:
                    n = _pread(sfd, mv[:min(block, limit - pos)], pos)
                    first = pos // cs
                    for k in range(0, n, cs):
                        d = sha256(mv[k:k + cs]).digest()
                        o = (first + k // cs) * size
                        digests[o:o + size] = d
                        if positional and want[o:o + size] == d:
                            hit[o // size] = 1
            except BaseException as e:  # raised in the caller's thread below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(blocks[t::SCAN_THREADS],), name=f"chunk-scan-{t}",
                                    daemon=True) for t in range(SCAN_THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        if positional:
            self.done[:] = hit
            self.stats.from_active = hit.count(1)
        self._tick(limit // 2)
        return digests

    # -- 2. local -------------------------------------------------------------------------------------------

    def _local(self, seen: list[tuple[int, int, bytearray]]) -> None:
        idx = self.idx
        rest: dict[bytes, list[int]] = {}
        i = self.done.find(0)
        while i >= 0:
            start, end = idx.span(i)
            d = idx.digest(i)
            if d == idx.zero_digest(i):
                self._put(i, bytes(end - start))
                self.stats.zeros += 1
            else:
                here = bytearray(end - start)
                if _pread(self.fd, memoryview(here), start) == end - start and hashlib.sha256(here).digest() == d:
                    self.done[i] = 1
                    self.stats.in_place += 1
                else:
                    rest.setdefault(d, []).append(i)
            i = self.done.find(0, i + 1)
        for sfd, _limit, digests in seen:
            for j in range(len(digests) // chunks.DIGEST if rest else 0):
                d = bytes(digests[j * chunks.DIGEST:(j + 1) * chunks.DIGEST])
                if d not in rest:
                    continue
                start, end = idx.span(rest[d][0])
                buf = bytearray(end - start)
                if _pread(sfd, memoryview(buf), j * idx.chunk_size) == len(buf) and \
                        hashlib.sha256(buf).digest() == d:
                    for i in rest.pop(d):
                        self._put(i, buf)
                        self.stats.moved += 1
        for d in list(rest):
            got = self.cache.get(d)
            if got is not None and hashlib.sha256(got).digest() == d:
                for i in rest.pop(d):
                    self._put(i, got)
                    self.stats.cached += 1
        self.missing = rest

    # -- 3. fetch -------------------------------------------------------------------------------------------

    def _fetch(self) -> None:
        """Each missing chunk once; adjacent chunks in one range; several ranges per request."""
        idx = self.idx
        spans = spans_of(idx, sorted(ps[0] for ps in self.missing.values()))
        for (start, _end), body in self.ranges.read_many(spans):
            self.stats.fetched_bytes += len(body)
            mv = memoryview(body)
            i = start // idx.chunk_size
            for off in range(0, len(body), idx.chunk_size):
                s, e = idx.span(i)
                piece = mv[off:off + e - s]
                d = idx.digest(i)
                check_chunk(idx, i, piece, self.data_url)
                self.cache.put(d, piece)
                for j in self.missing.pop(d, [i]):
                    self._put(j, piece)
                    self.stats.fetched += 1
                i += 1
            checkpoints.reached("adaptive:fetched")

    # -- 4. assemble ----------------------------------------------------------------------------------------

    def _hasher(self, pin: tuple[str, str] | None) -> tuple[Any, Any, queue.Queue[bytearray | None], threading.Thread]:
        whole = hashlib.sha256()
        pinned = hashlib.new(pin[0]) if pin is not None and pin[0] != "sha256" else None
        q: queue.Queue[bytearray | None] = queue.Queue(maxsize=2)

        def work() -> None:
            while (b := q.get()) is not None:
                whole.update(b)
                if pinned is not None:
                    pinned.update(b)

        t = threading.Thread(target=work, name="image-hash", daemon=True)
        t.start()
        return whole, pinned, q, t

    def _check(self, whole: Any, pinned: Any, pin: tuple[str, str] | None) -> str | None:
        """None when the digests are right, else what is wrong."""
        got = whole.hexdigest()
        if not hmac.compare_digest(got, self.idx.sha256):
            return f"{self.device}: the assembled image's sha256 is {got}, the chunk index says {self.idx.sha256}"
        if pin is not None:
            value = pinned.hexdigest() if pinned is not None else got
            if not hmac.compare_digest(value, pin[1].lower()):
                return f"{self.device}: the assembled image's {pin[0]} is {value}, the host configuration pins {pin[1]}"
        return None

    def _assemble(self, first: tuple[int, int] | None, pin: tuple[str, str] | None) -> bool:
        """Write the hits of the first seed in image order while hashing the whole image; True when it matches.

        Writes go through ``O_DIRECT`` from page-aligned buffers (as ``engine/writer.py``'s do): no copy into the
        page cache, which leaves the CPU to the hashing thread."""
        idx, cs = self.idx, self.idx.chunk_size
        whole = hashlib.sha256()
        pinned = hashlib.new(pin[0]) if pin is not None and pin[0] != "sha256" else None
        bufs = [mmap.mmap(-1, self.block) for _ in range(4)]
        free: queue.Queue[mmap.mmap] = queue.Queue()
        for buf in bufs:
            free.put(buf)
        full: queue.Queue[tuple[mmap.mmap, int] | None] = queue.Queue()

        def work() -> None:
            while (item := full.get()) is not None:
                with memoryview(item[0])[:item[1]] as mv:
                    whole.update(mv)
                    if pinned is not None:
                        pinned.update(mv)
                free.put(item[0])

        t = threading.Thread(target=work, name="image-hash", daemon=True)
        t.start()
        try:
            dfd = os.open(self.device, os.O_WRONLY | os.O_CLOEXEC | getattr(os, "O_DIRECT", 0))
        except OSError:  # tmpfs and some files refuse O_DIRECT
            dfd = -1
        try:
            for pos in range(0, idx.size, self.block):
                n = min(self.block, idx.size - pos)
                buf = free.get()
                with memoryview(buf)[:n] as mv:
                    if first is not None:
                        _pread(first[0], mv[:max(0, min(n, first[1] - pos))], pos)
                    a, b = pos // cs, (pos + n - 1) // cs + 1
                    hits = self.hit[a:b]    # hits lie within what the seed has (a short read: the digest tells)
                    k = hits.find(0)
                    while k >= 0:
                        s, e = idx.span(a + k)
                        _pread(self.fd, mv[s - pos:e - pos], s)
                        k = hits.find(0, k + 1)
                    aligned = n // 4096 * 4096 if dfd >= 0 else 0
                    done = 0
                    while done < aligned:
                        try:
                            done += os.pwrite(dfd, mv[done:aligned], pos + done)
                        except OSError as e:
                            raise TetherError(f"writing {self.device} at byte {pos + done}: {e.strerror}") from None
                    if aligned < n:
                        self._write(mv[aligned:], pos + aligned)
                full.put((buf, n))
                self._tick(idx.size // 2 + (pos + n) // 2)
        finally:
            full.put(None)
            t.join()
            if dfd >= 0:
                os.fsync(dfd)
                os.close(dfd)
            for buf in bufs:
                try:
                    buf.close()
                except BufferError:  # still referenced by an exception's traceback; GC frees it
                    pass
        problem = self._check(whole, pinned, pin)
        if problem is not None:
            LOG.warning("%s; checking every chunk again", problem)
        return problem is None

    def _repair(self, pin: tuple[str, str] | None) -> None:
        """Check each chunk of the slot against the index, fetch the wrong ones again, read the slot back."""
        idx = self.idx
        buf = bytearray(idx.chunk_size)
        self.missing = {}
        for i in range(idx.count):
            s, e = idx.span(i)
            mv = memoryview(buf)[:e - s]
            if _pread(self.fd, mv, s) != e - s or hashlib.sha256(mv).digest() != idx.digest(i):
                self.missing.setdefault(idx.digest(i), []).append(i)
        self.stats.repaired = sum(len(v) for v in self.missing.values())
        self._fetch()
        whole, pinned, q, t = self._hasher(pin)
        try:
            for pos in range(0, idx.size, BLOCK):
                block = bytearray(min(BLOCK, idx.size - pos))
                _pread(self.fd, memoryview(block), pos)
                q.put(block)
        finally:
            q.put(None)
            t.join()
        problem = self._check(whole, pinned, pin)
        if problem is not None:
            raise AssemblyError(problem)
