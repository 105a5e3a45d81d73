"""``tether install-units``: put tether's units and generator into a root and enable tether.target."""

from __future__ import annotations

import argparse
import os
from importlib import resources

from tether import log
from tether.target import Target

LOG = log.get(__name__)
UNIT_DIR = "/etc/systemd/system"
GENERATOR_DIR = "/etc/systemd/system-generators"
LIB_DIR = "/usr/lib/tether"  # tether-stage, the later stage units' hand-over to the boot process
# name -> the target whose .wants/ enables it. tether.target itself is pulled in per boot by the generator.
ENABLE = {
    "tether-local.service": "tether.target",
    "tether-network.service": "tether.target",
    "tether-config.service": "tether.target",
    "tether-final.service": "tether.target",
    # the servicing engine's units run on every boot of a host the engine installed (ConditionPathExists)
    "tether-commit.service": "multi-user.target",
    "tether-update.timer": "timers.target",
}


def package_dir(target: Target) -> str:
    """The directory holding the ``tether`` package inside the root, when it is where this tether runs from
    (a chroot, or a new slot with the running system's layout); "" otherwise. The generator starts Python without
    site (-S) and adds just this directory, falling back to site's paths when it is empty or wrong."""
    import tether
    here = os.path.dirname(os.path.dirname(os.path.abspath(tether.__file__)))
    if target.live:
        return here
    return here if target.exists(f"{here}/tether/generator.py") else ""


LAUNCHER = f"{LIB_DIR}/tether"


def import_path(target: Target) -> list[str]:
    """This interpreter's package directories that the root has too, for the -S launcher; [] when tether is not a
    plain installed package here (an editable install needs site's import hooks, so the launcher falls back)."""
    import sys

    import tether
    pkg = os.path.dirname(os.path.abspath(tether.__file__))
    if not os.path.isfile(os.path.join(pkg, "modules", "__init__.py")):
        return []
    return [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and
            (target.live or target.path(p).is_dir())]


# What a boot imports (the four stages on a NoCloud or metadata-service first boot), for the launcher's prefetch.
BOOT_IMPORTS = ("tether.cli", "tether.stages", "tether.logs", "tether.bootserver", "tether.detect",
                "tether.network.apply", "tether.network.v1", "tether.network.v2", "tether.userdata_stage",
                "tether.modrunner", "tether.module", "tether.datasources.nocloud", "tether.datasources.ec2",
                "tether.datasources.configdrive", "tether.isoread", "tether.accounts", "yaml")


def boot_files(target: Target) -> list[str]:
    """The module files (bytecode, extension modules) a boot's tether process reads, as this interpreter finds
    them, kept when the root has them too."""
    import importlib
    import sys
    for name in BOOT_IMPORTS:
        try:
            importlib.import_module(name)
        except Exception:  # an optional part missing here only shortens the list
            continue
    files: list[str] = []
    for mod in list(sys.modules.values()):
        path = getattr(mod, "__cached__", None) or getattr(mod, "__file__", None)
        if not isinstance(path, str) or not path.startswith("/") or not path.endswith((".pyc", ".so")):
            continue
        if target.live or target.exists(path):
            files.append(path)
    return sorted(set(files))


def launcher(target: Target) -> bytes:
    import sys
    python = sys.executable if sys.executable and target.exists(sys.executable) else "/usr/bin/python3"
    text = resources.files("tether.units").joinpath("tether-launcher").read_text()
    return (text.replace("@PYTHON@", python).replace("@SYSPATH@", repr(import_path(target)))
            .replace("@PREFETCH@", repr(boot_files(target))).encode())


def install(target: Target, enable: bool = True, tether_path: str | None = None) -> list[str]:
    written = []
    target.write(LAUNCHER, launcher(target), mode=0o755)
    written.append(LAUNCHER)
    exe = tether_path or LAUNCHER
    pkg = resources.files("tether.units")
    for entry in sorted(pkg.iterdir(), key=lambda e: e.name):
        name = entry.name
        if name.endswith((".service", ".target", ".timer")) or name.endswith(".conf"):
            dest = f"{UNIT_DIR}/{name}"
            if name.endswith(".conf"):  # drop-ins are named <unit>--<file>.conf in the package
                unit, _, fname = name.partition("--")
                dest = f"{UNIT_DIR}/{unit}.d/{fname}"
            target.write(dest, entry.read_bytes().replace(b"@TETHER@", exe.encode()), mode=0o644)
            written.append(dest)
        elif name == "tether-launcher":
            continue
        elif name == "tether-stage":
            dest = f"{LIB_DIR}/tether-stage"
            target.write(dest, entry.read_bytes().replace(b"@TETHER@", exe.encode()), mode=0o755)
            written.append(dest)
        elif name == "tether-generator":
            dest = f"{GENERATOR_DIR}/tether-generator"
            target.write(dest, entry.read_bytes().replace(b"@TETHER_PATH@", package_dir(target).encode()),
                         mode=0o755)
            written.append(dest)
    if enable:
        for unit, wanted_by in ENABLE.items():
            # not path(): an existing enable link would resolve to the unit file itself, which would be replaced
            link = target.path_nofollow(f"{UNIT_DIR}/{wanted_by}.wants/{unit}")
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            os.symlink(f"{UNIT_DIR}/{unit}", link)
            written.append(f"{UNIT_DIR}/{wanted_by}.wants/{unit}")
    return written


def main(args: argparse.Namespace) -> int:
    for p in install(Target.at(args.root), enable=not args.no_enable, tether_path=args.bin):
        print(p)
    return 0
