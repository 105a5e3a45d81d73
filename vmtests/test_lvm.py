"""Issue 8's LVM proof in QEMU: growpart grows partition -> PV -> LV -> ext4 online on a real device-mapper.

The host kernel has no device-mapper, so ``tests/disks`` can only run the LVM path against a metadata-only VG; the
guest's Debian cloud kernel has ``dm-mod``. Setup:
- the boot disk is ``disks_image.root_last_disk(..., lvm=True)``: the issue 8 disk plus Debian's ``lvm2`` (and the
  dependencies the minbase tree lacks); the boot disk is not enlarged, `/` is not the subject here;
- a blank 1 GiB raw disk with the virtio serial ``tether-lvm`` (``/dev/disk/by-id/virtio-tether-lvm``);
- a NoCloud seed whose ``bootcmd`` (init stage, before growpart and resizefs: ``tether/sysconfig.py``'s order)
  builds, only when that disk has no partition table yet, a small LVM stack as an image would ship it: GPT with
  one 400 MiB Linux LVM partition, ``pvcreate``, ``vgcreate vgdata``, ``lvcreate -l 100%FREE -n lvdata``,
  ``mkfs.ext4``, mounted at /srv/lv, and records the sizes it made in /var/tmp/lvm-before; then growpart
  (``devices: ["/srv/lv"]``, mode auto = tether's own ``sfdisk`` growing, no cloud-utils in the image).

Checked in the guest, boot 1: ``tether status --wait`` exits 0; the partition ends within 1 MiB of the disk's end;
``pvs``/``lvs``/``df -B1 /srv/lv`` report ~1 GiB where bootcmd recorded ~400 MiB; ext4 spans the LV; the VG has no
free extents left; the tether log names each step (partition grown, LV extended, filesystem resized). Boot 2 (same
instance): bootcmd only activates and mounts, growpart finds nothing to do (no second grow in the log) and every
size is unchanged.
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
LVM_SERIAL = "tether-lvm"
LVM_DISK = f"/dev/disk/by-id/virtio-{LVM_SERIAL}"
FIRST_MIB = 400
LV = "/dev/mapper/vgdata-lvdata"
BOOT_TIMEOUT = 600.0
LVM_GUID = "E6D6D379-F507-44C2-A23C-238F2A3DF928"  # GPT type: Linux LVM

# bootcmd runs this with `sh -e`; a disk with a table is left as it is (later boots only activate and mount)
PREPARE = f"""D={LVM_DISK}
udevadm settle
pt=$(blkid -p -s PTTYPE -o value "$D" || true)
if [ -z "$pt" ]; then
  printf 'label: gpt\\nsize={FIRST_MIB}MiB, type={LVM_GUID}\\n' | sfdisk -q "$D"
  udevadm settle
  pvcreate -y "$D-part1"
  vgcreate vgdata "$D-part1"
  lvcreate -y -l 100%FREE -n lvdata vgdata
  udevadm settle
  mkfs.ext4 -q -L lvdata {LV}
  mkdir -p /srv/lv
  mount {LV} /srv/lv
  {{ echo "part_sectors=$(cat /sys/class/block/$(basename "$(readlink -f "$D-part1")")/size)"
    echo "pv_bytes=$(pvs --noheadings --units b --nosuffix -o pv_size "$D-part1" | tr -d ' ')"
    echo "lv_bytes=$(lvs --noheadings --units b --nosuffix -o lv_size vgdata/lvdata | tr -d ' ')"
    echo "df_bytes=$(df -B1 --output=size /srv/lv | tail -n1 | tr -d ' ')"; }} > /var/tmp/lvm-before
else
  vgchange -ay vgdata
  mkdir -p /srv/lv
  mountpoint -q /srv/lv || mount {LV} /srv/lv
fi
"""


def user_data() -> str:
    script = "".join(f"      {line}\n" if line else "\n" for line in PREPARE.splitlines())
    return f"""#cloud-config
hostname: lvm-vm
bootcmd:
  - |
{script}growpart:
  mode: auto
  devices: ["/srv/lv"]
resize_rootfs: true
"""


# key=value lines, measured after tether's modules ran
AFTER = f"""D={LVM_DISK}; p=$(basename "$(readlink -f "$D-part1")"); d=$(basename "$(readlink -f "$D")")
echo "part=$p"; echo "part_start=$(cat /sys/class/block/$p/start)"
echo "part_sectors=$(cat /sys/class/block/$p/size)"; echo "disk_sectors=$(cat /sys/class/block/$d/size)"
echo "pv_bytes=$(pvs --noheadings --units b --nosuffix -o pv_size "$D-part1" | tr -d ' ')"
echo "vg_free=$(vgs --noheadings -o vg_free_count vgdata | tr -d ' ')"
echo "lv_bytes=$(lvs --noheadings --units b --nosuffix -o lv_size vgdata/lvdata | tr -d ' ')"
echo "df_bytes=$(df -B1 --output=size /srv/lv | tail -n1 | tr -d ' ')"
echo "mount_source=$(findmnt -no SOURCE /srv/lv)"
dumpe2fs -h {LV} 2>/dev/null | sed -n 's/^Block count: */fs_blocks=/p; s/^Block size: */fs_block_size=/p'
"""
LAYOUT = "lsblk -b -o NAME,SIZE,TYPE,FSTYPE,LABEL,MOUNTPOINT; echo; pvs; vgs; lvs; echo; df -h /srv/lv"
TETHER_LOG = "grep -E 'growpart|grow|extended|resizefs|bootcmd' /var/log/tether.log | tail -n 40"


def boot_steps() -> list[Step]:
    return [
        *sc.tether_done(0),
        Capture("before", "cat /var/tmp/lvm-before"),
        Capture("after", AFTER),
        Capture("layout", LAYOUT),
        Capture("tether-log", TETHER_LOG),
        Check("dm-lv", f"test \"$(dmsetup info -c --noheadings -o uuid {LV} | cut -c1-4)\" = LVM-",
              "/srv/lv sits on a real device-mapper LVM volume"),
        Check("lv-gpt-verify", f"sfdisk --verify {LVM_DISK} 2>&1 | grep -q 'No errors detected'",
              "the LVM disk's GPT is consistent after growing"),
    ]


def plan() -> list[list[Step]]:
    return [boot_steps(), boot_steps()]


def parse_kv(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def lvm_run(tether_wheel: Path, session_dir: Path, vm_host: None, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[Lab, Outcome]]:
    lab = Lab(tmp_path_factory.mktemp("lvm"))
    image = disks_image.root_last_disk(session_dir / "disks-root-last-lvm.img", tether_wheel, lvm=True)
    blank = lab.work / "lvm.img"
    with open(blank, "wb") as fh:
        fh.truncate(GiB)
    iso = seed.cidata_iso(lab.work / "seed.iso", user_data(),
                          {"instance-id": "iid-lvm-0001", "local-hostname": "lvm-vm"})
    outcome = lab.run(image, plan(), name="lvm", seed_iso=iso,
                      extra_drives=[qemu.Drive(blank, serial=LVM_SERIAL)], boot_timeout=BOOT_TIMEOUT)
    print(timeline("growpart on an LV over a partition of a 1 GiB disk", outcome))
    if outcome.verdicts:
        boot = outcome.boot(1).data
        for key in ("before", "after", "layout", "tether-log"):
            print(f"--- {key} ---\n{boot.get(key, '')}")
    if len(outcome.verdicts) > 1:
        print(f"--- boot 2 after ---\n{outcome.boot(2).data.get('after', '')}")
        print(f"--- boot 2 tether log (both boots) ---\n{outcome.boot(2).data.get('tether-log', '')}")
    yield lab, outcome
    image.unlink(missing_ok=True)
    blank.unlink(missing_ok=True)


def test_growpart_grows_lvm_stack_online(lvm_run: tuple[Lab, Outcome], request: pytest.FixtureRequest) -> None:
    lab, outcome = lvm_run
    request.node._vm_lab = lab
    outcome.assert_ok()
    assert outcome.boot(1).failed_units == [], outcome.boot(1).failed_units
    data = outcome.boot(1).data
    before, after = parse_kv(data["before"]), parse_kv(data["after"])

    # what bootcmd built: ~400 MiB at every layer
    assert int(before["part_sectors"]) * 512 == FIRST_MIB * MiB, before
    for key in ("pv_bytes", "lv_bytes"):
        assert FIRST_MIB * MiB - 8 * MiB <= int(before[key]) <= FIRST_MIB * MiB, before
    assert int(before["df_bytes"]) < FIRST_MIB * MiB, before

    # the partition reaches the disk's end (less the GPT backup), and each layer above it grew to ~1 GiB
    disk_bytes = int(after["disk_sectors"]) * 512
    assert disk_bytes == GiB, after
    end = (int(after["part_start"]) + int(after["part_sectors"])) * 512
    assert disk_bytes - end <= MiB, f"the PV's partition ends {disk_bytes - end} bytes before the disk's end"
    part_bytes = int(after["part_sectors"]) * 512
    pv, lv, df = int(after["pv_bytes"]), int(after["lv_bytes"]), int(after["df_bytes"])
    assert part_bytes - 8 * MiB <= pv <= part_bytes, f"PV {pv} on a {part_bytes}-byte partition"
    assert after["vg_free"] == "0", f"the LV did not take the VG's new extents: {after}"
    assert lv == pv - (pv % (4 * MiB)) or pv - 8 * MiB <= lv <= pv, f"LV {lv}, PV {pv}"
    assert lv >= GiB - 16 * MiB, after
    fs_bytes = int(after["fs_blocks"]) * int(after["fs_block_size"])
    assert lv - fs_bytes < int(after["fs_block_size"]), f"ext4 is {fs_bytes} bytes on a {lv}-byte LV"
    assert df > int(before["df_bytes"]) * 2 and df > GiB * 0.85, (before, after)
    assert after["mount_source"] == LV, after

    log = data["tether-log"]
    part = f"/dev/{after['part']}"
    assert f"growing {part} (gpt partition 1)" in log and f"grew {part} from {FIRST_MIB} to" in log, log
    assert f"extended {LV} by" in log, log
    assert f"resizefs: resized {LV} (ext4) at /srv/lv" in log, log

    # boot 2: bootcmd's else branch activated and mounted the LV; growpart found nothing to grow
    assert outcome.boot(2).failed_units == [], outcome.boot(2).failed_units
    again = parse_kv(outcome.boot(2).data["after"])
    keys = ("part_sectors", "pv_bytes", "lv_bytes", "fs_blocks", "df_bytes", "vg_free", "mount_source")
    assert {k: again[k] for k in keys} == {k: after[k] for k in keys}, (after, again)
    log2 = outcome.boot(2).data["tether-log"]  # /var/log/tether.log holds both boots
    assert log2.count("running module growpart") == 2, log2
    assert log2.count("growing /dev/") == 1 and log2.count("extended ") == 1, log2
    assert log2.count("resizefs: resized") == 1, log2
