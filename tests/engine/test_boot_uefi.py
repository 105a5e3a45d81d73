"""EFI variable store (encoding, attribute word, refusals) and the BootNext backend through efibootmgr argv."""

from __future__ import annotations

import errno
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeRunner
from tether.engine.boot import BootError, EfiVarsError, MissingEspError, NoEntryError
from tether.engine.boot_uefi import (
    SYSTEMD_VENDOR,
    EfiVars,
    UefiBootNext,
    decode_string,
    encode_string,
    parse_efibootmgr,
)
from tether.runner import Result

PARTUUID_B = "66666666-7777-8888-9999-aaaaaaaaaaaa"


# ---- EFI variables -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["tether-2-volume-b+3.conf", "", "slot-b*", "tëst-ünïcode"])
def test_string_encoding_round_trip(text: str) -> None:
    data = encode_string(text)
    assert data.endswith(b"\0\0") and len(data) == 2 * (len(text) + 1)
    assert decode_string(data) == text


def test_odd_length_string_is_an_error() -> None:
    with pytest.raises(EfiVarsError, match="odd length"):
        decode_string(b"a\0b")


def test_variable_file_is_attribute_word_then_value(tmp_path: Path) -> None:
    efi = EfiVars(tmp_path, efivarfs=False)
    efi.set_string("LoaderEntryOneShot", "x*")
    raw = (tmp_path / f"LoaderEntryOneShot-{SYSTEMD_VENDOR}").read_bytes()
    assert raw == struct.pack("<I", 7) + b"x\0*\0\0\0"
    assert efi.get("LoaderEntryOneShot") == (7, b"x\0*\0\0\0")
    efi.set_string("LoaderEntryOneShot", "longer-value")  # a shorter old value leaves nothing behind
    efi.set_string("LoaderEntryOneShot", "y")
    assert efi.get_string("LoaderEntryOneShot") == "y"
    assert efi.delete("LoaderEntryOneShot") is True
    assert efi.get("LoaderEntryOneShot") is None and efi.delete("LoaderEntryOneShot") is False


def test_truncated_variable_is_an_error(tmp_path: Path) -> None:
    (tmp_path / f"LoaderEntrySelected-{SYSTEMD_VENDOR}").write_bytes(b"\x07\x00")
    with pytest.raises(EfiVarsError, match="shorter than its attribute word"):
        EfiVars(tmp_path, efivarfs=False).get("LoaderEntrySelected")


def test_bad_variable_names_are_refused(tmp_path: Path) -> None:
    efi = EfiVars(tmp_path, efivarfs=False)
    for name in ("../etc/passwd", "a b", ""):
        with pytest.raises(EfiVarsError, match="bad EFI variable name"):
            efi.set_string(name, "x")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("err", [errno.EROFS, errno.EPERM, errno.EACCES])
def test_store_refusing_writes_raises_and_leaves_the_variable(tmp_path: Path, err: int,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    efi = EfiVars(tmp_path, efivarfs=False)
    efi.set_string("LoaderEntryDefault", "old")
    before = (tmp_path / f"LoaderEntryDefault-{SYSTEMD_VENDOR}").read_bytes()
    import tether.engine.boot_uefi as mod

    def refuse(*a: Any, **k: Any) -> Any:
        raise OSError(err, "refused")
    monkeypatch.setattr(mod.os, "open", refuse)
    with pytest.raises(EfiVarsError, match="refuses writes"):
        efi.set_string("LoaderEntryDefault", "new")
    monkeypatch.undo()
    assert (tmp_path / f"LoaderEntryDefault-{SYSTEMD_VENDOR}").read_bytes() == before


def test_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    efi = EfiVars(tmp_path / "none", efivarfs=False)
    assert efi.get_string("LoaderEntrySelected") is None
    with pytest.raises(EfiVarsError, match="no EFI variable store"):
        efi.set_string("LoaderEntryOneShot", "x")


def test_immutable_flag_is_cleared_before_a_write(tmp_path: Path) -> None:
    f = tmp_path / f"LoaderEntryOneShot-{SYSTEMD_VENDOR}"
    f.write_bytes(struct.pack("<I", 7) + encode_string("old"))
    if subprocess.run(["chattr", "+i", str(f)], capture_output=True).returncode != 0:
        pytest.skip("this filesystem has no immutable flag")
    try:
        efi = EfiVars(tmp_path, efivarfs=False)
        efi.set_string("LoaderEntryOneShot", "new")
        assert efi.get_string("LoaderEntryOneShot") == "new"
    finally:
        subprocess.run(["chattr", "-i", str(f)], capture_output=True)


# ---- efibootmgr ----------------------------------------------------------------------------------------------

class Firmware:
    """Boot#### variables, BootOrder, BootNext and BootCurrent, changed by efibootmgr argv as efibootmgr does."""

    def __init__(self) -> None:
        self.entries = {"0000": "UiApp", "0001": "tether-1-volume-a"}
        self.order = ["0001", "0000"]
        self.next: str | None = None
        self.current = "0001"
        self.refuse = False

    def listing(self) -> str:
        lines = [f"BootCurrent: {self.current}", "Timeout: 0 seconds"]
        if self.next:
            lines.append(f"BootNext: {self.next}")
        lines.append("BootOrder: " + ",".join(self.order))
        lines += [f"Boot{n}* {label}\tHD(1,GPT,x)/File(\\x)" for n, label in sorted(self.entries.items())]
        return "\n".join(lines) + "\n"

    def __call__(self, argv: list[str], kw: dict[str, Any]) -> Result:
        args = argv[1:]
        if args and self.refuse:
            return Result(argv, 5, "", "Could not set variable: Read-only file system\n")
        if "--create-only" in args:
            num = f"{max(int(n, 16) for n in self.entries) + 1:04X}"
            self.entries[num] = args[args.index("--label") + 1]
        elif "--bootnext" in args:
            self.next = args[args.index("--bootnext") + 1]
        elif "--delete-bootnext" in args:
            self.next = None
        elif "--bootorder" in args:
            self.order = args[args.index("--bootorder") + 1].split(",")
        elif "--delete-bootnum" in args:
            num = args[args.index("--bootnum") + 1]
            del self.entries[num]
            self.order = [n for n in self.order if n != num]
        return Result(argv, 0, self.listing(), "")

    def boot(self) -> str:
        self.current = self.next or self.order[0]
        self.next = None
        return self.entries[self.current]


@pytest.fixture
def fw() -> Firmware:
    return Firmware()


@pytest.fixture
def uefi(tmp_path: Path, fw: Firmware) -> tuple[UefiBootNext, FakeRunner]:
    (tmp_path / "esp/EFI").mkdir(parents=True)
    runner = FakeRunner().expect("efibootmgr*", handler=fw)
    return UefiBootNext(runner, tmp_path / "esp", disk="/dev/vda", part=1, cmdline_path=tmp_path / "c"), runner


@pytest.fixture
def kernel(tmp_path: Path) -> tuple[Path, Path]:
    k, i = tmp_path / "vmlinuz", tmp_path / "initrd.img"
    k.write_bytes(b"MZ-kernel")
    i.write_bytes(b"initrd")
    return k, i


def test_parse_efibootmgr_listing() -> None:
    st = parse_efibootmgr("BootCurrent: 0001\nTimeout: 0 seconds\nBootNext: 0003\nBootOrder: 0001,0000\n"
                          "Boot0000* UiApp\tFvVol(7cb8bdc9)\nBoot0001* tether-1-volume-a\tHD(1,GPT)\n"
                          "Boot0003  tether-2-volume-b\n")
    assert (st.current, st.next, st.order) == ("0001", "0003", ("0001", "0000"))
    assert [(e.num, e.label, e.active) for e in st.entries] == [
        ("0000", "UiApp", True), ("0001", "tether-1-volume-a", True), ("0003", "tether-2-volume-b", False)]


def test_install_creates_an_entry_outside_bootorder_and_sets_bootnext(uefi: tuple[UefiBootNext, FakeRunner],
                                                                      fw: Firmware,
                                                                      kernel: tuple[Path, Path]) -> None:
    u, runner = uefi
    eid = u.install_entry("volume-b", kernel=kernel[0], initrd=kernel[1], root_partuuid=PARTUUID_B,
                          cmdline="ro console=ttyS0", version="2", tries=3)
    assert eid == "tether-2-volume-b"
    writes = [c for c in runner.commands("efibootmgr ") if c != "efibootmgr"]
    assert writes == [
        "efibootmgr --create-only --disk /dev/vda --part 1 --label tether-2-volume-b "
        "--loader \\tether\\volume-b\\2\\vmlinuz.efi --unicode initrd=\\tether\\volume-b\\2\\initrd.img "
        f"root=PARTUUID={PARTUUID_B} ro console=ttyS0 tether.entry=tether-2-volume-b",
        "efibootmgr --bootnext 0002",
    ]
    assert (u.esp / "tether/volume-b/2/vmlinuz.efi").read_bytes() == b"MZ-kernel"
    assert fw.order == ["0001", "0000"]  # not the default until it commits
    info = {e.id: e for e in u.entries()}
    assert info[eid].oneshot and info[eid].tries_left == 1 and not info[eid].default


def test_failed_boot_falls_back_to_bootorder_and_commit_moves_it_first(uefi: tuple[UefiBootNext, FakeRunner],
                                                                       fw: Firmware,
                                                                       kernel: tuple[Path, Path]) -> None:
    u, _ = uefi
    b = u.install_entry("volume-b", kernel=kernel[0], initrd=None, root_partuuid=PARTUUID_B, cmdline="",
                        version="2", tries=1)
    assert fw.boot() == b
    assert u.booted_entry() == b
    assert fw.boot() == "tether-1-volume-a"  # the try is spent: the firmware returns to BootOrder
    fw.next = "0002"
    assert fw.boot() == b
    u.mark_good(b)
    assert fw.order == ["0002", "0001", "0000"] and fw.next is None
    assert {e.id: e.good for e in u.entries()} == {"tether-1-volume-a": True, b: True}


def test_mark_bad_removes_it_from_bootorder_and_bootnext(uefi: tuple[UefiBootNext, FakeRunner], fw: Firmware,
                                                         kernel: tuple[Path, Path]) -> None:
    u, _ = uefi
    b = u.install_entry("volume-b", kernel=kernel[0], initrd=None, root_partuuid=PARTUUID_B, cmdline="",
                        version="2", tries=1)
    u.mark_bad(b)
    assert fw.next is None and fw.order == ["0001", "0000"]
    with pytest.raises(BootError, match="only entry"):
        fw.order = ["0001"]
        u.mark_bad("tether-1-volume-a")


def test_refusing_variable_store_is_a_typed_error(uefi: tuple[UefiBootNext, FakeRunner], fw: Firmware) -> None:
    u, _ = uefi
    fw.refuse = True
    with pytest.raises(EfiVarsError, match="refuses writes"):
        u.set_oneshot("tether-1-volume-a")
    assert fw.next is None


def test_missing_esp_and_unknown_entry(tmp_path: Path, fw: Firmware, kernel: tuple[Path, Path]) -> None:
    runner = FakeRunner().expect("efibootmgr*", handler=fw)
    u = UefiBootNext(runner, tmp_path / "not-mounted", disk="/dev/vda", part=1)
    with pytest.raises(MissingEspError):
        u.install_entry("volume-b", kernel=kernel[0], initrd=None, root_partuuid=PARTUUID_B, cmdline="",
                        version="2", tries=1)
    assert [c for c in runner.commands() if c != "efibootmgr"] == []
    with pytest.raises(NoEntryError):
        u.set_default("tether-9-volume-b")


def test_the_booted_entry_cannot_be_removed(uefi: tuple[UefiBootNext, FakeRunner], fw: Firmware) -> None:
    u, _ = uefi
    with pytest.raises(BootError, match="running system"):
        u.remove_entry("tether-1-volume-a")
    assert "0001" in fw.entries
