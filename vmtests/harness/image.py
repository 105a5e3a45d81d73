"""Assembling bootable test disks from the cached base root filesystem.

Layers, cheapest to rebuild last:
1. ``rootfs-<hash>.tar.zst`` (rootfs.py, cached): Debian 12 from debootstrap.
2. The harness's guest agent (``vmtests/guest/``), added at disk build time so editing it costs no debootstrap.
3. tether from the checkout under test: a wheel built from the working tree, installed with the guest's own
   Python, and its systemd units installed by ``tether install-units``. Built once per test session (the wheel
   changes with the code), so it is never cached.

pytest-virtualenv (the task suggests it) is not used: it creates virtualenvs for the *host* interpreter, whose
scripts and ``pyvenv.cfg`` point at host paths, while the install here goes into a guest tree for the guest's
``/usr/bin/python3``. A plain ``pip install --target`` of the wheel into the guest's ``dist-packages``, a launcher
with ``#!/usr/bin/python3`` and byte-compiling with the guest interpreter (in a chroot) is all that is needed, and
the package is unmaintained besides.
"""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from vmtests.harness import cache, disk, rootfs

REPO = Path(__file__).resolve().parents[2]
GUEST_FILES = Path(__file__).resolve().parents[1] / "guest"
Log = Callable[[str], None]


def _run(argv: list[str], timeout: float = 600, **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({proc.returncode}):\n"
                           f"{(proc.stdout + proc.stderr)[-3000:]}")
    return proc


# ---- layer 2: the harness agent ---------------------------------------------------------------------------------
def add_guest_agent(root: Path) -> None:
    sbin = root / "usr/local/sbin"
    sbin.mkdir(parents=True, exist_ok=True)
    shutil.copy2(GUEST_FILES / "vmtest-verdict", sbin / "vmtest-verdict")
    (sbin / "vmtest-verdict").chmod(0o755)
    units = root / "etc/systemd/system"
    shutil.copy2(GUEST_FILES / "vmtest-verdict.service", units / "vmtest-verdict.service")
    wants = units / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "vmtest-verdict.service"
    link.unlink(missing_ok=True)
    link.symlink_to("/etc/systemd/system/vmtest-verdict.service")


def guest_agent_hash() -> str:
    return cache.file_hash(*sorted(p for p in GUEST_FILES.iterdir() if p.is_file()))


def base_disk(log: Log = print) -> Path:
    """Cached disk with Debian and the harness agent only (no first-boot agent): the smoke test's disk."""
    key = cache.recipe_hash(rootfs.rootfs_key(), guest_agent_hash(), inspect.getsource(disk),
                            inspect.getsource(add_guest_agent))
    out = cache.cache_dir() / f"disk-base-{key}.img"
    if out.exists():
        return out
    tarball = rootfs.base_rootfs(log)
    with cache.locked("disk-base"):
        if out.exists():
            return out
        with tempfile.TemporaryDirectory(dir=cache.cache_dir(), prefix="disk-work.") as work:
            root = Path(work) / "root"
            rootfs.unpack(tarball, root)
            add_guest_agent(root)
            tmp = disk.build_disk(root, Path(work) / "disk.img")
            cache.publish(tmp, out)
            cache.prune(out, "disk-base-*.img")
    return out


# ---- layer 3: tether from the checkout --------------------------------------------------------------------------
def _source_files(repo: Path) -> list[str]:
    try:
        out = _run(["git", "-C", str(repo), "ls-files", "-co", "--exclude-standard", "-z"]).stdout
        return [f for f in out.split("\0") if f and (repo / f).is_file()]
    except (OSError, RuntimeError):
        skip = {".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}
        return [str(p.relative_to(repo)) for p in repo.rglob("*")
                if p.is_file() and not (set(p.relative_to(repo).parts) & skip)
                and not any(part.endswith(".egg-info") for part in p.parts)]


def build_wheel(out_dir: Path, repo: Path = REPO, python: str = sys.executable) -> Path:
    """A wheel of the working tree as it is now (tracked and untracked-but-not-ignored files). Built from a copy,
    because an in-tree build writes ``build/`` into a checkout other people are editing."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vmtest-src.") as tmp:
        src = Path(tmp) / "src"
        for rel in _source_files(repo):
            dest = src / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / rel, dest)
        for old in out_dir.glob("tether-*.whl"):
            old.unlink()
        # A cached build environment turns a 15 s isolated build (pip fetches setuptools every time) into ~2 s.
        _run([build_python(python), "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
              "--disable-pip-version-check", "-q", "-w", str(out_dir), str(src)], timeout=300)
    wheels = sorted(out_dir.glob("tether-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one tether wheel in {out_dir}, found {[w.name for w in wheels]}")
    return wheels[0]


BUILD_REQUIREMENTS = ("setuptools>=66", "wheel")


def build_python(python: str = sys.executable) -> str:
    """The interpreter of a cached venv holding the build backend (pyproject's [build-system] requires)."""
    version = _run([python, "-c", "import sys; print(sys.version)"]).stdout
    venv = cache.cache_dir() / f"build-env-{cache.recipe_hash(version, *BUILD_REQUIREMENTS)}"
    ready = venv / ".ready"  # written last: a venv left half-built by a crash is rebuilt
    if not ready.exists():
        with cache.locked("build-env"):
            if not ready.exists():
                shutil.rmtree(venv, ignore_errors=True)
                _run([python, "-m", "venv", str(venv)])  # built in place: venvs hard-code their location
                _run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                      *BUILD_REQUIREMENTS], timeout=600)
                ready.write_text("")
    return str(venv / "bin/python")


def _wheel_metadata(wheel: Path) -> tuple[list[str], dict[str, str]]:
    """(unconditional Requires-Dist, console_scripts name -> "module:func") from the wheel itself."""
    requires: list[str] = []
    scripts: dict[str, str] = {}
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.endswith(".dist-info/METADATA"):
                for line in zf.read(name).decode().splitlines():
                    if line.startswith("Requires-Dist:") and "extra ==" not in line:
                        requires.append(line.split(":", 1)[1].split(";")[0].strip())
            elif name.endswith(".dist-info/entry_points.txt"):
                section = ""
                for line in zf.read(name).decode().splitlines():
                    line = line.strip()
                    if line.startswith("["):
                        section = line.strip("[]")
                    elif section == "console_scripts" and "=" in line:
                        key, value = (x.strip() for x in line.split("=", 1))
                        scripts[key] = value
    return requires, scripts


def install_tether(root: Path, wheel: Path, python: str = sys.executable) -> None:
    """Install the wheel into the guest tree for the guest's /usr/bin/python3, with its dependencies, then
    tether's systemd units via ``tether install-units`` run by the guest's own Python in a chroot."""
    pyver = rootfs.guest_python(root)
    site = root / "usr/local/lib" / pyver / "dist-packages"  # on Debian's sys.path for /usr/bin/python3
    site.mkdir(parents=True, exist_ok=True)
    _run([python, "-m", "pip", "install", "--no-deps", "--no-compile", "--disable-pip-version-check", "-q",
          "--target", str(site), "--upgrade", str(wheel)], timeout=300)
    shutil.rmtree(site / "bin", ignore_errors=True)  # pip's scripts carry the host interpreter's path
    requires, scripts = _wheel_metadata(wheel)
    for req in requires:
        dist = req.split("<")[0].split(">")[0].split("=")[0].split("!")[0].split("~")[0].split("[")[0].strip()
        probe = subprocess.run(["chroot", str(root), "/usr/bin/python3", "-c",
                                f"import importlib.metadata as m; m.version({dist!r})"],
                               capture_output=True, timeout=60)
        if probe.returncode != 0:  # not provided by a Debian package in the image: install it from PyPI
            _run([python, "-m", "pip", "install", "--no-compile", "--disable-pip-version-check", "-q",
                  "--only-binary", ":all:", "--python-version", pyver.removeprefix("python"),
                  "--target", str(site), req], timeout=300)
    bindir = root / "usr/local/bin"
    bindir.mkdir(parents=True, exist_ok=True)
    for name, target in scripts.items():
        module, func = target.split(":")
        launcher = bindir / name
        launcher.write_text(f"#!/usr/bin/python3\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n")
        launcher.chmod(0o755)
    # Byte-compile with the guest interpreter: under TCG every import costs ~12x (vm-notes §6), so the first
    # boot must not compile tether itself.
    _run(["chroot", str(root), "/usr/bin/python3", "-m", "compileall", "-q", "-j0",
          f"/usr/local/lib/{pyver}/dist-packages"])
    install_units(root)


class TetherNotReady(RuntimeError):
    """The checkout has no working ``tether install-units`` yet."""


def install_units(root: Path) -> None:
    tried = []
    for argv in (["install-units", "--root", "/"], ["--root", "/", "install-units"]):
        proc = subprocess.run(["chroot", str(root), "/usr/local/bin/tether", *argv], capture_output=True,
                              text=True, timeout=120)
        if proc.returncode == 0:
            return
        tried.append(f"tether {' '.join(argv)} -> {proc.returncode}: {(proc.stdout + proc.stderr).strip()[-800:]}")
    raise TetherNotReady("could not install tether's systemd units in the guest:\n" + "\n".join(tried))


def tether_disk(work: Path, wheel: Path, log: Log = print) -> Path:
    """A fresh A/B disk with Debian, the harness agent and tether from ``wheel``: the cached unpacked rootfs under
    an overlay gets the tether layer, and the cached base disk lends its partition table and ESP."""
    t0 = time.monotonic()
    tree = rootfs.base_tree(log)
    base = base_disk(log)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with disk.overlay_view(tree, work / "layer") as root:
        add_guest_agent(root)
        install_tether(root, wheel)
        out = disk.build_disk(root, work / "tether.img", reuse=base)
    shutil.rmtree(work / "layer", ignore_errors=True)
    log(f"vmtests: tether disk ready in {time.monotonic() - t0:.1f} s ({wheel.name})")
    return out


def derived_rootfs(name: str, packages: list[str], log: Log = print) -> Path:
    """``rootfs-<name>-<hash>.tar.zst``: the base rootfs plus Debian packages installed with apt in a chroot
    (the benchmark's cloud-init image). Needs the Debian mirror on a cache miss."""
    key = cache.recipe_hash(rootfs.rootfs_key(), ",".join(sorted(packages)), inspect.getsource(derived_rootfs))
    out = cache.cache_dir() / f"rootfs-{name}-{key}.tar.zst"
    if out.exists():
        return out
    base = rootfs.base_rootfs(log)
    with cache.locked(f"rootfs-{name}"):
        if out.exists():
            return out
        log(f"vmtests: building the {name} root filesystem (apt-get install {' '.join(packages)})")
        with tempfile.TemporaryDirectory(dir=cache.cache_dir(), prefix=f"rootfs-{name}.") as work:
            root = Path(work) / "root"
            rootfs.unpack(base, root)
            mounts = []
            try:
                for fstype, src, dst in (("proc", "proc", "proc"), (None, "/dev", "dev"), ("sysfs", "sys", "sys")):
                    target = root / dst
                    if fstype is None:
                        _run(["mount", "--bind", src, str(target)])
                    else:
                        _run(["mount", "-t", fstype, src, str(target)])
                    mounts.append(target)
                # no service may start inside the chroot
                policy = root / "usr/sbin/policy-rc.d"
                policy.write_text("#!/bin/sh\nexit 101\n")
                policy.chmod(0o755)
                shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
                env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
                _run(["chroot", str(root), "apt-get", "update", "-qq"], timeout=600, env=env)
                _run(["chroot", str(root), "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
                     timeout=1200, env=env)
                _run(["chroot", str(root), "apt-get", "clean"])
                policy.unlink()
                (root / "etc/resolv.conf").unlink()
                shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
                (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
                for key_file in (root / "etc/ssh").glob("ssh_host_*"):
                    key_file.unlink()
                (root / "etc/machine-id").write_text("")
            finally:
                for target in reversed(mounts):
                    subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=60)
            tmp = Path(work) / "rootfs.tar.zst"
            rootfs.pack(root, tmp)
            cache.publish(tmp, out)
    return out


def disk_from_tarball(tarball: Path, out: Path, extra: Callable[[Path], None] | None = None,
                      layout: disk.Layout = disk.DEFAULT_LAYOUT) -> Path:
    """A disk from any rootfs tarball plus the harness agent (and ``extra(root)`` changes)."""
    with tempfile.TemporaryDirectory(dir=out.parent, prefix="disk-work.") as work:
        root = Path(work) / "root"
        rootfs.unpack(tarball, root)
        add_guest_agent(root)
        if extra is not None:
            extra(root)
        return disk.build_disk(root, out, layout)
