"""The servicing loop in real UEFI boots (issue 6, "Proof in QEMU" 1-4): A/B update from the instance metadata,
a failed health check, a slot that panics, manual rollback.

The disk is the harness's A/B disk with the engine's state adopted (``vmtests/engine_images.py`` says why and
how); the metadata is the EC2 IMDSv2 server (instance tag ``host-configuration``), the update image a raw ext4 root
filesystem on a read-only second disk. Each test prints its boot timeline (seconds since each QEMU launch).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vmtests import engine_plan as ep
from vmtests.engine_images import INSTALLED, EngineDisks, engine_disks
from vmtests.harness import qemu, verdict
from vmtests.harness.imds import ImdsServer, ec2_tree
from vmtests.harness.lab import EC2_SMBIOS, Lab, Outcome
from vmtests.harness.qemu import GUEST_MAC

pytestmark = [pytest.mark.vm, pytest.mark.vm_engine]

USER_DATA = "#cloud-config\nhostname: engine-vm\n"
BOOT_TIMEOUT = 900.0  # boot 1 also stages ~500 MB under TCG; slow when other VMs share the 2 cores
FAILING_CHECK = "vmtest-api"


@pytest.fixture(scope="session")
def engine(tether_wheel: Path) -> EngineDisks:
    return engine_disks(tether_wheel)


def metadata(imds: ImdsServer, cfg: dict[str, Any] | None, iid: str) -> None:
    tree = ec2_tree(iid, "engine-vm", GUEST_MAC, user_data=USER_DATA)
    if cfg is not None:
        tree["meta-data"]["tags"] = {"instance": {"host-configuration": yaml.safe_dump(cfg, sort_keys=False)}}
    imds.update(tree)


def run(lab: Lab, engine: EngineDisks, imds: ImdsServer, plan: list[list[Any]], name: str,
        launches: int | None = None) -> Outcome:
    outcome = lab.run(engine.disk, plan, name=name, imds=imds, smbios=EC2_SMBIOS, plan_files=ep.FILES,
                      extra_drives=[qemu.Drive(engine.images, readonly=True)], max_boots=launches,
                      boot_timeout=BOOT_TIMEOUT)
    print(ep.timeline(name, outcome))
    return outcome


def doc(outcome: Outcome, boot: int, key: str) -> Any:
    return json.loads(outcome.boot(boot).data[key])


def boots_ok(outcome: Outcome, *boots: int) -> None:
    """The guest agent ran its plan with no failed check on these QEMU boots (numbered by launch: a boot that
    panicked or rebooted before the agent started has no plan of its own)."""
    problems = []
    for n in boots:
        v = outcome.boot(n)
        if not (v.reached and v.ended):
            problems.append(f"QEMU boot {n}: the guest agent did not run its plan to the end")
    failures = verdict.describe_failures(outcome.verdicts, outcome.plan)
    if failures or problems:
        raise AssertionError("\n".join([*problems, failures, ep.timeline("", outcome)]))


# ---- 1 + 4: metadata update into B, commit; then manual rollback to A (one VM, three boots) ---------------------
# The update goes the production way: tether-update.timer fires (a runtime drop-in makes it due once the metadata
# names v2), tether-update.service stages, finalizes and reboots under its default `now` policy.
@pytest.fixture(scope="module")
def update_run(engine: EngineDisks, vm_host: None, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[Lab, Outcome, ImdsServer]]:
    lab = Lab(tmp_path_factory.mktemp("engine-update"))
    plan = [
        [*ep.adopted(),
         ep.Capture("machine-id", "cat /etc/machine-id"),
         ep.Check("up-to-date", "tether update --from-metadata --reboot never --metadata-timeout 20 && "
                  "python3 /run/vmplan/expect.py update-check '\"up to date\" in d[\"reason\"]'",
                  "the metadata names the installed configuration: nothing to do"),
         ep.arm_timer("v2.img"), *ep.await_timer_reboot()],
        [ep.on_slot("b"),
         ep.Capture("update-check", "tether get update-check --format json"),
         ep.expect("service-rebooted", "update-check", 'd["action"] == "rebooting" and d["policy"] == "now"',
                   "tether-update.service staged, finalized and rebooted under the `now` policy"),
         ep.expect("provisioned-b", "status", 'd["servicingState"] == "provisioned" and d["abActiveVolume"] == '
                   '"volume-b" and d["lastError"] is None', "committed on B"),
         ep.expect("previous-a", "rollback-chain", '[c["abActiveVolume"] for c in d][:2] == ["volume-b", "volume-a"]',
                   "the previous slot is A"),
         ep.Check("blessed", "ls /efi/loader/entries | grep -Eq '^tether-[0-9]+-volume-b\\.conf$'",
                  "the trial entry lost its counter (blessed)"),
         ep.Capture("machine-id", "cat /etc/machine-id"),
         *ep.captures("b"),
         ep.Check("rollback-check", "tether rollback --check"),
         ep.Check("rollback", "tether rollback --no-reboot")],
        [ep.on_slot("a"),
         ep.expect("provisioned-a", "status", 'd["servicingState"] == "provisioned" and d["abActiveVolume"] == '
                   '"volume-a"', "rolled back and committed on A"),
         *ep.captures("a")],
    ]
    with ImdsServer() as imds:
        metadata(imds, INSTALLED, "i-0engineupdate01")
        v2 = engine.v2(hostname="engine-vm-v2")
        ep.when_logged(lab.work / "update.serial.log", "VMCHECK 1 up-to-date PASS",
                       lambda: metadata(imds, v2, "i-0engineupdate01"))
        outcome = run(lab, engine, imds, plan, "update")
        yield lab, outcome, imds


def test_metadata_update_into_b(update_run: tuple[Lab, Outcome, ImdsServer], request: pytest.FixtureRequest) -> None:
    lab, outcome, imds = update_run
    request.node._vm_lab = lab
    boots_ok(outcome, 2)
    first = outcome.boot(1)
    # the timer's service rebooted the VM while the plan was still waiting: boot 1's agent never got to its end
    assert first.reached and not first.ended and outcome.result.boots[0].end == "reboot", ep.timeline("", outcome)
    check = doc(outcome, 2, "update-check")
    assert check["action"] == "rebooting" and check["policy"] == "now", check
    assert "v2.img" in str(check.get("seen")), check
    status = doc(outcome, 2, "status-b")
    assert status["servicingState"] == "provisioned" and status["abActiveVolume"] == "volume-b", status
    assert status["slots"]["volume-b"]["state"] == "committed", status["slots"]
    assert status["slots"]["volume-a"]["state"] == "committed", status["slots"]
    assert outcome.boot(1).data["machine-id"] == outcome.boot(2).data["machine-id"], "identity not carried over"
    assert any(r.path.endswith("tags/instance/host-configuration") for r in imds.requests), imds.requests


def test_manual_rollback_to_a(update_run: tuple[Lab, Outcome, ImdsServer], request: pytest.FixtureRequest) -> None:
    lab, outcome, _ = update_run
    request.node._vm_lab = lab
    boots_ok(outcome, 2, 3)
    assert outcome.result.status == "poweroff", ep.timeline("update", outcome)
    status = doc(outcome, 3, "status-a")
    assert status["servicingState"] == "provisioned" and status["abActiveVolume"] == "volume-a", status
    assert "volume-a" in status["boot"]["entryId"], status["boot"]


# ---- 2: the new image fails its health check -> back on A --------------------------------------------------------
def test_health_check_failure_returns_to_a(lab: Lab, engine: EngineDisks, imds: ImdsServer) -> None:
    bad = engine.v2(checks=[{"name": FAILING_CHECK, "content": "echo 'api is down' >&2; exit 3",
                             "runOn": ["ab-update"]}])
    metadata(imds, bad, "i-0enginehealth01")
    plan = [
        [*ep.adopted(), ep.start_update(), *ep.await_update()],
        [ep.on_slot("a"),
         ep.expect("provisioned-a", "status", 'd["servicingState"] == "provisioned" and d["abActiveVolume"] == '
                   '"volume-a"', "back on A, provisioned"),
         ep.expect("last-error", "last-error", f'"{FAILING_CHECK}" in d["message"] and '
                   'd["category"] == "health-check-failed"', "the last error names the failed check"),
         ep.Check("not-again", "tether update --from-metadata --reboot never && python3 /run/vmplan/expect.py "
                  "update-check '\"failed before\" in d[\"reason\"]'",
                  "the rejected configuration is not staged again"),
         *ep.captures("a")],
    ]
    outcome = run(lab, engine, imds, plan, "health", launches=3)
    # QEMU boots: A stages and finalizes; B fails its check and reboots (no plan runs there); A again
    boots_ok(outcome, 1, 3)
    assert outcome.result.status == "poweroff" and len(outcome.result.boots) == 3, ep.timeline("health", outcome)
    assert not outcome.boot(2).reached, "the plan ran on the failed slot"
    status = doc(outcome, 3, "status-a")
    assert status["slots"]["volume-b"]["state"] == "bad", status["slots"]


# ---- 3: the new slot panics at boot -> boot counting returns to A ------------------------------------------------
def test_panicking_slot_falls_back_to_a(lab: Lab, engine: EngineDisks, imds: ImdsServer) -> None:
    # initramfs-tools falls back to /sbin/init when init= does not exist, so a missing init still boots;
    # /bin/false exists, runs as PID 1 and exits: "Attempted to kill init!", then panic=5 resets.
    tries = 2
    metadata(imds, engine.v2(extra_cmdline=["init=/bin/false"]), "i-0enginepanic001")
    plan = [
        [*ep.adopted(), ep.start_update(tries=tries), *ep.await_update()],
        [ep.on_slot("a"),
         ep.expect("provisioned-a", "status", 'd["servicingState"] == "provisioned" and d["abActiveVolume"] == '
                   '"volume-a"', "back on A with no operator"),
         ep.expect("last-error", "last-error", 'd["category"] == "boot-fallback"', "the fallback is recorded"),
         ep.Check("counted-out", "ls /efi/loader/entries | grep -Eq '^tether-[0-9]+-volume-b\\+0-2\\.conf$'",
                  f"the trial entry used up its {tries} tries"),
         *ep.captures("a")],
    ]
    outcome = run(lab, engine, imds, plan, "panic", launches=2 + tries)
    boots_ok(outcome, 1, 2 + tries)
    assert outcome.result.status == "poweroff", ep.timeline("panic", outcome)
    ends = [b.end for b in outcome.result.boots]
    assert ends == ["reboot", *(["panic"] * tries), "poweroff"], ends
