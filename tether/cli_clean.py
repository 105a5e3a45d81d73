"""``tether clean``: forget the instance so the next boot runs first boot again."""

from __future__ import annotations

import argparse
import shutil

from tether import log
from tether.paths import PATHS
from tether.target import Target

LOG = log.get(__name__)


def clean(target: Target, logs: bool = False, seed: bool = False, machine_id: bool = False) -> list[str]:
    removed: list[str] = []
    lib = target.path(PATHS.lib)
    if lib.exists():
        for child in sorted(lib.iterdir()):
            if child.name == "seed" and not seed:
                continue
            if child.name == "engine":  # the servicing state belongs to the engine, not to first boot
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
            removed.append(f"{PATHS.lib}/{child.name}")
    run = target.path(PATHS.run)
    if run.exists():
        shutil.rmtree(run)
        removed.append(PATHS.run)
    if logs:
        for p in (PATHS.log, PATHS.output_log, "/var/log/tether-events.jsonl"):
            if target.remove(p):
                removed.append(p)
    if machine_id and target.exists("/etc/machine-id"):
        # empty, not removed: systemd then generates a new one at the next boot
        target.write("/etc/machine-id", "", mode=0o444)
        removed.append("/etc/machine-id (emptied)")
    return removed


def main(args: argparse.Namespace) -> int:
    target = Target.at(args.root)
    for p in clean(target, args.logs, args.seed, args.machine_id):
        print(f"removed {p}")
    if args.reboot:
        if not target.live:
            print("tether: --reboot ignored with --root")
        else:
            from tether.runner import Runner
            Runner().run(["systemctl", "reboot"], check=False)
    return 0
