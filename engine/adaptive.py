"""Adaptive downloads: stage a raw or compressed image by fetching only the chunks this host does not have.

With ``IMAGE.chunks`` next to the image (``engine/chunks.py``), the inactive slot is assembled from, in order:
the active slot read at the same offsets (the common case: most blocks did not change), all-zero chunks, the
inactive slot's own previous content at the same offset, chunks found anywhere else in the active slot (moved
blocks), the local chunk cache, and last the image server: the missing chunks are fetched from the index's
uncompressed ``data`` file with HTTP Range requests, adjacent chunks coalesced into one request. Every chunk is
checked against its SHA-256 from the very buffer that is written; then the whole slot is read back and its SHA-256
compared with the index's. The active slot is only read (it is live: a block that changes under the read fails its
chunk hash and is taken from elsewhere).

Trust: when trusted keys are installed the index must be listed in the image's signed manifest
(``IMAGE.sha384``, ``engine/signatures.py``), so the chunk hashes are the publisher's. Without keys, a pinned
``image.sha384``/``sha256`` covers the published file: for a raw image that is the assembled image, checked at
the end; a compressed image's pin cannot vouch for an index, so such an image is downloaded whole.

Anything that makes the adaptive path unusable before a wrong byte was seen (no index, an index that is not
signed, a server without Range support) returns None and the caller downloads the image whole; a chunk whose
bytes do not match its hash is an ``ImageHashError`` (the slot is marked bad, nothing is switched).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tether.engine import blockdev, checkpoints, chunks, signatures
from tether.engine.chunkcache import ChunkCache
from tether.engine.chunkfetch import NoRangeError, RangeReader, open_ranges
from tether.engine.sources import ImageSourceError, open_source
from tether.errors import TetherError

LOG = logging.getLogger(__name__)

MAX_INDEX = 64 << 20          # 8 GiB of image in 4 KiB chunks; bigger images are indexed with bigger chunks
MAX_RANGE = 8 << 20           # bytes in one Range request (and in memory at once)
SCAN_BLOCK = 4 << 20
Progress = Callable[[int, int], None]   # (bytes done, total)


class AdaptiveHashError(TetherError):
    """A chunk or the assembled image does not match the index (turned into ``ImageHashError`` by the caller)."""


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
    fetched_bytes: int = 0     # chunk bytes received (index not included)
    index_bytes: int = 0
    requests: int = 0
    sources: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (f"{self.chunks} chunks: {self.from_active} from the active slot, {self.moved} moved, {self.zeros} "
                f"zero, {self.in_place} already in place, {self.cached} cached, {self.fetched} fetched "
                f"({self.fetched_bytes} bytes in {self.requests} requests, index {self.index_bytes} bytes)")


def sibling(url: str, name: str) -> str:
    """``url`` with its last path segment replaced by ``name`` (query kept)."""
    p = urllib.parse.urlsplit(url)
    path = p.path.rsplit("/", 1)[0] + "/" + urllib.parse.quote(name)
    return urllib.parse.urlunsplit((p.scheme, p.netloc, path, p.query, p.fragment))


def _basename(url: str) -> str:
    return os.path.basename(urllib.parse.unquote(urllib.parse.urlsplit(url).path))


def index_url(image_url: str) -> str:
    return sibling(image_url, _basename(image_url) + chunks.SUFFIX)


def _fetch_index(url: str, net: dict[str, float]) -> bytes | None:
    try:
        src = open_source(url, timeout=net.get("timeout", 30.0), retries=int(net.get("retries", 5)),
                          deadline=net.get("deadline"))
    except ImageSourceError as e:
        LOG.info("%s: no chunk index (%s); downloading the whole image", url, e)
        return None
    try:
        if src.size is not None and src.size > MAX_INDEX:
            LOG.warning("%s: the chunk index is larger than %d bytes; downloading the whole image", url, MAX_INDEX)
            return None
        out = bytearray()
        buf = bytearray(1 << 20)
        while n := src.readinto(memoryview(buf)):
            out += buf[:n]
            if len(out) > MAX_INDEX:
                LOG.warning("%s: the chunk index is larger than %d bytes; downloading the whole image", url,
                            MAX_INDEX)
                return None
        return bytes(out)
    except ImageSourceError as e:
        LOG.warning("%s: cannot read the chunk index (%s); downloading the whole image", url, e)
        return None
    finally:
        src.close()


def _trusted_index(image_url: str, idx_url: str, raw: bytes, pin: tuple[str, str] | None,
                   net: dict[str, float]) -> chunks.ChunkIndex | None:
    signed = signatures.signed_manifest(image_url, net)
    if signed is not None:
        manifest, man_url, signer = signed
        try:
            want = signatures.parse_manifest(manifest, idx_url, man_url)
        except signatures.SignatureError as e:
            LOG.warning("%s: the chunk index is not signed (%s); downloading the whole image", idx_url, e)
            return None
        got = hashlib.sha384(raw).hexdigest()
        if not hmac.compare_digest(got, want):
            LOG.warning("%s: sha384 is %s, the signed manifest (signer %s) says %s; downloading the whole image",
                        idx_url, got, signer, want)
            return None
    try:
        idx = chunks.parse(raw, idx_url)
    except chunks.ChunkIndexError as e:
        LOG.warning("%s; downloading the whole image", e)
        return None
    if signed is None and pin is not None and idx.data != _basename(image_url):
        LOG.info("%s: the pinned %s covers the compressed file, which cannot vouch for the chunk index; "
                 "downloading the whole image", image_url, pin[0])
        return None
    return idx


def deploy(image_url: str, pin: tuple[str, str] | None, device: str, seeds: Sequence[str], cache_dir: str,
           net: dict[str, float], progress: Progress | None = None) -> Stats | None:
    """Assemble the image in ``device``; None when it must be downloaded whole instead (logged why)."""
    if urllib.parse.urlsplit(image_url).scheme not in ("file", "http", "https"):
        return None
    idx_url = index_url(image_url)
    raw = _fetch_index(idx_url, net)
    if raw is None:
        return None
    idx = _trusted_index(image_url, idx_url, raw, pin, net)
    if idx is None:
        return None
    data_url = sibling(image_url, idx.data)
    try:
        ranges = open_ranges(data_url, idx.size, net)
    except (NoRangeError, ImageSourceError) as e:
        LOG.warning("%s; downloading the whole image", e)
        return None
    try:
        cache = ChunkCache(cache_dir)
        return _Assembly(idx, data_url, device, ranges, cache, progress, len(raw)).run(
            seeds, pin if idx.data == _basename(image_url) else None)
    except NoRangeError as e:
        LOG.warning("%s; downloading the whole image", e)
        return None
    finally:
        ranges.close()


class _Assembly:
    def __init__(self, idx: chunks.ChunkIndex, data_url: str, device: str, ranges: RangeReader,
                 cache: ChunkCache, progress: Progress | None, index_bytes: int) -> None:
        self.idx = idx
        self.data_url = data_url
        self.device = device
        self.ranges = ranges
        self.cache = cache
        self.progress = progress
        self.done = bytearray(idx.count)
        self.stats = Stats(size=idx.size, chunks=idx.count, index_bytes=index_bytes)
        self.missing: dict[bytes, list[int]] = {}
        self.fd = -1
        self.placed = 0

    def run(self, seeds: Sequence[str], pin: tuple[str, str] | None) -> Stats:
        capacity = blockdev.size_of(self.device)
        if self.idx.size > capacity:
            raise AdaptiveHashError(f"{self.data_url}: the image is {self.idx.size} bytes, larger than "
                                    f"{self.device} ({capacity} bytes); it does not fit")
        self.fd = os.open(self.device, os.O_RDWR | os.O_CLOEXEC)
        seen: list[tuple[int, bytearray]] = []
        try:
            for seed in seeds:
                sfd = os.open(seed, os.O_RDONLY | os.O_CLOEXEC)
                seen.append((sfd, self._scan(sfd, seed)))
            self._fill_local(seen)
            self._fetch_missing()
            os.fsync(self.fd)
            self._verify(pin)
        finally:
            os.close(self.fd)
            for sfd, _d in seen:
                os.close(sfd)
        self.cache.trim()
        LOG.info("%s: %s", self.data_url, self.stats.describe())
        return self.stats

    # -- helpers --------------------------------------------------------------------------------------------

    def _pread(self, fd: int, mv: memoryview, offset: int) -> int:
        n = 0
        while n < len(mv):
            got = os.preadv(fd, [mv[n:]], offset + n)
            if got <= 0:
                break
            n += got
        return n

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
        self.placed += 1

    def _tick(self) -> None:
        if self.progress is not None:
            self.progress(min(self.placed * self.idx.chunk_size, self.idx.size), self.idx.size)

    # -- the steps ------------------------------------------------------------------------------------------

    def _scan(self, sfd: int, seed: str) -> bytearray:
        """Hash the seed chunk by chunk at the image's offsets; write the chunks that match at their place."""
        idx, cs = self.idx, self.idx.chunk_size
        limit = min(blockdev.size_of(seed), idx.size)
        digests = bytearray(idx.count * chunks.DIGEST)
        block = max(1, SCAN_BLOCK // cs) * cs
        buf = bytearray(block)
        mv = memoryview(buf)
        want = idx.digests
        done = self.done
        sha256 = hashlib.sha256
        pos = 0
        while pos < limit:
            n = self._pread(sfd, mv[:min(block, limit - pos)], pos)
            if n <= 0:
                break
            first = pos // cs
            run = -1
            for k in range(0, n, cs):
                i = first + k // cs
                d = sha256(mv[k:k + cs]).digest()
                o = i * chunks.DIGEST
                digests[o:o + chunks.DIGEST] = d
                if not done[i] and want[o:o + chunks.DIGEST] == d:
                    done[i] = 1
                    self.placed += 1
                    self.stats.from_active += 1
                    if run < 0:
                        run = k
                elif run >= 0:
                    self._write(mv[run:k], pos + run)
                    run = -1
            if run >= 0:
                self._write(mv[run:n], pos + run)
            pos += n
            self._tick()
        self.stats.sources.append(seed)
        return digests

    def _fill_local(self, seen: list[tuple[int, bytearray]]) -> None:
        """Zeros, the inactive slot in place, moved chunks of the seeds, the cache."""
        idx = self.idx
        todo = [i for i in range(idx.count) if not self.done[i]]
        rest: dict[bytes, list[int]] = {}
        for i in todo:
            start, end = idx.span(i)
            d = idx.digest(i)
            if d == idx.zero_digest(i):
                self._put(i, bytes(end - start))
                self.stats.zeros += 1
                continue
            here = bytearray(end - start)
            if self._pread(self.fd, memoryview(here), start) == end - start and hashlib.sha256(here).digest() == d:
                self.done[i] = 1
                self.placed += 1
                self.stats.in_place += 1
                continue
            rest.setdefault(d, []).append(i)
        for sfd, digests in seen:
            if not rest:
                break
            for j in range(len(digests) // chunks.DIGEST):
                d = bytes(digests[j * chunks.DIGEST:(j + 1) * chunks.DIGEST])
                if d not in rest:
                    continue
                start, end = idx.span(rest[d][0])
                buf = bytearray(end - start)
                if self._pread(sfd, memoryview(buf), j * idx.chunk_size) == len(buf) and \
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

    def _fetch_missing(self) -> None:
        """Fetch each missing chunk once, adjacent chunks in one Range request; verify, cache and write each."""
        idx = self.idx
        firsts = sorted(ps[0] for ps in self.missing.values())
        runs: list[tuple[int, int]] = []   # chunk numbers [a, b)
        for i in firsts:
            if runs and runs[-1][1] == i and (i + 1 - runs[-1][0]) * idx.chunk_size <= MAX_RANGE:
                runs[-1] = (runs[-1][0], i + 1)
            else:
                runs.append((i, i + 1))
        for a, b in runs:
            start, end = idx.span(a)[0], idx.span(b - 1)[1]
            body = self.ranges.read(start, end)
            self.stats.requests += 1
            self.stats.fetched_bytes += len(body)
            mv = memoryview(body)
            for i in range(a, b):
                s, e = idx.span(i)
                piece = mv[s - start:e - start]
                d = idx.digest(i)
                got = hashlib.sha256(piece).digest()
                if got != d:
                    raise AdaptiveHashError(f"{self.data_url}: chunk {i} (bytes {s}-{e - 1}) has sha256 "
                                            f"{got.hex()}, the chunk index says {d.hex()}; the image server "
                                            "holds corrupt or mismatched data")
                self.cache.put(d, piece)
                for j in self.missing.pop(d, [i]):
                    self._put(j, piece)
                    self.stats.fetched += 1
            checkpoints.reached("adaptive:fetched")
            self._tick()

    def _verify(self, pin: tuple[str, str] | None) -> None:
        """Read the slot back: its SHA-256 must be the index's (and a raw image's pin, when there is one)."""
        idx = self.idx
        whole = hashlib.sha256()
        pinned = hashlib.new(pin[0]) if pin is not None and pin[0] != "sha256" else None
        buf = bytearray(SCAN_BLOCK)
        mv = memoryview(buf)
        pos = 0
        while pos < idx.size:
            n = self._pread(self.fd, mv[:min(SCAN_BLOCK, idx.size - pos)], pos)
            if n <= 0:
                break
            whole.update(mv[:n])
            if pinned is not None:
                pinned.update(mv[:n])
            pos += n
        got = whole.hexdigest()
        if pos != idx.size or not hmac.compare_digest(got, idx.sha256):
            raise AdaptiveHashError(f"{self.device}: the assembled image's sha256 is {got} ({pos} bytes), the "
                                    f"chunk index says {idx.sha256} ({idx.size} bytes)")
        if pin is not None:
            value = pinned.hexdigest() if pinned is not None else got
            if not hmac.compare_digest(value, pin[1].lower()):
                raise AdaptiveHashError(f"{self.device}: the assembled image's {pin[0]} is {value}, the host "
                                        f"configuration pins {pin[1]}")
