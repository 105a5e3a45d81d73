#!/usr/bin/env python3
"""Where tether's first-boot time goes inside a TCG guest (vmtests harness).

Boots the tether image once with scenario 1's seed and captures, inside the guest: ``systemd-analyze``
blame/critical-chain, ``tether analyze show``, tether's debug log (commands with their durations), Python
start-up costs, then ``tether clean`` and each stage again under ``python3 -X importtime``.
Output: one file per capture in --out (default: a temp dir), and a summary on stdout.

Usage (root): .venv/bin/python benchmarks/guest_profile.py [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vmtests import scenarios as sc  # noqa: E402
from vmtests.harness import cache, hosttools, image, seed  # noqa: E402
from vmtests.harness.lab import Lab, ssh_keypair  # noqa: E402
from vmtests.harness.verdict import Capture  # noqa: E402

HOSTNAME = "profile-vm"
TIMES = "TIMEFORMAT=%R; "
IMPORTTIME = ("python3 -X importtime -m tether {args} 2>/tmp/it.txt >/dev/null; "
              "grep '^import time:' /tmp/it.txt | sort -t'|' -k2 -n | tail -n 45; "
              "echo; echo modules: $(grep -c '^import time:' /tmp/it.txt)")


def plan() -> list[Capture]:
    return [
        Capture("analyze-time", "systemd-analyze time"),
        Capture("blame", "systemd-analyze blame --no-pager | head -n 40"),
        Capture("chain", "systemd-analyze critical-chain --no-pager tether-final.service; "
                "systemd-analyze critical-chain --no-pager tether-network.service; "
                "systemd-analyze critical-chain --no-pager tether-local.service"),
        Capture("tether-analyze", "tether analyze show; tether analyze blame"),
        Capture("status", "cat /run/tether/status.json"),
        Capture("log", "cat /var/log/tether.log"),
        Capture("journal", "journalctl -b -o short-monotonic --no-pager | "
                "grep -E 'tether|ssh|networkd|wait-online|Reached target|Starting|Finished|Mounted' | head -n 400"),
        Capture("startup", TIMES + "for i in 1 2 3; do time python3 -c pass; done 2>&1; "
                "for i in 1 2; do time python3 -S -c pass; done 2>&1; "
                "for i in 1 2; do time python3 -c 'import tether.cli'; done 2>&1; "
                "for i in 1 2; do time tether status >/dev/null; done 2>&1; "
                "time python3 -c 'import yaml' 2>&1; time python3 -c 'import logging' 2>&1; "
                "time python3 -c 'import dataclasses' 2>&1; time python3 -c 'import argparse' 2>&1; "
                "time python3 -c 'import subprocess' 2>&1"),
        Capture("it-final", IMPORTTIME.format(args="modules --mode final")),
        Capture("it-config", IMPORTTIME.format(args="modules --mode config")),
        Capture("it-network", IMPORTTIME.format(args="init")),
        Capture("clean", "tether clean; echo rc=$?"),
        Capture("it-local-fresh", "t0=$(date +%s.%N); " + IMPORTTIME.format(args="--debug init --local")
                + "; echo wall $(echo \"$(date +%s.%N) - $t0\" | bc 2>/dev/null || echo ?); "
                "grep -v '^import time:' /tmp/it.txt | tail -n 80"),
        Capture("stages-fresh", TIMES + "time tether --debug init 2>&1 | tail -n 120; "
                "time tether --debug modules --mode config 2>&1 | tail -n 80; "
                "time tether --debug modules --mode final 2>&1 | tail -n 80; tether analyze show"),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    hosttools.ensure_host_tools()
    work = Path(tempfile.mkdtemp(prefix="guest-profile.", dir=cache.cache_dir()))
    out = args.out or work / "out"
    out.mkdir(parents=True, exist_ok=True)
    wheel = image.build_wheel(work / "wheel")
    disk = image.tether_disk(work / "tether", wheel)
    public, _ = ssh_keypair(work / "ssh")
    iso = seed.cidata_iso(work / "seed.iso", sc.user_data(HOSTNAME, public), {"instance-id": "iid-profile-0001"},
                          network_config=sc.NETWORK_CONFIG)
    outcome = Lab(work / "vm").run(disk, [plan()], name="profile", seed_iso=iso)
    print("problems:", outcome.problems())
    for v in outcome.verdicts:
        print("milestones:", v.milestones)
        for key, text in v.data.items():
            (out / f"{key}.txt").write_text(text)
            print(f"===== {key}\n{text}")
    print(f"serial log: {outcome.result.log}; captures in {out}")
    (work / "tether" / "tether.img").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
