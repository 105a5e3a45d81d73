"""Disks for the servicing engine's QEMU proofs (issue 6).

The harness's A/B disk was not made by ``tether install``, so the engine has no datastore on it. We **adopt the
running layout** at image build time rather than running ``tether install`` on loop devices: the layout (GPT
esp / root-a / root-b / tether-state) is already what an install would make, and a loop-device install would cost
a second disk build and a privileged loop setup per session while proving nothing the clean-install scenario does
not. Adoption writes exactly what an install leaves behind:

* ``/etc/tether/engine.json`` (where the datastore is) and ``/etc/tether/host-configuration.yaml`` in the tree;
* the datastore on the shared ``tether-state`` partition, written with the engine's own ``StateStore``:
  ``provisioned``, slot A active and committed, the disk's real PARTUUIDs (read from the image's GPT);
* a boot entry ``tether-1-volume-a`` (no counter) on the ESP and ``loader.conf`` ``default tether-*``, the
  format ``engine/boot_systemd.py`` writes, so a counted trial entry of slot B is real boot counting (the old
  ``slot-a.conf`` / ``slot-b.conf`` stay but no longer match the default).

Test-only changes to the tree (both slots and the update image): the harness's boot counter
``/var/lib/vmtest`` lives on the shared state partition (a slot switch must not restart the plan), the verdict
agent starts after ``tether-commit.service`` (checks see the committed state), and ``tether-update.timer`` waits an
hour (the plan runs ``tether update --from-metadata`` itself, at known points).

The update image (``v2.img``) is a raw ext4 root filesystem of the same tree plus ``/etc/tether-vmtest-image``
(``v2``); it reaches the guest on a read-only ext4 disk labelled ``TETHERIMG`` (``file://`` URL), which streams
at disk speed instead of through the metadata relay.

Everything is cached under ``engine-<hash>/`` in the harness cache, keyed by the wheel's contents and this
recipe, so a rerun with unchanged code boots at once.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import subprocess
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vmtests.harness import cache, disk, image, rootfs

IMAGES_LABEL = "TETHERIMG"
IMAGES_MOUNT = "/srv/tether-images"
DATASTORE = f"{rootfs.STATE_MOUNT}/datastore.sqlite"
MARKER = "/etc/tether-vmtest-image"
CMDLINE = "rw console=ttyS0,115200 panic=5"
ESP_OPTS = "umask=0077,nofail,x-systemd.device-timeout=120s"
STATE_OPTS = "defaults,nofail,x-systemd.device-timeout=120s"


def host_config(image_url: str, sha256: str = "ignored", checks: list[dict[str, Any]] | None = None,
                extra_cmdline: list[str] | None = None, hostname: str | None = None) -> dict[str, Any]:
    """The harness disk's layout as a host configuration (sizes from ``disk.DEFAULT_LAYOUT``)."""
    lay = disk.DEFAULT_LAYOUT
    cfg: dict[str, Any] = {
        "image": {"url": image_url, "sha256": sha256},
        "storage": {
            "disks": [{"id": "os", "device": "/dev/vda", "partitionTableType": "gpt", "partitions": [
                {"id": "esp", "type": "esp", "size": f"{lay.esp_mib}M", "label": "esp"},
                {"id": "root-a", "type": "root", "size": f"{lay.root_mib}M", "label": "root-a"},
                {"id": "root-b", "type": "root", "size": f"{lay.root_mib}M", "label": "root-b"},
                {"id": "tether-state", "type": "linux-generic", "size": f"{lay.state_mib}M",
                 "label": rootfs.STATE_LABEL},
            ]}],
            "abUpdate": {"volumePairs": [{"id": "root", "volumeAId": "root-a", "volumeBId": "root-b"}]},
            "filesystems": [
                {"deviceId": "esp", "source": "new", "type": "vfat", "mountPoint": {"path": "/efi",
                                                                                     "options": ESP_OPTS}},
                {"deviceId": "root", "source": "image", "mountPoint": "/"},
                {"deviceId": "tether-state", "source": "new", "type": "ext4",
                 "mountPoint": {"path": rootfs.STATE_MOUNT, "options": STATE_OPTS}},
            ],
        },
        "trident": {"datastorePath": DATASTORE},
    }
    os_section: dict[str, Any] = {}
    if hostname:
        os_section["hostname"] = hostname
    if extra_cmdline:
        os_section["kernelCommandLine"] = {"extraCommandLine": extra_cmdline}
    if os_section:
        cfg["os"] = os_section
    if checks:
        cfg["health"] = {"checks": checks}
    return cfg


INSTALLED = host_config(f"file://{IMAGES_MOUNT}/v1.img")  # what slot A "was installed from" (never fetched)


@dataclass(frozen=True)
class EngineDisks:
    disk: Path  # the adopted A/B disk (boot overlays of it)
    images: Path  # read-only ext4 disk with v2.img
    v2_sha256: str
    partuuids: dict[str, str]
    build_seconds: float

    def v2(self, **kw: Any) -> dict[str, Any]:
        return host_config(f"file://{IMAGES_MOUNT}/v2.img", self.v2_sha256, **kw)


def _run(argv: list[str], timeout: float = 600, **kw: Any) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr)[-2000:]
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({proc.returncode}): {out}")
    return str(proc.stdout)


def _wheel_digest(wheel: Path) -> str:
    h = hashlib.sha256()
    with zipfile.ZipFile(wheel) as zf:
        for name in sorted(zf.namelist()):
            h.update(name.encode() + b"\0" + zf.read(name))
    return h.hexdigest()


def engine_disks(wheel: Path, log: Any = print) -> EngineDisks:
    t0 = time.monotonic()
    base = image.base_disk(log)
    key = cache.recipe_hash(_wheel_digest(wheel), base.name, inspect.getsource(inspect.getmodule(engine_disks)))
    out = cache.cache_dir() / f"engine-{key}"
    info = out / "info.json"
    if not info.exists():
        with cache.locked("engine-disks"):
            if not info.exists():
                tmp = Path(tempfile.mkdtemp(dir=cache.cache_dir(), prefix="engine-work."))
                try:
                    _build(tmp, wheel, base, log)
                    cache.publish(tmp, out)
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
                _prune_old(out)
    data = json.loads(info.read_text())
    built = EngineDisks(out / "engine.img", out / "images.img", data["v2_sha256"], data["partuuids"],
                        time.monotonic() - t0)
    log(f"vmtests: engine disks ready in {built.build_seconds:.1f} s ({out.name})")
    return built


def _prune_old(keep: Path, age: float = 3 * 3600) -> None:
    """Older engine disks go, but not ones a concurrent session (another wheel) may still be booting."""
    for old in cache.cache_dir().glob("engine-*"):
        if old != keep and old.is_dir() and not old.name.startswith("engine-work.") \
                and time.time() - old.stat().st_mtime > age:
            shutil.rmtree(old, ignore_errors=True)


def engine_layer(root: Path) -> None:
    etc = root / "etc"
    (etc / "tether").mkdir(parents=True, exist_ok=True)
    (etc / "tether/engine.json").write_text(json.dumps({"datastore": DATASTORE}, indent=1) + "\n")
    (etc / "tether/host-configuration.yaml").write_text(yaml.safe_dump(INSTALLED, sort_keys=False))
    # slot A's marker, as tether install would have written it: rollback and commit check it against the record
    # (slot B and the update image carry the same tree; a staging replaces the marker with its own)
    from tether.engine.slots import MARKER as SLOT_MARKER
    from tether.engine.slots import spec_digest

    (root / SLOT_MARKER.lstrip("/")).write_text(json.dumps({"volume": "volume-a", "specDigest": spec_digest(_spec()),
                                                            "generation": 1}, indent=1, sort_keys=True) + "\n")
    # Generous metadata waits: with other VMs on the 2 cores, the default 10 s made the first boot fall back to
    # the None datasource ("response still arriving at the deadline"), and then the metadata names no update.
    (etc / "tether/tether.cfg.d").mkdir(parents=True, exist_ok=True)
    (etc / "tether/tether.cfg.d/90-vmtest.cfg").write_text("datasource:\n  Ec2:\n    max_wait: 120\n    timeout: 20\n")
    units = etc / "systemd/system"
    verdict = units / "vmtest-verdict.service.d"
    verdict.mkdir(parents=True, exist_ok=True)
    (verdict / "20-engine.conf").write_text(
        f"[Unit]\nAfter=tether-commit.service boot-complete.target\nRequiresMountsFor={rootfs.STATE_MOUNT}\n")
    timer = units / "tether-update.timer.d"
    timer.mkdir(parents=True, exist_ok=True)
    (timer / "90-vmtest.conf").write_text("[Timer]\nOnBootSec=\nOnBootSec=1h\nOnUnitActiveSec=\n"
                                          "OnUnitActiveSec=1h\nRandomizedDelaySec=0\n")
    counter = root / "var/lib/vmtest"
    shutil.rmtree(counter, ignore_errors=True)
    counter.symlink_to(f"{rootfs.STATE_MOUNT}/vmtest")
    (root / IMAGES_MOUNT.lstrip("/")).mkdir(parents=True, exist_ok=True)


def _partuuids(img: Path) -> dict[str, str]:
    table = json.loads(_run(["sfdisk", "-J", str(img)]))["partitiontable"]["partitions"]
    return {p["name"]: p["uuid"].lower() for p in table}


def _build(work: Path, wheel: Path, base: Path, log: Any) -> None:
    tree = rootfs.base_tree(log)
    with disk.overlay_view(tree, work / "layer") as root:
        image.add_guest_agent(root)
        image.install_tether(root, wheel)
        engine_layer(root)
        kver = disk.kernel_version(root)
        img = disk.build_disk(root, work / "engine.img", reuse=base)
        # the update image: the same tree, marked
        (root / MARKER.lstrip("/")).write_text("v2\n")
        (root / "etc/os-slot").write_text("v2\n")
        used_mib = int(_run(["du", "-sx", "--block-size=1M", str(root)]).split()[0])
        images_dir = work / "images"
        images_dir.mkdir()
        v2 = images_dir / "v2.img"
        _run(["mkfs.ext4", "-q", "-F", "-L", "rootfs-v2", "-d", str(root), str(v2), f"{used_mib * 6 // 5 + 48}M"])
        esp_files = work / "esp"
        (esp_files / "tether/volume-a/1").mkdir(parents=True)
        shutil.copy2(root / f"boot/vmlinuz-{kver}", esp_files / "tether/volume-a/1/vmlinuz")
        shutil.copy2(root / f"boot/initrd.img-{kver}", esp_files / "tether/volume-a/1/initrd.img")
    shutil.rmtree(work / "layer", ignore_errors=True)
    h = hashlib.sha256()
    with open(v2, "rb") as fh:
        while chunk := fh.read(4 << 20):
            h.update(chunk)
    uuids = _partuuids(img)
    parts = disk.partitions(img)
    _adopt_state(work, img, parts, uuids)
    _adopt_esp(img, parts["esp"], esp_files, uuids["root-a"])
    img_mib = v2.stat().st_size // disk.MiB + 16
    _run(["mkfs.ext4", "-q", "-F", "-L", IMAGES_LABEL, "-d", str(images_dir), str(work / "images.img"),
          f"{img_mib}M"])
    v2.unlink()
    (work / "info.json").write_text(json.dumps({"v2_sha256": h.hexdigest(), "partuuids": uuids}))


def _spec() -> dict[str, Any]:
    from tether.engine.hostconfig import parse_host_config, to_data

    return to_data(parse_host_config(INSTALLED, "adopted host configuration"))


def _adopt_state(work: Path, img: Path, parts: dict[str, disk.Partition], uuids: dict[str, str]) -> None:
    from tether.engine import state
    from tether.engine.slots import spec_digest

    tree = work / "state"
    (tree / "vmtest").mkdir(parents=True)
    spec = _spec()
    ids = {"esp": "esp", "root-a": "root-a", "root-b": "root-b", rootfs.STATE_LABEL: "tether-state"}
    with state.StateStore(tree / "datastore.sqlite") as store:
        doc = state.empty_status()
        doc.update({
            "servicingState": state.PROVISIONED,
            "spec": spec,
            "abActiveVolume": "volume-a",
            "disks": {"os": "/dev/vda"},
            "partitionPaths": {ids[name]: f"/dev/vda{p.number}" for name, p in parts.items()},
            "partitionUuids": {ids[name]: uuids[name] for name in parts},
            "slots": {"volume-a": {"state": "committed", "entryId": "tether-1-volume-a", "committedAt": state.now(),
                                   "adopted": True, "specDigest": spec_digest(spec), "generation": 1}},
        })
        store.record(doc, "adopted")
    os.chmod(tree / "datastore.sqlite", 0o600)
    p = parts[rootfs.STATE_LABEL]
    _run(["mkfs.ext4", "-q", "-F", "-L", rootfs.STATE_LABEL, "-d", str(tree), "-E", f"offset={p.offset}", str(img),
          f"{p.size_kib}k"])


def _adopt_esp(img: Path, esp: disk.Partition, files: Path, root_a: str) -> None:
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    target = ["-i", f"{img}@@{esp.offset}"]
    entry = files / "tether-1-volume-a.conf"
    entry.write_text("title tether volume-a (1)\nversion 1\nlinux /tether/volume-a/1/vmlinuz\n"
                     "initrd /tether/volume-a/1/initrd.img\n"
                     f"options root=PARTUUID={root_a} {CMDLINE} tether.entry=tether-1-volume-a\n")
    loader = files / "loader.conf"
    loader.write_text("timeout 0\ndefault tether-*\neditor no\nconsole-mode keep\n")
    _run(["mmd", *target, "::/tether", "::/tether/volume-a", "::/tether/volume-a/1"], env=env)
    _run(["mcopy", *target, str(files / "tether/volume-a/1/vmlinuz"), str(files / "tether/volume-a/1/initrd.img"),
          "::/tether/volume-a/1/"], env=env)
    _run(["mcopy", "-o", *target, str(entry), "::/loader/entries/tether-1-volume-a.conf"], env=env)
    _run(["mcopy", "-o", *target, str(loader), "::/loader/loader.conf"], env=env)
