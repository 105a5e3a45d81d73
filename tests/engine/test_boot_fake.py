"""The file-backed fake keeps the backend contract, so commit/rollback logic can be tested without a VM; and the
factory by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.engine.boot import (
    BootError,
    EfiVarsError,
    NoEntryError,
    backend_names,
    compare_versions,
    entry_for_slot,
    make_backend,
    make_entry_id,
    parse_entry_id,
)
from tether.engine.boot_fake import FakeBoot
from tether.engine.boot_systemd import SystemdBoot

PARTUUID = "66666666-7777-8888-9999-aaaaaaaaaaaa"


@pytest.fixture
def kernel(tmp_path: Path) -> Path:
    k = tmp_path / "vmlinuz"
    k.write_bytes(b"k")
    return k


@pytest.fixture
def fake(tmp_path: Path) -> FakeBoot:
    return FakeBoot(tmp_path / "boot.json")


def install(b: FakeBoot, kernel: Path, slot: str, version: str, tries: int) -> str:
    return b.install_entry(slot, kernel=kernel, initrd=None, root_partuuid=PARTUUID, cmdline="ro",
                           version=version, tries=tries)


def test_update_commit_failure_and_rollback_walkthrough(fake: FakeBoot, kernel: Path) -> None:
    a = install(fake, kernel, "volume-a", "1", 3)
    assert fake.boot() == a
    fake.mark_good(a)
    fake.set_default(a)
    b = install(fake, kernel, "volume-b", "2", 3)
    assert fake.next_boot() == b
    assert [fake.boot() for _ in range(4)] == [b, b, b, a]  # never committed: counted out
    assert entry_for_slot(fake, "volume-b").bad
    b3 = install(fake, kernel, "volume-b", "3", 3)
    assert fake.boot() == b3
    fake.mark_bad(b3)  # health check failed
    assert fake.boot() == a
    b4 = install(fake, kernel, "volume-b", "4", 3)
    assert fake.boot() == b4
    fake.mark_good(b4)
    fake.set_default(b4)
    assert [fake.boot() for _ in range(2)] == [b4, b4]
    assert fake.load()["boots"] == [a, b, b, b, a, b3, a, b4, b4, b4]


def test_oneshot_boots_once(fake: FakeBoot, kernel: Path) -> None:
    a = install(fake, kernel, "volume-a", "1", 0)
    b = install(fake, kernel, "volume-b", "2", 0)
    fake.set_oneshot(a)
    assert [e.id for e in fake.entries() if e.oneshot] == [a]
    assert [fake.boot(), fake.boot()] == [a, b]


def test_set_default_refuses_an_outranked_entry(fake: FakeBoot, kernel: Path) -> None:
    a = install(fake, kernel, "volume-a", "1", 0)
    install(fake, kernel, "volume-b", "2", 3)
    with pytest.raises(BootError, match="sorts above"):
        fake.set_default(a)


def test_read_only_store_refuses_and_changes_nothing(tmp_path: Path, kernel: Path) -> None:
    rw = FakeBoot(tmp_path / "boot.json")
    a = install(rw, kernel, "volume-a", "1", 0)
    before = (tmp_path / "boot.json").read_bytes()
    ro = FakeBoot(tmp_path / "boot.json", read_only=True)
    for op in (lambda: ro.set_oneshot(a), lambda: ro.mark_bad(a), lambda: install(ro, kernel, "volume-b", "2", 3)):
        with pytest.raises(EfiVarsError, match="refuses writes"):
            op()
    assert (tmp_path / "boot.json").read_bytes() == before
    with pytest.raises(NoEntryError):
        ro.mark_good("tether-7-volume-b")


def test_entry_for_slot_names_a_slot_without_entries(fake: FakeBoot, kernel: Path) -> None:
    install(fake, kernel, "volume-a", "1", 0)
    with pytest.raises(NoEntryError, match="no boot entry for slot volume-b"):
        entry_for_slot(fake, "volume-b")


def test_entry_ids_round_trip() -> None:
    assert make_entry_id("12", "volume-b") == "tether-12-volume-b"
    assert parse_entry_id("tether-12-volume-b") == ("12", "volume-b")
    assert parse_entry_id("tether-2024.05.01_1-volume-a") == ("2024.05.01_1", "volume-a")
    assert parse_entry_id("debian-6.1.0") is None and parse_entry_id("tether-x") is None


@pytest.mark.parametrize("a,b,expected", [
    ("2", "10", -1), ("1.0", "1.0.1", -1), ("1~rc1", "1", -1), ("1-2", "1.1", -1), ("1^p", "1", 1),
    ("1^p", "1.1", -1), ("a", "1", -1), ("abc", "abcd", -1), ("007", "7", 0),
    ("tether-10-volume-a.conf", "tether-9-volume-b+3.conf", 1),
])
def test_version_order_follows_systemd(a: str, b: str, expected: int) -> None:
    assert compare_versions(a, b) == expected
    assert compare_versions(b, a) == -expected


def test_factory_by_name(tmp_path: Path) -> None:
    assert backend_names() == ("systemd-boot", "grub", "uefi", "fake")
    assert isinstance(make_backend("fake", path=tmp_path / "b.json"), FakeBoot)
    assert isinstance(make_backend("systemd-boot", esp=tmp_path), SystemdBoot)
    with pytest.raises(BootError, match="unknown boot loader 'lilo'"):
        make_backend("lilo")
    with pytest.raises(BootError, match="boot loader fake"):
        make_backend("fake", nonsense=1)
