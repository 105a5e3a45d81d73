"""The harness itself, on the base image without any first-boot agent: UEFI boot through systemd-boot to
multi-user.target, the disk layout, the cidata seed, the IMDSv2 server through the loopback relay, and that the
restricted NIC reaches nothing else on the host."""

from __future__ import annotations

from pathlib import Path

from vmtests.harness import seed
from vmtests.harness.imds import ImdsServer, ec2_tree
from vmtests.harness.lab import Lab
from vmtests.harness.qemu import GUEST_MAC
from vmtests.harness.verdict import Check

IMDS_FETCH = r"""python3 - <<'PY'
import urllib.request
base = "http://169.254.169.254/latest"
req = urllib.request.Request(base + "/api/token", method="PUT",
                             headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
token = urllib.request.urlopen(req, timeout=10).read().decode()
for _ in range(3):  # several connections: each one gets its own relay process
    get = urllib.request.Request(base + "/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token})
    assert urllib.request.urlopen(get, timeout=10).read() == b"i-smoke0001"
try:
    urllib.request.urlopen(base + "/meta-data/instance-id", timeout=10)
except urllib.error.HTTPError as exc:
    assert exc.code == 401, exc.code
else:
    raise SystemExit("GET without a token was answered")
PY"""


def test_boot_layout_seed_and_metadata(lab: Lab, base_image: Path, imds: ImdsServer) -> None:
    imds.update(ec2_tree("i-smoke0001", "smoke", GUEST_MAC))
    iso = seed.cidata_iso(lab.work / "seed.iso", "#cloud-config\n{}\n", {"instance-id": "iid-smoke"})
    plan = [[
        Check("slot-a", "grep -qx A /etc/os-slot", "booted root-a through the slot-a entry"),
        Check("loader-entry", "cat /sys/firmware/efi/efivars/LoaderEntrySelected-* | tr -d '\\0' | grep -q slot-a",
              "systemd-boot reports the entry it booted"),
        Check("esp-mounted", "findmnt -n /efi && test -f /efi/loader/entries/slot-b.conf"),
        Check("state-partition", "findmnt -n -o SOURCE /var/lib/tether-state | grep -q vda4 && "
              "test \"$(blkid -s LABEL -o value /dev/vda4)\" = tether-state"),
        Check("cidata-seed", "test -n \"$(blkid -L cidata)\""),
        Check("machine-id", "grep -Eqx '[0-9a-f]{32}' /etc/machine-id", "systemd generated an identity"),
        Check("imds-v2", IMDS_FETCH, "token-protected metadata through guestfwd + relay"),
        Check("restricted-net", f"! timeout 5 bash -c 'exec 3<>/dev/tcp/169.254.0.2/{imds.port}'",
              "restrict=on: the host alias does not reach the host's loopback services"),
    ]]
    outcome = lab.run(base_image, plan, name="smoke", seed_iso=iso, imds=imds)
    outcome.assert_ok()
    boot = outcome.boot(1)
    # No first-boot agent creates SSH host keys on this image, so ssh.service is expected to fail; nothing else.
    assert set(boot.failed_units) <= {"ssh.service"}, boot.failed_units
    assert any(r.method == "PUT" and r.status == 200 for r in imds.requests)
    assert sum(r.method == "GET" and r.token_ok and r.status == 200 for r in imds.requests) == 3
    assert "multi_user" in boot.milestones
