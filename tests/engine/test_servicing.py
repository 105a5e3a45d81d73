"""Clean install onto a blank loop disk, A/B staging into slot B, restartability, image faults (root only)."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.engine.conftest import IMAGE_UUID, BuiltImage, LoopDisk, sh
from tests.engine.faultserver import FaultServer
from tether.engine import checkpoints, state
from tether.engine.cli import add_parsers
from tether.engine.hostconfig import parse_host_config
from tether.engine.install import InstallError, InstallOptions, install
from tether.engine.update import UpdateError, UpdateOptions, stage
from tether.errors import TetherError
from tether.runner import Runner
from tether.target import Target

ESP, ROOT_A, ROOT_B, STATE = 1, 2, 3, 4


def config(disk: str, url: str, digest: str, hostname: str = "node-1", alg: str = "sha256") -> dict[str, Any]:
    return {
        "image": {"url": url, alg: digest},
        "storage": {
            "disks": [{"id": "os", "device": disk, "partitionTableType": "gpt", "partitions": [
                {"id": "esp", "type": "esp", "size": "16M"},
                {"id": "root-a", "type": "root", "size": "40M"},
                {"id": "root-b", "type": "root", "size": "40M"},
                {"id": "state", "size": "grow", "label": "servicing"},
            ]}],
            "abUpdate": {"volumePairs": [{"id": "root", "volumeAId": "root-a", "volumeBId": "root-b"}]},
            "filesystems": [
                {"deviceId": "esp", "mountPoint": {"path": "/boot/efi", "options": "umask=0077"}},
                {"deviceId": "root", "mountPoint": "/"},
                {"deviceId": "state", "source": "new", "mountPoint": "/var/lib/servicing"},
            ],
        },
        "trident": {"datastorePath": "/var/lib/servicing/datastore.sqlite"},
        "os": {"hostname": hostname,
               "additionalFiles": [{"destination": "/etc/motd", "content": f"welcome to {hostname}\n"}]},
    }


def sha(path: str) -> str:
    """SHA-256 of a device's bytes as on disk (O_DIRECT: no page cache left over from an earlier loop device)."""
    import mmap
    h = hashlib.sha256()
    buf = mmap.mmap(-1, 1 << 20)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        while n := os.readv(fd, [buf]):
            h.update(memoryview(buf)[:n])
    finally:
        os.close(fd)
        buf.close()
    return h.hexdigest()


def blkid(dev: str, tag: str) -> str:
    return sh("blkid", "-p", "-s", tag, "-o", "value", dev).strip()


@contextlib.contextmanager
def mounted_ro(dev: str, where: Path) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    sh("mount", "-o", "ro,noload", dev, str(where))
    try:
        yield where
    finally:
        sh("umount", str(where))


@contextlib.contextmanager
def live_root(disk: LoopDisk, base: Path) -> Iterator[Target]:
    """Slot A mounted read-only as the 'running root', with the servicing partition where it belongs."""
    with mounted_ro(disk.part(ROOT_A), base):
        sh("mount", disk.part(STATE), str(base / "var/lib/servicing"))
        try:
            yield Target.at(base)
        finally:
            sh("umount", str(base / "var/lib/servicing"))


def do_install(disk: LoopDisk, img: BuiltImage) -> None:
    hc = parse_host_config(config(disk.device, f"file://{img.zst}", img.sha256(img.zst)))
    install(hc, Runner(), InstallOptions())


def commit(disk: LoopDisk, tmp: Path) -> None:
    """Stand-in for the bootloader step's commit (next issue): the installed slot booted and is good."""
    where = tmp / "state-mnt"
    where.mkdir(exist_ok=True)
    sh("mount", disk.part(STATE), str(where))
    try:
        with state.StateStore(where / "datastore.sqlite") as store:
            store.update("clean-install-finalized", servicingState=state.CLEAN_INSTALL_FINALIZED)
            store.update("committed", servicingState=state.PROVISIONED)
    finally:
        sh("umount", str(where))


def read_status(disk: LoopDisk, tmp: Path, live: Target | None = None) -> dict[str, Any]:
    if live is not None:  # the state partition is mounted in the running root already
        with state.StateStore(live.path("/var/lib/servicing/datastore.sqlite")) as store:
            return store.current()
    where = tmp / "state-ro"
    with mounted_ro(disk.part(STATE), where), state.StateStore(where / "datastore.sqlite") as store:
        return store.current()


def cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default="/")
    parser.add_argument("--debug", action="store_true")
    add_parsers(parser.add_subparsers(dest="verb"))
    return parser.parse_args(argv)


def test_install_then_stage_update(loopdisk: LoopDisk, images: dict[str, BuiltImage], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    v1, v2 = images["v1"], images["v2"]
    cfg_file = tmp_path / "install.yaml"
    cfg_file.write_text(yaml.safe_dump(config(loopdisk.device, f"file://{v1.zst}", v1.sha256(v1.zst))))
    args = cli(["install", str(cfg_file), "--allowed-operations", "stage", "--progress", "json"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert '"event": "progress"' in out and "clean-install-staged" in out

    # the disk: GPT with discoverable types and labels, slot A holds v1 grown to its partition
    table = json.loads(sh("sfdisk", "--json", loopdisk.device))["partitiontable"]
    types = [p["type"] for p in table["partitions"]]
    assert types[:3] == ["C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
                         "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"]
    assert table["partitions"][3]["name"] == "servicing"
    assert blkid(loopdisk.part(ESP), "TYPE") == "vfat"
    assert blkid(loopdisk.part(ROOT_A), "UUID") == IMAGE_UUID
    sh("e2fsck", "-fn", loopdisk.part(ROOT_A))
    blocks = int(sh("dumpe2fs", "-h", loopdisk.part(ROOT_A)).split("Block count:")[1].split()[0])
    assert blocks * 4096 > 30 << 20  # grown from 24 MiB to fill the 40 MiB partition
    with mounted_ro(loopdisk.part(ROOT_A), tmp_path / "a") as a:
        assert (a / "usr/share/payload.bin").read_bytes() == v1.files["usr/share/payload.bin"]
        assert (a / "etc/hostname").read_text() == "node-1\n"
        assert (a / "etc/motd").read_text() == "welcome to node-1\n"
        fstab = (a / "etc/fstab").read_text()
        assert f"UUID={IMAGE_UUID}\t/\text4" in fstab
        assert f"UUID={blkid(loopdisk.part(STATE), 'UUID')}\t/var/lib/servicing" in fstab
        assert json.loads((a / "etc/tether/engine.json").read_text())["datastore"] == \
            "/var/lib/servicing/datastore.sqlite"
    status = read_status(loopdisk, tmp_path)
    assert status["servicingState"] == "clean-install-staged"
    assert status["abActiveVolume"] == "volume-a"

    commit(loopdisk, tmp_path)
    a_before = sha(loopdisk.part(ROOT_A))
    cfg2 = tmp_path / "update.yaml"
    cfg2.write_text(yaml.safe_dump(config(loopdisk.device, f"file://{v2.cosi}",
                                          hashlib.sha384(_metadata(v2.cosi)).hexdigest(), "node-2", "sha384")))
    with live_root(loopdisk, tmp_path / "live") as live:
        args = cli(["--root", str(live.root), "update", str(cfg2), "--allowed-operations", "stage"])
        assert args.func(args) == 0
        assert "staged into volume-b" in capsys.readouterr().out
        args = cli(["--root", str(live.root), "update", str(cfg2), "--allowed-operations", "stage"])
        assert args.func(args) == 0
        assert "already staged" in capsys.readouterr().out
        args = cli(["--root", str(live.root), "get", "status", "--format", "json"])
        assert args.func(args) == 0
        got = json.loads(capsys.readouterr().out)
        assert got["servicingState"] == "ab-update-staged"
        assert got["slots"]["volume-b"]["state"] == "staged"
        assert got["specOld"]["os"]["hostname"] == "node-1"
        args = cli(["--root", str(live.root), "get", "configuration"])
        assert args.func(args) == 0
        assert yaml.safe_load(capsys.readouterr().out)["os"]["hostname"] == "node-2"
        args = cli(["--root", str(live.root), "update", str(cfg2), "--allowed-operations", "finalize"])
        assert args.func(args) == 1  # finalize needs the ESP, which this test does not mount
        assert "is not mounted at /boot/efi" in capsys.readouterr().err

    assert sha(loopdisk.part(ROOT_A)) == a_before
    b_uuid = blkid(loopdisk.part(ROOT_B), "UUID")
    assert b_uuid and b_uuid != IMAGE_UUID  # same UUID as slot A in the image: changed
    sh("e2fsck", "-fn", loopdisk.part(ROOT_B))
    with mounted_ro(loopdisk.part(ROOT_B), tmp_path / "b") as b:
        assert (b / "usr/share/payload.bin").read_bytes() == v2.files["usr/share/payload.bin"]
        assert (b / "etc/os-release").read_bytes() == b"ID=test\nVERSION_ID=2\n"
        assert (b / "etc/hostname").read_text() == "node-2\n"
        assert (b / "etc/machine-id").read_bytes() == v1.files["etc/machine-id"]  # carried over
        assert (b / "etc/ssh/ssh_host_ed25519_key").read_bytes() == b"KEY-A\n"
        assert (b / "var/lib/tether/instance-id").read_bytes() == b"iid-1\n"
        assert f"UUID={b_uuid}\t/\text4" in (b / "etc/fstab").read_text()


def _metadata(cosi: Path) -> bytes:
    import tarfile
    with tarfile.open(cosi) as tar:
        f = tar.extractfile("metadata.json")
        assert f is not None
        return f.read()


def test_storage_change_is_refused(loopdisk: LoopDisk, images: dict[str, BuiltImage], tmp_path: Path) -> None:
    v1 = images["v1"]
    do_install(loopdisk, v1)
    commit(loopdisk, tmp_path)
    cfg = config(loopdisk.device, f"file://{v1.zst}", v1.sha256(v1.zst))
    cfg["storage"]["disks"][0]["partitions"][0]["size"] = "32M"
    with live_root(loopdisk, tmp_path / "live") as live:
        with pytest.raises(UpdateError, match="storage layout cannot change"):
            stage(parse_host_config(cfg), Runner(), live, UpdateOptions())
        same = parse_host_config(config(loopdisk.device, f"file://{v1.zst}", v1.sha256(v1.zst)))
        what, _ = stage(same, Runner(), live, UpdateOptions())
        assert what.startswith("nothing to do")


KILL_POINTS = ["stage:started", "stage:written", "stage:configured", "stage:recorded"]


def test_staging_killed_at_any_point_restarts(loopdisk: LoopDisk, images: dict[str, BuiltImage],
                                              tmp_path: Path) -> None:
    v1, v2 = images["v1"], images["v2"]
    do_install(loopdisk, v1)
    commit(loopdisk, tmp_path)
    a_before = sha(loopdisk.part(ROOT_A))
    with live_root(loopdisk, tmp_path / "live") as live:
        for i, point in enumerate(KILL_POINTS):
            hc = parse_host_config(config(loopdisk.device, f"file://{v2.zst}", v2.sha256(v2.zst), f"host-{i}"))
            pid = os.fork()
            if pid == 0:  # the child dies at the point without unwinding, like SIGKILL
                def die(name: str, point: str = point) -> None:
                    if name == point:
                        os._exit(77)
                checkpoints.HOOK = die
                try:
                    stage(hc, Runner(), live, UpdateOptions())
                finally:
                    os._exit(1)
            _, code = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(code) == 77, point
            what, doc = stage(hc, Runner(), live, UpdateOptions())
            assert what in ("staged into volume-b", "already staged"), (point, what)
            assert (what == "already staged") == (point == "stage:recorded")
            assert doc["servicingState"] == "ab-update-staged"
            assert doc["spec"]["os"]["hostname"] == f"host-{i}"
            assert doc["specOld"]["os"]["hostname"] == "node-1"
            assert sha(loopdisk.part(ROOT_A)) == a_before, point
    with mounted_ro(loopdisk.part(ROOT_B), tmp_path / "b") as b:
        assert (b / "etc/hostname").read_text() == f"host-{len(KILL_POINTS) - 1}\n"


def test_image_faults_over_http(loopdisk: LoopDisk, images: dict[str, BuiltImage], tmp_path: Path) -> None:
    v1, v2 = images["v1"], images["v2"]
    do_install(loopdisk, v1)
    commit(loopdisk, tmp_path)
    a_before = sha(loopdisk.part(ROOT_A))
    good = v2.sha256(v2.zst)
    opts = UpdateOptions(net_timeout=1.0, net_retries=3)
    with FaultServer({"v2.img.zst": v2.zst}, stall=2.5) as srv, live_root(loopdisk, tmp_path / "live") as live:
        def run(path: str, digest: str, host: str) -> tuple[str, dict[str, Any]]:
            hc = parse_host_config(config(loopdisk.device, f"{srv.base}/{path}", digest, host))
            return stage(hc, Runner(), live, opts)

        with pytest.raises(TetherError, match="HTTP 404"):
            run("missing.img.zst", good, "h404")
        assert read_status(loopdisk, tmp_path, live)["servicingState"] == "provisioned"

        with pytest.raises(TetherError, match="sha256 is .* pins " + "0" * 64):
            run("v2.img.zst", "0" * 64, "hbad")
        status = read_status(loopdisk, tmp_path, live)
        assert status["servicingState"] == "provisioned"
        assert status["slots"]["volume-b"]["state"] == "bad"
        assert status["lastError"]["category"] == "image-hash-mismatch"
        assert blkid_or_none(loopdisk.part(ROOT_B)) is None  # the half-trusted slot is wiped

        with pytest.raises(TetherError, match="announced|gave up|truncated"):
            run("long/v2.img.zst", good, "hlong")

        # request 1 is the format probe, request 2 the download that breaks and resumes
        what, _ = run("drop-once@2/v2.img.zst", good, "hdrop")
        assert what == "staged into volume-b"
        assert any(r[0] == "/drop-once@2/v2.img.zst" and r[1] for r in srv.requests)  # resumed with Range

        what, doc = run("stall-once@2/v2.img.zst", good, "hstall")
        assert what == "staged into volume-b"
        assert any(r[0] == "/stall-once@2/v2.img.zst" and r[1] for r in srv.requests)  # timed out, resumed
        assert doc["lastError"] is None
    assert sha(loopdisk.part(ROOT_A)) == a_before
    with mounted_ro(loopdisk.part(ROOT_B), tmp_path / "b") as b:
        assert (b / "usr/share/payload.bin").read_bytes() == v2.files["usr/share/payload.bin"]
        assert (b / "etc/hostname").read_text() == "hstall\n"


def blkid_or_none(dev: str) -> str | None:
    res = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", dev], capture_output=True, text=True)
    return res.stdout.strip() or None


def test_refuses_the_running_root_disk(engine_tools: None, images: dict[str, BuiltImage]) -> None:
    root_src = next(src for src, mp in (line.split()[:2] for line in Path("/proc/self/mounts").read_text()
                                        .splitlines()) if mp == "/")
    if not root_src.startswith("/dev/"):
        pytest.skip(f"the root filesystem is not on a block device ({root_src})")
    v1 = images["v1"]
    hc = parse_host_config(config(root_src, f"file://{v1.zst}", v1.sha256(v1.zst)))
    with pytest.raises(TetherError, match="holds the running root filesystem"):
        install(hc, Runner(), InstallOptions())


def test_install_fails_cleanly_on_wrong_hash(loopdisk: LoopDisk, images: dict[str, BuiltImage]) -> None:
    v1 = images["v1"]
    hc = parse_host_config(config(loopdisk.device, f"file://{v1.cosi}", "1" * 96, alg="sha384"))
    with pytest.raises(TetherError, match="metadata.json"):
        install(hc, Runner(), InstallOptions())
    # the metadata pin is checked before partitioning: the disk is still blank
    assert subprocess.run(["sfdisk", "--dump", loopdisk.device], capture_output=True).returncode != 0
    _ = InstallError
