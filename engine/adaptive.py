"""Adaptive downloads: stage a raw or compressed image by fetching only the chunks this host does not have.

With ``IMAGE.chunks`` next to the image (``engine/chunks.py``), the inactive slot is assembled from, in order:
the active slot read at the same offsets (the common case: most blocks did not change), all-zero chunks, the
inactive slot's own previous content at the same offset, chunks found anywhere else in the active slot (moved
blocks), the local chunk cache, and last the image server: the missing chunks are fetched from the index's
uncompressed ``data`` file with HTTP Range requests (adjacent chunks in one range, several ranges per request).
Every chunk fetched or taken from elsewhere is checked against its SHA-256; the whole image, as written in order,
must have the index's SHA-256. The active slot is only read; it is live, so a block the running system changed
after it was scanned makes the whole digest differ, and the slot is then checked chunk by chunk and repaired
(``engine/assembly.py``).

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
import os
import urllib.parse
from collections.abc import Sequence

from tether import log
from tether.engine import chunks, signatures
from tether.engine.assembly import Assembly, AssemblyError, Progress, Stats
from tether.engine.chunkcache import ChunkCache
from tether.engine.chunkfetch import NoRangeError, open_ranges
from tether.engine.sources import ImageSourceError, open_source
from tether.errors import TetherError

LOG = log.get(__name__)

MAX_INDEX = 64 << 20          # 8 GiB of image in 4 KiB chunks; bigger images are indexed with bigger chunks


class AdaptiveHashError(TetherError):
    """A chunk or the assembled image does not match the index (turned into ``ImageHashError`` by the caller)."""


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
        stats = Assembly(idx, data_url, device, ranges, cache, progress).run(
            seeds, pin if idx.data == _basename(image_url) else None)
    except AssemblyError as e:
        raise AdaptiveHashError(str(e)) from None
    except NoRangeError as e:
        LOG.warning("%s; downloading the whole image", e)
        return None
    finally:
        ranges.close()
    stats.index_bytes = len(raw)
    LOG.info("%s: %s", data_url, stats.describe())
    return stats
