"""Integration: real cidata ISO (xorriso) and CIDATA vfat (mtools) seeds on loop devices, found by label with
blkid and mounted read-only in a private temporary directory (or, where this kernel has no iso9660/vfat
driver, read in user space), as at boot. Also a config-2 drive."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import needs_root, needs_tool
from tether.datasource import DsContext
from tether.datasources.nocloud import NoCloud
from tether.host import Host
from tether.runner import Runner
from tether.target import Target

pytestmark = [needs_root(), pytest.mark.root]


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


@pytest.fixture
def loop() -> Iterator[list[str]]:
    devs: list[str] = []
    yield devs
    for d in devs:
        subprocess.run(["losetup", "-d", d], check=False)


def seed_files(d: Path, iid: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "meta-data").write_text(f"instance-id: {iid}\nlocal-hostname: seeded\n")
    (d / "user-data").write_text("#cloud-config\nruncmd: [[true]]\n")


def _mounts() -> str:
    return Path("/proc/self/mounts").read_text()


@needs_tool("xorriso", "losetup", "blkid")
def test_iso_seed_found_by_label_and_unmounted_after(tmp_path: Path, loop: list[str]) -> None:
    src = tmp_path / "src"
    seed_files(src, "iid-iso-1")
    iso = tmp_path / "seed.iso"
    sh("xorriso", "-as", "genisoimage", "-output", str(iso), "-volid", "cidata", "-joliet", "-rock",
       str(src / "user-data"), str(src / "meta-data"))
    loop.append(sh("losetup", "--find", "--show", "--read-only", str(iso)).strip())
    before = _mounts()
    ds = NoCloud(DsContext(Host(), Target.at(tmp_path / "root"), Runner(), {}))
    assert ds.detect()
    inst = ds.fetch()
    assert inst.instance_id == "iid-iso-1"
    assert inst.local_hostname == "seeded"
    assert inst.subplatform == f"config-disk ({loop[0]})"
    assert _mounts() == before, "the seed must be unmounted after reading"


@needs_tool("mkfs.vfat", "mcopy", "losetup", "blkid")
def test_vfat_seed_with_upper_case_label(tmp_path: Path, loop: list[str]) -> None:
    src = tmp_path / "src"
    seed_files(src, "iid-vfat-1")
    img = tmp_path / "seed.img"
    sh("mkfs.vfat", "-n", "CIDATA", "-C", str(img), "2048")
    sh("mcopy", "-i", str(img), str(src / "meta-data"), str(src / "user-data"), "::")
    loop.append(sh("losetup", "--find", "--show", "--read-only", str(img)).strip())
    inst = NoCloud(DsContext(Host(), Target.at(tmp_path / "root"), Runner(), {})).fetch()
    assert inst.instance_id == "iid-vfat-1"


@needs_tool("mkfs.vfat", "mcopy", "mmd", "losetup", "blkid")
def test_config_drive(tmp_path: Path, loop: list[str]) -> None:
    pytest.importorskip("tether.datasources.openstack_format")
    from tether.datasources.configdrive import ConfigDrive
    img = tmp_path / "cd.img"
    sh("mkfs.vfat", "-n", "config-2", "-C", str(img), "2048")
    base = tmp_path / "md"
    base.mkdir()
    (base / "meta_data.json").write_text(json.dumps({"uuid": "cd-uuid-1", "hostname": "cdhost",
                                                     "public_keys": {"k": "ssh-ed25519 AAAA k@x"}}))
    (base / "user_data").write_text("#cloud-config\n{}\n")
    sh("mmd", "-i", str(img), "::openstack", "::openstack/latest")
    sh("mcopy", "-i", str(img), str(base / "meta_data.json"), str(base / "user_data"), "::openstack/latest/")
    loop.append(sh("losetup", "--find", "--show", "--read-only", str(img)).strip())
    ds = ConfigDrive(DsContext(Host(), Target.at(tmp_path / "root"), Runner(), {}))
    assert ds.detect()
    inst = ds.fetch()
    assert inst.instance_id == "cd-uuid-1"
    assert inst.datasource == "ConfigDrive"
    assert inst.userdata == b"#cloud-config\n{}\n"
    assert "ssh-ed25519 AAAA k@x" in inst.public_ssh_keys
