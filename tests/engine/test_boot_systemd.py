"""systemd-boot backend: entry files named and renamed exactly as systemd-boot 252 sees them.

``sd_boot`` below plays systemd-boot for one boot with the rules measured in QEMU (vm-notes §4): it picks the
entry (one-shot variable, default variable, loader.conf glob, first entry), then renames a counted entry before
booting it; ``bless`` plays ``systemd-bless-boot good``.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tether.engine import boot_systemd
from tether.engine.boot import BootError, EfiVarsError, MissingEspError, NoEntryError
from tether.engine.boot_systemd import (
    SystemdBoot,
    entry_file_name,
    next_counted_name,
    parse_entry_name,
    select_entry,
    write_bless_dropin,
)
from tether.engine.boot_uefi import EfiVars, encode_string
from tether.target import Target

PARTUUID_A = "11111111-2222-3333-4444-555555555555"
PARTUUID_B = "66666666-7777-8888-9999-aaaaaaaaaaaa"


def sd_boot(esp: Path, efi: EfiVars) -> str | None:
    """One boot as systemd-boot 252 does it; returns the file name it booted (as LoaderEntrySelected)."""
    sd = SystemdBoot(esp, efi)
    picked, _why = select_entry(sd.loader_entries(), oneshot=efi.get_string("LoaderEntryOneShot"),
                                efi_default=efi.get_string("LoaderEntryDefault"),
                                conf_default=boot_systemd.conf_default(_read(esp / "loader/loader.conf")))
    efi.delete("LoaderEntryOneShot")
    if picked is None:
        return None
    efi.set_string("LoaderEntrySelected", picked.file)
    nxt = next_counted_name(picked.file)
    if nxt:
        entries = esp / "loader/entries"
        os.rename(entries / picked.file, entries / nxt)
        efi.set_string("LoaderBootCountPath", f"\\loader\\entries\\{nxt}")
    else:
        efi.delete("LoaderBootCountPath")
    return picked.file


def bless(esp: Path, efi: EfiVars) -> None:
    path = efi.get_string("LoaderBootCountPath")
    if not path:
        return
    cur = esp / path.lstrip("\\").replace("\\", "/")
    parsed = parse_entry_name(cur.name)
    assert parsed is not None
    os.rename(cur, cur.with_name(entry_file_name(parsed[0], None)))


def _read(p: Path) -> str:
    return p.read_text() if p.exists() else ""


def names(esp: Path) -> list[str]:
    return sorted(os.listdir(esp / "loader/entries"))


@pytest.fixture
def esp(tmp_path: Path) -> Path:
    d = tmp_path / "esp"
    (d / "loader/entries").mkdir(parents=True)
    (d / "EFI/BOOT").mkdir(parents=True)
    return d


@pytest.fixture
def efi(tmp_path: Path) -> EfiVars:
    d = tmp_path / "efivars"
    d.mkdir()
    return EfiVars(d, efivarfs=False)


@pytest.fixture
def kernel(tmp_path: Path) -> tuple[Path, Path]:
    k, i = tmp_path / "vmlinuz", tmp_path / "initrd.img"
    k.write_bytes(b"KERNEL" * 1000)
    i.write_bytes(b"INITRD" * 1000)
    return k, i


@pytest.fixture
def sd(esp: Path, efi: EfiVars, tmp_path: Path) -> SystemdBoot:
    return SystemdBoot(esp, efi, cmdline_path=tmp_path / "no-cmdline")


def install(sd: SystemdBoot, kernel: tuple[Path, Path], slot: str, version: str, tries: int) -> str:
    return sd.install_entry(slot, kernel=kernel[0], initrd=kernel[1],
                            root_partuuid=PARTUUID_A if slot == "volume-a" else PARTUUID_B,
                            cmdline="ro console=ttyS0,115200 panic=5", version=version, tries=tries)


def provisioned_a(sd: SystemdBoot, kernel: tuple[Path, Path]) -> str:
    """A clean install: slot A's entry, committed, the default, booted."""
    a = install(sd, kernel, "volume-a", "1", 3)
    sd.set_default(a)
    assert sd_boot(sd.esp, sd.efivars) == "tether-1-volume-a+3.conf"
    sd.mark_good(a)
    return a


# ---- names ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,expected", [
    ("slot-b+3.conf", ("slot-b", 3, 0)),
    ("slot-b+2-1.conf", ("slot-b", 2, 1)),
    ("slot-c+0-1.conf", ("slot-c", 0, 1)),
    ("slot-b.conf", ("slot-b", None, None)),
    ("tether-7-volume-b+3.conf", ("tether-7-volume-b", 3, 0)),
    ("odd+x.conf", ("odd+x", None, None)),
    ("a+1-.conf", ("a+1-", None, None)),
    ("readme.txt", None),
])
def test_entry_names_parse_like_systemd_boot(name: str, expected: object) -> None:
    assert parse_entry_name(name) == expected


def test_counting_renames_follow_systemd_boot_series() -> None:
    series = ["x+3.conf"]
    for _ in range(4):
        series.append(next_counted_name(series[-1]) or "")
    assert series == ["x+3.conf", "x+2-1.conf", "x+1-2.conf", "x+0-3.conf", "x+0-4.conf"]
    assert next_counted_name("x.conf") is None


# ---- the measured systemd 252 sequence (vm-notes §4) ---------------------------------------------------------

def test_model_reproduces_the_measured_ab_run(esp: Path, efi: EfiVars) -> None:
    e = esp / "loader/entries"
    for s in "ab":
        (e / f"slot-{s}.conf").write_text(f"title Slot {s}\nlinux /slot-{s}/vmlinuz\n")
    (esp / "loader/loader.conf").write_text("timeout 0\ndefault slot-a.conf\neditor no\n")
    assert sd_boot(esp, efi) == "slot-a.conf"
    efi.set_string("LoaderEntryOneShot", "slot-b.conf")
    assert sd_boot(esp, efi) == "slot-b.conf"          # boot 2: the one-shot
    assert sd_boot(esp, efi) == "slot-a.conf"          # boot 3: one-shot used up
    os.rename(e / "slot-b.conf", e / "slot-b+3.conf")
    (esp / "loader/loader.conf").write_text("timeout 0\ndefault slot-*\neditor no\n")
    assert sd_boot(esp, efi) == "slot-b+3.conf"        # boot 4: counting, renamed before boot
    assert names(esp) == ["slot-a.conf", "slot-b+2-1.conf"]
    bless(esp, efi)
    assert names(esp) == ["slot-a.conf", "slot-b.conf"]
    (e / "slot-c+1.conf").write_text("title Slot C (broken)\n")
    assert sd_boot(esp, efi) == "slot-c+1.conf"        # boot 5: highest id, one try
    assert "slot-c+0-1.conf" in names(esp)
    assert sd_boot(esp, efi) == "slot-b.conf"          # boot 6: C counted out sorts last


def test_oneshot_without_counter_is_ignored_but_glob_works(esp: Path, efi: EfiVars) -> None:
    e = esp / "loader/entries"
    (e / "slot-a.conf").write_text("title A\n")
    (e / "slot-b+3.conf").write_text("title B\n")
    (esp / "loader/loader.conf").write_text("default slot-a.conf\n")
    efi.set_string("LoaderEntryOneShot", "slot-b.conf")
    assert sd_boot(esp, efi) == "slot-a.conf"          # silently ignored, as measured
    efi.set_string("LoaderEntryOneShot", "slot-b*")
    assert sd_boot(esp, efi) == "slot-b+3.conf"


# ---- install -------------------------------------------------------------------------------------------------

def test_install_entry_writes_a_counted_bls_entry_and_copies_the_kernel(sd: SystemdBoot, esp: Path,
                                                                        kernel: tuple[Path, Path]) -> None:
    eid = install(sd, kernel, "volume-b", "7", 3)
    assert eid == "tether-7-volume-b"
    assert names(esp) == ["tether-7-volume-b+3.conf"]
    text = (esp / "loader/entries/tether-7-volume-b+3.conf").read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert lines == [
        "title tether volume-b (7)", "version 7",
        "linux /tether/volume-b/7/vmlinuz", "initrd /tether/volume-b/7/initrd.img",
        f"options root=PARTUUID={PARTUUID_B} ro console=ttyS0,115200 panic=5 tether.entry=tether-7-volume-b",
    ]
    assert (esp / "tether/volume-b/7/vmlinuz").read_bytes() == kernel[0].read_bytes()
    assert (esp / "tether/volume-b/7/initrd.img").read_bytes() == kernel[1].read_bytes()
    assert not [p for p in (esp / "loader/entries").iterdir() if p.name.startswith(".")]  # no temp files left


def test_install_without_tries_writes_an_uncounted_entry(sd: SystemdBoot, esp: Path,
                                                         kernel: tuple[Path, Path]) -> None:
    install(sd, kernel, "volume-a", "1", 0)
    assert names(esp) == ["tether-1-volume-a.conf"]


def test_reinstalling_a_slot_replaces_its_older_entry_and_kernel(sd: SystemdBoot, esp: Path,
                                                                 kernel: tuple[Path, Path]) -> None:
    provisioned_a(sd, kernel)
    install(sd, kernel, "volume-b", "2", 3)
    sd.mark_bad("tether-2-volume-b")
    install(sd, kernel, "volume-b", "3", 3)
    assert names(esp) == ["tether-1-volume-a.conf", "tether-3-volume-b+3.conf"]
    assert sorted(os.listdir(esp / "tether/volume-b")) == ["3"]


def test_install_never_removes_the_booted_entry(sd: SystemdBoot, esp: Path, kernel: tuple[Path, Path]) -> None:
    provisioned_a(sd, kernel)  # booted from tether-1-volume-a
    with pytest.raises(BootError, match="running system"):
        install(sd, kernel, "volume-a", "1", 3)
    install(sd, kernel, "volume-a", "2", 3)  # same slot, new version: the booted one stays
    assert names(esp) == ["tether-1-volume-a.conf", "tether-2-volume-a+3.conf"]


# ---- update, commit, rollback --------------------------------------------------------------------------------

def test_update_boots_new_slot_and_commit_blesses_it(sd: SystemdBoot, esp: Path, efi: EfiVars,
                                                     kernel: tuple[Path, Path]) -> None:
    provisioned_a(sd, kernel)
    b = install(sd, kernel, "volume-b", "2", 3)
    assert sd.next_boot() == ("tether-2-volume-b+3.conf", "loader.conf default")
    assert sd_boot(esp, efi) == "tether-2-volume-b+3.conf"
    assert sd.booted_entry() == b
    info = {e.id: e for e in sd.entries()}
    assert (info[b].tries_left, info[b].tries_done, info[b].booted) == (2, 1, True)
    sd.mark_good(b)
    sd.mark_good(b)  # idempotent, as a later systemd-bless-boot run is
    sd.set_default(b)
    assert names(esp) == ["tether-1-volume-a.conf", "tether-2-volume-b.conf"]
    assert "default tether-*\n" in (esp / "loader/loader.conf").read_text()
    assert sd_boot(esp, efi) == "tether-2-volume-b.conf"


def test_panicking_slot_uses_up_its_tries_and_the_old_slot_boots(sd: SystemdBoot, esp: Path, efi: EfiVars,
                                                                 kernel: tuple[Path, Path]) -> None:
    provisioned_a(sd, kernel)
    install(sd, kernel, "volume-b", "2", 3)
    booted = [sd_boot(esp, efi) for _ in range(4)]  # B never reaches commit
    assert booted == ["tether-2-volume-b+3.conf", "tether-2-volume-b+2-1.conf", "tether-2-volume-b+1-2.conf",
                      "tether-1-volume-a.conf"]
    info = {e.id: e for e in sd.entries()}
    assert info["tether-2-volume-b"].bad and info["tether-2-volume-b"].tries_done == 3
    assert info["tether-1-volume-a"].default and info["tether-1-volume-a"].booted
    assert [e.id for e in sd.entries()] == ["tether-1-volume-a", "tether-2-volume-b"]  # counted-out sorts last


def test_failed_health_check_marks_bad_and_the_old_slot_boots_next(sd: SystemdBoot, esp: Path, efi: EfiVars,
                                                                   kernel: tuple[Path, Path]) -> None:
    provisioned_a(sd, kernel)
    b = install(sd, kernel, "volume-b", "2", 3)
    sd_boot(esp, efi)
    sd.mark_bad(b)
    assert names(esp) == ["tether-1-volume-a.conf", "tether-2-volume-b+0-1.conf"]
    assert sd_boot(esp, efi) == "tether-1-volume-a.conf"


def test_manual_rollback_reinstalls_the_old_slot_as_newer(sd: SystemdBoot, esp: Path, efi: EfiVars,
                                                          kernel: tuple[Path, Path]) -> None:
    provisioned_a(sd, kernel)
    b = install(sd, kernel, "volume-b", "2", 3)
    sd_boot(esp, efi)
    sd.mark_good(b)
    with pytest.raises(BootError, match="sorts above"):
        sd.set_default("tether-1-volume-a")  # B is newer and good: a glob default cannot pick A
    a3 = install(sd, kernel, "volume-a", "3", 3)
    assert sd_boot(esp, efi) == "tether-3-volume-a+3.conf"
    sd.mark_good(a3)
    assert names(esp) == ["tether-2-volume-b.conf", "tether-3-volume-a.conf"]


def test_oneshot_uses_a_glob_that_survives_the_counter(sd: SystemdBoot, esp: Path, efi: EfiVars,
                                                       kernel: tuple[Path, Path]) -> None:
    provisioned_a(sd, kernel)
    install(sd, kernel, "volume-b", "2", 3)
    sd.set_oneshot("tether-1-volume-a")
    assert (efi.path / "LoaderEntryOneShot-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f").read_bytes() == \
        b"\x07\x00\x00\x00" + "tether-1-volume-a*".encode("utf-16-le") + b"\x00\x00"
    assert [e.id for e in sd.entries() if e.oneshot] == ["tether-1-volume-a"]
    assert sd_boot(esp, efi) == "tether-1-volume-a.conf"   # once
    assert sd_boot(esp, efi) == "tether-2-volume-b+3.conf"  # then the trial
    sd.set_oneshot("tether-2-volume-b")  # its file is now +2-1: the glob still matches
    assert sd_boot(esp, efi) == "tether-2-volume-b+2-1.conf"


def test_oneshot_falls_back_to_the_file_name_when_the_glob_is_ambiguous(sd: SystemdBoot, efi: EfiVars,
                                                                        kernel: tuple[Path, Path]) -> None:
    install(sd, kernel, "volume-b", "2", 3)
    install(sd, kernel, "volume-bx", "2", 3)
    sd.set_oneshot("tether-2-volume-b")
    assert efi.get_string("LoaderEntryOneShot") == "tether-2-volume-b+3.conf"


def test_set_default_clears_a_pinning_efi_default(sd: SystemdBoot, esp: Path, efi: EfiVars,
                                                  kernel: tuple[Path, Path]) -> None:
    (esp / "loader/loader.conf").write_text("timeout 3\nconsole-mode max\ndefault slot-a.conf\n")
    a = install(sd, kernel, "volume-a", "1", 0)
    efi.set_string("LoaderEntryDefault", "something-else.conf")
    sd.set_default(a)
    assert (esp / "loader/loader.conf").read_text() == "timeout 3\nconsole-mode max\ndefault tether-*\n"
    assert efi.get("LoaderEntryDefault") is None


# ---- refusals leave everything as it was ---------------------------------------------------------------------

def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_efi_store_refusing_writes_leaves_loader_conf_untouched(sd: SystemdBoot, esp: Path, efi: EfiVars,
                                                                kernel: tuple[Path, Path],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (esp / "loader/loader.conf").write_text("timeout 0\ndefault slot-a.conf\n")
    a = install(sd, kernel, "volume-a", "1", 0)
    efi.set_string("LoaderEntryDefault", "slot-a.conf")
    before = _snapshot(esp)

    def refuse(*a: object, **k: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(Path, "unlink", refuse)
    with pytest.raises(EfiVarsError, match="refuses writes"):
        sd.set_default(a)
    monkeypatch.undo()
    assert _snapshot(esp) == before
    with pytest.raises(EfiVarsError, match="refuses writes"):
        monkeypatch.setattr("tether.engine.boot_uefi.os.open", refuse)
        sd.set_oneshot(a)
    assert _snapshot(esp) == before


def test_missing_esp_is_a_clear_error_and_creates_nothing(tmp_path: Path, efi: EfiVars,
                                                          kernel: tuple[Path, Path]) -> None:
    for esp in (tmp_path / "absent", tmp_path / "empty-mountpoint"):
        if esp.name == "empty-mountpoint":
            esp.mkdir()
        sd = SystemdBoot(esp, efi)
        with pytest.raises(MissingEspError):
            install(sd, kernel, "volume-b", "2", 3)
        with pytest.raises(MissingEspError):
            sd.set_default("tether-2-volume-b")
    assert not (tmp_path / "absent").exists()
    assert list((tmp_path / "empty-mountpoint").iterdir()) == []


def test_no_entry_for_an_id_is_a_typed_error(sd: SystemdBoot, kernel: tuple[Path, Path]) -> None:
    install(sd, kernel, "volume-a", "1", 0)
    for op in (sd.set_oneshot, sd.set_default, sd.mark_good, sd.mark_bad, sd.remove_entry):
        with pytest.raises(NoEntryError, match="tether-9-volume-b"):
            op("tether-9-volume-b")


def test_failed_entry_write_leaves_no_entry_and_no_kernel(sd: SystemdBoot, esp: Path, kernel: tuple[Path, Path],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    provisioned_a(sd, kernel)
    before = _snapshot(esp)

    def full(*a: object, **k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(boot_systemd, "write_file_atomic", full)
    with pytest.raises(BootError, match="No space left"):
        install(sd, kernel, "volume-b", "2", 3)
    assert _snapshot(esp) == before


@pytest.mark.parametrize("kw,msg", [
    ({"version": "1-2"}, "version"), ({"version": "1+2"}, "version"), ({"version": "V2"}, "version"),
    ({"tries": 10}, "tries"), ({"tries": -1}, "tries"), ({"root_partuuid": "nope"}, "PARTUUID"),
    ({"slot": "Volume B"}, "slot"), ({"cmdline": "a\nb"}, "one line"),
])
def test_bad_input_is_refused_before_anything_is_written(sd: SystemdBoot, esp: Path, kernel: tuple[Path, Path],
                                                         kw: dict[str, object], msg: str) -> None:
    args: dict[str, object] = {"slot": "volume-b", "kernel": kernel[0], "initrd": kernel[1],
                               "root_partuuid": PARTUUID_B, "cmdline": "ro", "version": "2", "tries": 3}
    args.update(kw)
    slot = args.pop("slot")
    with pytest.raises(BootError, match=msg):
        sd.install_entry(slot, **args)  # type: ignore[arg-type]
    assert names(esp) == [] and not (esp / "tether").exists()


def test_missing_kernel_is_refused(sd: SystemdBoot, tmp_path: Path) -> None:
    with pytest.raises(BootError, match="kernel .* does not exist"):
        sd.install_entry("volume-b", kernel=tmp_path / "none", initrd=None, root_partuuid=PARTUUID_B, cmdline="",
                         version="2", tries=3)


def test_the_booted_entry_cannot_be_removed(sd: SystemdBoot, esp: Path, kernel: tuple[Path, Path]) -> None:
    a = provisioned_a(sd, kernel)
    b = install(sd, kernel, "volume-b", "2", 3)
    with pytest.raises(BootError, match="running system"):
        sd.remove_entry(a)
    sd.remove_entry(b)
    assert names(esp) == ["tether-1-volume-a.conf"] and not (esp / "tether/volume-b/2").exists()


def test_booted_entry_falls_back_to_the_kernel_command_line(esp: Path, efi: EfiVars, tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("root=PARTUUID=x ro tether.entry=tether-4-volume-b quiet\n")
    assert SystemdBoot(esp, efi, cmdline_path=cmdline).booted_entry() == "tether-4-volume-b"
    efi.set_string("LoaderEntrySelected", "tether-5-volume-a+1-2.conf")
    assert SystemdBoot(esp, efi, cmdline_path=cmdline).booted_entry() == "tether-5-volume-a"


# ---- loader setup --------------------------------------------------------------------------------------------

def test_bless_dropin_waits_for_the_esp_mount(target: Target) -> None:
    path = write_bless_dropin(target, "/boot/efi")
    assert path == target.path("/etc/systemd/system/systemd-bless-boot.service.d/10-esp.conf")
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    assert lines == ["[Unit]", "RequiresMountsFor=/boot/efi"]
    with pytest.raises(BootError):
        write_bless_dropin(target, "efi")


def test_install_loader_sets_up_an_empty_esp(tmp_path: Path, efi: EfiVars) -> None:
    esp = tmp_path / "esp"
    esp.mkdir()
    binary = tmp_path / "systemd-bootx64.efi"
    binary.write_bytes(b"MZ" + b"\0" * 100)
    sd = SystemdBoot(esp, efi)
    with pytest.raises(MissingEspError):
        sd.check_esp()
    sd.install_loader(binary)
    sd.check_esp()
    assert (esp / "EFI/BOOT/BOOTX64.EFI").read_bytes() == binary.read_bytes()
    assert (esp / "EFI/systemd/systemd-bootx64.efi").read_bytes() == binary.read_bytes()
    assert (esp / "loader/loader.conf").read_text() == "timeout 0\neditor no\ndefault tether-*\n"
    assert (esp / "loader/entries").is_dir()


def test_encoded_selected_entry_is_read_back(efi: EfiVars) -> None:
    efi.set("LoaderEntrySelected", encode_string("tether-2-volume-b+3.conf"))
    assert efi.get_string("LoaderEntrySelected") == "tether-2-volume-b+3.conf"
