"""The README's main command (``scripts/demo``): build or reuse the image, boot it once with an example seed and
show what tether did. Standard library only, apart from pip for building the wheel."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from vmtests import scenarios as sc
from vmtests.harness import cache, hosttools, image, rootfs, seed
from vmtests.harness.lab import Lab, log_tail, ssh_keypair
from vmtests.harness.verdict import Capture, Step

HOSTNAME = "tether-demo"


def say(msg: str) -> None:
    print(msg, flush=True)


def timed(label: str, fn, *args):  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    out = fn(*args)
    say(f"    {label}: {time.monotonic() - t0:.1f} s")
    return out


def show_plan() -> list[Step]:
    return [
        Capture("status", "tether status --long"),
        Capture("status.json", "cat /run/tether/status.json"),
        Capture("user", f"id {sc.USER}; getent passwd {sc.USER}; cat /etc/sudoers.d/* 2>/dev/null | grep {sc.USER}; "
                f"ls -l /home/{sc.USER}/.ssh/authorized_keys"),
        Capture("files", f"ls -l /home/{sc.USER}/notes.txt /etc/vmtest/app.conf /var/tmp/runcmd-runs; "
                f"echo '--- notes.txt'; cat /home/{sc.USER}/notes.txt; echo '--- app.conf'; "
                "cat /etc/vmtest/app.conf"),
        Capture("hostname", "hostname; cat /etc/hostname"),
        Capture("network", "ip -4 -o addr show scope global | awk '{print $2, $4}'; ls /etc/systemd/network"),
        Capture("blame", "systemd-analyze blame --no-pager | grep -E 'tether|ssh|networkd' | head -n 12"),
    ]


def timeline(milestones: dict[str, float], status: dict) -> list[tuple[float, str]]:
    """Host-side milestones (seconds since QEMU started) plus tether's stages from status.json (guest uptime,
    mapped with the kernel's start as uptime 0)."""
    names = {"firmware_done": "firmware (OVMF) handed over to systemd-boot", "kernel": "Linux starts",
             "initramfs": "initramfs runs /init", "systemd": "systemd starts", "multi_user": "multi-user.target",
             "agent_done": "tether status --wait returned"}
    events = [(t, names[k]) for k, t in milestones.items() if k in names]
    base = milestones.get("kernel")
    if base is not None:
        for stage in ("init-local", "init", "modules-config", "modules-final"):
            block = status.get("v1", {}).get(stage) or {}
            if block.get("start") is not None and block.get("finished") is not None:
                took = block["finished"] - block["start"]
                events.append((base + block["start"], f"tether {stage} starts ({took:.2f} s)"))
    return sorted(events)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/demo", description=__doc__)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (serial log, disks)")
    ap.add_argument("--no-update", action="store_true", help="stop after the first boot (skip the A/B update)")
    args = ap.parse_args(argv)
    t_all = time.monotonic()
    say("==> host tools (apt-get installs what is missing)")
    timed("host tools", hosttools.ensure_host_tools)
    say(f"==> base image (cache: {cache.cache_dir()}; first run downloads Debian with debootstrap, ~2 min)")
    timed("base root filesystem", rootfs.base_tree)
    timed("base disk", image.base_disk)
    work = Path(tempfile.mkdtemp(prefix="tether-demo.", dir=cache.cache_dir()))
    say("==> tether from this checkout")
    wheel = timed("wheel", image.build_wheel, work / "wheel")
    disk = timed("disk (Debian + tether, A/B slots)", image.tether_disk, work / "disk", wheel)
    public, private = ssh_keypair(work / "ssh")
    user_data = sc.user_data(HOSTNAME, public)
    iso = seed.cidata_iso(work / "seed.iso", user_data, {"instance-id": "iid-demo-0001"},
                          network_config=sc.NETWORK_CONFIG)
    say("==> the example seed (NoCloud cidata ISO), user-data:")
    say("".join(f"    | {line}\n" for line in user_data.splitlines()).rstrip())
    say("==> booting (QEMU, TCG, 2 vCPUs, OVMF; about 20-60 s depending on the host)")
    lab = Lab(work / "vm")
    outcome = lab.run(disk, [show_plan()], name="demo", seed_iso=iso, plan_files={"id_vmtest": private})
    problems = outcome.problems()
    if not outcome.verdicts or not outcome.verdicts[0].reached:
        say("!! the VM did not reach multi-user.target; serial console tail:")
        say(log_tail(outcome.result.log, 60))
        return 1
    v = outcome.verdicts[0]
    try:
        status = json.loads(v.data.get("status.json", "{}"))
    except ValueError:
        status = {}
    say("\n==> boot timeline (seconds since power-on)")
    for t, what in timeline(v.milestones, status):
        say(f"    {t:7.2f}  {what}")
    say(f"    tether agent exit code: {v.agent_rc} (0 done, 1 error, 2 degraded)")
    for key, title in (("status", "tether status --long"), ("blame", "systemd-analyze blame (tether, ssh, network)"),
                       ("user", "the user"), ("files", "the files"), ("hostname", "the hostname"),
                       ("network", "the network")):
        say(f"\n==> {title}")
        say("".join(f"    {line}\n" for line in v.data.get(key, "<missing>").splitlines()).rstrip())
    say(f"\n==> failed units: {', '.join(v.failed_units) or 'none'}")
    say(f"==> serial console log: {outcome.result.log}")
    if not args.keep:
        (work / "disk" / "tether.img").unlink(missing_ok=True)
    ab_ok = True
    if not args.no_update:
        from vmtests import demo_ab

        ab_ok = demo_ab.run(work, wheel, say)
    say(f"==> total {time.monotonic() - t_all:.0f} s")
    if problems:
        say("!! problems:\n" + "\n".join(problems))
        return 1
    return 0 if ab_ok else 1


if __name__ == "__main__":
    sys.exit(main())
