"""Clean install in real UEFI boots (issue 6, "Proof in QEMU" 5): a VM booted from a live disk runs ``tether
install`` onto a blank second disk; the next boot comes up from that disk, runs first boot, and commits.

Boot 1 runs the harness's tether disk (``/dev/vda``) as the live system, with a blank 4 GiB disk (serial
``tether-target``), the ``TETHERIMG`` image disk and a NoCloud seed attached. ``tether install`` partitions the
blank disk, streams ``v2.img`` into slot A, finalizes with systemd-boot and registers it with the firmware (first
in ``BootOrder``). The live disk stays attached for boot 2: the firmware must pick the new disk by itself, through
that entry. The VM runs with ``firmware_boot_order`` (no QEMU ``bootindex``): with a bootindex, OVMF rewrites
``BootOrder`` from QEMU's order at every boot and drops every ``HD()`` entry QEMU did not name, which no physical
firmware does. Plan and inputs: ``install_plan.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmtests import engine_plan as ep
from vmtests import install_plan as ip
from vmtests.engine_images import EngineDisks, engine_disks
from vmtests.harness import qemu, seed, verdict
from vmtests.harness.lab import Lab

pytestmark = [pytest.mark.vm, pytest.mark.vm_engine]

BOOT_TIMEOUT = 1200.0  # boot 1 streams ~500 MB, checks and grows the filesystem under TCG (shared cores)


@pytest.fixture(scope="session")
def engine(tether_wheel: Path) -> EngineDisks:
    return engine_disks(tether_wheel)


def test_clean_install_onto_blank_disk(lab: Lab, tether_image: Path, engine: EngineDisks) -> None:
    cfg = ip.host_config(engine.v2_sha256)
    files = ip.files(cfg, ip.host_config(engine.v2_sha256, device="/dev/vda"), ip.fdisk_deb())
    target = lab.work / "target.img"
    with open(target, "wb") as f:
        f.truncate(ip.TARGET_BYTES)
    seed_iso = seed.cidata_iso(lab.work / "seed.iso", ip.SEED_USER_DATA, ip.SEED_META_DATA)
    plan = [ip.live_steps(), ip.installed_steps()]
    outcome = lab.run(tether_image, plan, name="install", seed_iso=seed_iso, plan_files=files,
                      extra_drives=[qemu.Drive(engine.images, readonly=True), qemu.Drive(target, serial=ip.SERIAL)],
                      boot_timeout=BOOT_TIMEOUT, firmware_boot_order=True)
    live, installed = outcome.boot(1), outcome.boot(2) if len(outcome.verdicts) > 1 else None
    print(ep.timeline("clean install", outcome))
    if "install-log" in live.data:  # "started <epoch> ended <epoch>" closes the capture
        words = live.data["install-log"].split()
        if len(words) >= 4 and words[-4] == "started" and words[-2] == "ended":
            print(f"  tether install in boot 1: {float(words[-1]) - float(words[-3]):.0f} s")
    problems = outcome.problems()
    assert not problems, "\n".join([*problems, ep.timeline("clean install", outcome)])
    assert live.agent_rc == 0 and installed is not None and installed.agent_rc == 0, \
        "tether status --wait did not exit 0 on both boots"
    staged = json.loads(live.data["status-installed"])
    status = json.loads(installed.data["status"])
    assert staged["servicingState"] == "clean-install-finalized", staged
    assert status["servicingState"] == "provisioned" and status["abActiveVolume"] == "volume-a", status
    assert status["boot"]["entryId"] == staged["boot"]["entryId"], (staged["boot"], status["boot"])
    assert status["slots"]["volume-a"]["state"] == "committed", status["slots"]
    assert status["disks"] == {"os": status["disks"]["os"]} and status["disks"]["os"].startswith("/dev/vd"), status
    cmdline = installed.data["lsblk"].splitlines()[-1]
    assert f"root=PARTUUID={status['partitionUuids']['root-a']}" in cmdline, cmdline
    assert "PARTLABEL" not in cmdline and "console=ttyS0,115200" in cmdline, cmdline  # not the live disk's
    failures = verdict.describe_failures(outcome.verdicts, outcome.plan)
    assert not failures, failures
