"""The demo's second part: an A/B update triggered by a change of the instance metadata (issue 6).

One VM on the adopted A/B disk (``vmtests/engine_images.py``) with the EC2 IMDSv2 server: first boot on slot A,
``tether update --from-metadata`` finds nothing to do; the instance tag ``host-configuration`` then changes to a
new image; the engine stages it into B and finalizes a counted boot entry; the VM reboots into B, where
``tether-commit`` commits it. Shows what happened at each step.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from vmtests import engine_plan as ep
from vmtests.engine_images import INSTALLED, engine_disks
from vmtests.harness import qemu
from vmtests.harness.imds import ImdsServer, ec2_tree
from vmtests.harness.lab import EC2_SMBIOS, Lab
from vmtests.harness.qemu import GUEST_MAC
from vmtests.harness.verdict import Capture

IID = "i-0tetherdemo0ab1"


def _tree(cfg: dict[str, Any]) -> dict[str, Any]:
    tree = ec2_tree(IID, "tether-ab-demo", GUEST_MAC, user_data="#cloud-config\nhostname: tether-ab-demo\n")
    tree["meta-data"]["tags"] = {"instance": {"host-configuration": yaml.safe_dump(cfg, sort_keys=False)}}
    return tree


def run(work: Path, wheel: Path, say: Callable[[str], None]) -> bool:
    say("\n==> A/B update from the metadata (issue 6)")
    t0 = time.monotonic()
    disks = engine_disks(wheel, log=lambda m: None)
    say(f"    adopted A/B disk + update image ready in {time.monotonic() - t0:.1f} s")
    v2 = disks.v2(hostname="tether-ab-demo-v2")
    plan = [
        [*ep.adopted(),
         ep.Check("up-to-date", "tether update --from-metadata --reboot never --metadata-timeout 20"),
         Capture("check-before", "tether get update-check --format json"),
         ep.start_update(wait_for="v2.img"), *ep.await_update()],
        [ep.on_slot("b"), Capture("hostname", "hostname"), *ep.captures("b")],
    ]
    lab = Lab(work / "ab")
    changed: dict[str, float] = {}
    with ImdsServer() as imds:
        imds.update(_tree(INSTALLED))

        def change() -> None:
            imds.update(_tree(v2))
            changed["at"] = time.monotonic()

        ep.when_logged(lab.work / "ab.serial.log", "VMCHECK 1 up-to-date PASS", change)
        say("    booting slot A; the metadata will change to a new image after the first check")
        start = time.monotonic()
        outcome = lab.run(disks.disk, plan, name="ab", imds=imds, smbios=EC2_SMBIOS, plan_files=ep.FILES,
                          extra_drives=[qemu.Drive(disks.images, readonly=True)], boot_timeout=900)
    if "at" in changed:
        say(f"    metadata changed {changed['at'] - start:.0f} s after power-on "
            f"(tag host-configuration -> image {v2['image']['url']})")
    say(ep.timeline("A/B update (seconds since each QEMU launch)", outcome))

    def data(boot: int, key: str) -> str:
        try:
            return outcome.boot(boot).data.get(key, "<missing>")
        except AssertionError:
            return "<boot missing>"

    def js(boot: int, key: str) -> Any:
        try:
            return json.loads(data(boot, key))
        except ValueError:
            return {}

    before = js(1, "check-before")
    say(f"\n==> first check on slot A: {before.get('action')}: {before.get('reason')}")
    check = js(1, "update-check")
    say(f"==> after the metadata changed: {check.get('action')}: {check.get('reason')}")
    say("==> tether update --from-metadata output:")
    say("".join(f"    | {line}\n" for line in data(1, "update-log").splitlines()[-12:]).rstrip())
    fin = data(1, "entries-finalized")
    say("==> boot entries after finalize (counted trial entry for B):")
    say("".join(f"    {line}\n" for line in fin.splitlines()).rstrip())
    status = js(2, "status-b")
    say(f"\n==> after the reboot into B (hostname {data(2, 'hostname').strip()}):")
    say(f"    servicingState={status.get('servicingState')} abActiveVolume={status.get('abActiveVolume')} "
        f"lastError={status.get('lastError')}")
    chain = js(2, "chain-b")
    if isinstance(chain, list):
        say("    rollback chain: " + " <- ".join(str(c.get("abActiveVolume")) for c in chain))
    say("==> boot entries on B (blessed: no counter):")
    say("".join(f"    {line}\n" for line in data(2, "entries-b").splitlines()).rstrip())
    problems = outcome.problems()
    if problems:
        say("!! A/B update problems:\n" + "\n".join(problems))
        say(f"   serial log: {outcome.result.log}")
        return False
    return status.get("servicingState") == "provisioned" and status.get("abActiveVolume") == "volume-b"
