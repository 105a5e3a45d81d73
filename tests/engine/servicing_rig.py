"""A host on a loop disk whose boots are simulated: the file-backed fake boot loader picks the entry (with boot
counting), the rig gives that boot a fresh boot id and a /proc/cmdline naming the entry, and mounts the booted
slot as the running root (read-only, with /run, the servicing partition and the ESP mounted where they belong).
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import BuiltImage, LoopDisk, build_image, sh
from tether.engine import state
from tether.engine.boot import parse_entry_id
from tether.engine.boot_fake import FakeBoot
from tether.engine.bootsetup import Machine
from tether.engine.finalize import ServicingEnv, finalize_install
from tether.engine.hostconfig import parse_host_config
from tether.engine.install import InstallOptions, install
from tether.runner import Result, Runner
from tether.target import Target

ESP, ROOT_A, ROOT_B, STATE = 1, 2, 3, 4
SLOT_PART = {"volume-a": ROOT_A, "volume-b": ROOT_B}


def config(disk: str, img: BuiltImage, hostname: str = "node-1", checks: list[dict[str, Any]] | None = None,
           extra: list[str] | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "image": {"url": f"file://{img.zst}", "sha256": img.sha256(img.zst)},
        "storage": {
            "disks": [{"id": "os", "device": disk, "partitionTableType": "gpt", "partitions": [
                {"id": "esp", "type": "esp", "size": "16M"},
                {"id": "root-a", "type": "root", "size": "40M"},
                {"id": "root-b", "type": "root", "size": "40M"},
                {"id": "state", "size": "grow", "label": "servicing"},
            ]}],
            "abUpdate": {"volumePairs": [{"id": "root", "volumeAId": "root-a", "volumeBId": "root-b"}]},
            # ext4, not vfat: the test machine's kernel has no vfat driver; nothing here depends on FAT
            "filesystems": [
                {"deviceId": "esp", "source": "new", "type": "ext4", "mountPoint": "/boot/efi"},
                {"deviceId": "root", "mountPoint": "/"},
                {"deviceId": "state", "source": "new", "mountPoint": "/var/lib/servicing"},
            ],
        },
        "trident": {"datastorePath": "/var/lib/servicing/datastore.sqlite"},
        "os": {"hostname": hostname},
    }
    if checks:
        cfg["health"] = {"checks": checks}
    if extra:
        cfg["os"]["kernelCommandLine"] = {"extraCommandLine": extra}
    return cfg


def slot_image(work: Path, name: str, version: str) -> BuiltImage:
    return build_image(work, name, {
        "etc/os-release": f"ID=test\nVERSION_ID={version}\n".encode(), "etc/hostname": b"image-default\n",
        "etc/machine-id": b"11111111111111111111111111111111\n", "boot/efi/": b"",
        f"boot/vmlinuz-6.1.0-{version}": f"KERNEL {version}\n".encode(),
        f"boot/initrd.img-6.1.0-{version}": f"INITRD {version}\n".encode(),
        "var/lib/servicing/": b"", "var/lib/tether/": b"", "var/lib/cloud/": b"", "run/": b""})


@pytest.fixture(scope="session", name="kimages")
def kimages_fixture(engine_tools: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuiltImage]:
    work = tmp_path_factory.mktemp("kernel-images")
    return {"v1": slot_image(work, "k1", "1"), "v2": slot_image(work, "k2", "2"), "v3": slot_image(work, "k3", "3")}


@dataclass
class BootRunner(Runner):
    """The real runner, except that ``systemctl reboot`` is recorded, and health scripts meant to run chrooted
    in the slot (whose image has no shell) run with the host's shell on the slot's copy of the script."""

    reboots: int = 0
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        Runner.__init__(self)

    def run(self, argv: Any, **kw: Any) -> Result:  # type: ignore[override]
        argv = [str(a) for a in argv]
        if argv[:2] == ["systemctl", "reboot"]:
            self.reboots += 1
            return Result(argv, 0, "", "")
        root = kw.pop("chroot", None)
        if root and root != "/":
            argv = [argv[0], *(str(Path(root) / a.lstrip("/")) if a.startswith("/run/tether/health") else a
                               for a in argv[1:])]
        self.log.append(" ".join(argv))
        return super().run(argv, **kw)


class Rig:
    def __init__(self, disk: LoopDisk, tmp: Path) -> None:
        self.disk = disk
        self.tmp = tmp
        self.mroot = tmp / "machine"
        (self.mroot / "proc/sys/kernel/random").mkdir(parents=True)
        self.machine = Machine(cmdline=self.mroot / "proc/cmdline",
                               boot_id=self.mroot / "proc/sys/kernel/random/boot_id",
                               efivars=self.mroot / "sys/firmware/efi/efivars")
        self.fake = FakeBoot(tmp / "fake-boot.json")
        self.runner = BootRunner()
        self.new_boot_id()
        self.machine.cmdline.write_text("console=ttyS0 panic=5 installer\n")

    def new_boot_id(self) -> None:
        self.machine.boot_id.write_text(str(uuid.uuid4()) + "\n")

    def env(self, root: Target, **kw: Any) -> ServicingEnv:
        return ServicingEnv(root=root, runner=self.runner, machine=self.machine, backend=kw.pop("backend", self.fake),
                            **kw)

    def install(self, img: BuiltImage, **cfg_kw: Any) -> dict[str, Any]:
        hc = parse_host_config(config(self.disk.device, img, **cfg_kw))
        install(hc, Runner(), InstallOptions())
        _msg, doc = finalize_install(hc, self.env(Target.at("/")))
        return doc

    def boot(self) -> str | None:
        """Power cycle: the loader picks an entry; the kernel command line and boot id follow."""
        self.new_boot_id()
        entry = self.fake.boot()
        opts = self.fake.load()["entries"][entry]["options"] if entry else ""
        self.machine.cmdline.write_text(opts + "\n")
        return entry

    def booted_slot(self) -> str:
        parsed = parse_entry_id(self.fake.booted_entry() or "")
        assert parsed is not None
        return parsed[1]

    @contextlib.contextmanager
    def running(self, slot: str | None = None, esp: bool = True) -> Iterator[Target]:
        """The booted slot as the running root."""
        slot = slot or self.booted_slot()
        base = self.tmp / f"live-{uuid.uuid4().hex[:8]}"
        base.mkdir()
        mounted: list[Path] = []
        try:
            sh("mount", "-o", "ro,noload", self.disk.part(SLOT_PART[slot]), str(base))
            mounted.append(base)
            sh("mount", "-t", "tmpfs", "tmpfs", str(base / "run"))
            mounted.append(base / "run")
            sh("mount", self.disk.part(STATE), str(base / "var/lib/servicing"))
            mounted.append(base / "var/lib/servicing")
            for d in ("var/lib/tether", "var/lib/cloud"):
                sh("mount", "-t", "tmpfs", "tmpfs", str(base / d))
                mounted.append(base / d)
            if esp:
                sh("mount", self.disk.part(ESP), str(base / "boot/efi"))
                mounted.append(base / "boot/efi")
            yield Target.at(base)
        finally:
            for m in reversed(mounted):
                subprocess.run(["umount", "-l", str(m)], capture_output=True)

    def status(self, root: Target) -> dict[str, Any]:
        with state.StateStore(state.datastore_location(root)) as store:
            return store.current()

    def history(self, root: Target) -> list[str]:
        with state.StateStore(state.datastore_location(root)) as store:
            return [h["event"] for h in store.history()]
