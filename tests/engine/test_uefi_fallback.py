"""os.uefiFallback: when the firmware's removable-media path EFI/BOOT/BOOTX64.EFI is written, per boot loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.engine.boot_systemd import SystemdBoot
from tether.engine.boot_uefi import EfiVars
from tether.engine.bootsetup import fallback_action, fallback_boots

BINARY = b"MZ" + b"\1" * 64


@pytest.mark.parametrize("mode,operation,step,expect", [
    ("conservative", "clean-install", "finalize", "new"),
    ("optimistic", "clean-install", "finalize", "new"),
    ("disabled", "clean-install", "finalize", None),
    ("conservative", "clean-install", "commit", None),
    ("conservative", "ab-update", "finalize", "running"),
    ("conservative", "ab-update", "commit", "new"),
    ("optimistic", "ab-update", "finalize", "new"),
    ("optimistic", "ab-update", "commit", None),
    ("disabled", "ab-update", "finalize", None),
    ("disabled", "ab-update", "commit", None),
    ("conservative", "rollback", "finalize", "running"),
])
def test_which_os_the_fallback_path_boots(mode: str, operation: str, step: str, expect: str | None) -> None:
    assert fallback_boots(mode, operation, step) == expect


def test_systemd_boot_writes_the_fallback_at_a_clean_install_only_when_asked() -> None:
    assert fallback_action("systemd-boot", "conservative", "clean-install", "finalize") == (True, None)
    assert fallback_action("systemd-boot", "optimistic", "clean-install", "finalize") == (True, None)
    assert fallback_action("systemd-boot", "disabled", "clean-install", "finalize") == (False, None)
    # an update shares the ESP's systemd-boot: nothing to move, whatever the mode
    for mode in ("conservative", "optimistic", "disabled"):
        for step in ("finalize", "commit"):
            assert fallback_action("systemd-boot", mode, "ab-update", step) == (False, None)


def test_grub_and_uefi() -> None:
    assert fallback_action("grub", "optimistic", "ab-update", "finalize") == (False, None)
    write, note = fallback_action("uefi", "conservative", "clean-install", "finalize")
    assert not write and note is not None and note.startswith("os.uefiFallback: conservative: the uefi (BootNext)")
    assert fallback_action("uefi", "disabled", "clean-install", "finalize") == (False, None)


def _esp(tmp_path: Path) -> tuple[Path, Path, SystemdBoot]:
    esp = tmp_path / "esp"
    esp.mkdir()
    binary = tmp_path / "systemd-bootx64.efi"
    binary.write_bytes(BINARY)
    return esp, binary, SystemdBoot(esp, EfiVars(tmp_path / "efivars"))


def test_install_loader_without_the_fallback_path(tmp_path: Path) -> None:
    esp, binary, sd = _esp(tmp_path)
    sd.install_loader(binary, fallback=False)
    assert (esp / "EFI/systemd/systemd-bootx64.efi").read_bytes() == BINARY
    assert not (esp / "EFI/BOOT").exists()
    sd.check_esp()


def test_disabled_leaves_someone_elses_fallback_alone(tmp_path: Path) -> None:
    esp, binary, sd = _esp(tmp_path)
    (esp / "EFI/BOOT").mkdir(parents=True)
    (esp / "EFI/BOOT/BOOTX64.EFI").write_bytes(b"other loader")
    sd.install_loader(binary, fallback=False)
    assert (esp / "EFI/BOOT/BOOTX64.EFI").read_bytes() == b"other loader"
    sd.install_loader(binary)  # the default (conservative) takes the path over
    assert (esp / "EFI/BOOT/BOOTX64.EFI").read_bytes() == BINARY


@pytest.mark.parametrize("mode,written", [("conservative", True), ("disabled", False)])
def test_clean_install_finalize_honours_the_mode(tmp_path: Path, mode: str, written: bool) -> None:
    """The clean install's boot loader step passes os.uefiFallback on: disabled leaves EFI/BOOT alone."""
    from tether.engine.bootsetup import SYSTEMD_BOOT_EFI, Machine
    from tether.engine.finalize import ServicingEnv, _install_backend
    from tether.runner import Runner
    from tether.target import Target

    root = Target.at(tmp_path / "root")
    root.write(SYSTEMD_BOOT_EFI, BINARY)
    esp = tmp_path / "esp"
    esp.mkdir()
    m = tmp_path / "machine"
    env = ServicingEnv(root=root, runner=Runner(), backend_name="systemd-boot",
                       machine=Machine(cmdline=m / "cmdline", boot_id=m / "boot_id", efivars=m / "efivars"))
    _backend, name = _install_backend(env, root, esp, mode)
    assert name == "systemd-boot"
    assert (esp / "EFI/systemd/systemd-bootx64.efi").read_bytes() == BINARY
    assert (esp / "EFI/BOOT/BOOTX64.EFI").exists() == written
