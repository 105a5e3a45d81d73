"""The cached Debian 12 root filesystem: debootstrap (debs cached separately), configured for test boots,
stored as ``rootfs-<hash>.tar.zst`` in the cache. Measured recipe: ../shared/vm-notes §1 (about 70 s cold)."""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from vmtests.harness import cache

SUITE = "bookworm"
MIRROR = os.environ.get("TETHER_VM_MIRROR", "http://deb.debian.org/debian")
PACKAGES = (
    "systemd", "systemd-sysv", "udev", "linux-image-cloud-amd64", "initramfs-tools", "python3", "python3-yaml",
    "openssh-server", "iproute2", "e2fsprogs", "dosfstools", "systemd-boot", "systemd-boot-efi", "kmod", "dbus",
    "sudo",
)
# Units that prompt on the console, hang up ttyS0 (which carries the verdict markers) or only add noise.
MASKED = (
    "systemd-firstboot.service", "serial-getty@ttyS0.service", "getty@tty1.service", "apt-daily.timer",
    "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer", "dpkg-db-backup.timer",
)
STATE_LABEL = "tether-state"
STATE_MOUNT = "/var/lib/tether-state"
# Bump to force a rebuild when something outside configure() and the constants above changes the result.
RECIPE_VERSION = "1"
Log = Callable[[str], None]
DEBOOTSTRAP_TIMEOUT = 1200


def _run(argv: list[str], timeout: float = 600, **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    return proc


def debs_key() -> str:
    return cache.recipe_hash(SUITE, MIRROR, ",".join(PACKAGES), _debootstrap_version())


def rootfs_key() -> str:
    # Only what shapes the tree is hashed, so editing comments elsewhere does not cost a rebuild.
    return cache.recipe_hash(debs_key(), RECIPE_VERSION, ",".join(MASKED), STATE_LABEL, STATE_MOUNT,
                             inspect.getsource(configure))


def _debootstrap_version() -> str:
    try:
        return _run(["debootstrap", "--version"]).stdout.strip()
    except (OSError, RuntimeError):
        return "unknown"


def debs_tarball(log: Log = print) -> Path:
    """The downloaded .debs (debootstrap --make-tarball): makes later rebuilds offline and 27 s faster."""
    out = cache.cache_dir() / f"debs-{SUITE}-{debs_key()}.tgz"
    with cache.locked("debs"):
        if out.exists():
            return out
        log(f"vmtests: downloading {SUITE} packages with debootstrap (once, ~30 s) -> {out}")
        with tempfile.TemporaryDirectory(dir=cache.cache_dir(), prefix="debs-work.") as work:
            tmp = Path(work) / "debs.tgz"
            _run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", f"--make-tarball={tmp}",
                  SUITE, f"{work}/root", MIRROR], timeout=DEBOOTSTRAP_TIMEOUT)
            cache.publish(tmp, out)
    return out


def base_rootfs(log: Log = print) -> Path:
    """``rootfs-<hash>.tar.zst``: the configured base root filesystem, built on a cache miss."""
    out = cache.cache_dir() / f"rootfs-{rootfs_key()}.tar.zst"
    if out.exists():
        return out
    debs = debs_tarball(log)
    with cache.locked("rootfs"):
        if out.exists():
            return out
        log(f"vmtests: building the base root filesystem (once, ~40 s) -> {out}")
        with tempfile.TemporaryDirectory(dir=cache.cache_dir(), prefix="rootfs-work.") as work:
            root = Path(work) / "root"
            _run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", f"--unpack-tarball={debs}",
                  SUITE, str(root), MIRROR], timeout=DEBOOTSTRAP_TIMEOUT)
            configure(root)
            tmp = Path(work) / "rootfs.tar.zst"
            pack(root, tmp)
            cache.publish(tmp, out)
            cache.prune(out, "rootfs-" + "[0-9a-f]" * 16 + ".tar.zst")
            cache.prune(out, "rootfs-" + "[0-9a-f]" * 16 + ".tree")
    return out


def base_tree(log: Log = print) -> Path:
    """The base rootfs unpacked once in the cache (read-only by convention: used as an overlayfs lower layer),
    which saves the 2-6 s untar on every disk build."""
    tarball = base_rootfs(log)
    out = tarball.with_name(tarball.name.removesuffix(".tar.zst") + ".tree")
    if out.is_dir():
        return out
    with cache.locked("rootfs-tree"):
        if not out.is_dir():
            tmp = Path(tempfile.mkdtemp(dir=cache.cache_dir(), prefix="tree-work."))
            try:
                unpack(tarball, tmp)
                cache.publish(tmp, out)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    return out


def configure(root: Path) -> None:
    """Make the debootstrapped tree a cloud-image-like test guest (no harness agent: that is layered per run)."""
    (root / "etc/hostname").write_text("debian\n")
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n")
    # The kernel mounts / (root=PARTLABEL=root-X rw); fstab only adds the shared ESP and the state partition.
    (root / "etc/fstab").write_text(
        "PARTLABEL=esp /efi vfat umask=0077,nofail,x-systemd.device-timeout=120s 0 2\n"
        f"PARTLABEL={STATE_LABEL} {STATE_MOUNT} ext4 defaults,nofail,x-systemd.device-timeout=120s 0 2\n"
    )
    (root / "efi").mkdir(exist_ok=True)
    (root / STATE_MOUNT.lstrip("/")).mkdir(parents=True, exist_ok=True)
    # First-boot semantics like a cloud image: no machine identity and no SSH host keys baked in; the
    # first-boot agent under test (tether or cloud-init) must create the host keys.
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    # Fallback DHCP, sorted last so a network config rendered by the agent under test (10-*.network) wins.
    net = root / "etc/systemd/network"
    net.mkdir(parents=True, exist_ok=True)
    (net / "99-vmtest-fallback.network").write_text(
        "[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    )
    _run(["chroot", str(root), "systemctl", "enable", "systemd-networkd.service"])
    _run(["chroot", str(root), "systemctl", "mask", *MASKED])
    # systemd-bless-boot (252) is ordered only after local-fs.target and does not wait for a nofail ESP mount:
    # without this it logs "Couldn't find $BOOT partition" and never blesses a counted entry (vm-notes §4).
    dropin = root / "etc/systemd/system/systemd-bless-boot.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "10-esp.conf").write_text("[Unit]\nRequiresMountsFor=/efi\n")
    _run(["chroot", str(root), "apt-get", "clean"])
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)


def pack(root: Path, out: Path) -> None:
    _run(["tar", "--zstd", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", str(root), "-cf", str(out),
          "."])


def unpack(tarball: Path, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    _run(["tar", "--zstd", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", str(root), "-xf",
          str(tarball)])


def guest_python(root: Path) -> str:
    """``python3.11`` for bookworm: the guest interpreter's versioned name, read from the tree."""
    versions = sorted(p.name for p in (root / "usr/lib").glob("python3.*") if (root / "usr/bin" / p.name).exists())
    if not versions:
        raise RuntimeError(f"{root}: no python3.X interpreter in the guest tree")
    return versions[-1]
