"""Loop-device disks and test images for the engine's integration tests (root only)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TOOLS = ("losetup", "sfdisk", "partx", "mkfs.ext4", "mkfs.vfat", "e2fsck", "resize2fs", "tune2fs", "blkid",
         "wipefs", "mount", "umount", "zstd")
IMAGE_UUID = "5b7a3c1e-0d2f-4e6a-9b8c-123456789abc"


def sh(*argv: str, data: bytes | None = None) -> str:
    return subprocess.run(argv, input=data, capture_output=True, check=True).stdout.decode()


def mounts_under(prefix: str) -> list[str]:
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        src, mp = line.split()[:2]
        if src.startswith(prefix) or mp.startswith(prefix):
            out.append(mp)
    return sorted(out, key=len, reverse=True)


@dataclass
class BuiltImage:
    raw: Path
    zst: Path
    cosi: Path
    files: dict[str, bytes]

    def sha256(self, p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()


def build_image(work: Path, name: str, files: dict[str, bytes], size_mb: int = 24) -> BuiltImage:
    import io
    import json
    import tarfile

    import zstandard

    src = work / f"{name}-tree"
    for rel, data in files.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("/"):
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.write_bytes(data)
    raw = work / f"{name}.img"
    with open(raw, "wb") as f:
        f.truncate(size_mb << 20)
    sh("mkfs.ext4", "-q", "-F", "-U", IMAGE_UUID, "-L", name, "-d", str(src), str(raw))
    zst = work / f"{name}.img.zst"
    sh("zstd", "-q", "-f", "-3", str(raw), "-o", str(zst))
    comp = zst.read_bytes()
    meta = {"version": "1.2", "osArch": "x86_64", "osRelease": "ID=test\n", "osPackages": [],
            "bootloader": {"type": "grub"}, "compression": {"maxWindowLog": 27},
            "images": [{"image": {"path": "images/root.rawzst", "compressedSize": len(comp),
                                  "uncompressedSize": raw.stat().st_size,
                                  "sha384": hashlib.sha384(comp).hexdigest()},
                        "mountPoint": "/", "fsType": "ext4", "fsUuid": IMAGE_UUID,
                        "partType": "4f68bce3-e8cd-4db1-96e7-fbcaf984b709", "verity": None}]}
    meta["disk"] = {"size": 1 << 30, "type": "gpt", "lbaSize": 512,
                    "gptRegions": [{"type": "primary-gpt", "image": meta["images"][0]["image"]}]}
    cosi = work / f"{name}.cosi"
    with tarfile.open(cosi, "w", format=tarfile.PAX_FORMAT) as tar:
        for member, data in (("cosi-marker", b""), ("metadata.json", json.dumps(meta).encode()),
                             ("images/root.rawzst", comp)):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    _ = zstandard
    return BuiltImage(raw, zst, cosi, {k: v for k, v in files.items() if not k.endswith("/")})


@pytest.fixture(scope="session")
def engine_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices, mounts)")
    import shutil
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    pytest.importorskip("zstandard")


@pytest.fixture(scope="session")
def images(engine_tools: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuiltImage]:
    work = tmp_path_factory.mktemp("engine-images")
    payload1, payload2 = os.urandom(1 << 20), os.urandom(1 << 20)
    v1 = build_image(work, "v1", {
        "etc/os-release": b"ID=test\nVERSION_ID=1\n", "etc/hostname": b"image-default\n",
        "etc/machine-id": b"11111111111111111111111111111111\n",
        "etc/ssh/ssh_host_ed25519_key": b"KEY-A\n", "var/lib/tether/instance-id": b"iid-1\n",
        "var/lib/servicing/": b"", "usr/share/payload.bin": payload1})
    v2 = build_image(work, "v2", {
        "etc/os-release": b"ID=test\nVERSION_ID=2\n", "etc/hostname": b"image-default\n",
        "etc/machine-id": b"22222222222222222222222222222222\n",
        "var/lib/servicing/": b"", "usr/share/payload.bin": payload2})
    return {"v1": v1, "v2": v2}


@dataclass
class LoopDisk:
    device: str
    backing: Path

    def part(self, n: int) -> str:
        return f"{self.device}p{n}"


def _cleanup(dev: str) -> None:
    # only this disk's mounts: other tests (in parallel sessions) have theirs under /run/tether-engine too
    for mp in mounts_under(dev + "p"):
        subprocess.run(["umount", "-l", mp], capture_output=True)
    subprocess.run(["losetup", "-d", dev], capture_output=True)


@pytest.fixture
def loopdisk(engine_tools: None, tmp_path: Path) -> Iterator[LoopDisk]:
    backing = tmp_path / "disk.img"
    with open(backing, "wb") as f:
        f.truncate(128 << 20)
    dev = sh("losetup", "-f", "--show", "-P", str(backing)).strip()
    try:
        yield LoopDisk(dev, backing)
    finally:
        for mp in mounts_under(str(tmp_path)):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        _cleanup(dev)
