"""The host configuration's ``os`` section applied to a temporary root through the modules' code."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_root, needs_root, needs_tool
from tests.modules.treesnap import diff, snapshot
from tether import accounts, hostnames
from tether.engine import osconfig
from tether.engine.hostconfig import parse_host_config
from tether.target import Target

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm0dZ6oTzqcH8WjAWn7uN2x0t0mDxPpB1n6Ew0Y0B2H alice@laptop"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBb0dZ6oTzqcH8WjAWn7uN2x0t0mDxPpB1n6Ew0Y0B2H bob@laptop"
UNIT = "[Unit]\nDescription=test\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"

pytestmark = [needs_root(), needs_tool("useradd", "groupadd", "usermod", "systemctl")]


def new_root(tmp_path: Path) -> Target:
    root = make_root(tmp_path / "newroot", {
        "etc/hosts": "127.0.0.1 localhost\n127.0.1.1 image-default\n::1 localhost ip6-localhost\n",
        "etc/hostname": "# set by the image\nimage-default\n",
        "usr/lib/systemd/system/web.service": UNIT,
        "usr/lib/systemd/system/telemetry.service": UNIT,
    })
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / "telemetry.service").symlink_to("/usr/lib/systemd/system/telemetry.service")
    return Target.at(root)


def os_config(**extra: Any) -> dict[str, Any]:
    return {"os": {
        "hostname": "node-7.example.com",
        "users": [
            {"name": "alice", "sshMode": "key-only", "sshPublicKeys": [KEY_A], "secondaryGroups": ["sudo", "ops"],
             "startupCommand": "/bin/sh", "uid": 1234},
            {"name": "bob", "sshPublicKeys": [KEY_B], "homeDirectory": "/srv/bob", "primaryGroup": "users"},
        ],
        "services": {"enable": ["web"], "disable": ["telemetry.service", "absent.service"]},
        "netplan": {"version": 2, "ethernets": {"uplink": {"match": {"macaddress": "52:54:00:12:34:56"},
                                                           "set-name": "uplink", "dhcp4": True}}},
        "additionalFiles": [{"destination": "/etc/motd", "content": "welcome\n"},
                            {"destination": "/etc/app/secret.conf", "content": "token=1\n", "permissions": "0600"}],
        **extra,
    }}


def test_apply_os_users_services_netplan_files(tmp_path: Path) -> None:
    target = new_root(tmp_path)
    notes = osconfig.apply_os(target, parse_host_config(os_config()))
    root = target.root

    # hostname as set_hostname writes it (comments kept), /etc/hosts' 127.0.1.1 line replaced
    assert (root / "etc/hostname").read_text() == "# set by the image\nnode-7.example.com\n"
    hosts = (root / "etc/hosts").read_text()
    assert "127.0.1.1 node-7.example.com node-7\n" in hosts and "image-default" not in hosts
    assert hosts.startswith("127.0.0.1 localhost\n")

    # users: passwd/shadow/group entries through useradd --root
    pw = accounts.read_passwd(target)
    assert pw["alice"].uid == 1234 and pw["alice"].shell == "/bin/sh" and pw["alice"].home == "/home/alice"
    assert pw["bob"].home == "/srv/bob" and pw["bob"].gid == accounts.read_group(target)["users"].gid
    assert "debian" not in pw   # the distro's default user is cloud-config's business, not the host config's
    groups = accounts.read_group(target)
    assert "alice" in groups["sudo"].members and "alice" in groups["ops"].members
    shadow = accounts.read_shadow_hashes(target)
    assert shadow["alice"].startswith("!") and shadow["bob"].startswith("!")   # Trident: passwords are locked
    ak = root / "home/alice/.ssh/authorized_keys"
    assert ak.read_text() == KEY_A + "\n"
    st, dst = ak.stat(), ak.parent.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (1234, 0o600)
    assert (dst.st_uid, stat.S_IMODE(dst.st_mode)) == (1234, 0o700)
    # sshMode block (the default): the keys are not installed, and the notes say so
    assert not (root / "srv/bob/.ssh/authorized_keys").exists()
    assert any("os.users[bob].sshPublicKeys: not installed because sshMode is 'block'" in n for n in notes)

    # services: [Install] links made and removed by systemctl --root
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert os.readlink(wants / "web.service") == "/usr/lib/systemd/system/web.service"
    assert not (wants / "telemetry.service").is_symlink()

    # netplan: the network stage's networkd renderer (the root has no netplan), and the system config that
    # makes the first boot's network stage render the same
    net = (root / "etc/systemd/network/10-tether-uplink.network").read_text()
    assert "Name=uplink" in net and "DHCP=ipv4" in net
    link = (root / "etc/systemd/network/10-tether-uplink.link").read_text()
    assert "MACAddress=52:54:00:12:34:56" in link and "Name=uplink" in link
    assert not (root / "etc/netplan").exists()
    import yaml
    dropin = yaml.safe_load((root / osconfig.SYSTEM_CONFIG_DROPIN.lstrip("/")).read_text())
    assert dropin == {"preserve_hostname": True, "network": os_config()["os"]["netplan"]}

    # additionalFiles through write_files' writer: default 0644, permissions honoured, root-owned
    assert (root / "etc/motd").read_text() == "welcome\n"
    assert stat.S_IMODE((root / "etc/motd").stat().st_mode) == 0o644
    secret = (root / "etc/app/secret.conf").stat()
    assert stat.S_IMODE(secret.st_mode) == 0o600 and secret.st_uid == 0
    assert not [n for n in notes if "deferred" in n]


def test_apply_os_twice_changes_nothing(tmp_path: Path) -> None:
    target = new_root(tmp_path)
    hc = parse_host_config(os_config())
    osconfig.apply_os(target, hc)
    before = snapshot(target.root)
    osconfig.apply_os(target, hc)
    assert diff(before, snapshot(target.root)) == {}


def test_netplan_written_for_netplan_when_the_root_has_it(tmp_path: Path) -> None:
    target = new_root(tmp_path)
    target.write("/usr/sbin/netplan", "#!/bin/sh\n", mode=0o755)
    osconfig.apply_os(target, parse_host_config({"os": {"netplan": {"network": {"version": 2, "ethernets": {
        "eth0": {"dhcp4": True}}}}}}))
    f = target.root / "etc/netplan/50-tether.yaml"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600 and "eth0:" in f.read_text()
    assert not list((target.root / "etc/systemd").glob("network/10-tether-*"))
    # no hostname given: the first boot keeps managing it
    import yaml
    dropin = yaml.safe_load(target.read_text(osconfig.SYSTEM_CONFIG_DROPIN))
    assert "preserve_hostname" not in dropin and dropin["network"]["ethernets"] == {"eth0": {"dhcp4": True}}


def test_additional_file_from_source_keeps_its_mode(tmp_path: Path) -> None:
    target = new_root(tmp_path)
    servicing = Target.at(make_root(tmp_path / "servicing"))
    servicing.write("/opt/files/tool.sh", "#!/bin/sh\necho hi\n", mode=0o750)
    osconfig.apply_os(target, parse_host_config({"os": {"additionalFiles": [
        {"destination": "/usr/local/bin/tool", "source": "/opt/files/tool.sh"}]}}), source_root=servicing)
    tool = target.root / "usr/local/bin/tool"
    assert tool.read_text() == "#!/bin/sh\necho hi\n" and stat.S_IMODE(tool.stat().st_mode) == 0o750
    assert not target.exists(osconfig.SYSTEM_CONFIG_DROPIN)


@pytest.mark.parametrize(("os_section", "message"), [
    ({"services": {"enable": ["nosuch"]}}, "os.services: cannot enable nosuch.service: no such unit in"),
    ({"services": {"enable": ["web"], "disable": ["web"]}}, "os.services: web both enabled and disabled"),
    ({"netplan": {"version": 2, "ethernets": {"eth0": {"addresses": ["not-an-ip"]}}}}, "os.netplan:"),
    ({"users": [{"name": "carol", "sshMode": "key-only", "sshPublicKeys": ["hello"]}]},
     "os.users[carol]: sshPublicKeys[0]: not an SSH public key"),
    ({"additionalFiles": [{"destination": "/etc/x", "source": "/nonexistent/file"}]},
     "os.additionalFiles[0].source: cannot read /nonexistent/file"),
])
def test_what_cannot_be_applied_raises_naming_the_key(tmp_path: Path, os_section: dict[str, Any],
                                                       message: str) -> None:
    target = new_root(tmp_path)
    with pytest.raises(osconfig.OsConfigError) as e:
        osconfig.apply_os(target, parse_host_config({"os": os_section}))
    assert message in str(e.value)


def test_useradd_failure_names_the_user(tmp_path: Path) -> None:
    target = new_root(tmp_path)
    with pytest.raises(osconfig.OsConfigError, match=r"os.users: users\[dup\]: useradd failed"):
        osconfig.apply_os(target, parse_host_config({"os": {"users": [
            {"name": "dup", "uid": 0, "primaryGroup": "root"}]}}))


def test_kernel_command_line_is_reported_for_the_bootloader_step(tmp_path: Path) -> None:
    notes = osconfig.apply_os(new_root(tmp_path), parse_host_config(
        {"os": {"kernelCommandLine": {"extraCommandLine": ["quiet"]}}}))
    assert notes == ["os.kernelCommandLine: applied by the bootloader step"]


def test_localhost_entry_replace_mode() -> None:
    text = "127.0.0.1 localhost\n127.0.1.1 old-name\n# keep\n127.0.1.1 other\n"
    assert hostnames.ensure_localhost_entry(text, "new", "new.example") == \
        "127.0.0.1 localhost\n127.0.1.1 old-name\n# keep\n127.0.1.1 other\n127.0.1.1 new.example new\n"
    assert hostnames.ensure_localhost_entry(text, "new", "new.example", replace=True) == \
        "127.0.0.1 localhost\n127.0.1.1 new.example new\n# keep\n"
    done = "127.0.0.1 localhost\n127.0.1.1 new.example new\n"
    assert hostnames.ensure_localhost_entry(done, "new", "new.example", replace=True) is None
    assert hostnames.ensure_localhost_entry(done + "127.0.1.1 stale\n", "new", "new.example", replace=True) == done


def test_services_helper_in_a_target(tmp_path: Path) -> None:
    from tether import services
    from tether.runner import Runner
    target = new_root(tmp_path)
    services.enable_in(target, Runner(), "web")
    assert (target.root / "etc/systemd/system/multi-user.target.wants/web.service").is_symlink()
    assert services.disable_in(target, Runner(), "web") is True
    assert not (target.root / "etc/systemd/system/multi-user.target.wants/web.service").exists()
    assert services.disable_in(target, Runner(), "ghost") is False
    shutil.rmtree(target.root)


def test_kernel_modules_become_modules_load_and_modprobe_files(tmp_path: Path) -> None:
    target = new_root(tmp_path)
    notes = osconfig.apply_os(target, parse_host_config({"os": {"modules": [
        {"name": "br_netfilter", "loadMode": "always"},
        {"name": "kvm_intel", "options": {"nested": "1", "ept": "Y"}},
        {"name": "nouveau", "loadMode": "disable"},
        {"name": "vfio_pci", "loadMode": "auto"},
    ]}}))
    root = target.root
    load = (root / "etc/modules-load.d/90-tether-host-configuration.conf").read_text().splitlines()
    probe = (root / "etc/modprobe.d/90-tether-host-configuration.conf").read_text().splitlines()
    assert load[1:] == ["br_netfilter"]
    assert probe[1:] == ["options kvm_intel nested=1 ept=Y", "blacklist nouveau"]
    assert any(n.startswith("os.modules: options reach a module loaded from the initramfs") for n in notes)
    # a configuration without modules removes tether's files again (and touches no one else's)
    (root / "etc/modprobe.d/image.conf").write_text("blacklist pcspkr\n")
    osconfig.apply_os(target, parse_host_config({"os": {"hostname": "h"}}))
    assert sorted(os.listdir(root / "etc/modprobe.d")) == ["image.conf"]
    assert os.listdir(root / "etc/modules-load.d") == []


SELINUX_CONFIG = "# image default\nSELINUX=disabled\nSELINUXTYPE=targeted\n"


@pytest.mark.parametrize("mode", ["permissive", "enforcing"])
def test_selinux_mode_goes_into_the_images_config(tmp_path: Path, mode: str) -> None:
    target = new_root(tmp_path)
    target.write("/etc/selinux/config", SELINUX_CONFIG)
    notes = osconfig.apply_os(target, parse_host_config({"os": {"selinux": {"mode": mode}}}))
    assert target.read_text("/etc/selinux/config") == f"# image default\nSELINUX={mode}\nSELINUXTYPE=targeted\n"
    args = "security=selinux selinux=1" + (" enforcing=0" if mode == "permissive" else "")
    assert f"os.selinux.mode: {mode}: the boot entry gets {args} (bootloader step); the files are relabelled as " \
           "the last step" in notes


def test_selinux_disabled_leaves_the_config_to_the_command_line(tmp_path: Path) -> None:
    target = new_root(tmp_path)
    target.write("/etc/selinux/config", SELINUX_CONFIG.replace("disabled", "enforcing"))
    notes = osconfig.apply_os(target, parse_host_config({"os": {"selinux": {"mode": "disabled"}}}))
    assert "SELINUX=enforcing" in target.read_text("/etc/selinux/config")
    assert "os.selinux.mode: disabled: the boot entry gets selinux=0 (bootloader step)" in notes
    # an image without SELinux at all: disabled is fine and writes nothing
    bare = new_root(tmp_path / "bare")
    osconfig.apply_os(bare, parse_host_config({"os": {"selinux": {"mode": "disabled"}}}))
    assert not bare.exists("/etc/selinux")


def test_selinux_enabled_on_an_image_without_selinux_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(osconfig.OsConfigError, match=r"os.selinux.mode: enforcing asks for SELinux, but the image "
                       r"has no /etc/selinux/config"):
        osconfig.apply_os(new_root(tmp_path), parse_host_config({"os": {"selinux": {"mode": "enforcing"}}}))


def test_internal_params_are_noted_not_applied(tmp_path: Path) -> None:
    target = new_root(tmp_path)
    before = snapshot(target.root)
    notes = osconfig.apply_os(target, parse_host_config({"internalParams": {"x": 1}}))
    assert notes == ["internalParams: ignored (x): Trident's internal tuning knobs have no meaning for tether"]
    assert diff(before, snapshot(target.root)) == {}
