"""Inputs and guest steps of the clean-install proof in QEMU (issue 6, "Proof in QEMU" 5).

The "live" system is the harness's tether disk (``/dev/vda``). The target is a blank virtio disk with serial
``tether-target``, so the host configuration names it the way an operator would on real hardware, by
``/dev/disk/by-id/virtio-tether-target`` (udev), not by a probe-order name. The image is the engine scenarios'
``v2.img`` (raw ext4 root on the read-only ``TETHERIMG`` disk, ``file://``).

Two things the live image lacks are provided by the test, not by tether:

* ``sfdisk`` (Debian's ``fdisk`` package; the harness rootfs is debootstrap minbase). Its ``.deb`` — the version
  that matches the guest's ``libfdisk1`` — is put on the plan disk and installed with ``dpkg -i`` in boot 1, as an
  installer medium would ship it. On the host it comes from the apt cache or ``apt-get download``.
* The harness's boot counter: in ``v2.img`` ``/var/lib/vmtest`` points at the state partition (the engine
  scenarios share it between slots), which a clean install creates empty, so boot 1 copies the counter there.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from vmtests import engine_plan as ep
from vmtests.engine_images import IMAGES_LABEL, IMAGES_MOUNT, MARKER
from vmtests.harness import cache, disk, rootfs
from vmtests.harness.verdict import Capture, Check, Step

SERIAL = "tether-target"
TARGET = f"/dev/disk/by-id/virtio-{SERIAL}"
TARGET_BYTES = 4 << 30  # sparse; ESP + two 1300 MiB slots + the state partition
HOSTNAME = "tether-installed"
USER = "opsadmin"  # not "operator": Debian has that system group, and useradd refuses
STATE_MOUNT = rootfs.STATE_MOUNT  # where v2.img's engine layer expects the datastore and the harness counter
DATASTORE = f"{STATE_MOUNT}/datastore.sqlite"
NEW_ROOT = "/mnt/new-root"

SEED_USER_DATA = f"#cloud-config\nusers:\n  - name: {USER}\n    shell: /bin/bash\n    lock_passwd: true\n"
SEED_META_DATA = {"instance-id": "iid-clean-install-01"}  # no local-hostname: the host config's os.hostname stays


def host_config(sha256: str, device: str = TARGET) -> dict[str, Any]:
    """The blank disk as Trident's clean install wants it: GPT, ESP + an A/B root pair + a state partition."""
    lay = disk.DEFAULT_LAYOUT
    return {
        "image": {"url": f"file://{IMAGES_MOUNT}/v2.img", "sha256": sha256},
        "storage": {
            "disks": [{"id": "os", "device": device, "partitionTableType": "gpt", "partitions": [
                {"id": "esp", "type": "esp", "size": f"{lay.esp_mib}M", "label": "inst-esp"},
                {"id": "root-a", "type": "root", "size": f"{lay.root_mib}M", "label": "inst-root-a"},
                {"id": "root-b", "type": "root", "size": f"{lay.root_mib}M", "label": "inst-root-b"},
                {"id": "state", "type": "linux-generic", "size": "grow", "label": "inst-state"},
            ]}],
            "abUpdate": {"volumePairs": [{"id": "root", "volumeAId": "root-a", "volumeBId": "root-b"}]},
            "filesystems": [
                {"deviceId": "esp", "source": "new", "type": "vfat", "mountPoint": {"path": "/efi",
                                                                                     "options": "umask=0077"}},
                {"deviceId": "root", "source": "image", "mountPoint": "/"},
                {"deviceId": "state", "source": "new", "type": "ext4", "mountPoint": STATE_MOUNT},
            ],
        },
        "trident": {"datastorePath": DATASTORE},
        # console and panic: the harness reads the installed system's kernel on ttyS0 too
        "os": {"hostname": HOSTNAME, "kernelCommandLine": {"extraCommandLine": ["console=ttyS0,115200",
                                                                                  "panic=5"]}},
    }


# ---- guest helpers (on the plan disk) ----------------------------------------------------------------------------
# `expect ROOT WHAT EXPR`: `tether --root ROOT get WHAT --format json` as d; EXPR must be true
EXPECT_ROOT = ep.EXPECT.replace("what, expr = sys.argv[1], sys.argv[2]",
                                "root, what, expr = sys.argv[1], sys.argv[2], sys.argv[3]").replace(
    '["tether", "get", what,', '["tether", "--root", root, "get", what,')

# The firmware's view (efivarfs), compared with what the install recorded: `efi.py show`, `efi.py first ROOT`
# (BootOrder starts with the recorded entry), `efi.py booted` (this boot came through that entry, and
# systemd-boot was started from the new disk's ESP and picked the recorded entry).
EFI = r'''import json, struct, subprocess, sys
V = "/sys/firmware/efi/efivars"
G = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
SD = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
def raw(name, guid=G):
    try:
        return open(f"{V}/{name}-{guid}", "rb").read()[4:]
    except FileNotFoundError:
        return None
def text(name):
    v = raw(name, SD)
    return v.decode("utf-16-le").split("\0")[0] if v else None
def desc(n):
    v = raw(f"Boot{n:04X}")
    if not v:
        return "?"
    end = 6
    while v[end:end + 2] != b"\0\0":
        end += 2
    return v[6:end].decode("utf-16-le")
def u16s(name):
    v = raw(name) or b""
    return list(struct.unpack(f"<{len(v) // 2}H", v))
def status(root="/"):
    out = subprocess.run(["tether", "--root", root, "get", "status", "--format", "json"], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)
order, cur = u16s("BootOrder"), u16s("BootCurrent")
show = "\n".join([f"BootCurrent: {['Boot%04X' % n for n in cur]}",
                  "BootOrder: " + ",".join("Boot%04X" % n for n in order),
                  *(f"  Boot{n:04X} {desc(n)}" for n in order),
                  f"LoaderEntrySelected: {text('LoaderEntrySelected')}",
                  f"LoaderDevicePartUUID: {text('LoaderDevicePartUUID')}"])
cmd = sys.argv[1]
if cmd == "show":
    print(show)
    sys.exit(0)
d = status(sys.argv[2] if cmd == "first" else "/")
want = d["boot"]["firmwareEntry"]
if cmd == "first":
    ok = bool(order) and "Boot%04X" % order[0] == want
else:
    esp = d["partitionUuids"]["esp"].lower()
    sel = (text("LoaderEntrySelected") or "").lower()
    ok = (cur and "Boot%04X" % cur[0] == want and (text("LoaderDevicePartUUID") or "").lower() == esp
          and sel == d["boot"]["entryId"] + ".conf")
if not ok:
    print(f"recorded firmware entry {want}, boot entry {d['boot']['entryId']}, ESP {d['partitionUuids']['esp']}")
    print(show)
    sys.exit(1)
'''


def files(cfg: dict[str, Any], live_cfg: dict[str, Any], deb: Path) -> dict[str, str | bytes]:
    import yaml

    return {**ep.FILES, "expect-root.py": EXPECT_ROOT, "efi.py": EFI, "fdisk.deb": deb.read_bytes(),
            "install.yaml": yaml.safe_dump(cfg, sort_keys=False),
            "live-disk.yaml": yaml.safe_dump(live_cfg, sort_keys=False)}


def expect_new(cid: str, what: str, expr: str, why: str = "") -> Check:
    return Check(cid, f"python3 /run/vmplan/expect-root.py {NEW_ROOT} {what} '{expr}'", why)


# ---- boot 1: the live system installs onto the blank disk ----------------------------------------------------------
def live_steps(rounds: int = 13) -> list[Step]:
    wait = ("end=$((SECONDS + 45)); while [ $SECONDS -lt $end ]; do test -e /run/vmtest-install.rc && exit 0; "
            "sleep 1; done; exit 0")
    return [
        Check("live-root", 'test "$(findmnt -no SOURCE /)" = /dev/vda2', "the live system runs from the first disk"),
        Check("target-blank", f'test -b {TARGET} && test "$(lsblk -nro NAME {TARGET} | wc -l)" = 1 && '
              f"! blkid -p {TARGET}", f"{TARGET} is a blank disk (no partitions, no signature)"),
        Check("sfdisk", "dpkg -i /run/vmplan/fdisk.deb >/dev/null && sfdisk --version",
              "the live environment has the partitioning tool (test setup)"),
        Check("images-disk", f"mkdir -p {IMAGES_MOUNT} && mount -o ro LABEL={IMAGES_LABEL} {IMAGES_MOUNT} && "
              f"test -s {IMAGES_MOUNT}/v2.img", "the image disk is readable"),
        Check("validate", "tether validate /run/vmplan/install.yaml"),
        Check("refuses-live-disk", "! tether install /run/vmplan/live-disk.yaml --no-reboot 2>/run/refused.err; "
              "cat /run/refused.err; grep -q 'holds the running root filesystem' /run/refused.err",
              "install refuses the disk the running root lives on"),
        Check("install-started", "systemd-run --unit=vmtest-install -p Type=oneshot --no-block bash -c "
              "'date +%s.%N >/run/vmtest-install.start; tether install /run/vmplan/install.yaml --no-reboot "
              "--progress none >/run/vmtest-install.log 2>&1; echo $? >/run/vmtest-install.rc'"),
        *(Check(f"install-wait-{i}", wait) for i in range(1, rounds)),
        Check("install-ran", 'test -e /run/vmtest-install.rc && test "$(cat /run/vmtest-install.rc)" = 0 || '
              "{ cat /run/vmtest-install.log; false; }", "tether install exits 0"),
        Capture("install-log", "cat /run/vmtest-install.log; echo; echo started $(cat /run/vmtest-install.start) "
                "ended $(stat -c %Y /run/vmtest-install.rc)"),
        Capture("target-layout", f"sfdisk -d {TARGET}; lsblk -o NAME,SIZE,PARTLABEL,FSTYPE {TARGET}"),
        Check("mount-new", f"mkdir -p {NEW_ROOT} && mount -o ro {TARGET}-part2 {NEW_ROOT} && "
              f"mount {TARGET}-part4 {NEW_ROOT}{STATE_MOUNT}", "the new root and its state partition mount"),
        expect_new("finalized", "status", 'd["servicingState"] == "clean-install-finalized" and '
                   'd["boot"]["backend"] == "systemd-boot" and d["boot"]["firmwareEntry"] is not None',
                   "the new disk records clean-install-finalized with a firmware boot entry"),
        Capture("status-installed", f"tether --root {NEW_ROOT} get status --format json"),
        Check("firmware-first", f"python3 /run/vmplan/efi.py first {NEW_ROOT}",
              "the new disk's boot loader is first in the firmware's BootOrder"),
        Capture("efi-before", "python3 /run/vmplan/efi.py show"),
        Capture("fstab-new", f"cat {NEW_ROOT}/etc/fstab {NEW_ROOT}/etc/hostname"),
        # test setup: carry the harness's boot counter to the new state partition (v2.img links it there)
        Check("carry-counter", f"mkdir -p {NEW_ROOT}{STATE_MOUNT}/vmtest && "
              f"cp /var/lib/vmtest/boots {NEW_ROOT}{STATE_MOUNT}/vmtest/boots && umount {NEW_ROOT}{STATE_MOUNT} && "
              f"umount {NEW_ROOT}"),
    ]


# ---- boot 2: the firmware starts the new disk; first boot and commit ran -----------------------------------------
def installed_steps() -> list[Step]:
    return [
        Check("on-new-disk", f'test "$(findmnt -no SOURCE /)" = "$(realpath {TARGET}-part2)" && '
              f'test "$(cat {MARKER})" = v2', "the root filesystem is slot A of the new disk, with the image's marker"),
        Capture("lsblk", "findmnt -no SOURCE /; lsblk -o NAME,SIZE,PARTLABEL,MOUNTPOINTS; cat /proc/cmdline"),
        Check("firmware-booted", "python3 /run/vmplan/efi.py booted",
              "the firmware booted the recorded entry, systemd-boot came from the new ESP and chose the new entry"),
        Capture("efi-after", "python3 /run/vmplan/efi.py show"),
        Check("hostname", f'test "$(hostname)" = {HOSTNAME}', "os.hostname of the host configuration"),
        Check("first-boot", f"id {USER} && test -s /etc/ssh/ssh_host_ed25519_key.pub && tether status --wait",
              "first boot ran on the new root (the seed's user, SSH host keys) and finished"),
        ep.expect("provisioned", "status", 'd["servicingState"] == "provisioned" and d["abActiveVolume"] == '
                  '"volume-a" and d["lastError"] is None and d["boot"]["operation"] == "clean-install"',
                  "commit recorded provisioned on volume-a"),
        Check("blessed", "ls /efi/loader/entries | grep -Eq '^tether-[0-9]+-volume-a\\.conf$' && "
              "! ls /efi/loader/entries | grep -q '+'", "the booted entry carries no boot counter"),
        Capture("status", "tether get status --format json"),
        Capture("bootctl", "bootctl status --no-pager 2>&1 | sed -n '1,40p'; ls -R /efi/loader"),
        Capture("commit", "systemctl show -p Result,ExecMainStatus tether-commit.service; "
                "journalctl -b -u tether-commit.service --no-pager -o cat | tail -n 15"),
    ]


# ---- host side ---------------------------------------------------------------------------------------------------
def fdisk_deb(log: Any = print) -> Path:
    """Debian's ``fdisk`` package at the version of the guest's ``libfdisk1`` (cached in the harness cache)."""
    tree = rootfs.base_tree(log)
    ver = subprocess.run(["chroot", str(tree), "dpkg-query", "-W", "-f=${Version}", "libfdisk1"], capture_output=True,
                         text=True, timeout=60, check=True).stdout.strip()
    name = f"fdisk_{ver.replace(':', '%3a')}_amd64.deb"
    out = cache.cache_dir() / "debs-extra" / name
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    apt_cached = Path("/var/cache/apt/archives") / name
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        if apt_cached.is_file():
            shutil.copy2(apt_cached, Path(tmp) / name)
        else:
            proc = subprocess.run(["apt-get", "download", f"fdisk={ver}"], cwd=tmp, capture_output=True, text=True,
                                  timeout=300)
            if proc.returncode != 0 or not (Path(tmp) / name).is_file():
                raise RuntimeError(f"cannot get {name} for the live system (apt-get download fdisk={ver}): "
                                   f"{(proc.stdout + proc.stderr).strip()[-800:]}")
        (Path(tmp) / name).replace(out)
    return out
