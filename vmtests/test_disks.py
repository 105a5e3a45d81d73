"""Issue 8's proof in QEMU: a first boot on a disk enlarged by 2 GiB, with a blank second disk.

Setup (host side):
- the boot disk is ``disks_image.root_last_disk``: GPT esp, tether-state, root-a with the root **last** (the A/B
  harness disk has root-b after root-a, so an enlarged disk's new space would not follow `/`; see that module);
  the test's qcow2 overlay of it is enlarged by 2 GiB with ``qemu-img resize`` before the first boot, so the
  guest finds 2 GiB of free space after `/` and a GPT whose backup header is no longer at the disk's end;
- a blank 1 GiB raw disk (sparse file, all zeroes) on virtio-blk with the serial ``tether-data``, which the guest
  names ``/dev/disk/by-id/virtio-tether-data`` (the kernel name vdX depends on the order of the plan and seed
  disks, so the config uses the stable name, as one would with a cloud's volume id);
- a NoCloud seed with the cloud-config below: growpart ``auto`` (no cloud-utils in the image, so tether's own
  ``sfdisk`` growing), ``resize_rootfs``, ``disk_setup`` + ``fs_setup`` on the blank disk, a ``mounts`` entry
  for the new filesystem, and ``runcmd`` writing a file onto it.

Checked in the guest, boot 1: `/`'s partition ends within 1 MiB of the enlarged disk's end and its ext4 spans it
(numbers compared on the host against the 1300 MiB the image had); the data disk has a GPT with one partition
holding ext4 labelled ``data``, mounted at /mnt/data in the same boot (runcmd in the final stage recorded the
mount source it wrote to), the fstab line is there, ``tether status --wait`` exits 0. Boot 2 (same instance): the
fstab entry mounts the disk at boot (systemd, not tether), the file is still there (nothing reformatted) and `/`
kept its size (growpart and resizefs found nothing to do).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vmtests import disks_image
from vmtests import scenarios as sc
from vmtests.engine_plan import timeline
from vmtests.harness import qemu, seed
from vmtests.harness.lab import Lab, Outcome
from vmtests.harness.verdict import Capture, Check, Step

pytestmark = [pytest.mark.vm]

MiB = 1 << 20
GiB = 1 << 30
GROW = 2 * GiB
DATA_SERIAL = "tether-data"
DATA = f"/dev/disk/by-id/virtio-{DATA_SERIAL}"
BOOT_TIMEOUT = 600.0

USER_DATA = f"""#cloud-config
hostname: disks-vm
growpart:
  mode: auto
  devices: ["/"]
resize_rootfs: true
disk_setup:
  {DATA}:
    table_type: gpt
    layout: true
    overwrite: false
fs_setup:
  - label: data
    filesystem: ext4
    device: {DATA}
    partition: auto
mounts:
  - [LABEL=data, /mnt/data, ext4, "defaults,nofail", "0", "2"]
runcmd:
  - [sh, -c, "echo written-by-runcmd > /mnt/data/hello"]
  - [sh, -c, "findmnt -no SOURCE --target /mnt/data/hello > /var/tmp/runcmd-saw"]
"""

# key=value lines: where / is, its partition and disk in 512-byte sectors, and its ext4's size
ROOT_GEOMETRY = r"""
src=$(findmnt -no SOURCE /); p=$(basename "$(readlink -f "$src")")
d=$(basename "$(readlink -f "/sys/class/block/$p/..")")
echo "source=$src"; echo "part=$p"; echo "disk=$d"
echo "part_start=$(cat /sys/class/block/$p/start)"; echo "part_sectors=$(cat /sys/class/block/$p/size)"
echo "disk_sectors=$(cat /sys/class/block/$d/size)"
echo "df_bytes=$(df -B1 --output=size / | tail -n1 | tr -d ' ')"
dumpe2fs -h "$src" 2>/dev/null | sed -n 's/^Block count: */fs_blocks=/p; s/^Block size: */fs_block_size=/p'
"""
# the data disk's partition (the only one), as a /dev path
DATA_PART = f"/dev/$(lsblk -rno NAME,TYPE {DATA} | awk '$2 == \"part\" {{print $1}}')"
LAYOUT = "lsblk -b -o NAME,SIZE,TYPE,FSTYPE,LABEL,PARTLABEL,MOUNTPOINT; echo; cat /etc/fstab"
TETHER_LOG = "grep -E 'growpart|grow|resizefs|disk_setup|fs_setup|mounts' /var/log/tether.log | tail -n 40"


def data_checks() -> list[Step]:
    return [
        Check("data-gpt", f"test \"$(blkid -p -s PTTYPE -o value {DATA})\" = gpt "
              f"&& test \"$(lsblk -rno TYPE {DATA} | grep -c part)\" = 1",
              "the blank disk got a GPT with one partition"),
        Check("data-ext4", f"p={DATA_PART}; test \"$(blkid -p -s TYPE -o value $p)\" = ext4 "
              "&& test \"$(blkid -p -s LABEL -o value $p)\" = data", "its partition holds ext4 labelled data"),
        Check("data-mounted", f"p={DATA_PART}; test \"$(findmnt -no SOURCE /mnt/data)\" = \"$p\" "
              "&& test \"$(findmnt -no FSTYPE /mnt/data)\" = ext4", "/mnt/data is that partition"),
        Check("fstab", "grep -Eq '^LABEL=data[[:space:]]+/mnt/data[[:space:]]+ext4[[:space:]]+defaults,nofail' "
              "/etc/fstab", "mounts wrote the fstab line"),
        Check("data-file", "test \"$(cat /mnt/data/hello)\" = written-by-runcmd",
              "the file runcmd wrote is on the data filesystem"),
    ]


GPT_VERIFY = Check("root-gpt-verify", "sfdisk --verify /dev/vda 2>&1 | grep -q 'No errors detected'",
                   "the boot disk's GPT is consistent (backup header at the new end, as sfdisk --verify sees it)")


def plan() -> list[list[Step]]:
    return [
        [*sc.tether_done(0),
         Capture("root", ROOT_GEOMETRY),
         Capture("layout", LAYOUT),
         Capture("tether-log", TETHER_LOG),
         GPT_VERIFY,
         *data_checks(),
         Check("runcmd-saw-mount", f"test \"$(cat /var/tmp/runcmd-saw)\" = \"{DATA_PART}\"",
               "runcmd (same boot) wrote onto the mounted data filesystem, not under the mount point")],
        [*sc.tether_done(0),
         Capture("root", ROOT_GEOMETRY),
         Capture("layout", LAYOUT),
         Capture("tether-log", TETHER_LOG),
         GPT_VERIFY,
         *data_checks(),
         Check("mounted-by-systemd", "systemctl is-active mnt-data.mount",
               "at boot 2 the fstab entry mounted the disk")],
    ]


def parse_kv(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def disks_run(tether_wheel: Path, session_dir: Path, vm_host: None, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[Lab, Outcome]]:
    lab = Lab(tmp_path_factory.mktemp("disks"))
    image = disks_image.root_last_disk(session_dir / "disks-root-last.img", tether_wheel)
    blank = lab.work / "data.img"
    with open(blank, "wb") as fh:
        fh.truncate(GiB)
    iso = seed.cidata_iso(lab.work / "seed.iso", USER_DATA,
                          {"instance-id": "iid-disks-0001", "local-hostname": "disks-vm"})
    outcome = lab.run(image, plan(), name="disks", seed_iso=iso, grow_disk_bytes=GROW,
                      extra_drives=[qemu.Drive(blank, serial=DATA_SERIAL)], boot_timeout=BOOT_TIMEOUT)
    print(timeline("first boot on an enlarged disk + blank data disk", outcome))
    for n in (1, 2):
        if n <= len(outcome.verdicts):
            print(f"--- boot {n} layout ---\n{outcome.boot(n).data.get('layout', '')}")
    if outcome.verdicts:
        print(f"--- tether log (disk modules) ---\n{outcome.boot(1).data.get('tether-log', '')}")
    yield lab, outcome
    image.unlink(missing_ok=True)
    blank.unlink(missing_ok=True)


def test_enlarged_disk_and_blank_data_disk(disks_run: tuple[Lab, Outcome], request: pytest.FixtureRequest) -> None:
    lab, outcome = disks_run
    request.node._vm_lab = lab
    outcome.assert_ok()
    assert outcome.boot(1).failed_units == [], outcome.boot(1).failed_units
    assert outcome.boot(2).failed_units == [], outcome.boot(2).failed_units

    root = parse_kv(outcome.boot(1).data["root"])
    assert root["part"] == f"vda{disks_image.ROOT_PART}", root
    part_bytes = int(root["part_sectors"]) * 512
    disk_bytes = int(root["disk_sectors"]) * 512
    image_bytes = (1 + disks_image.ESP_MIB + disks_image.STATE_MIB + disks_image.ROOT_MIB + 1) * MiB
    assert disk_bytes == image_bytes + GROW, f"the guest sees a {disk_bytes}-byte disk, not {image_bytes} + 2 GiB"
    # / grew by the 2 GiB (less nothing but GPT backup room at the end): its partition ends within 1 MiB of the
    # disk's end, and before the test it was ROOT_MIB
    end = (int(root["part_start"]) + int(root["part_sectors"])) * 512
    assert disk_bytes - end <= MiB, f"/ ends {disk_bytes - end} bytes before the disk's end: {root}"
    assert part_bytes >= disks_image.ROOT_MIB * MiB + GROW, f"/'s partition is {part_bytes >> 20} MiB: {root}"
    fs_bytes = int(root["fs_blocks"]) * int(root["fs_block_size"])
    assert part_bytes - fs_bytes < int(root["fs_block_size"]), f"ext4 on / is {fs_bytes}, partition {part_bytes}"
    assert int(root["df_bytes"]) > (disks_image.ROOT_MIB * MiB + GROW) * 0.9, root

    # the kernel saw the enlarged disk's stale GPT backup on boot 1 and a correct table on boot 2
    stale = "Alternate GPT header not at the end of the disk"
    console = [" ".join(line for _, line in boot.lines) for boot in outcome.result.boots]
    assert stale in console[0], "boot 1: the kernel did not see an enlarged disk (no GPT backup warning)"
    assert stale not in console[1], "boot 2: the GPT backup header is still not at the disk's end"

    # boot 2: nothing grew again (same instance; growpart/resizefs run every boot and find nothing to do)
    again = parse_kv(outcome.boot(2).data["root"])
    assert (again["part_sectors"], again["fs_blocks"]) == (root["part_sectors"], root["fs_blocks"]), (root, again)
    log = outcome.boot(2).data["tether-log"]  # /var/log/tether.log holds both boots
    assert log.count("growing /dev/vda3") == 1, log
    assert "already fills its device" in log, log
