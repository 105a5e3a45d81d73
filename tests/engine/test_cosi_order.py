"""COSI files whose metadata.json is not the first member: tar headers walked over file:// and HTTP Range, images
streamed from their offsets and written byte for byte as with metadata.json first; a server without Range
support, a tar without metadata.json and truncated tars are clear errors."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.engine.conftest import IMAGE_UUID, BuiltImage, LoopDisk
from tests.engine.faultserver import FaultServer
from tether.engine import images as engine_images
from tether.engine.cosi import CosiError, CosiStream
from tether.engine.formats import ImageFormatError, PeekReader, decompressing, sniff
from tether.engine.hostconfig import HostConfiguration, OsImage, parse_host_config
from tether.engine.sources import Source, open_source
from tether.errors import TetherError
from tether.runner import Runner

zstandard = pytest.importorskip("zstandard")

PART_TYPE = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
BLOCK = 4096
# an ext-like image: data, a long run of zeros (skipped by the writer), data; the ESP image is incompressible
RAW = {"/": os.urandom(150 * BLOCK) + bytes(200 * BLOCK) + os.urandom(10 * BLOCK),
       "/boot/efi": os.urandom(80 * BLOCK)}
ORDERS = {
    "first": ["cosi-marker", "metadata.json", 0, 1],
    "middle": ["cosi-marker", 0, "metadata.json", 1],
    "last": ["cosi-marker", 0, 1, "metadata.json"],
    "bare-last": [0, 1, "metadata.json"],  # COSI 1.0 without a marker: the first image header is at byte 0
}


@dataclass
class Cosi:
    path: Path
    metadata: bytes
    members: int
    image_bytes: int  # compressed image bytes in the tar


def image_path(i: int, long_names: bool) -> str:
    return f"images/{'deep/' * 25 if long_names else ''}fs{i}.rawzst"


def build_cosi(path: Path, order: str = "last", *, fmt: int = tarfile.PAX_FORMAT, long_names: bool = False,
               with_metadata: bool = True, corrupt: str | None = None) -> Cosi:
    version = "1.0" if order.startswith("bare") else "1.2"
    comps, meta_images = [], []
    for i, (mp, raw) in enumerate(RAW.items()):
        comp = zstandard.ZstdCompressor(level=3).compress(raw)
        im = {"path": image_path(i, long_names), "compressedSize": len(comp), "uncompressedSize": len(raw),
              "sha384": hashlib.sha384(comp).hexdigest()}
        meta_images.append({"image": im, "mountPoint": mp, "fsType": "ext4", "fsUuid": f"uuid-{i}",
                            "partType": PART_TYPE, "verity": None})
        if corrupt == mp:
            comp = comp[:1000] + bytes([comp[1000] ^ 1]) + comp[1001:]
        comps.append(comp)
    meta = {"version": version, "osArch": "x86_64", "osRelease": "ID=test\n", "images": meta_images}
    if version == "1.2":
        meta |= {"osPackages": [], "bootloader": {"type": "grub"}, "compression": {"maxWindowLog": 27},
                 "disk": {"size": 1 << 30, "type": "gpt", "lbaSize": 512,
                          "gptRegions": [{"type": "primary-gpt", "image": meta_images[0]["image"]}]}}
    meta_bytes = json.dumps(meta).encode()
    entries: list[tuple[str, bytes]] = []
    for m in ORDERS[order]:
        if isinstance(m, int):
            entries.append((image_path(m, long_names), comps[m]))
        elif m == "cosi-marker":
            entries.append((m, b""))
        elif with_metadata:
            entries.append((m, meta_bytes))
    with tarfile.open(path, "w", format=fmt) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return Cosi(path, meta_bytes, len(entries), sum(len(c) for c in comps))


class Counting:
    """A source that counts the bytes read through it (the walk must not read the images)."""

    def __init__(self, inner: Source) -> None:
        self.inner = inner
        self.read = 0

    def readinto(self, buf: memoryview) -> int:
        n = self.inner.readinto(buf)
        self.read += n
        return n

    def seek(self, offset: int) -> None:
        self.inner.seek(offset)


def read_all(r: object) -> bytes:
    out = bytearray()
    buf = bytearray(1 << 20)
    while n := r.readinto(memoryview(buf)):  # type: ignore[attr-defined]
        out += buf[:n]
    return bytes(out)


def open_cosi(url: str) -> tuple[CosiStream, Counting, Source]:
    src = open_source(url, timeout=5, retries=1)
    counting = Counting(src)
    peek = PeekReader(counting)
    assert sniff(peek.head) == "cosi"
    return CosiStream(peek), counting, src


def read_images(cosi: CosiStream) -> dict[str, bytes]:
    by_path = {fs.image.path: fs for fs in cosi.metadata.filesystems}
    out = {}
    for name, entry in cosi.images():
        comp = read_all(entry)
        assert hashlib.sha384(comp).hexdigest() == by_path[name].image.sha384
        out[by_path[name].mount_point] = read_all(decompressing("zstd", io.BytesIO(comp)))
    return out


CASES = [("first", tarfile.PAX_FORMAT, False), ("middle", tarfile.PAX_FORMAT, False),
         ("last", tarfile.PAX_FORMAT, False), ("bare-last", tarfile.USTAR_FORMAT, False),
         ("last", tarfile.PAX_FORMAT, True), ("middle", tarfile.GNU_FORMAT, True)]
IDS = [f"{o}-{'pax' if f == tarfile.PAX_FORMAT else 'gnu' if f == tarfile.GNU_FORMAT else 'ustar'}"
       f"{'-longnames' if ln else ''}" for o, f, ln in CASES]


@pytest.mark.parametrize(("order", "fmt", "long_names"), CASES, ids=IDS)
def test_metadata_anywhere_from_a_file(tmp_path: Path, order: str, fmt: int, long_names: bool) -> None:
    c = build_cosi(tmp_path / "x.cosi", order, fmt=fmt, long_names=long_names)
    cosi, counting, src = open_cosi(f"file://{c.path}")
    try:
        assert cosi.metadata_bytes == c.metadata
        assert cosi.walked == (order != "first")
        assert counting.read < 16 << 10 < c.image_bytes  # headers and metadata.json only: no image data read
        assert cosi.tar.headers <= 2 * c.members  # each member: its header, perhaps a pax or GNU long-name one
        assert read_images(cosi) == RAW
    finally:
        src.close()


@pytest.mark.parametrize(("order", "fmt", "long_names"), CASES, ids=IDS)
def test_metadata_anywhere_over_http_with_range(tmp_path: Path, order: str, fmt: int, long_names: bool) -> None:
    c = build_cosi(tmp_path / "x.cosi", order, fmt=fmt, long_names=long_names)
    with FaultServer({"x.cosi": c.path}) as srv:
        cosi, counting, src = open_cosi(f"{srv.base}/x.cosi")
        try:
            assert cosi.metadata_bytes == c.metadata
            assert counting.read < 16 << 10
            assert read_images(cosi) == RAW
        finally:
            src.close()
    # one request to start, at most one per member skipped or resumed: bounded by the tar's entry count
    assert len(srv.requests) <= c.members + 1, srv.requests
    if order == "first":
        assert srv.requests == [("/x.cosi", None)]  # a plain stream, no Range needed
    else:  # the walk and the return to the first image: Range requests (a plain GET to go back to byte 0)
        assert all(rng or order == "bare-last" for _path, rng in srv.requests[1:])


def test_server_without_range_support(tmp_path: Path) -> None:
    last = build_cosi(tmp_path / "last.cosi", "last")
    first = build_cosi(tmp_path / "first.cosi", "first")
    with FaultServer({"last.cosi": last.path, "first.cosi": first.path}) as srv:
        with pytest.raises(CosiError, match=r"/norange/last.cosi: this server does not support Range requests, "
                                            r"and metadata.json is not at the start of the COSI file.*"
                                            r"metadata.json first"):
            open_cosi(f"{srv.base}/norange/last.cosi")
        cosi, _, src = open_cosi(f"{srv.base}/norange/first.cosi")  # metadata first: no Range needed
        try:
            assert read_images(cosi) == RAW
        finally:
            src.close()


def test_stream_that_cannot_seek_names_the_problem(tmp_path: Path) -> None:
    c = build_cosi(tmp_path / "x.cosi", "last")
    with pytest.raises(CosiError, match="metadata.json is not at the start of the COSI file and this source "
                                        "cannot seek"):
        CosiStream(_Unseekable(c.path.read_bytes()))


class _Unseekable:
    def __init__(self, data: bytes) -> None:
        self.f = io.BytesIO(data)

    def readinto(self, buf: memoryview) -> int:
        return self.f.readinto(buf)


@pytest.mark.parametrize("order", ["last", "bare-last"])
def test_no_metadata_json(tmp_path: Path, order: str) -> None:
    c = build_cosi(tmp_path / "x.cosi", order, with_metadata=False)
    with pytest.raises(CosiError, match="not a COSI file: no metadata.json"):
        open_cosi(f"file://{c.path}")
    with FaultServer({"x.cosi": c.path}) as srv:
        with pytest.raises(CosiError, match="not a COSI file: no metadata.json"):
            open_cosi(f"{srv.base}/x.cosi")
    assert len(srv.requests) <= c.members + 1


def _cut_points(c: Cosi) -> dict[str, int]:
    data = c.path.read_bytes()
    meta_at = data.index(c.metadata)
    with tarfile.open(c.path) as tar:
        first_image = next(m for m in tar.getmembers() if m.name.startswith("images/"))
    return {"inside-first-image": first_image.offset_data + 5000,
            "inside-a-header": first_image.offset_data + first_image.size + 1024 + 100,
            "inside-metadata": meta_at + 10,
            "before-end-of-archive": meta_at + len(c.metadata) + 600}


@pytest.mark.parametrize("where", ["inside-first-image", "inside-a-header", "inside-metadata",
                                   "before-end-of-archive"])
@pytest.mark.parametrize("serve", ["file", "http"])
def test_truncated_cosi_with_metadata_last(tmp_path: Path, where: str, serve: str) -> None:
    c = build_cosi(tmp_path / "full.cosi", "last")
    cut = tmp_path / "cut.cosi"
    cut.write_bytes(c.path.read_bytes()[:_cut_points(c)[where]])

    def attempt(url: str) -> None:
        cosi, _, src = open_cosi(url)
        try:
            read_images(cosi)
        finally:
            src.close()

    with pytest.raises((CosiError, ImageFormatError), match="truncated"):
        if serve == "file":
            attempt(f"file://{cut}")
        else:
            with FaultServer({"cut.cosi": cut}) as srv:
                attempt(f"{srv.base}/cut.cosi")


# --- deploy: the engine's image path (probe, metadata pin, streaming with hashes, writer) ----------------------

def _targets(tmp: Path, tag: str) -> dict[str, str]:
    out = {}
    for mp, raw in RAW.items():
        p = tmp / f"{tag}-{mp.strip('/').replace('/', '-') or 'root'}.img"
        with open(p, "wb") as f:
            f.truncate(len(raw) + (1 << 20))
        out[mp] = str(p)
    return out


def _pin(c: Cosi) -> str:
    return hashlib.sha384(c.metadata).hexdigest()


@pytest.mark.parametrize("order", ["middle", "last"])
def test_deploy_writes_the_same_bytes_as_with_metadata_first(tmp_path: Path, order: str) -> None:
    first = build_cosi(tmp_path / "first.cosi", "first")
    other = build_cosi(tmp_path / "other.cosi", order)
    assert _pin(first) == _pin(other)  # same metadata.json, other position
    written: dict[str, dict[str, bytes]] = {}
    with FaultServer({"other.cosi": other.path}) as srv:
        for tag, url in (("first", f"file://{first.path}"), ("file", f"file://{other.path}"),
                         ("http", f"{srv.base}/other.cosi")):
            image = OsImage(url, sha384=_pin(other))
            info = engine_images.probe(image)
            assert info.kind == "cosi" and info.metadata is not None
            targets = _targets(tmp_path, tag)
            deployed = engine_images.deploy(image, targets)
            assert sorted(d.mount_point for d in deployed) == sorted(RAW)
            written[tag] = {mp: Path(dev).read_bytes() for mp, dev in targets.items()}
    for mp, raw in RAW.items():
        assert written["first"][mp][:len(raw)] == raw
        assert written["file"] == written["first"]
        assert written["http"] == written["first"]


def test_deploy_checks_pin_and_image_hashes_with_metadata_last(tmp_path: Path) -> None:
    good = build_cosi(tmp_path / "good.cosi", "last")
    with pytest.raises(engine_images.ImageHashError, match="sha384 of metadata.json is .* pins " + "1" * 96):
        engine_images.deploy(OsImage(f"file://{good.path}", sha384="1" * 96), _targets(tmp_path, "pin"))
    for dev in _targets(tmp_path, "pin").values():  # checked before any byte was written
        assert Path(dev).read_bytes().count(0) == Path(dev).stat().st_size

    bad = build_cosi(tmp_path / "bad.cosi", "last", corrupt="/boot/efi")
    assert bad.metadata == good.metadata
    with pytest.raises(engine_images.ImageHashError, match=r"fs1.rawzst: (sha384 is|corrupt data)") as err:
        engine_images.deploy(OsImage(f"file://{bad.path}", sha384=_pin(bad)), _targets(tmp_path, "bad"))
    assert err.value.mount_point == "/boot/efi"


# --- install onto a loop disk (root) ---------------------------------------------------------------------------

def _reorder(cosi: Path, out: Path) -> bytes:
    """The same COSI file with metadata.json moved after the images."""
    with tarfile.open(cosi) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    meta = dict(members)["metadata.json"]
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in [m for m in members if m[0] != "metadata.json"] + [("metadata.json", meta)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return meta


def test_install_and_stage_from_metadata_last_cosi_over_http(loopdisk: LoopDisk, images: dict[str, BuiltImage],
                                                              tmp_path: Path) -> None:
    from tests.engine.test_servicing import ROOT_A, ROOT_B, commit, config, live_root, mounted_ro, read_status, sha
    from tether.engine.install import InstallOptions, install
    from tether.engine.update import UpdateOptions, stage

    v1, v2 = images["v1"], images["v2"]
    pins = {}
    for name, img in (("v1", v1), ("v2", v2)):
        pins[name] = hashlib.sha384(_reorder(img.cosi, tmp_path / f"{name}.cosi")).hexdigest()
    with FaultServer({"v1.cosi": tmp_path / "v1.cosi", "v2.cosi": tmp_path / "v2.cosi"}) as srv:
        def hc(path: str, host: str) -> HostConfiguration:
            pin = pins[path.rsplit("/", 1)[-1].split(".")[0]]
            return parse_host_config(config(loopdisk.device, f"{srv.base}/{path}", pin, host, alg="sha384"))

        with pytest.raises(TetherError, match="does not support Range requests, and metadata.json is not at the "
                                              "start"):
            install(hc("norange/v1.cosi", "node-1"), Runner(), InstallOptions())
        # found while probing, before partitioning: the disk is still blank
        assert subprocess.run(["sfdisk", "--dump", loopdisk.device], capture_output=True).returncode != 0
        install(hc("v1.cosi", "node-1"), Runner(), InstallOptions())
        with mounted_ro(loopdisk.part(ROOT_A), tmp_path / "a") as a:
            assert (a / "usr/share/payload.bin").read_bytes() == v1.files["usr/share/payload.bin"]
            assert (a / "etc/os-release").read_bytes() == v1.files["etc/os-release"]
            assert f"UUID={IMAGE_UUID}\t/\text4" in (a / "etc/fstab").read_text()

        commit(loopdisk, tmp_path)
        a_before = sha(loopdisk.part(ROOT_A))
        with live_root(loopdisk, tmp_path / "live") as live:
            with pytest.raises(TetherError, match="does not support Range requests"):
                stage(hc("norange/v2.cosi", "node-2"), Runner(), live, UpdateOptions(net_retries=1))
            assert read_status(loopdisk, tmp_path, live)["servicingState"] == "provisioned"
            what, _doc = stage(hc("v2.cosi", "node-2"), Runner(), live, UpdateOptions(net_retries=1))
            assert what == "staged into volume-b"
    assert sha(loopdisk.part(ROOT_A)) == a_before
    with mounted_ro(loopdisk.part(ROOT_B), tmp_path / "b") as b:
        assert (b / "usr/share/payload.bin").read_bytes() == v2.files["usr/share/payload.bin"]
        assert (b / "etc/os-release").read_bytes() == v2.files["etc/os-release"]
        assert (b / "etc/hostname").read_text() == "node-2\n"
