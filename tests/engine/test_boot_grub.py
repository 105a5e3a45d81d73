"""GRUB backend: grubenv byte-exact, the decrement table, entries and the try counter across boots.

``grub_boot`` plays the generated script for one boot: it reads the decrement table out of the generated
custom.cfg itself (so a wrong table line fails here), and follows the script's branches.
"""

from __future__ import annotations

import errno
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tether.engine import boot_grub
from tether.engine.boot import BootError, MissingEspError, NoEntryError
from tether.engine.boot_grub import (
    GRUBENV_HEADER,
    GrubBoot,
    decrement_table,
    parse_grubenv,
    render_grubenv,
)

PARTUUID_A = "11111111-2222-3333-4444-555555555555"
PARTUUID_B = "66666666-7777-8888-9999-aaaaaaaaaaaa"
_TABLE = re.compile(r'(?:if|elif) \[ "\$\{tether_tries\}" = "(\d+)" \]; then set tether_tries="(\d+)"')


def grub_boot(g: GrubBoot) -> str | None:
    """One boot of the generated script: returns the menu entry id it sets as default."""
    cfg = g.cfg.read_text()
    table = {int(n): int(m) for n, m in _TABLE.findall(cfg)}
    env = parse_grubenv(g.envfile.read_bytes())
    pick = env.get("tether_default", "")
    if env.get("tether_oneshot"):
        pick = env["tether_oneshot"]
        env["tether_oneshot"] = ""
    elif env.get("tether_trial"):
        tries = int(env.get("tether_tries") or 0)
        if tries > 0:
            pick = env["tether_trial"]
            env["tether_tries"] = str(table.get(tries, 0))
    g.envfile.write_bytes(render_grubenv(env))
    ids = re.findall(r"--id '([^']+)'", cfg)
    assert not pick or pick in ids, f"default {pick} names no menu entry"
    return pick or None


@pytest.fixture
def kernel(tmp_path: Path) -> tuple[Path, Path]:
    k, i = tmp_path / "vmlinuz", tmp_path / "initrd.img"
    k.write_bytes(b"K" * 4096)
    i.write_bytes(b"I" * 4096)
    return k, i


@pytest.fixture
def cmdline(tmp_path: Path) -> Path:
    return tmp_path / "cmdline"


@pytest.fixture
def g(tmp_path: Path, cmdline: Path) -> GrubBoot:
    (tmp_path / "boot/grub").mkdir(parents=True)
    return GrubBoot(tmp_path / "boot", "grub", cmdline_path=cmdline)


def install(g: GrubBoot, kernel: tuple[Path, Path], slot: str, version: str, tries: int) -> str:
    return g.install_entry(slot, kernel=kernel[0], initrd=kernel[1],
                           root_partuuid=PARTUUID_A if slot == "volume-a" else PARTUUID_B,
                           cmdline="ro console=ttyS0,115200", version=version, tries=tries)


def booted(cmdline: Path, entry: str | None) -> None:
    cmdline.write_text(f"BOOT_IMAGE=/x ro tether.entry={entry}\n" if entry else "ro\n")


def provisioned_a(g: GrubBoot, kernel: tuple[Path, Path], cmdline: Path) -> str:
    a = install(g, kernel, "volume-a", "1", 0)
    g.set_default(a)
    booted(cmdline, grub_boot(g))
    return a


# ---- grubenv -------------------------------------------------------------------------------------------------

def test_empty_grubenv_is_the_header_and_hash_padding() -> None:
    data = render_grubenv({})
    assert len(data) == 1024
    assert data == b"# GRUB Environment Block\n" + b"#" * (1024 - 25)


def test_grubenv_is_byte_exact_with_variables() -> None:
    data = render_grubenv({"saved_entry": "0", "tether_tries": "3"})
    body = b"# GRUB Environment Block\nsaved_entry=0\ntether_tries=3\n"
    assert data == body + b"#" * (1024 - len(body))
    assert parse_grubenv(data) == {"saved_entry": "0", "tether_tries": "3"}


def test_grubenv_that_does_not_fit_is_refused() -> None:
    with pytest.raises(BootError, match="full"):
        render_grubenv({"x": "y" * 1000})
    with pytest.raises(BootError, match="one line"):
        render_grubenv({"x": "a\nb"})


def test_parse_reads_escapes_and_rejects_a_foreign_file() -> None:
    assert parse_grubenv(GRUBENV_HEADER + b"a=x\\\\y\n" + b"#" * 50) == {"a": "x\\y"}
    with pytest.raises(BootError, match="GRUB Environment Block"):
        parse_grubenv(b"hello")


@pytest.mark.skipif(shutil.which("grub-editenv") is None, reason="needs grub-editenv")
def test_grubenv_matches_grub_editenv(tmp_path: Path) -> None:
    f = tmp_path / "grubenv"
    subprocess.run(["grub-editenv", str(f), "create"], check=True)
    subprocess.run(["grub-editenv", str(f), "set", "tether_trial=tether-2-volume-b", "tether_tries=3"], check=True)
    assert f.read_bytes() == render_grubenv({"tether_trial": "tether-2-volume-b", "tether_tries": "3"})


def test_decrement_table_covers_every_try_count() -> None:
    assert decrement_table() == [(9, 8), (8, 7), (7, 6), (6, 5), (5, 4), (4, 3), (3, 2), (2, 1), (1, 0)]


def test_generated_script_holds_the_table_and_env_commands(g: GrubBoot, kernel: tuple[Path, Path]) -> None:
    install(g, kernel, "volume-b", "2", 3)
    cfg = g.cfg.read_text()
    assert {int(n): int(m) for n, m in _TABLE.findall(cfg)} == {n: n - 1 for n in range(1, 10)}
    assert 'load_env --file "${tether_env}" tether_default tether_trial tether_tries tether_oneshot' in cfg
    assert 'save_env --file "${tether_env}" tether_tries' in cfg
    assert 'if [ "${tether_tries}" -gt 0 ]; then' in cfg
    assert "menuentry 'tether volume-b (2)' --id 'tether-2-volume-b' {" in cfg
    assert ("  linux /tether/volume-b/2/vmlinuz root=PARTUUID=66666666-7777-8888-9999-aaaaaaaaaaaa ro "
            "console=ttyS0,115200 tether.entry=tether-2-volume-b") in cfg
    assert "  initrd /tether/volume-b/2/initrd.img" in cfg
    assert cfg.count("{") - cfg.count("${") == cfg.count("}") - cfg.count("${")  # balanced blocks


# ---- the servicing cycle -------------------------------------------------------------------------------------

def test_trial_counts_down_then_falls_back(g: GrubBoot, kernel: tuple[Path, Path], cmdline: Path) -> None:
    provisioned_a(g, kernel, cmdline)
    b = install(g, kernel, "volume-b", "2", 3)
    assert parse_grubenv(g.envfile.read_bytes())["tether_tries"] == "3"
    picks = [grub_boot(g) for _ in range(4)]
    assert picks == [b, b, b, "tether-1-volume-a"]
    info = {e.id: e for e in g.entries()}
    assert (info[b].tries_left, info[b].tries_done, info[b].bad) == (0, 3, True)
    assert info["tether-1-volume-a"].default


def test_commit_resets_the_counter_and_makes_the_slot_default(g: GrubBoot, kernel: tuple[Path, Path],
                                                              cmdline: Path) -> None:
    provisioned_a(g, kernel, cmdline)
    b = install(g, kernel, "volume-b", "2", 3)
    booted(cmdline, grub_boot(g))
    assert g.booted_entry() == b
    g.mark_good(b)
    env = parse_grubenv(g.envfile.read_bytes())
    assert env == {"tether_default": b}
    assert [grub_boot(g) for _ in range(3)] == [b, b, b]


def test_mark_bad_ends_the_trial_at_once(g: GrubBoot, kernel: tuple[Path, Path], cmdline: Path) -> None:
    a = provisioned_a(g, kernel, cmdline)
    b = install(g, kernel, "volume-b", "2", 3)
    booted(cmdline, grub_boot(g))
    g.mark_bad(b)
    assert grub_boot(g) == a
    with pytest.raises(BootError, match="leaves nothing to boot"):
        g.mark_bad(a)


def test_oneshot_boots_once_without_spending_a_try(g: GrubBoot, kernel: tuple[Path, Path], cmdline: Path) -> None:
    a = provisioned_a(g, kernel, cmdline)
    b = install(g, kernel, "volume-b", "2", 2)
    g.set_oneshot(a)
    assert [e.id for e in g.entries() if e.oneshot] == [a]
    assert [grub_boot(g), grub_boot(g), grub_boot(g), grub_boot(g)] == [a, b, b, a]


def test_set_default_refuses_while_another_entry_is_on_trial(g: GrubBoot, kernel: tuple[Path, Path],
                                                             cmdline: Path) -> None:
    a = provisioned_a(g, kernel, cmdline)
    install(g, kernel, "volume-b", "2", 3)
    before = g.envfile.read_bytes()
    with pytest.raises(BootError, match="on trial"):
        g.set_default(a)
    assert g.envfile.read_bytes() == before


def test_other_grubenv_variables_are_kept(g: GrubBoot, kernel: tuple[Path, Path]) -> None:
    g.envfile.write_bytes(render_grubenv({"saved_entry": "gnulinux-simple", "next_entry": ""}))
    install(g, kernel, "volume-b", "2", 3)
    env = parse_grubenv(g.envfile.read_bytes())
    assert env["saved_entry"] == "gnulinux-simple" and env["tether_trial"] == "tether-2-volume-b"
    assert len(g.envfile.read_bytes()) == 1024


def test_reinstall_replaces_the_slot_entry_and_kernel(g: GrubBoot, kernel: tuple[Path, Path],
                                                      cmdline: Path) -> None:
    provisioned_a(g, kernel, cmdline)
    install(g, kernel, "volume-b", "2", 3)
    install(g, kernel, "volume-b", "3", 3)
    assert [e.id for e in g.entries()] == ["tether-3-volume-b", "tether-1-volume-a"]
    assert sorted(p.name for p in (g.boot_root / "tether/volume-b").iterdir()) == ["3"]


# ---- refusals ------------------------------------------------------------------------------------------------

def test_missing_grub_directory(tmp_path: Path, kernel: tuple[Path, Path]) -> None:
    g = GrubBoot(tmp_path / "notmounted", "grub")
    with pytest.raises(MissingEspError, match="no GRUB directory"):
        install(g, kernel, "volume-b", "2", 3)
    assert not (tmp_path / "notmounted").exists()


def test_grubenv_write_failure_restores_the_config(g: GrubBoot, kernel: tuple[Path, Path], cmdline: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    provisioned_a(g, kernel, cmdline)
    before_cfg, before_env = g.cfg.read_bytes(), g.envfile.read_bytes()
    real = boot_grub.write_file_atomic

    def fail_env(path: Path, data: bytes, mode: int = 0o644) -> None:
        if path.name == "grubenv":
            raise OSError(errno.EROFS, "Read-only file system")
        real(path, data, mode)
    monkeypatch.setattr(boot_grub, "write_file_atomic", fail_env)
    with pytest.raises(BootError, match="Read-only"):
        install(g, kernel, "volume-b", "2", 3)
    assert (g.cfg.read_bytes(), g.envfile.read_bytes()) == (before_cfg, before_env)
    assert not (g.boot_root / "tether/volume-b").exists() or not any((g.boot_root / "tether/volume-b").iterdir())


def test_shell_characters_in_the_command_line_are_refused(g: GrubBoot, kernel: tuple[Path, Path]) -> None:
    with pytest.raises(BootError, match="GRUB script would interpret"):
        g.install_entry("volume-b", kernel=kernel[0], initrd=None, root_partuuid=PARTUUID_B,
                        cmdline='init=/bin/sh;${x}', version="2", tries=3)
    assert not g.cfg.exists()


def test_unknown_entry_and_booted_entry_removal(g: GrubBoot, kernel: tuple[Path, Path], cmdline: Path) -> None:
    a = provisioned_a(g, kernel, cmdline)
    with pytest.raises(NoEntryError):
        g.set_oneshot("tether-9-volume-b")
    with pytest.raises(BootError, match="running system"):
        g.remove_entry(a)
    b = install(g, kernel, "volume-b", "2", 3)
    g.remove_entry(b)
    assert [e.id for e in g.entries()] == [a]
    assert "tether_trial" not in parse_grubenv(g.envfile.read_bytes())
