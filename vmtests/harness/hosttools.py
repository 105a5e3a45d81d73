"""Host programs the harness needs, and installing them on a fresh Debian 12 machine (CI runs as root)."""

from __future__ import annotations

import os
import shutil
import subprocess

# program -> Debian package that ships it
TOOLS: dict[str, str] = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "debootstrap": "debootstrap",
    "xorriso": "xorriso",
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "mmd": "mtools",
    "sgdisk": "gdisk",
    "partx": "util-linux",
    "mkfs.ext4": "e2fsprogs",
    "zstd": "zstd",
    "ssh-keygen": "openssh-client",
}
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
APT_TIMEOUT = 900


class HostToolsError(RuntimeError):
    pass


def missing_packages() -> list[str]:
    pkgs = {pkg for prog, pkg in TOOLS.items() if shutil.which(prog) is None}
    if not (os.path.exists(OVMF_CODE) and os.path.exists(OVMF_VARS)):
        pkgs.add("ovmf")
    return sorted(pkgs)


def ensure_host_tools(install: bool = True) -> None:
    """Install missing host packages with apt-get (root only); raise naming what is missing otherwise."""
    pkgs = missing_packages()
    if not pkgs:
        return
    if not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise HostToolsError(f"missing host packages: {' '.join(pkgs)} (install them with apt-get as root)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-q", "--no-install-recommends", *pkgs]):
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT)
        if proc.returncode != 0:
            raise HostToolsError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    still = missing_packages()
    if still:
        raise HostToolsError(f"still missing after apt-get install: {' '.join(still)}")
