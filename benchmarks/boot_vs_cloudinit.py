#!/usr/bin/env python3
"""tether against Debian's cloud-init on the same boot (issue 7).

Same base image (vmtests' debootstrap rootfs); one copy gets Debian's cloud-init package (apt in a chroot), the
other tether from this checkout. Both boot the same NoCloud seed (scenario 1's user-data) twice in one VM run: a
first boot and a second boot of the same instance. Runs alternate between the two images, at least 3 each, and the
medians are printed side by side with tether as a fraction of cloud-init. ``--parallel`` boots each run's two VMs
at the same time instead, so both see the same host load (for a busy shared host).

Figures per boot: host-side seconds from QEMU start to ``multi-user.target`` and to "agent finished" (the guest's
``tether status --wait`` / ``cloud-init status --wait`` returning), and each stage's unit time from
``systemd-analyze blame`` inside the guest. Budgets: tether's stage total <= 1/5 of cloud-init's on a first boot
and <= 1/10 on a second boot.

Usage (root): .venv/bin/python benchmarks/boot_vs_cloudinit.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vmtests import scenarios as sc  # noqa: E402
from vmtests.harness import cache, hosttools, image, seed  # noqa: E402
from vmtests.harness.lab import Lab, ssh_keypair  # noqa: E402
from vmtests.harness.verdict import Capture, Check  # noqa: E402

CLOUD_INIT_PACKAGES = ["cloud-init", "cloud-guest-utils"]
STAGE_UNITS = {
    "tether": {"local": "tether-local.service", "network": "tether-network.service",
               "config": "tether-config.service", "final": "tether-final.service"},
    "cloud-init": {"local": "cloud-init-local.service", "network": "cloud-init.service",
                   "config": "cloud-config.service", "final": "cloud-final.service"},
}
STAGES = ("local", "network", "config", "final")
HOSTNAME = "bench-vm"
BOOT_TIMEOUT = 900.0  # per boot: a loaded 2-core host takes minutes per TCG boot (the harness default is 300 s)
DURATION = re.compile(r"(?:(\d+)min)?\s*(?:(\d+(?:\.\d+)?)s)?\s*(?:(\d+)ms)?")


def parse_blame(text: str) -> dict[str, float]:
    """``systemd-analyze blame`` lines ("1min 2.345s unit", "805ms unit") -> unit -> seconds."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        unit = parts[-1]
        m = DURATION.fullmatch(" ".join(parts[:-1]))
        if m and any(m.groups()):
            mins, secs, ms = m.groups()
            out[unit] = int(mins or 0) * 60 + float(secs or 0) + int(ms or 0) / 1000
    return out


def cloud_init_disk(work: Path) -> Path:
    tarball = image.derived_rootfs("cloudinit", CLOUD_INIT_PACKAGES)
    key = cache.recipe_hash(tarball.name, image.guest_agent_hash())
    out = cache.cache_dir() / f"disk-cloudinit-{key}.img"
    if not out.exists():
        with cache.locked("disk-cloudinit"):
            if not out.exists():
                tmp = image.disk_from_tarball(tarball, work / "cloudinit.img")
                cache.publish(tmp, out)
                cache.prune(out, "disk-cloudinit-*.img")
    return out


def plan(agent: str) -> list[list]:
    boot = [Check("hostname", f"test \"$(hostname)\" = {HOSTNAME}"),
            Capture("blame", "systemd-analyze blame --no-pager")]
    if agent == "tether":  # the agent's own stage times (process start-up excluded), for the record
        boot.append(Capture("agent-stages", "tether analyze show | grep -E '^(init|modules|total)'"))
    return [boot, boot]


def measure(lab: Lab, name: str, disk: Path, iso: Path, log: Path) -> list[dict[str, float]] | None:
    agent = "tether" if name.startswith("tether") else "cloud-init"
    outcome = lab.run(disk, plan(agent), name=name, seed_iso=iso, boot_timeout=BOOT_TIMEOUT)
    if outcome.problems():
        print(f"  {name}: FAILED: " + "; ".join(outcome.problems())[:800], flush=True)
        return None
    boots = []
    for v in outcome.verdicts:
        blame = parse_blame(v.data.get("blame", ""))
        row = {f"stage {s}": blame.get(STAGE_UNITS[agent][s], 0.0) for s in STAGES}
        row["stage total"] = sum(row[f"stage {s}"] for s in STAGES)
        row["power-on -> multi-user"] = v.milestones.get("multi_user", float("nan"))
        row["power-on -> agent done"] = v.milestones.get("agent_done", float("nan"))
        boots.append(row)
        for line in v.data.get("agent-stages", "").splitlines():
            print(f"    {name} boot {len(boots)} tether analyze: {line.strip()}", flush=True)
    with log.open("a") as f:  # per run, so an interrupted benchmark still leaves its figures
        f.write(json.dumps({"run": name, "boots": boots}) + "\n")
    for n, row in enumerate(boots, start=1):
        print(f"    {name} boot {n}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
    print(f"  {name}: first boot stage total {boots[0]['stage total']:.2f} s, second {boots[1]['stage total']:.2f} s,"
          f" run {outcome.result.wall:.0f} s", flush=True)
    return boots


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="VM runs per agent (each run = first + second boot)")
    ap.add_argument("--parallel", action="store_true",
                    help="boot each run's two VMs at the same time (same host load for both) instead of alternating")
    args = ap.parse_args()
    hosttools.ensure_host_tools()
    work = Path(tempfile.mkdtemp(prefix="bench-boot.", dir=cache.cache_dir()))
    t0 = time.monotonic()
    wheel = image.build_wheel(work / "wheel")
    disks = {"tether": image.tether_disk(work / "tether", wheel), "cloud-init": cloud_init_disk(work)}
    public, _ = ssh_keypair(work / "ssh")
    # cloud-init's cc_locale fails on minbase without a locale (vm-notes §6), so the seed names one for both.
    user_data = sc.user_data(HOSTNAME, public).replace("#cloud-config\n", "#cloud-config\nlocale: C.UTF-8\n", 1)
    iso = seed.cidata_iso(work / "seed.iso", user_data, {"instance-id": "iid-bench-0001"},
                          network_config=sc.NETWORK_CONFIG)
    mode = "both agents at once" if args.parallel else "alternating"
    print(f"images ready in {time.monotonic() - t0:.0f} s; {args.runs} runs per agent, {mode}; per-run figures"
          f" in {work / 'runs.jsonl'}", flush=True)
    results: dict[str, list[list[dict[str, float]]]] = {"tether": [], "cloud-init": []}
    lab = Lab(work / "vm")
    for i in range(args.runs):
        if args.parallel:
            got: dict[str, list[dict[str, float]] | None] = {}

            def one(agent: str, i: int = i, got: dict[str, list[dict[str, float]] | None] = got) -> None:
                got[agent] = measure(Lab(work / f"vm-{agent}"), f"{agent}-{i + 1}", disks[agent], iso,
                                     work / "runs.jsonl")

            threads = [threading.Thread(target=one, args=(a,)) for a in ("cloud-init", "tether")]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for agent, boots in got.items():
                if boots:
                    results[agent].append(boots)
            continue
        for agent in ("cloud-init", "tether"):
            boots = measure(lab, f"{agent}-{i + 1}", disks[agent], iso, work / "runs.jsonl")
            if boots:
                results[agent].append(boots)
    if not all(results.values()):
        print("no successful runs for: " + ", ".join(a for a, r in results.items() if not r))
        return 1
    metrics = [f"stage {s}" for s in STAGES] + ["stage total", "power-on -> multi-user", "power-on -> agent done"]
    ok = True
    for boot, label, budget in ((0, "first boot", 1 / 5), (1, "second boot", 1 / 10)):
        print(f"\n{label} (medians of {len(results['tether'])} tether / {len(results['cloud-init'])} cloud-init runs,"
              " seconds)")
        print(f"  {'':26} {'tether':>9} {'cloud-init':>11} {'ratio':>7}")
        for metric in metrics:
            t = statistics.median(r[boot][metric] for r in results["tether"])
            c = statistics.median(r[boot][metric] for r in results["cloud-init"])
            ratio = t / c if c else float("nan")
            print(f"  {metric:26} {t:9.2f} {c:11.2f} {ratio:7.2f}")
            if metric == "stage total":
                verdict = "within" if ratio <= budget else "OVER"
                ok &= ratio <= budget
                print(f"  {'':26} budget: tether <= {budget:.2f} x cloud-init -> {verdict}")
    print(f"\ntotal {time.monotonic() - t0:.0f} s; serial logs in {work / 'vm'}")
    (work / "tether" / "tether.img").unlink(missing_ok=True)
    return 0 if ok else 3


if __name__ == "__main__":
    sys.exit(main())
