"""cloud-init modules tether does not implement: one warning per module, naming it (and why, for Ubuntu-only)."""

from __future__ import annotations

from tether.modules import REGISTERED
from tether.unsupported import UNSUPPORTED, unsupported_in


def test_ubuntu_only_modules_get_one_clear_warning_each():
    cfg = {"ubuntu_pro": {"token": "C1secret"}, "ubuntu_advantage": {"token": "C1secret"},
           "drivers": {"nvidia": {"license-accepted": True}}, "autoinstall": {"version": 1}}
    assert unsupported_in(cfg, set(REGISTERED)) == [
        "module ubuntu_autoinstall (key 'autoinstall') is not supported by tether (Ubuntu-only: it hands the config "
        "to Ubuntu's installer (subiquity)); skipped",
        "module ubuntu_drivers (key 'drivers') is not supported by tether (Ubuntu-only: it installs Ubuntu's "
        "proprietary drivers (the 'ubuntu-drivers' tool)); skipped",
        "module ubuntu_pro (key 'ubuntu_pro', 'ubuntu_advantage') is not supported by tether (Ubuntu-only: it "
        "attaches an Ubuntu Pro subscription (the 'pro' client)); skipped"]


def test_other_unsupported_modules_keep_the_plain_warning():
    assert unsupported_in({"salt_minion": {}}, set(REGISTERED)) == [
        "module salt_minion (key 'salt_minion') is not supported by tether; skipped"]


def test_implemented_modules_are_not_listed_as_unsupported():
    assert not set(UNSUPPORTED) & set(REGISTERED)
    for mod in ("apt_pipelining", "byobu", "ssh_import_id", "wireguard", "snap", "lxd", "ansible", "puppet", "chef"):
        assert mod in REGISTERED
    assert unsupported_in({"wireguard": {}, "chef": {}, "byobu_by_default": "enable"}, set(REGISTERED)) == []
