"""The COSI reader (engine/cosi.py): any tar (random members, damaged headers, truncated) and any metadata.json
give a CosiStream whose images read to their end, or a typed error (CosiError/TetherError), never another
exception; from a seekable file and from a stream."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz.strategies import json_like
from tests.fuzz.timing import timed
from tether.engine.cosi import CosiStream, parse_metadata
from tether.errors import TetherError

PART = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"


def metadata(images: dict[str, bytes], version: str = "1.2") -> dict[str, Any]:
    metas = [{"image": {"path": path, "compressedSize": len(data), "uncompressedSize": len(data) * 2,
                        "sha384": hashlib.sha384(data).hexdigest()},
              "mountPoint": f"/m{i}", "fsType": "ext4", "fsUuid": f"uuid-{i}", "partType": PART, "verity": None}
             for i, (path, data) in enumerate(images.items())]
    doc: dict[str, Any] = {"version": version, "osArch": "x86_64", "osRelease": "ID=test\n", "images": metas}
    if version == "1.2" and metas:
        doc |= {"osPackages": [], "bootloader": {"type": "grub"}, "compression": {"maxWindowLog": 27},
                "disk": {"size": 1 << 30, "type": "gpt", "lbaSize": 512,
                         "gptRegions": [{"type": "primary-gpt", "image": metas[0]["image"]}]}}
    return doc


def tar_bytes(entries: list[tuple[str, bytes]], fmt: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class Stream:
    """A source that cannot seek (an HTTP body without Range support)."""

    def __init__(self, data: bytes) -> None:
        self.inner = io.BytesIO(data)

    def readinto(self, buf: memoryview) -> int:
        return self.inner.readinto(buf)


def read_cosi(data: bytes, seekable: bool) -> None:
    try:
        cosi = CosiStream(io.BytesIO(data) if seekable else Stream(data))
        for _name, reader in cosi.images():
            buf = memoryview(bytearray(4096))
            while reader.readinto(buf):
                pass
    except TetherError as e:
        assert str(e)


images = st.dictionaries(st.sampled_from(["images/a.rawzst", "images/b.rawzst", "images/../../etc/passwd",
                                          "images/" + "n" * 120, "images/"]),
                         st.binary(max_size=2000), max_size=3)
names = st.sampled_from(["cosi-marker", "metadata.json", "images/a.rawzst", "images/b.rawzst", "x", "./metadata.json",
                         "images/" + "n" * 200])
formats = st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])


@given(imgs=images, order=st.permutations(range(3)), fmt=formats, version=st.sampled_from(["1.0", "1.1", "1.2"]),
       cut=st.one_of(st.none(), st.integers(min_value=0, max_value=20000)),
       flips=st.lists(st.tuples(st.integers(min_value=0, max_value=20000), st.integers(min_value=1, max_value=255)),
                      max_size=4),
       seekable=st.booleans())
@example(imgs={}, order=[0, 1, 2], fmt=tarfile.PAX_FORMAT, version="1.2", cut=None, flips=[], seekable=False)
@timed
def test_cosi_files_valid_damaged_and_truncated(imgs: dict[str, bytes], order: list[int], fmt: int, version: str,
                                                 cut: int | None, flips: list[tuple[int, int]],
                                                 seekable: bool) -> None:
    meta = json.dumps(metadata(imgs, version)).encode()
    parts = [[("cosi-marker", b"")], [("metadata.json", meta)], list(imgs.items())]
    try:
        data = bytearray(tar_bytes([e for i in order for e in parts[i]], fmt))
    except ValueError:  # a name this tar format cannot hold
        return
    for pos, x in flips:
        if pos < len(data):
            data[pos] ^= x
    read_cosi(bytes(data[:cut] if cut is not None else data), seekable)


@given(entries=st.lists(st.tuples(names, st.one_of(st.binary(max_size=600),
                                                    json_like().map(lambda v: json.dumps(v).encode()))),
                        max_size=6), fmt=formats, seekable=st.booleans())
@timed
def test_random_tar_members(entries: list[tuple[str, bytes]], fmt: int, seekable: bool) -> None:
    try:
        data = tar_bytes(entries, fmt)
    except ValueError:
        return
    read_cosi(data, seekable)


@given(raw=st.binary(max_size=3000), seekable=st.booleans())
@timed
def test_random_bytes(raw: bytes, seekable: bool) -> None:
    read_cosi(raw, seekable)


@given(doc=st.one_of(json_like(st.sampled_from(["version", "osArch", "images", "image", "path", "compressedSize",
                                                "uncompressedSize", "sha384", "mountPoint", "fsType", "fsUuid",
                                                "partType", "verity", "disk", "gptRegions", "bootloader",
                                                "compression", "maxWindowLog", "osPackages", "type", "size"])),
                     images.map(metadata)))
@timed
def test_metadata_documents(doc: Any) -> None:
    try:
        meta = parse_metadata(json.dumps(doc).encode())
    except TetherError as e:
        assert str(e)
        return
    assert all(fs.image.path for fs in meta.filesystems)
