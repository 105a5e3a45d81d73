"""Firmware boot entries for a clean install (``engine/efiboot.py``): the EFI_LOAD_OPTION bytes, BootOrder, and a
clean install onto a loop disk that registers the new disk's systemd-boot (found in QEMU: without the entry the
firmware kept booting the installer's disk)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.engine.conftest import BuiltImage, LoopDisk, build_image, sh
from tests.engine.servicing_rig import config
from tether.engine import efiboot, state
from tether.engine.boot import EfiVarsError
from tether.engine.boot_uefi import EFI_GLOBAL, EfiVars
from tether.engine.bootsetup import Machine
from tether.engine.finalize import ServicingEnv, finalize_install
from tether.engine.hostconfig import parse_host_config
from tether.engine.install import InstallOptions, install
from tether.runner import Runner
from tether.target import Target

PART = efiboot.FirmwarePartition(1, 2048, 32768, "01234567-89ab-cdef-0123-456789abcdef")


def expected_path(loader: str = efiboot.SYSTEMD_BOOT_LOADER) -> bytes:
    """The device path spelled out field by field from the UEFI specification (HD node 42 bytes, GUID in its
    mixed-endian memory layout, MBR type 2 = GPT, signature type 2 = GUID)."""
    guid = bytes.fromhex("67452301" "ab89" "efcd" "0123" "456789abcdef")
    hd = bytes([4, 1]) + (42).to_bytes(2, "little") + (1).to_bytes(4, "little") + (2048).to_bytes(8, "little") \
        + (32768).to_bytes(8, "little") + guid + bytes([2, 2])
    name = (loader + "\0").encode("utf-16-le")
    return hd + bytes([4, 4]) + (4 + len(name)).to_bytes(2, "little") + name + bytes([0x7F, 0xFF, 4, 0])


def store(tmp_path: Path) -> EfiVars:
    d = tmp_path / "efivars"
    d.mkdir(exist_ok=True)
    return EfiVars(d, efivarfs=False)


def test_device_path_and_load_option_bytes() -> None:
    assert efiboot.device_path(PART, efiboot.SYSTEMD_BOOT_LOADER) == expected_path()
    opt = efiboot.LoadOption(efiboot.LOAD_OPTION_ACTIVE, "tether", expected_path())
    raw = efiboot.encode_load_option(opt)
    assert raw[:6] == struct.pack("<IH", 1, len(expected_path()))
    assert raw[6:20] == "tether\0".encode("utf-16-le")
    assert efiboot.decode_load_option(raw) == opt
    with pytest.raises(efiboot.FirmwareEntryError, match="backslashes"):
        efiboot.device_path(PART, "/EFI/systemd/systemd-bootx64.efi")
    with pytest.raises(efiboot.FirmwareEntryError, match="not a GPT partition UUID"):
        efiboot.device_path(efiboot.FirmwarePartition(1, 0, 1, "12345678-01"), efiboot.SYSTEMD_BOOT_LOADER)


def test_register_goes_first_in_boot_order_and_is_idempotent(tmp_path: Path) -> None:
    ev = store(tmp_path)
    other = efiboot.LoadOption(1, "UEFI Misc Device", b"\x7f\xff\x04\x00")
    ev.set("Boot0000", efiboot.encode_load_option(other), EFI_GLOBAL)
    ev.set("BootOrder", struct.pack("<H", 0), EFI_GLOBAL)
    num = efiboot.register(ev, "tether systemd-boot", PART, efiboot.SYSTEMD_BOOT_LOADER)
    assert num == 1
    assert efiboot.boot_order(ev) == [1, 0]
    assert efiboot.boot_entries(ev)[1] == efiboot.LoadOption(1, "tether systemd-boot", expected_path())
    assert efiboot.boot_entries(ev)[0] == other  # the installer's entry is kept, only ordered after
    assert efiboot.register(ev, "tether systemd-boot", PART, efiboot.SYSTEMD_BOOT_LOADER) == 1
    assert efiboot.boot_order(ev) == [1, 0] and sorted(efiboot.boot_entries(ev)) == [0, 1]
    # the firmware moved it back (e.g. its own order policy): registering again puts it first again
    ev.set("BootOrder", struct.pack("<2H", 0, 1), EFI_GLOBAL)
    assert efiboot.register(ev, "tether systemd-boot", PART, efiboot.SYSTEMD_BOOT_LOADER) == 1
    assert efiboot.boot_order(ev) == [1, 0]


class RefusingOrder(EfiVars):
    def set(self, name: str, value: bytes, guid: str = EFI_GLOBAL, attrs: int = 7) -> None:
        if name == "BootOrder":
            raise EfiVarsError("the EFI variable store refuses writes")
        super().set(name, value, guid, attrs)


def test_refused_boot_order_leaves_no_entry_behind(tmp_path: Path) -> None:
    d = tmp_path / "efivars"
    d.mkdir()
    ev = RefusingOrder(d, efivarfs=False)
    with pytest.raises(EfiVarsError, match="refuses writes"):
        efiboot.register(ev, "tether systemd-boot", PART, efiboot.SYSTEMD_BOOT_LOADER)
    assert list(d.iterdir()) == []
    with pytest.raises(efiboot.FirmwareEntryError, match="no EFI variable store"):
        efiboot.register(EfiVars(tmp_path / "absent", efivarfs=False), "x", PART, efiboot.SYSTEMD_BOOT_LOADER)


@pytest.fixture(scope="module")
def sdboot_image(engine_tools: None, tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    return build_image(tmp_path_factory.mktemp("sdboot-image"), "sdboot", {
        "etc/os-release": b"ID=test\nVERSION_ID=1\n", "etc/hostname": b"image-default\n",
        "boot/efi/": b"", "boot/vmlinuz-6.1.0-1": b"KERNEL\n", "boot/initrd.img-6.1.0-1": b"INITRD\n",
        "usr/lib/systemd/boot/efi/systemd-bootx64.efi": b"MZ not really systemd-boot\n",
        "var/lib/servicing/": b"", "var/lib/tether/": b"", "run/": b""})


def test_clean_install_registers_the_new_disk_with_the_firmware(loopdisk: LoopDisk, sdboot_image: BuiltImage,
                                                                tmp_path: Path) -> None:
    machine = Machine(cmdline=tmp_path / "cmdline", boot_id=tmp_path / "boot_id", efivars=tmp_path / "efivars")
    machine.cmdline.write_text("console=ttyS0 installer\n")
    machine.boot_id.write_text("4b1d0c6e-0000-4000-8000-000000000001\n")
    ev = store(tmp_path)
    ev.set("Boot0000", efiboot.encode_load_option(efiboot.LoadOption(1, "installer disk", b"\x7f\xff\x04\x00")),
           EFI_GLOBAL)
    ev.set("BootOrder", struct.pack("<H", 0), EFI_GLOBAL)
    hc = parse_host_config(config(loopdisk.device, sdboot_image))
    install(hc, Runner(), InstallOptions())
    env = ServicingEnv(root=Target.at("/"), runner=Runner(), machine=machine, backend_name="auto")
    _msg, doc = finalize_install(hc, env)
    assert doc["servicingState"] == state.CLEAN_INSTALL_FINALIZED
    assert doc["boot"]["backend"] == "systemd-boot" and doc["boot"]["firmwareEntry"] == "Boot0001"
    assert efiboot.boot_order(ev) == [1, 0]
    start = int(sh("cat", f"/sys/class/block/{Path(loopdisk.part(1)).name}/start"))
    size = int(sh("cat", f"/sys/class/block/{Path(loopdisk.part(1)).name}/size"))
    part = efiboot.FirmwarePartition(1, start, size, doc["partitionUuids"]["esp"])
    assert (start, size) == (2048, 16 * 2048)
    assert efiboot.boot_entries(ev)[1].device_path == efiboot.device_path(part, efiboot.SYSTEMD_BOOT_LOADER)
    # finalize again (a rerun): the same entry, still first
    finalize_install(hc, env)
    assert efiboot.boot_order(ev) == [1, 0] and sorted(efiboot.boot_entries(ev)) == [0, 1]


@pytest.mark.parametrize("why", ["no EFI variables", "--no-firmware-entry"])
def test_clean_install_registers_nothing_without_efi_variables_or_when_told(
        loopdisk: LoopDisk, sdboot_image: BuiltImage, tmp_path: Path, why: str) -> None:
    machine = Machine(cmdline=tmp_path / "cmdline", boot_id=tmp_path / "boot_id", efivars=tmp_path / "efivars")
    machine.cmdline.write_text("console=ttyS0\n")
    if why == "--no-firmware-entry":
        store(tmp_path)
    hc = parse_host_config(config(loopdisk.device, sdboot_image))
    install(hc, Runner(), InstallOptions())
    env = ServicingEnv(root=Target.at("/"), runner=Runner(), machine=machine,
                       firmware_entry=why != "--no-firmware-entry")
    _msg, doc = finalize_install(hc, env)
    assert doc["boot"]["backend"] == "systemd-boot" and doc["boot"]["firmwareEntry"] is None
    assert not machine.efivars.exists() or list(machine.efivars.iterdir()) == []
