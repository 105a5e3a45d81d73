"""Filesystem labels read from superblocks (tether.fslabel) agree with blkid on real images made by the real
tools, and the generator finds a seed by label on a host without /dev/disk/by-label (early boot, no udev)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tether.detect import Detection, detect
from tether.fslabel import devices_with_labels, read_label
from tether.host import Host


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=120)


def blkid_label(path: Path) -> str | None:
    res = subprocess.run(["blkid", "-p", "-s", "LABEL", "-o", "value", str(path)], capture_output=True, text=True,
                         timeout=30)
    return res.stdout.strip() or None


def make(kind: str, img: Path, label: str, tmp: Path) -> None:
    if kind == "iso9660":
        src = tmp / "isosrc"
        src.mkdir(exist_ok=True)
        (src / "meta-data").write_text("instance-id: x\n")
        sh("xorriso", "-as", "genisoimage", "-output", str(img), "-volid", label, "-joliet", "-rock", str(src))
        return
    img.write_bytes(b"")
    size = 300 * 1024 * 1024 if kind in ("xfs", "btrfs") else 8 * 1024 * 1024
    with img.open("r+b") as f:
        f.truncate(size)
    argv = {"vfat": ["mkfs.vfat", "-n", label], "vfat32": ["mkfs.vfat", "-F", "32", "-n", label],
            "ext4": ["mkfs.ext4", "-q", "-F", "-L", label], "xfs": ["mkfs.xfs", "-q", "-f", "-L", label],
            "btrfs": ["mkfs.btrfs", "-q", "-f", "-L", label]}[kind]
    if kind == "vfat32":
        with img.open("r+b") as f:
            f.truncate(64 * 1024 * 1024)
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} not installed")
    sh(*argv, str(img))


KINDS = [("iso9660", "cidata"), ("vfat", "CIDATA"), ("vfat", "config-2"), ("vfat32", "CIDATA"),
         ("ext4", "cidata"), ("xfs", "config-2"), ("btrfs", "cidata")]


@pytest.mark.parametrize(("kind", "label"), KINDS, ids=[f"{k}-{v}" for k, v in KINDS])
def test_label_read_from_superblock_matches_blkid(tmp_path: Path, kind: str, label: str) -> None:
    if shutil.which("blkid") is None or (kind == "iso9660" and shutil.which("xorriso") is None):
        pytest.skip("blkid/xorriso missing")
    img = tmp_path / f"{kind}.img"
    make(kind, img, label, tmp_path)
    assert read_label(str(img)) == blkid_label(img)
    assert (read_label(str(img)) or "").lower() == label.lower()


def test_fat_label_set_only_in_root_directory_wins(tmp_path: Path) -> None:
    # mlabel (mtools) rewrites the root directory's volume-label entry; blkid reports that one, so must we
    if shutil.which("mlabel") is None or shutil.which("mkfs.vfat") is None:
        pytest.skip("mtools/dosfstools missing")
    img = tmp_path / "fat.img"
    make("vfat", img, "OLDNAME", tmp_path)
    sh("mlabel", "-i", str(img), "::CIDATA")
    assert read_label(str(img)) == blkid_label(img) == "CIDATA"


def test_no_label_and_unreadable_devices(tmp_path: Path) -> None:
    blank = tmp_path / "blank.img"
    blank.write_bytes(b"\0" * 1024 * 1024)
    assert read_label(str(blank)) is None
    assert read_label(str(tmp_path / "missing")) is None
    short = tmp_path / "short.img"
    short.write_bytes(b"\x55\xaa")                 # truncated garbage must not raise
    assert read_label(str(short)) is None


def fake_block(root: Path, name: str, image: Path | None, size_sectors: int = 2048) -> None:
    d = root / "sys/class/block" / name
    d.mkdir(parents=True)
    (d / "size").write_text(f"{size_sectors}\n")
    (root / "dev").mkdir(exist_ok=True)
    if image is not None:
        shutil.copy(image, root / "dev" / name)


def test_detect_finds_cidata_without_udev_links(tmp_path: Path) -> None:
    if shutil.which("xorriso") is None:
        pytest.skip("xorriso missing")
    iso = tmp_path / "seed.iso"
    make("iso9660", iso, "cidata", tmp_path)
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "proc/cmdline").write_text("root=/dev/vda1 ro\n")
    fake_block(root, "vda", None)                  # no device node: skipped quietly
    fake_block(root, "ram0", None)
    fake_block(root, "vdb", iso)
    fake_block(root, "loop0", None, size_sectors=0)
    assert devices_with_labels(str(root), {"cidata"}) == [str(root / "dev/vdb")]
    det = detect(Host(sysroot=root), {}, str(root))
    assert det.candidates == ["NoCloud", "None"]
    assert det.evidence["NoCloud"] == f"filesystem label cidata on {root / 'dev/vdb'}"


@pytest.mark.parametrize("text", ['plain', 'quote " and back\\slash', "new\nline\ttab\x01\x7f", "ünïcødé ☃", ""])
def test_detect_json_round_trips(text: str) -> None:
    det = Detection(True, text, ["NoCloud", "None"], {"NoCloud": text}, text or None)
    assert json.loads(det.to_json()) == det.as_dict()
    assert Detection(**json.loads(det.to_json())) == det
