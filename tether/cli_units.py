"""``tether install-units``: put tether's units and generator into a root and enable tether.target."""

from __future__ import annotations

import argparse
import logging
import os
from importlib import resources

from tether.target import Target

LOG = logging.getLogger(__name__)
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


BIN_CANDIDATES = ("/usr/local/bin/tether", "/usr/bin/tether", "/opt/tether/bin/tether")


def tether_bin(target: Target) -> str:
    """Where the tether command lives inside the root (units need an absolute path)."""
    for cand in BIN_CANDIDATES:
        if target.exists(cand):
            return cand
    return "/usr/bin/tether"


def package_dir(target: Target) -> str:
    """The directory holding the ``tether`` package inside the root, when it is where this tether runs from
    (a chroot, or a new slot with the running system's layout); "" otherwise. The generator starts Python without
    site (-S) and adds just this directory, falling back to site's paths when it is empty or wrong."""
    import tether
    here = os.path.dirname(os.path.dirname(os.path.abspath(tether.__file__)))
    if target.live:
        return here
    return here if target.exists(f"{here}/tether/generator.py") else ""


def install(target: Target, enable: bool = True, tether_path: str | None = None) -> list[str]:
    written = []
    exe = tether_path or tether_bin(target)
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
