"""Guest side of the power-cut scenario (``vmtests/powercut.py``): the scripts put on the plan disk and each boot's
steps.

Every boot of the lineage runs the same plan: ``facts`` (what a person would look at after the power came back:
``tether get status`` with its ``pending`` summary, the booted root and its slot marker, the other slot's marker
read without journal replay, the boot entries and the loader's default, the commit unit's result; the guest agent's
``tether status --wait`` exit code comes from its ``VMTEST-AGENT`` line), then ``go``: wait for the host's word on
the instance metadata (tag ``powercut-go`` = this boot's number), and start the update the way
``tether-update.service`` does (``tether update --from-metadata``, reboot policy ``now``), as a transient unit
whose debug log goes to the serial console as ``PCUT-LOG`` lines; those lines are the phase markers the host times
its cuts by.
"""

from __future__ import annotations

from vmtests.engine_images import IMAGES_LABEL, IMAGES_MOUNT
from vmtests.harness.verdict import Capture, Check, Step

# everything the host judges a recovery boot by, as one JSON document
FACTS = r"""import json, os, subprocess

def sh(*argv, timeout=40):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    except (OSError, subprocess.TimeoutExpired) as e:
        return -1, "", str(e)

def marker(root):
    try:
        with open(root + "/etc/tether/slot.json") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return {"error": str(e)}

def text(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        return "<" + str(e) + ">"

f = {}
rc, out, err = sh("tether", "get", "status", "--format", "json")
try:
    f["status"] = json.loads(out)
except ValueError:
    f["status"] = None
    f["statusError"] = (out + err)[-1500:]
f["root"] = sh("findmnt", "-no", "SOURCE", "/")[1].strip()
f["marker"] = marker("")
f["fstab"] = os.path.exists("/etc/fstab")
f["hostname"] = text("/etc/hostname")
f["cmdline"] = text("/proc/cmdline")
try:
    f["entries"] = sorted(os.listdir("/efi/loader/entries"))
except OSError as e:
    f["entries"] = ["<" + str(e) + ">"]
f["bootctl"] = sh("bootctl", "list", "--no-pager")[1][-4000:]
f["commitUnit"] = sh("systemctl", "show", "-p", "Result", "-p", "ExecMainStatus", "tether-commit.service")[1]
paths = ((f["status"] or {}).get("partitionPaths") or {})
devs = {"volume-a": paths.get("root-a", "/dev/vda2"), "volume-b": paths.get("root-b", "/dev/vda3")}
f["devices"] = devs
for vol, dev in devs.items():
    if dev == f["root"]:
        continue
    os.makedirs("/run/pc-other", exist_ok=True)
    # read-only without journal replay: looking must not repair a torn filesystem
    rc, out, err = sh("mount", "-o", "ro,noload", dev, "/run/pc-other")
    if rc != 0:
        f["other"] = {"volume": vol, "mountError": (out + err).strip()[-300:]}
        continue
    f["other"] = {"volume": vol, "marker": marker("/run/pc-other"), "fstab": os.path.exists("/run/pc-other/etc/fstab"),
                  "hostname": text("/run/pc-other/etc/hostname")}
    sh("umount", "/run/pc-other")
print(json.dumps(f))
"""

# one instance tag, as the guest sees it now (IMDSv2)
TAG = """import sys, urllib.request as u
base = "http://169.254.169.254/latest"
tok = u.urlopen(u.Request(base + "/api/token", method="PUT",
                          headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}), timeout=5).read().decode()
print(u.urlopen(u.Request(base + "/meta-data/tags/instance/" + sys.argv[1],
                          headers={"X-aws-ec2-metadata-token": tok}), timeout=5).read().decode())
"""

# go N: wait (bounded) until the host says go for boot N, then start the update as tether-update.service would,
# with its debug log and progress on the console. "N done": nothing left to update on this lineage.
GO = r"""#!/bin/bash
n=$1
go=
end=$((SECONDS + 50))
while [ $SECONDS -lt $end ]; do
  go=$(python3 /run/vmplan/tag.py powercut-go 2>/dev/null)
  case $go in "$n"|"$n done") break ;; esac
  sleep 1
done
case $go in
  "$n done") echo "PCUT-SKIP n=$n" >/dev/ttyS0; exit 0 ;;
  "$n") ;;
  *) echo "no go from the host for boot $n (tag: $go)"; exit 1 ;;
esac
mkdir -p @MOUNT@
mountpoint -q @MOUNT@ || mount -o ro LABEL=@LABEL@ @MOUNT@ || exit 1
want=$(python3 /run/vmplan/tag.py host-configuration | sed -n 's/^ *hostname: *//p')
touch /run/pc-update-started
echo "PCUT-GO n=$n hostname=$want" >/dev/ttyS0
systemd-run --unit="pc-update-$n" --no-block -p Type=oneshot bash -c 'set -o pipefail; \
  tether update --from-metadata --reboot now --progress json -v debug --metadata-timeout 30 2>&1 \
  | sed -u "s/^/PCUT-LOG /" >/dev/ttyS0; echo "PCUT-DONE rc=$?" >/dev/ttyS0; touch /run/pc-update-done'
"""

GO = GO.replace("@MOUNT@", IMAGES_MOUNT).replace("@LABEL@", IMAGES_LABEL)

FILES: dict[str, str | bytes] = {"facts.py": FACTS, "tag.py": TAG, "go.sh": GO}

# bounded by the clock: returns at once when no update was started or it has ended
WAIT = ("test -e /run/pc-update-started || exit 0; end=$((SECONDS + 45)); "
        "while [ $SECONDS -lt $end ]; do test -e /run/pc-update-done && exit 0; sleep 1; done; exit 0")


def boot_steps(n: int, rounds: int = 12) -> list[Step]:
    """Boot ``n`` of the lineage (the guest agent's own count): look, then service."""
    return [
        Capture("facts", "python3 /run/vmplan/facts.py"),
        Check("go", f"bash /run/vmplan/go.sh {n}", "the host said go and the update started"),
        *(Check(f"wait-{i}", WAIT) for i in range(1, rounds)),
        Check("update-rebooted", "test -e /run/pc-update-started || exit 0; journalctl -b -u 'pc-update-*' "
              "--no-pager -o cat | tail -n 30; false",
              "the update should have rebooted the host (or been cut) by now"),
    ]


def after_update(n: int) -> list[Step]:
    """Boot ``n`` (after the update's own reboot): only reached when no cut came; the lineage's last boot."""
    return [Capture("facts", "python3 /run/vmplan/facts.py")]


def plan(n: int, mode: str = "cut") -> list[list[Step]]:
    """The plan disk for a run whose first boot is the agent's boot ``n`` (boot files are numbered from 1; earlier
    boots of the lineage have already run, so their files are left empty). ``mode``: ``cut`` (the run ends in a
    power cut: a boot after it means the cut never came), ``finish`` (the update runs to its end, then one more
    boot looks), ``look`` (the host says no go: look, power off)."""
    boots: list[list[Step]] = [[] for _ in range(n - 1)]
    boots.append(boot_steps(n))
    if mode == "finish":
        boots.append(after_update(n + 1))
    elif mode == "cut":
        boots.append([Check("cut-missed", "false", "the power cut should have come before this boot's plan")])
    elif mode != "look":
        raise ValueError(f"plan mode {mode!r}: cut, finish or look")
    return boots
