"""The disk for issue 8's QEMU proof: a cloud-image layout whose root is the last partition.

The harness's A/B disk (esp, root-a, root-b, tether-state) cannot show `/` growing into an enlarged disk: root-a is
followed by root-b, so the space a bigger disk adds lands after tether-state, where no growpart may take it for
`/`. Images that are built small and booted on a bigger disk put the root last, so this disk does too. GPT, in
physical and number order:

1. ``esp`` (256 MiB), copied from the cached base disk: systemd-boot, ``slot-a.conf`` boots
   ``root=PARTLABEL=root-a``;
2. ``tether-state`` (64 MiB ext4), mounted from fstab as on the A/B disk;
3. ``root-a`` (1300 MiB ext4, the harness root size) last, ending 1 MiB before the disk's end.

There is no root-b: the first-boot modules never look at it and the A/B engine is not configured here. The tree
is the harness's tether tree (base rootfs + verdict agent + this checkout's wheel) plus Debian's ``fdisk``
package: ``sfdisk`` is what tether's own partition growing (growpart ``auto`` without cloud-utils) and
``disk_setup`` write tables with. Debian's cloud images carry it (cloud-guest-utils depends on it); the minimal
harness rootfs does not. The package comes from the host's apt cache when the same version is there, else
``apt-get download``. Built per session (the wheel changes with the code), about as fast as the tether disk.

``root_last_disk(..., lvm=True)`` also adds Debian's ``lvm2`` (for growpart's LVM path on a real device-mapper,
``test_lvm.py``): ``lvm2`` and those of its dependencies the tree lacks (``dpkg -s`` inside the tree; minbase
already has ``dmsetup`` and ``libdevmapper1.02.1``), at the versions the host's apt offers (the host is the same
Debian release), unpacked with one ``dpkg -i --no-triggers`` (no initramfs rebuild: the ESP's initrd comes from the
base disk and `/` is not on LVM) followed by ``ldconfig``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from vmtests.harness import disk, image, rootfs

MiB = 1 << 20
ESP_MIB = disk.DEFAULT_LAYOUT.esp_mib
STATE_MIB = disk.DEFAULT_LAYOUT.state_mib
ROOT_MIB = disk.DEFAULT_LAYOUT.root_mib
ROOT_PART = 3  # /dev/vda3 in the guest
APT_CACHE = Path("/var/cache/apt/archives")
Log = Callable[[str], None]


def _run(argv: list[str], timeout: float = 600, **kw: object) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({proc.returncode}):\n"
                           f"{(proc.stdout + proc.stderr)[-3000:]}")
    return str(proc.stdout)


def guest_version(root: Path, package: str) -> str:
    return _run(["chroot", str(root), "dpkg-query", "-W", "-f", "${Version}", package]).strip()


def debian_package(name: str, version: str, work: Path) -> Path:
    """The .deb of ``name`` at exactly ``version`` (amd64): the host's apt cache, else ``apt-get download``."""
    quoted = version.replace(":", "%3a")
    cached = APT_CACHE / f"{name}_{quoted}_amd64.deb"
    if cached.is_file():
        return cached
    work.mkdir(parents=True, exist_ok=True)
    _run(["apt-get", "download", "-q", f"{name}={version}"], cwd=work, timeout=300)
    found = sorted(work.glob(f"{name}_*.deb"))
    if not found:
        raise RuntimeError(f"apt-get download {name}={version} left no .deb in {work}")
    return found[0]


# lvm2 and the dependencies the harness's minbase tree may lack, in dependency order
LVM_PACKAGES = ("libaio1", "libdevmapper-event1.02.1", "liblvm2cmd2.03", "dmeventd", "lvm2")


def guest_has(root: Path, package: str) -> bool:
    proc = subprocess.run(["chroot", str(root), "dpkg", "-s", package], capture_output=True, text=True, timeout=60)
    return proc.returncode == 0 and "Status: install ok installed" in proc.stdout


def host_candidate(package: str) -> str:
    """The version the host's apt would install (same Debian release as the guest)."""
    out = _run(["apt-cache", "policy", package], timeout=60)
    for line in out.splitlines():
        if line.strip().startswith("Candidate:"):
            version = line.split(":", 1)[1].strip()
            if version and version != "(none)":
                return version
    raise RuntimeError(f"apt-cache policy {package}: no candidate version on the host")


def install_lvm(root: Path, work: Path) -> list[str]:
    """Add lvm2 and its missing dependencies to the tree; the packages installed."""
    missing = [p for p in LVM_PACKAGES if not guest_has(root, p)]
    if not missing:
        return []
    debs = [debian_package(p, host_candidate(p), work) for p in missing]
    names = []
    for deb in debs:
        shutil.copyfile(deb, root / "tmp" / deb.name)
        names.append(f"/tmp/{deb.name}")
    try:
        _run(["chroot", str(root), "dpkg", "-i", "--no-triggers", *names], timeout=600)
        _run(["chroot", str(root), "ldconfig"], timeout=120)
    finally:
        for deb in debs:
            (root / "tmp" / deb.name).unlink(missing_ok=True)
    return missing


def install_deb(root: Path, deb: Path) -> None:
    """``dpkg -i`` inside the guest tree (its dependencies must already be there)."""
    inside = root / "tmp" / deb.name
    shutil.copyfile(deb, inside)
    try:
        _run(["chroot", str(root), "dpkg", "-i", f"/tmp/{deb.name}"], timeout=300)
    finally:
        inside.unlink(missing_ok=True)


def root_last_disk(out: Path, wheel: Path, log: Log = print, lvm: bool = False) -> Path:
    """Write the root-last disk (raw, sparse) with tether from ``wheel`` to ``out`` (``lvm``: plus lvm2)."""
    t0 = time.monotonic()
    tree = rootfs.base_tree(log)
    base = image.base_disk(log)
    base_esp = disk.partitions(base)["esp"]
    out.unlink(missing_ok=True)
    with open(out, "wb") as fh:
        fh.truncate((1 + ESP_MIB + STATE_MIB + ROOT_MIB + 1) * MiB)
    # No -q: with gdisk 1.0.9, `sgdisk -q -o -n...` exits 0 but writes no partitions (vm-notes §2).
    _run(["sgdisk", "-o",
          f"-n1:2048:+{ESP_MIB}M", "-t1:ef00", "-c1:esp",
          f"-n2:0:+{STATE_MIB}M", "-t2:8300", f"-c2:{rootfs.STATE_LABEL}",
          f"-n{ROOT_PART}:0:+{ROOT_MIB}M", f"-t{ROOT_PART}:8304", f"-c{ROOT_PART}:root-a",
          str(out)])
    parts = disk.partitions(out)
    esp, state, root_a = parts["esp"], parts[rootfs.STATE_LABEL], parts["root-a"]
    if esp.sectors != base_esp.sectors:
        raise RuntimeError(f"{out}: esp has {esp.sectors} sectors, the base disk's {base_esp.sectors}")
    _run(["dd", f"if={base}", f"of={out}", "bs=1M", f"skip={base_esp.offset // MiB}", f"seek={esp.offset // MiB}",
          f"count={ESP_MIB}", "conv=notrunc,sparse", "status=none"])
    _run(["mkfs.ext4", "-q", "-F", "-L", rootfs.STATE_LABEL, "-E", f"offset={state.offset}", str(out),
          f"{state.size_kib}k"])
    with tempfile.TemporaryDirectory(dir=out.parent, prefix="disks-layer.") as tmp:
        with disk.overlay_view(tree, Path(tmp)) as root:
            image.add_guest_agent(root)
            image.install_tether(root, wheel)
            install_deb(root, debian_package("fdisk", guest_version(root, "libfdisk1"), Path(tmp) / "debs"))
            if lvm:
                log(f"vmtests: added {', '.join(install_lvm(root, Path(tmp) / 'debs')) or 'nothing'} for lvm2")
            with disk.slot_view(root, "a") as view:
                _run(["mkfs.ext4", "-q", "-F", "-L", "root-a", "-d", str(view), "-E", f"offset={root_a.offset}",
                      str(out), f"{root_a.size_kib}k"])
    log(f"vmtests: root-last disk ready in {time.monotonic() - t0:.1f} s ({wheel.name})")
    return out
