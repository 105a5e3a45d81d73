"""Checks that run before the first destructive write of an install or a staging ("check before you break"):
the layout fits the disks, the image is reachable and fits its target partitions, and — when the source can
be read twice — the image's pinned hash is verified before any partition table or slot is touched.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from tether import log
from tether.engine import blockdev, images, partitioning
from tether.engine.formats import HashingReader
from tether.engine.sources import open_source
from tether.errors import TetherError
from tether.http.urls import redact_url

if TYPE_CHECKING:
    from tether.engine.hostconfig import HostConfiguration, OsImage

LOG = log.get(__name__)


class PreflightError(TetherError):
    pass


def planned_partition_sizes(hc: HostConfiguration, disk_devices: dict[str, str]) -> dict[str, int]:
    """Partition id -> bytes, for a clean install onto ``disk_devices`` (disk id -> device). Raises
    ``LayoutFitError`` naming the disk when the partitions do not fit it."""
    out: dict[str, int] = {}
    for d in hc.storage.disks:
        out.update(partitioning.planned_sizes(d, blockdev.size_of(disk_devices[d.id])))
    return out


def image_sizes(info: images.ImageInfo, image: OsImage, net: dict[str, float]) -> dict[str, int]:
    """Mount point -> bytes the image writes there, where that is known without reading it all: a COSI image's
    ``uncompressedSize``, a raw image's file size. Compressed raw images are checked while writing."""
    if info.metadata is not None:
        return {fs.mount_point: fs.image.uncompressed_size for fs in info.metadata.filesystems}
    if info.kind != "raw":
        return {}
    src = open_source(image.url, timeout=net.get("timeout", 30.0), retries=int(net.get("retries", 5)))
    try:
        return {"/": src.size} if src.size is not None else {}
    finally:
        src.close()


def check_fits(sizes: dict[str, int], targets: dict[str, int], url: str) -> None:
    """``targets``: mount point -> bytes of the partition that receives it."""
    for mp, need in sorted(sizes.items()):
        have = targets.get(mp)
        if have is not None and need > have:
            raise PreflightError(f"{url}: the image's filesystem for {mp} is {need} bytes but its partition has "
                                 f"only {have}; nothing was written")


def seekable(url: str) -> bool:
    """Sources that can be read twice: a file, HTTP(S) (read again from the start; resumable with Range), or an
    OCI registry blob (content-addressed: the same bytes again)."""
    return url.startswith(("file://", "http://", "https://", "oci://"))


def verify_hash(image: OsImage, net: dict[str, float]) -> None:
    """Read the whole image once and check its pinned hash (raw and compressed images, whose hash covers the
    file): a bad image is refused before the disk is repartitioned."""
    if image.digest is None or not seekable(image.url):
        return
    src = open_source(image.url, timeout=net.get("timeout", 30.0), retries=int(net.get("retries", 5)))
    try:
        reader = HashingReader(src, image.algorithm)
        buf = bytearray(4 << 20)
        view = memoryview(buf)
        while reader.readinto(view):
            pass
        got = reader.hexdigest()
    finally:
        src.close()
    if not hmac.compare_digest(got, image.digest):
        raise images.ImageHashError(f"{redact_url(image.url)}: {image.algorithm} is {got}, the host configuration pins "
                                    f"{image.digest}; nothing was written")
    LOG.info("%s: %s verified before writing (%d bytes)", redact_url(image.url), image.algorithm, reader.count)
