"""First-boot scenarios (issue 7, 1-5) on real UEFI boots of the tether image: inputs in, guest checks out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmtests import scenarios as sc
from vmtests.harness import seed
from vmtests.harness.imds import ImdsServer, ec2_tree
from vmtests.harness.lab import EC2_SMBIOS, Lab, Outcome
from vmtests.harness.qemu import GUEST_MAC

STAGES = ("init-local", "init", "modules-config", "modules-final")


def assert_status_shape(outcome: Outcome, boot: int, datasource: str, degraded: bool = False) -> dict:
    """status.json / result.json as cloud-init documents them, seen inside the guest."""
    v = outcome.boot(boot)
    doc = json.loads(v.data["status.json"])
    v1 = doc["v1"]
    assert v1["stage"] is None, f"boot {boot}: a stage is still marked running: {v1['stage']}"
    assert datasource.lower() in str(v1.get("datasource")).lower(), v1.get("datasource")
    for stage in STAGES:
        block = v1[stage]
        assert {"errors", "recoverable_errors", "start", "finished"} <= set(block), (stage, block)
        assert isinstance(block["start"], (int, float)) and isinstance(block["finished"], (int, float)), block
        assert block["finished"] >= block["start"], (stage, block)
        assert block["errors"] == [], (stage, block["errors"])
    recoverable = {stage: v1[stage]["recoverable_errors"] for stage in STAGES if v1[stage]["recoverable_errors"]}
    assert bool(recoverable) == degraded, recoverable
    result = json.loads(v.data["result.json"])["v1"]
    assert datasource.lower() in str(result.get("datasource")).lower(), result
    assert result["errors"] == [], result
    return v1


def plan_files(ssh_key: tuple[str, bytes]) -> dict[str, str | bytes]:
    return {"id_vmtest": ssh_key[1]}


# ---- 1. NoCloud cidata ISO -------------------------------------------------------------------------------------
def test_nocloud_first_boot(lab: Lab, tether_image: Path, ssh_key: tuple[str, bytes]) -> None:
    public = ssh_key[0]
    iso = seed.cidata_iso(lab.work / "seed.iso", sc.user_data("nocloud-vm", public),
                          {"instance-id": "iid-nocloud-0001", "local-hostname": "from-meta-data"},
                          network_config=sc.NETWORK_CONFIG)
    plan = [sc.scenario1_checks("nocloud-vm", public)]
    outcome = lab.run(tether_image, plan, name="nocloud", seed_iso=iso, plan_files=plan_files(ssh_key))
    outcome.assert_ok()
    assert outcome.boot(1).failed_units == []
    assert_status_shape(outcome, 1, "NoCloud")
    assert "iid-nocloud-0001" in outcome.boot(1).data["instance-link"]


# ---- 2. EC2 IMDSv2 through the loopback metadata server ---------------------------------------------------------
def test_ec2_imdsv2_first_boot(lab: Lab, tether_image: Path, ssh_key: tuple[str, bytes], imds: ImdsServer) -> None:
    public = ssh_key[0]
    imds.update(ec2_tree("i-0ec2vmtest0001", "ip-169-254-2-15.eu-test-1.compute.internal", GUEST_MAC,
                         public_key=public, user_data=sc.user_data("ec2-vm", public)))
    plan = [sc.scenario1_checks("ec2-vm", public, static_ip=False)]
    outcome = lab.run(tether_image, plan, name="ec2", imds=imds, smbios=EC2_SMBIOS, plan_files=plan_files(ssh_key))
    outcome.assert_ok()
    assert outcome.boot(1).failed_units == []
    assert_status_shape(outcome, 1, "Ec2")
    assert "i-0ec2vmtest0001" in outcome.boot(1).data["instance-link"]
    # IMDSv2 only: a token was fetched, and nothing was read without it
    assert any(r.method == "PUT" and r.status == 200 for r in imds.requests), imds.requests
    gets = [r for r in imds.requests if r.method == "GET"]
    assert any(r.path.endswith("/user-data") and r.token_ok and r.status == 200 for r in gets), gets
    assert all(r.token_ok for r in gets), [r.path for r in gets if not r.token_ok]


# ---- 3 + 4. second boot of the same instance, then a new instance-id on the same disk ---------------------------
@pytest.fixture(scope="module")
def reboots(tether_image: Path, ssh_key: tuple[str, bytes], vm_host: None,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Outcome]]:
    """One VM, three boots: instance A, A again, then the seed swapped for instance B."""
    the_lab = Lab(tmp_path_factory.mktemp("reboots"))
    public = ssh_key[0]
    meta = {"instance-id": "iid-reboot-A", "local-hostname": "reboot-vm"}
    iso = seed.cidata_iso(the_lab.work / "seed.iso", sc.user_data("reboot-vm", public), meta)

    def before_boot(n: int) -> None:
        if n == 3:
            seed.cidata_iso(iso, sc.user_data("reboot-vm", public), {**meta, "instance-id": "iid-reboot-B"})

    plan = [
        [*sc.tether_done(0), sc.Capture("machine-id", "cat /etc/machine-id"),
         sc.Capture("instance-link", "readlink -f /var/lib/tether/instance"), sc.EDIT_NOTE],
        sc.repeat_boot_checks(runs=1, boots=2, note_edited=True),
        sc.repeat_boot_checks(runs=2, boots=3, note_edited=False),
    ]
    outcome = the_lab.run(tether_image, plan, name="reboots", seed_iso=iso, on_reboot=before_boot,
                          plan_files=plan_files(ssh_key))
    yield the_lab, outcome


def _boot_ok(outcome: Outcome, n: int) -> None:
    v = outcome.boot(n)
    assert v.reached and v.ended, f"boot {n} did not complete its checks"
    failures = {k: v for k, v in v.failures.items()}
    assert not failures, "\n".join(outcome.problems())


def test_second_boot_same_instance(reboots: tuple[Lab, Outcome], request: pytest.FixtureRequest) -> None:
    lab, outcome = reboots
    request.node._vm_lab = lab
    _boot_ok(outcome, 1)
    _boot_ok(outcome, 2)
    assert_status_shape(outcome, 2, "NoCloud")
    b1, b2 = outcome.boot(1), outcome.boot(2)
    assert b1.data["machine-id"] == b2.data["machine-id"], "machine-id changed without a new instance"
    assert b1.data["instance-link"] == b2.data["instance-link"]


def test_new_instance_id_same_disk(reboots: tuple[Lab, Outcome], request: pytest.FixtureRequest) -> None:
    lab, outcome = reboots
    request.node._vm_lab = lab
    outcome.assert_ok()
    assert_status_shape(outcome, 3, "NoCloud")
    b1, b3 = outcome.boot(1), outcome.boot(3)
    assert "iid-reboot-B" in b3.data["instance-link"], b3.data["instance-link"]
    new_id = b3.data["machine-id"].strip()
    assert len(new_id) == 32 and new_id != b1.data["machine-id"].strip(), (b1.data["machine-id"], new_id)


# ---- 5. bad user-data: the boot completes, degraded, errors named ----------------------------------------------
def test_bad_user_data_degraded(lab: Lab, tether_image: Path, ssh_key: tuple[str, bytes]) -> None:
    public = ssh_key[0]
    iso = seed.cidata_iso(lab.work / "seed.iso", sc.bad_user_data("degraded-vm", public),
                          {"instance-id": "iid-bad-0001"})
    plan = [[
        *sc.tether_done(2),
        sc.Capture("status-long", "tether status --long"),
        sc.Check("sshd", "systemctl is-active ssh && timeout 10 bash -c "
                 "'exec 3<>/dev/tcp/127.0.0.1/22; head -c 7 <&3' | grep -q SSH-2.0", "SSH comes up"),
        *sc.user_checks(public),
        sc.Check("good-parts-applied", "test \"$(hostname)\" = degraded-vm && test -s /var/tmp/runcmd-runs",
                 "the valid sections still ran"),
    ]]
    outcome = lab.run(tether_image, plan, name="bad-userdata", seed_iso=iso, plan_files=plan_files(ssh_key))
    outcome.assert_ok()
    assert outcome.boot(1).failed_units == []
    v1 = assert_status_shape(outcome, 1, "NoCloud", degraded=True)
    errors = json.dumps({s: v1[s]["recoverable_errors"] for s in STAGES}).lower()
    assert "write_files" in errors, errors
    assert "yaml" in errors or "part" in errors, errors
    assert "write_files" in outcome.boot(1).data["status-long"]
