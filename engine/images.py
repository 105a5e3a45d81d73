"""Deploy an OS image into partitions: open the source, tell the format, check hashes while streaming, write.

Hash rules: for a raw or compressed image, ``image.sha384``/``sha256`` covers the whole file as downloaded; for
a COSI file it covers ``metadata.json`` (checked before any byte is written), and each image inside is checked
against the SHA-384 of its compressed bytes from the metadata. Signatures (``engine/signatures.py``) are checked
in the same places: over the COSI metadata, or over the raw image's digest manifest, whose SHA-384 the stream
must then match.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tether import log
from tether.engine import signatures, writer
from tether.engine.cosi import CosiMetadata, CosiStream
from tether.engine.formats import (
    HashingReader,
    PeekReader,
    Reader,
    ZstdReader,
    decompressing,
    sniff,
)
from tether.engine.hostconfig import OsImage
from tether.engine.sources import Source, open_source
from tether.errors import TetherError
from tether.http.urls import redact_url

LOG = log.get(__name__)

ProgressFn = Callable[[str, int, int | None], None]  # (what, done bytes, total bytes or None)


class ImageHashError(TetherError):
    """The bytes did not match the pinned hash; whatever was written is not to be trusted."""

    def __init__(self, message: str, mount_point: str | None = None) -> None:
        self.mount_point = mount_point
        super().__init__(message)


class ImageContentError(TetherError):
    pass


@dataclass(frozen=True)
class ImageInfo:
    kind: str                       # raw | zstd | xz | gzip | cosi
    metadata: CosiMetadata | None   # COSI only

    def provides(self, mount_point: str) -> bool:
        if self.metadata is None:
            return mount_point == "/"
        return self.metadata.for_mount(mount_point) is not None


@dataclass(frozen=True)
class Deployed:
    mount_point: str
    device: str
    written: int
    skipped: int
    fs_type: str | None        # from COSI metadata; None for raw images (probe the device)


def _at(image: OsImage) -> str:
    """The image's URL as messages and logs show it: without user:password or query string (tokens)."""
    return redact_url(image.url)


def _open(image: OsImage, net: dict[str, float]) -> Source:
    return open_source(image.url, timeout=net.get("timeout", 30.0), retries=int(net.get("retries", 5)),
                       deadline=net.get("deadline"))


def probe(image: OsImage, **net: float) -> ImageInfo:
    """Format and (COSI) metadata, reading only the start of the file. The metadata pin is checked here too."""
    src = _open(image, net)
    try:
        peek = PeekReader(src)
        kind = sniff(peek.head)
        if kind != "cosi":
            signatures.signed_digest(image.url, net, _pin(image))
            return ImageInfo(kind, None)
        cosi = CosiStream(peek)
        _check_metadata_pin(image, cosi.metadata_bytes)
        signatures.check_cosi_metadata(image.url, cosi.metadata_bytes, net)
        return ImageInfo("cosi", cosi.metadata)
    finally:
        src.close()


def _pin(image: OsImage) -> tuple[str, str] | None:
    return (image.algorithm, image.digest) if image.digest else None


def _check_metadata_pin(image: OsImage, raw: bytes) -> None:
    want = image.digest
    if want is None:
        return
    import hashlib
    got = hashlib.new(image.algorithm, raw).hexdigest()
    if not hmac.compare_digest(got, want):
        raise ImageHashError(f"{_at(image)}: {image.algorithm} of metadata.json is {got}, the host configuration "
                             f"pins {want}")


def deploy_seeded(image: OsImage, targets: dict[str, str], seeds: Sequence[str], chunk_cache: str, *,
                  discard: bool = True, progress: ProgressFn | None = None, **net: float) -> list[Deployed]:
    """``deploy()`` for an A/B update: ``seeds`` (the active slot's root device) turn on adaptive downloads
    (``engine/adaptive.py``) when the image has a chunk index: only the chunks no seed, the target or the cache
    ``chunk_cache`` holds are fetched. Without an index, the image is downloaded whole."""
    if seeds and set(targets) == {"/"}:
        done = _deploy_adaptive(image, targets["/"], seeds, chunk_cache, progress, net)
        if done is not None:
            return [done]
    return deploy(image, targets, discard=discard, progress=progress, **net)


def deploy(image: OsImage, targets: dict[str, str], *, discard: bool = True,
           progress: ProgressFn | None = None, **net: float) -> list[Deployed]:
    """Write the image's filesystems to ``targets`` (mount point -> partition device)."""
    src = _open(image, net)
    try:
        total = src.size

        def tick(what: str) -> Callable[[int], None] | None:
            if progress is None:
                return None
            return lambda _n: progress(what, src.offset, total)

        head = PeekReader(src)
        kind = sniff(head.head)
        if kind == "cosi":
            cosi = CosiStream(head)
            # verified over the bytes of this very stream, before the first image is written
            signatures.check_cosi_metadata(image.url, cosi.metadata_bytes, net)
            return _deploy_cosi(image, cosi, targets, discard, tick)
        signed = signatures.signed_digest(image.url, net, _pin(image))
        # the peek reader replays the sniffed bytes, so the hash covers the file from byte 0
        # inline hashing measured faster than a separate hashing thread (kernel readahead overlaps the hash)
        signed_hash = HashingReader(head, "sha384") if signed and image.algorithm != "sha384" else None
        file_hash = HashingReader(signed_hash or head, image.algorithm)
        deployed = _deploy_single(image, kind, file_hash, targets, discard, tick)
        got = (signed_hash or file_hash).hexdigest()
        if signed and not hmac.compare_digest(got, signed.sha384):
            raise ImageHashError(f"{_at(image)}: sha384 is {got}, its signed manifest (signer {signed.signer}) "
                                 f"says {signed.sha384}", "/")
        return deployed
    finally:
        src.close()


def _deploy_adaptive(image: OsImage, dev: str, seeds: Sequence[str], chunk_cache: str,
                     progress: ProgressFn | None, net: dict[str, float]) -> Deployed | None:
    from tether.engine import adaptive

    tick = (lambda done, total: progress("/", done, total)) if progress is not None else None
    try:
        stats = adaptive.deploy(image.url, _pin(image), dev, seeds, chunk_cache, net,
                                tick)
    except adaptive.AdaptiveHashError as e:
        raise ImageHashError(str(e), "/") from None
    if stats is None:
        return None
    return Deployed("/", dev, stats.size, 0, None)


def _deploy_single(image: OsImage, kind: str, file_hash: HashingReader, targets: dict[str, str],
                   discard: bool, tick: Callable[[str], Callable[[int], None] | None]) -> list[Deployed]:
    if "/" not in targets:
        raise ImageContentError(f"{_at(image)}: a {kind} image holds one filesystem, for '/', but the host "
                                "configuration does not ask for it")
    extra = sorted(set(targets) - {"/"})
    if extra:
        raise ImageContentError(f"{_at(image)}: a {kind} image holds only the root filesystem; nothing "
                                f"provides {', '.join(extra)}")
    dev = targets["/"]
    zeroed = writer.prepare(dev, discard)
    res = writer.write_image(decompressing(kind, file_hash), dev, skip_zeros=zeroed, progress=tick("/"))
    _drain(file_hash)  # the pinned hash covers the whole file, including anything after the compressed stream
    want = image.digest
    got = file_hash.hexdigest()
    LOG.info("%s: %s %s, %d bytes", _at(image), image.algorithm, got, file_hash.count)
    if want is not None and not hmac.compare_digest(got, want):
        raise ImageHashError(f"{_at(image)}: {image.algorithm} is {got}, the host configuration pins {want}",
                             "/")
    return [Deployed("/", dev, res.written, res.skipped, None)]


def _drain(r: Reader) -> None:
    buf = bytearray(1 << 20)
    while r.readinto(memoryview(buf)):
        pass


def _deploy_cosi(image: OsImage, cosi: CosiStream, targets: dict[str, str], discard: bool,
                 tick: Callable[[str], Callable[[int], None] | None]) -> list[Deployed]:
    _check_metadata_pin(image, cosi.metadata_bytes)
    meta = cosi.metadata
    by_path = {fs.image.path: fs for fs in meta.filesystems}
    missing = [mp for mp in targets if meta.for_mount(mp) is None]
    if missing:
        raise ImageContentError(f"{_at(image)}: the COSI image has no filesystem for {', '.join(sorted(missing))} "
                                f"(it has {', '.join(fs.mount_point for fs in meta.filesystems)})")
    for described in meta.filesystems:
        if described.mount_point in targets and described.verity:
            raise ImageContentError(f"{_at(image)}: the image for {described.mount_point} uses dm-verity, which tether "
                                    "does not support")
    out: list[Deployed] = []
    for name, entry in cosi.images():
        fs = by_path.get(name)
        if fs is None or fs.mount_point not in targets:
            continue  # left unread; the tar reader skips it
        if entry.remaining != fs.image.compressed_size:
            raise ImageContentError(f"{_at(image)}: {name} is {entry.remaining} bytes in the tar file but "
                                    f"{fs.image.compressed_size} in metadata.json")
        dev = targets[fs.mount_point]
        hashed = HashingReader(entry, "sha384")
        zeroed = writer.prepare(dev, discard)
        try:
            res = writer.write_image(ZstdReader(hashed), dev, skip_zeros=zeroed, progress=tick(fs.mount_point))
        except TetherError as e:
            if hashed.hexdigest() != fs.image.sha384 and entry.remaining == 0:
                raise ImageHashError(f"{_at(image)}: {name}: corrupt data ({e})", fs.mount_point) from None
            raise
        _drain(hashed)
        got = hashed.hexdigest()
        if not hmac.compare_digest(got, fs.image.sha384):
            raise ImageHashError(f"{_at(image)}: {name}: sha384 is {got}, metadata.json says {fs.image.sha384}",
                                 fs.mount_point)
        if res.written != fs.image.uncompressed_size:
            raise ImageContentError(f"{_at(image)}: {name} decompressed to {res.written} bytes, metadata.json "
                                    f"says {fs.image.uncompressed_size}")
        out.append(Deployed(fs.mount_point, dev, res.written, res.skipped, fs.fs_type))
    done = {d.mount_point for d in out}
    absent = [mp for mp in targets if mp not in done]
    if absent:
        raise ImageContentError(f"{_at(image)}: images for {', '.join(absent)} are listed in metadata.json but "
                                "missing from the tar file")
    return out
