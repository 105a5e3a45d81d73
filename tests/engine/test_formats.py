"""Image formats: magic detection, bounded decompression, truncation, COSI metadata and tar streaming."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import tarfile

import pytest

from tests.conftest import compat_dir
from tether.engine.cosi import CosiError, CosiStream, validate_metadata
from tether.engine.formats import ImageFormatError, PeekReader, decompressing, sniff

zstandard = pytest.importorskip("zstandard")


class BytesReader:
    def __init__(self, data: bytes) -> None:
        self.f = io.BytesIO(data)

    def readinto(self, buf: memoryview) -> int:
        return self.f.readinto(buf)


def read_all(r: object) -> bytes:
    out = bytearray()
    buf = bytearray(1 << 20)
    while True:
        n = r.readinto(memoryview(buf))  # type: ignore[attr-defined]
        if not n:
            return bytes(out)
        out += buf[:n]


DATA = os.urandom(200_000) + bytes(3_000_000) + os.urandom(5000)
COMPRESSED = {
    "zstd": zstandard.ZstdCompressor(level=3).compress(DATA),
    "xz": lzma.compress(DATA),
    "gzip": gzip.compress(DATA),
}


@pytest.mark.parametrize("kind", sorted(COMPRESSED))
def test_detects_and_decompresses(kind: str) -> None:
    peek = PeekReader(BytesReader(COMPRESSED[kind]))
    assert sniff(peek.head) == kind
    assert read_all(decompressing(kind, peek)) == DATA


@pytest.mark.parametrize("kind", sorted(COMPRESSED))
def test_truncated_stream_is_an_error(kind: str) -> None:
    cut = COMPRESSED[kind][: len(COMPRESSED[kind]) - 7]
    with pytest.raises(ImageFormatError, match="truncated|corrupt"):
        read_all(decompressing(kind, BytesReader(cut)))


def test_raw_ext4_is_raw() -> None:
    assert sniff(bytes(1024) + b"\x53\xef" + bytes(100)) == "raw"


def test_multi_frame_zstd() -> None:
    two = COMPRESSED["zstd"] + zstandard.ZstdCompressor().compress(b"tail")
    assert read_all(decompressing("zstd", BytesReader(two))) == DATA + b"tail"


def test_cosi_metadata_samples() -> None:
    base = compat_dir("trident", "tests", "cosi", "metadata_samples", "v1.2")
    valid = sorted((base / "valid").glob("*.json"))
    invalid = sorted((base / "invalid").glob("*.json"))
    assert valid and invalid
    for f in valid:
        assert validate_metadata(json.loads(f.read_text()), schema="1.2") == [], f
    for f in invalid:
        assert validate_metadata(json.loads(f.read_text()), schema="1.2"), f"{f.name} should be rejected"


def test_older_cosi_revisions_need_fewer_fields() -> None:
    doc = {"version": "1.0", "osArch": "x86_64", "osRelease": "ID=x\n", "images": []}
    assert validate_metadata(doc) == []
    doc["version"] = "1.1"
    assert any("bootloader" in e for e in validate_metadata(doc))


def make_cosi(images: dict[str, bytes], version: str = "1.2", corrupt: str | None = None) -> tuple[bytes, bytes]:
    """(cosi bytes, metadata bytes) for raw filesystem images by mount point."""
    entries = []
    meta_images = []
    for i, (mp, raw) in enumerate(images.items()):
        comp = zstandard.ZstdCompressor().compress(raw)
        path = f"images/fs{i}.rawzst"
        meta_images.append({"image": {"path": path, "compressedSize": len(comp), "uncompressedSize": len(raw),
                                      "sha384": hashlib.sha384(comp).hexdigest()},
                            "mountPoint": mp, "fsType": "ext4", "fsUuid": f"uuid-{i}",
                            "partType": "4f68bce3-e8cd-4db1-96e7-fbcaf984b709", "verity": None})
        if corrupt == mp:
            comp = comp[:-1] + bytes([comp[-1] ^ 1])
        entries.append((path, comp))
    meta = {"version": version, "osArch": "x86_64", "osRelease": "ID=test\n", "images": meta_images,
            "osPackages": [], "bootloader": {"type": "grub"},
            "disk": {"size": 1 << 30, "type": "gpt", "lbaSize": 512, "gptRegions": [
                {"type": "primary-gpt", "image": meta_images[0]["image"]}]},
            "compression": {"maxWindowLog": 27}}
    meta_bytes = json.dumps(meta).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in [("cosi-marker", b""), ("metadata.json", meta_bytes), *entries]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue(), meta_bytes


def test_cosi_stream_reads_metadata_then_images() -> None:
    blob, meta = make_cosi({"/": DATA, "/boot/efi": b"E" * 4096})
    peek = PeekReader(BytesReader(blob))
    assert sniff(peek.head) == "cosi"
    cosi = CosiStream(peek)
    assert cosi.metadata_bytes == meta
    assert [f.mount_point for f in cosi.metadata.filesystems] == ["/", "/boot/efi"]
    got = {name: read_all(decompressing("zstd", r)) for name, r in cosi.images()}
    assert got == {"images/fs0.rawzst": DATA, "images/fs1.rawzst": b"E" * 4096}


def test_cosi_images_before_metadata_rejected() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name in ("images/a.rawzst", "metadata.json"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(CosiError, match="metadata.json must come before"):
        CosiStream(BytesReader(out.getvalue()))


def test_truncated_cosi() -> None:
    blob, _ = make_cosi({"/": DATA})
    cosi = CosiStream(BytesReader(blob[: len(blob) // 2]))
    with pytest.raises((CosiError, ImageFormatError)):
        for _name, r in cosi.images():
            read_all(decompressing("zstd", r))
