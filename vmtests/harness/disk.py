"""The A/B test disk, built without loop devices or mounts (vm-notes §2): GPT with an ESP (systemd-boot and one
BLS entry per slot), root-a, root-b and a small ext4 state partition, filled by ``mkfs.ext4 -d -E offset=``."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vmtests.harness.rootfs import STATE_LABEL

MiB = 1024 * 1024
SECTOR = 512


@dataclass(frozen=True)
class Layout:
    esp_mib: int = 256
    root_mib: int = 1300
    state_mib: int = 64
    cmdline: str = "console=ttyS0,115200 panic=5"


DEFAULT_LAYOUT = Layout()


@dataclass(frozen=True)
class Partition:
    number: int
    name: str
    start: int  # sectors
    sectors: int

    @property
    def offset(self) -> int:
        return self.start * SECTOR

    @property
    def size_kib(self) -> int:
        return self.sectors * SECTOR // 1024


def _run(argv: list[str], **kw: object) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-2000:]}")
    return str(proc.stdout)


def partitions(image: Path) -> dict[str, Partition]:
    """Partition table of a disk image file (partx reads plain files; no loop device)."""
    out = _run(["partx", "-g", "-o", "NR,START,SECTORS,NAME", str(image)])
    parts = {}
    for line in out.splitlines():
        nr, start, sectors, name = line.split(None, 3)
        parts[name] = Partition(int(nr), name, int(start), int(sectors))
    return parts


def kernel_version(root: Path) -> str:
    kernels = sorted((p.name.removeprefix("vmlinuz-") for p in (root / "boot").glob("vmlinuz-*")),
                     key=lambda v: [int(x) if x.isdigit() else x for x in v.replace("-", ".").split(".")])
    if not kernels:
        raise RuntimeError(f"{root}/boot: no kernel (is linux-image-cloud-amd64 installed?)")
    return kernels[-1]


def build_disk(root: Path, out: Path, layout: Layout = DEFAULT_LAYOUT, reuse: Path | None = None) -> Path:
    """Write the A/B disk for the tree ``root`` to ``out`` (raw, sparse). Both slots get the same tree, with
    ``/etc/os-slot`` saying which slot it is. With ``reuse`` (a disk built by this function with the same layout
    and kernel), its partition table, ESP and state partition are copied and only the two roots are rebuilt."""
    out.unlink(missing_ok=True)
    if reuse is not None:
        _run(["cp", "--sparse=always", str(reuse), str(out)])
        parts = partitions(out)
    else:
        parts = _new_disk(root, out, layout)
    # Both slots at once (2 cores): each mkfs writes only its own partition's byte range of the file.
    with slot_view(root, "a") as view_a, slot_view(root, "b") as view_b:
        procs = []
        for slot, view in (("a", view_a), ("b", view_b)):
            part = parts[f"root-{slot}"]
            procs.append(subprocess.Popen(
                ["mkfs.ext4", "-q", "-F", "-L", f"root-{slot}", "-d", str(view), "-E", f"offset={part.offset}",
                 str(out), f"{part.size_kib}k"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        errors = []
        for proc in procs:
            output, _ = proc.communicate(timeout=600)
            if proc.returncode != 0:
                errors.append(f"{' '.join(map(str, proc.args))} failed ({proc.returncode}): {output[-1500:]}")
        if errors:
            raise RuntimeError("\n".join(errors))
    return out


def _new_disk(root: Path, out: Path, layout: Layout) -> dict[str, Partition]:
    total = layout.esp_mib + 2 * layout.root_mib + layout.state_mib + 2
    with open(out, "wb") as fh:
        fh.truncate(total * MiB)
    # No -q: with gdisk 1.0.9, `sgdisk -q -o -n...` exits 0 but writes no partitions (vm-notes §2).
    _run(["sgdisk", "-o",
          f"-n1:2048:+{layout.esp_mib}M", "-t1:ef00", "-c1:esp",
          f"-n2:0:+{layout.root_mib}M", "-t2:8304", "-c2:root-a",
          f"-n3:0:+{layout.root_mib}M", "-t3:8304", "-c3:root-b",
          f"-n4:0:+{layout.state_mib}M", "-t4:8300", f"-c4:{STATE_LABEL}",
          str(out)])
    parts = partitions(out)
    with tempfile.TemporaryDirectory(prefix="vmtest-esp.") as tmp:
        esp = Path(tmp) / "esp.img"
        _build_esp(root, esp, parts["esp"], layout)
        # mkfs.vfat --offset into the whole disk produced a FAT mtools could not use; dd a separate file in.
        _run(["dd", f"if={esp}", f"of={out}", "bs=1M", f"seek={parts['esp'].offset // MiB}",
              "conv=notrunc,sparse", "status=none"])
    state = parts[STATE_LABEL]
    _run(["mkfs.ext4", "-q", "-F", "-L", STATE_LABEL, "-E", f"offset={state.offset}", str(out),
          f"{state.size_kib}k"])
    return parts


@contextlib.contextmanager
def overlay_view(lower: Path, work: Path) -> Iterator[Path]:
    """``lower`` seen through a writable overlayfs (changes land in ``work``/upper; ``lower`` is never written).
    Needs root; the harness runs as root anyway."""
    upper, scratch, merged = work / "upper", work / "work", work / "merged"
    for d in (upper, scratch, merged):
        d.mkdir(parents=True, exist_ok=True)
    _run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={upper},workdir={scratch}",
          str(merged)])
    try:
        yield merged
    finally:
        subprocess.run(["umount", str(merged)], capture_output=True, timeout=120)


@contextlib.contextmanager
def slot_view(root: Path, slot: str) -> Iterator[Path]:
    """``root`` plus ``/etc/os-slot`` = A or B, without touching ``root``."""
    with tempfile.TemporaryDirectory(prefix=f"vmtest-slot-{slot}.") as tmp, overlay_view(root, Path(tmp)) as view:
        (view / "etc/os-slot").write_text(slot.upper() + "\n")
        yield view


def _build_esp(root: Path, esp: Path, part: Partition, layout: Layout) -> None:
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    _run(["mkfs.vfat", "-F", "32", "-s", "1", "-n", "ESP", "-C", str(esp), str(part.size_kib)])
    img = ["-i", str(esp)]
    _run(["mmd", *img, "::/EFI", "::/EFI/BOOT", "::/EFI/systemd", "::/loader", "::/loader/entries", "::/slot-a",
          "::/slot-b"], env=env)
    boot_efi = root / "usr/lib/systemd/boot/efi/systemd-bootx64.efi"
    _run(["mcopy", *img, str(boot_efi), "::/EFI/BOOT/BOOTX64.EFI"], env=env)
    _run(["mcopy", *img, str(boot_efi), "::/EFI/systemd/systemd-bootx64.efi"], env=env)
    kver = kernel_version(root)
    with tempfile.TemporaryDirectory(prefix="vmtest-loader.") as tmp:
        loader = Path(tmp) / "loader.conf"
        loader.write_text("timeout 0\ndefault slot-a.conf\neditor no\nconsole-mode keep\n")
        _run(["mcopy", *img, str(loader), "::/loader/loader.conf"], env=env)
        for slot in ("a", "b"):
            entry = Path(tmp) / f"slot-{slot}.conf"
            entry.write_text(
                f"title Slot {slot.upper()}\nlinux /slot-{slot}/vmlinuz\ninitrd /slot-{slot}/initrd.img\n"
                f"options root=PARTLABEL=root-{slot} rw {layout.cmdline}\n"
            )
            _run(["mcopy", *img, str(entry), f"::/loader/entries/slot-{slot}.conf"], env=env)
            _run(["mcopy", *img, str(root / f"boot/vmlinuz-{kver}"), f"::/slot-{slot}/vmlinuz"], env=env)
            _run(["mcopy", *img, str(root / f"boot/initrd.img-{kver}"), f"::/slot-{slot}/initrd.img"], env=env)
