"""Guest steps for the servicing engine's QEMU proofs (issue 6): helper scripts put on the plan disk and the
checks a person would run on the host between boots (``tether get ...``, which slot is mounted, boot entries)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from vmtests.engine_images import IMAGES_LABEL, IMAGES_MOUNT, MARKER
from vmtests.harness.lab import Outcome
from vmtests.harness.verdict import Capture, Check, Step

# `expect WHAT EXPR`: `tether get WHAT --format json` as d, EXPR must be true (prints the document otherwise)
EXPECT = """import json, subprocess, sys
what, expr = sys.argv[1], sys.argv[2]
out = subprocess.run(["tether", "get", what, "--format", "json"], capture_output=True, text=True)
try:
    d = json.loads(out.stdout)
    ok = eval(expr, {"d": d})
except Exception as e:
    d, ok = out.stdout + out.stderr, False
    print("error:", e)
if not ok:
    print(json.dumps(d, indent=1)[-2500:] if not isinstance(d, str) else d[-2500:])
    sys.exit(1)
"""

# the EC2 instance tag as the guest sees it now (IMDSv2)
TAG = """import urllib.request as u
base = "http://169.254.169.254/latest"
tok = u.urlopen(u.Request(base + "/api/token", method="PUT",
                          headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}), timeout=5).read().decode()
print(u.urlopen(u.Request(base + "/meta-data/tags/instance/host-configuration",
                          headers={"X-aws-ec2-metadata-token": tok}), timeout=5).read().decode())
"""

# Runs the update as a transient unit, so it outlives the verdict agent's 60 s per step; waits (bounded) for the
# metadata to name the new image first when asked to.
UPDATE = """#!/bin/bash
want=${1:--}
shift || true
if [ "$want" != - ]; then
  for i in $(seq 60); do python3 /run/vmplan/tag.py 2>/dev/null | grep -q "$want" && break; sleep 1; done
fi
date +%s.%N > /run/vmtest-update.start
exec tether update --from-metadata --reboot never "$@"
"""

FILES: dict[str, str | bytes] = {"expect.py": EXPECT, "tag.py": TAG, "update.sh": UPDATE}


def expect(cid: str, what: str, expr: str, why: str = "") -> Check:
    return Check(cid, f"python3 /run/vmplan/expect.py {what} '{expr}'", why)


def adopted() -> list[Step]:
    return [
        expect("adopted", "status", 'd["servicingState"] == "provisioned" and d["abActiveVolume"] == "volume-a"',
               "the adopted layout: provisioned on volume-a"),
        Check("datasource-ec2", "grep -qi ec2 /run/tether/status.json",
              "first boot read the EC2 metadata (the engine asks the instance's datasource for updates)"),
        Check("images-disk", f"mkdir -p {IMAGES_MOUNT} && mount -o ro LABEL={IMAGES_LABEL} {IMAGES_MOUNT} && "
              f"test -s {IMAGES_MOUNT}/v2.img", "the image disk is readable"),
    ]


def start_update(wait_for: str = "", tries: int = 3) -> Check:
    """The engine's metadata check as ``tether-update.service`` runs it, with the reboot left to the plan."""
    return Check("update-started", "rm -f /run/vmtest-update.rc; systemd-run --unit=vmtest-update -p Type=oneshot "
                 "--no-block bash -c 'bash /run/vmplan/update.sh " + (wait_for or "-") + f" --tries {tries} "
                 ">/run/vmtest-update.log 2>&1; echo $? >/run/vmtest-update.rc'")


def await_update(rounds: int = 9) -> list[Step]:
    # bounded by the clock, not a count: under load a loop of 55 one-second sleeps overruns the agent's 60 s
    wait = "end=$((SECONDS + 45)); while [ $SECONDS -lt $end ]; do test -e /run/vmtest-update.rc && exit 0; " \
           "sleep 1; done; exit 0"
    return [
        *(Check(f"update-wait-{i}", wait) for i in range(1, rounds)),
        Check("update-ran", "test -e /run/vmtest-update.rc && test \"$(cat /run/vmtest-update.rc)\" = 0 || "
              "{ cat /run/vmtest-update.log; false; }", "tether update --from-metadata exits 0"),
        Capture("update-log", "cat /run/vmtest-update.log; echo; echo started $(cat /run/vmtest-update.start) "
                "ended $(stat -c %Y /run/vmtest-update.rc)"),
        Capture("update-check", "tether get update-check --format json"),
        expect("finalized", "status", 'd["servicingState"] == "ab-update-finalized" and '
               'd["boot"]["targetVolume"] == "volume-b"', "staged into B and finalized"),
        Capture("entries-finalized", "ls /efi/loader/entries; cat /efi/loader/loader.conf"),
        Capture("machine-id", "cat /etc/machine-id"),
    ]


# The timer's own path (issue 6: tether-update.timer -> tether-update.service -> tether update --from-metadata,
# reboot policy `now`): once the metadata names the new image, a runtime drop-in brings the timer's next run
# forward (the image's drop-in parks it at 1h so it cannot race the plan) and the timer is restarted. The service
# stages, finalizes and reboots by itself; the plan only waits, and fails if the reboot never comes. OnActiveSec
# (from the restart), not a past OnBootSec: systemd 252 did not fire a restarted timer whose OnBootSec had passed.
TIMER_DROPIN = "/run/systemd/system/tether-update.timer.d/99-vmtest-now.conf"


def arm_timer(wait_for: str) -> Check:
    seen = f"python3 /run/vmplan/tag.py 2>/dev/null | grep -q {wait_for}"
    return Check("timer-armed", f"end=$((SECONDS + 45)); until {seen} || [ $SECONDS -ge $end ]; do sleep 1; done; "
                 f"{seen} && mkdir -p {TIMER_DROPIN.rsplit('/', 1)[0]} && printf '%s\\n' '[Timer]' "
                 "'OnActiveSec=3s' 'AccuracySec=1s' "
                 f"> {TIMER_DROPIN} && systemctl daemon-reload && systemctl restart tether-update.timer && "
                 "systemctl list-timers tether-update.timer --no-pager",
                 "the metadata names the new image; the update timer is due now")


def await_timer_reboot(rounds: int = 12) -> list[Step]:
    return [Capture("timer-state", "sleep 5; systemctl show -p NextElapseUSecMonotonic -p LastTriggerUSec "
                    "tether-update.timer; systemctl show -p ActiveState -p ExecMainStartTimestamp "
                    "tether-update.service"),
            *(Check(f"timer-wait-{i}", "sleep 45") for i in range(1, rounds)),
            Check("timer-rebooted", "systemctl status tether-update.timer tether-update.service --no-pager | "
                  "tail -n 30; systemctl cat tether-update.timer; tether get update-check; false",
                  "tether-update.service should have staged, finalized and rebooted the VM by now")]


def on_slot(slot: str) -> Check:
    if slot == "b":
        return Check("on-b", f"test \"$(cat {MARKER})\" = v2 && test \"$(findmnt -no SOURCE /)\" = /dev/vda3",
                     "running the new image from root-b")
    return Check("on-a", f"test ! -e {MARKER} && test \"$(findmnt -no SOURCE /)\" = /dev/vda2",
                 "running the original image from root-a")


def captures(tag: str) -> list[Step]:
    return [
        Capture(f"status-{tag}", "tether get status --format json"),
        Capture(f"chain-{tag}", "tether get rollback-chain --format json"),
        Capture(f"entries-{tag}", "ls /efi/loader/entries; cat /proc/cmdline"),
        Capture(f"commit-{tag}", "systemctl show -p Result,ExecMainStatus tether-commit.service; "
                "journalctl -b -u tether-commit.service --no-pager -o cat | tail -n 15"),
    ]


# ---- host side ---------------------------------------------------------------------------------------------------
def when_logged(log: Path, needle: str, action: Callable[[], None], timeout: float = 1800) -> threading.Thread:
    """Run ``action`` once ``needle`` appears in the serial log (mid-boot changes, e.g. the metadata)."""
    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if needle in log.read_text(errors="replace"):
                    action()
                    return
            except OSError:
                pass
            time.sleep(0.5)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def timeline(title: str, outcome: Outcome) -> str:
    """Seconds since each QEMU launch to each marker, per boot, plus the total."""
    lines = [f"boot timeline: {title} (status {outcome.result.status}, {outcome.result.wall:.0f} s wall)"]
    for boot in outcome.result.boots:
        marks = " ".join(f"{k}={v:.1f}" for k, v in sorted(boot.milestones.items(), key=lambda kv: kv[1]))
        lines.append(f"  QEMU boot {boot.index} [{boot.end}]: {marks}")
    return "\n".join(lines)
