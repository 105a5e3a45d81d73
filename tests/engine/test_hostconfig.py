"""Host configuration model: the Trident corpus, unsupported features, logic checks, `tether validate`."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import compat_dir
from tether.engine.cli import add_parsers
from tether.engine.hostconfig import load_host_config, parse_host_config, to_data
from tether.engine.sizes import parse_size
from tether.errors import ConfigErrors

GOOD: dict[str, Any] = {
    "image": {"url": "file:///images/os.cosi", "sha384": "ignored"},
    "storage": {
        "disks": [{"id": "os", "device": "/dev/vdb", "partitionTableType": "gpt", "partitions": [
            {"id": "esp", "type": "esp", "size": "64M"},
            {"id": "root-a", "type": "root", "size": "2G"},
            {"id": "root-b", "type": "root", "size": "2G"},
            {"id": "state", "size": "grow"},
        ]}],
        "abUpdate": {"volumePairs": [{"id": "root", "volumeAId": "root-a", "volumeBId": "root-b"}]},
        "filesystems": [
            {"deviceId": "esp", "mountPoint": {"path": "/boot/efi", "options": "umask=0077"}},
            {"deviceId": "root", "mountPoint": "/"},
            {"deviceId": "state", "source": "new", "mountPoint": "/var/lib/tether"},
        ],
    },
    "os": {"hostname": "node-1"},
}


def errors_of(data: Any) -> list[str]:
    with pytest.raises(ConfigErrors) as e:
        parse_host_config(data)
    return [str(x) for x in e.value.errors]


def with_change(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    cur: Any = data
    keys = path.split(".")
    for k in keys[:-1]:
        cur = cur[int(k)] if k.isdigit() else cur[k]
    last = keys[-1]
    if value is _DELETE:
        del cur[last]
    elif last.isdigit():
        cur[int(last)] = value
    else:
        cur[last] = value
    return data


_DELETE = object()


def trident_configs() -> list[Path]:
    base = compat_dir("trident")
    return sorted(p for p in base.rglob("*.yaml") if "Host-Configuration" in str(p) or p.name == "trident-config.yaml")


def test_every_trident_config_loads_or_names_an_unsupported_key() -> None:
    files = trident_configs()
    assert len(files) >= 20
    loaded = []
    for f in files:
        try:
            load_host_config(f.read_bytes(), str(f))
            loaded.append(f.name)
        except ConfigErrors as e:
            for err in e.errors:
                assert "not supported" in err.message, f"{f}: {err}"
                assert err.path and err.path != "(top)", f"{f}: {err}"
    assert "basic.yaml" in loaded and "simple.yaml" in loaded


def test_trident_configs_without_selinux_load() -> None:
    # Most e2e configs are rejected only for SELinux; the rest of each must be understood, not just tolerated.
    for name in ("base", "extensions", "health-checks-install", "simple", "split"):
        f = compat_dir("trident") / "tests/e2e_tests/trident_configurations" / name / "trident-config.yaml"
        data = yaml.safe_load(f.read_text())
        del data["os"]["selinux"]
        hc = parse_host_config(data, str(f))
        assert hc.storage.filesystems


def test_health_checks_in_both_spellings() -> None:
    data = copy.deepcopy(GOOD)
    data["health"] = {"checks": [
        {"name": "flat", "content": "true", "runOn": ["ab-update"]},
        {"Script": {"name": "tagged", "path": "/usr/bin/check"}},
        {"SystemdCheck": {"name": "units", "systemdServices": ["sshd"], "timeoutSeconds": 5}},
    ]}
    hc = parse_host_config(data)
    assert [c.name for c in hc.health.checks] == ["flat", "tagged", "units"]
    assert hc.health.checks[2].systemd_services == ("sshd",)


@pytest.mark.parametrize("path,value,expect", [
    ("storage.raid", {"software": [{"id": "r", "name": "r", "level": "raid1", "devices": ["a", "b"]}]},
     "storage.raid: software RAID is not supported"),
    ("storage.encryption", {"volumes": [], "pcrs": [7]}, "storage.encryption: encryption is not supported"),
    ("storage.verity", [{"id": "v", "name": "root", "dataDeviceId": "a", "hashDeviceId": "b"}],
     "storage.verity: dm-verity is not supported"),
    ("os.sysexts", [{"url": "file:///x.raw", "sha384": "a" * 96}], "os.sysexts: systemd system extensions"),
    ("os.confexts", [{"url": "file:///x.raw", "sha384": "a" * 96}], "os.confexts: systemd configuration"),
    ("managementOs", {"users": [{"name": "x"}]}, "managementOs: configuring the management OS is not supported by "
     "tether: managementOs sets users and netplan of Trident's own installer image"),
    ("storage.filesystems.2.type", "ntfs", "storage.filesystems[2].type: filesystem type ntfs is not supported by "
     "tether: the engine creates only ext4, xfs, vfat and swap"),
])
def test_unsupported_features_are_named(path: str, value: Any, expect: str) -> None:
    errs = errors_of(with_change(path, value))
    assert any(expect in e for e in errs), errs


def test_empty_unsupported_sections_ask_for_nothing() -> None:
    data = with_change("os.selinux", {"mode": None})
    data["storage"]["raid"] = {"software": []}
    assert parse_host_config(data).os.hostname == "node-1"


@pytest.mark.parametrize("path,value,expect", [
    ("storage.disks.0.partitions.2.size", "1G", "differ in size"),
    ("storage.disks.0.partitions.2.type", "home", "differ in partition type"),
    ("storage.disks.0.partitions.1.id", "esp", "id 'esp' is already used at storage.disks[0].partitions[0].id"),
    ("storage.disks.0.partitions.0.size", "grow", "only the last partition of a disk can grow"),
    ("storage.disks.0.partitions.0.size", "10Q", "is not a size"),
    ("storage.disks.0.partitions.0.size", 1000, "multiple of 4096"),
    ("storage.filesystems.1.mountPoint", "/boot/efi", "is already the mount point"),
    ("storage.filesystems.2.mountPoint", "var/lib", "is not an absolute path"),
    ("storage.filesystems.2.mountPoint", "/var/../lib", "not a normalized path"),
    ("storage.filesystems.1.deviceId", "root-a", "belongs to volume pair 'root'"),
    ("storage.filesystems.1.deviceId", "nope", "'nope' is not a partition or A/B volume pair id"),
    ("storage.filesystems.1.mountPoint", "/srv", "exactly one filesystem must be mounted at '/'"),
    ("storage.filesystems.2.mountPoint", "/srv", "servicing datastore"),
    ("storage.abUpdate.volumePairs.0.volumeBId", "root-a", "is already in volume pair"),
    ("image.sha384", "abc", "expected 96 hex digits"),
    ("image.url", "ftp://host/os.cosi", "only file://, http://, https:// and oci://"),
    ("image", _DELETE, "filesystems with source 'image' need an image"),
    ("os.hostname", "bad_host!", "not a valid host name"),
    ("storage.disks.0.partitions.0.bogus", 1, "storage.disks[0].partitions[0].bogus: unknown key"),
])
def test_logic_errors_name_the_key(path: str, value: Any, expect: str) -> None:
    errs = errors_of(with_change(path, value))
    assert any(expect in e for e in errs), errs


def test_round_trip_through_plain_data() -> None:
    hc = parse_host_config(GOOD)
    again = parse_host_config(to_data(hc))
    assert again == hc
    assert to_data(hc)["storage"]["abUpdate"]["volumePairs"][0]["volumeAId"] == "root-a"


def test_sizes() -> None:
    assert parse_size("8G") == 8 << 30
    assert parse_size("512 M") == 512 << 20
    assert parse_size(4096) == 4096
    with pytest.raises(ValueError):
        parse_size("1.5G")


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default="/")
    parser.add_argument("--debug", action="store_true")
    add_parsers(parser.add_subparsers(dest="verb"))
    return parser.parse_args(argv)


def test_validate_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(GOOD))
    args = _cli(["validate", str(good)])
    assert args.func(args) == 0
    assert "valid" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(with_change("os.sysexts", [{"url": "file:///x.raw", "sha384": "a" * 96}])))
    args = _cli(["validate", str(bad)])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert f"{bad}: os.sysexts: systemd system extensions (sysexts) is not supported by tether" in err


def test_validate_cli_reports_yaml_position(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("storage:\n  disks: [\n")
    args = _cli(["validate", str(f)])
    assert args.func(args) == 1
    assert "line" in capsys.readouterr().err


# ---- os keys ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["disabled", "permissive", "enforcing"])
def test_selinux_modes_are_accepted(mode: str) -> None:
    assert parse_host_config(with_change("os.selinux", {"mode": mode})).os.selinux.mode == mode  # type: ignore[union-attr]


def test_selinux_mode_must_be_one_of_trident_modes() -> None:
    errs = errors_of(with_change("os.selinux", {"mode": "strict"}))
    assert any(e.startswith("host configuration: os.selinux.mode:") for e in errs), errs


@pytest.mark.parametrize("given,expect", [
    (None, "conservative"), ("conservative", "conservative"), ("optimistic", "optimistic"), ("disabled", "disabled"),
    # the names of earlier Trident releases mean the same modes
    ("rollback", "conservative"), ("rollforward", "optimistic"), ("none", "disabled"),
])
def test_uefi_fallback_modes(given: str | None, expect: str) -> None:
    data = copy.deepcopy(GOOD)
    if given is not None:
        data["os"]["uefiFallback"] = given
    assert parse_host_config(data).os.uefi_fallback == expect


def test_uefi_fallback_rejects_an_unknown_mode() -> None:
    errs = errors_of(with_change("os.uefiFallback", "sometimes"))
    assert any("os.uefiFallback" in e for e in errs), errs


def test_kernel_modules_model() -> None:
    hc = parse_host_config(with_change("os.modules", [
        {"name": "br_netfilter", "loadMode": "always"},
        {"name": "nouveau", "loadMode": "disable"},
        {"name": "kvm_intel", "options": {"nested": "1"}},
    ]))
    assert [(m.name, m.load_mode, m.options) for m in hc.os.modules] == [
        ("br_netfilter", "always", {}), ("nouveau", "disable", {}), ("kvm_intel", "inherit", {"nested": "1"})]


@pytest.mark.parametrize("modules,expect", [
    ([{"name": "bad name"}], "os.modules[0]: name: 'bad name' is not a kernel module name"),
    ([{"name": "m", "options": {"a": "x y"}}], "os.modules[0]: options.a: 'x y' must be a non-empty value"),
    ([{"name": "m", "loadMode": "sometimes"}], "os.modules[0].loadMode"),
    ([{"name": "m"}, {"name": "m", "loadMode": "always"}], "os.modules[1].name: module 'm' is already configured "
     "at os.modules[0]"),
])
def test_kernel_module_errors_name_the_key(modules: list[dict[str, Any]], expect: str) -> None:
    errs = errors_of(with_change("os.modules", modules))
    assert any(expect in e for e in errs), errs


def test_internal_params_are_accepted_with_a_note() -> None:
    from tether.engine.hostcheck import config_notes

    data = copy.deepcopy(GOOD)
    data["internalParams"] = {"writableEtcOverlayHooks": True, "disableHostnameCheck": True}
    hc = parse_host_config(data)
    notes = config_notes(hc)
    assert notes == ["internalParams: ignored (disableHostnameCheck, writableEtcOverlayHooks): Trident's internal "
                     "tuning knobs have no meaning for tether"]
    assert config_notes(parse_host_config(GOOD)) == []


# ---- validation parity -------------------------------------------------------------------------------------

def test_checks_go_on_after_an_unsupported_key() -> None:
    # One run names the unsupported feature and the unrelated mistakes; a reference to the cut-out RAID array
    # is not echoed as an unknown id.
    data = with_change("os.hostname", "bad_host!")
    data["storage"]["raid"] = {"software": [{"id": "md-home", "name": "home", "level": "raid1",
                                             "devices": ["state", "state"]}]}
    data["storage"]["filesystems"].append({"deviceId": "md-home", "source": "new", "mountPoint": "/home"})
    data["storage"]["filesystems"][1]["mountPoint"] = "/srv/../srv"
    errs = errors_of(data)
    assert any("storage.raid: software RAID is not supported by tether" in e for e in errs), errs
    assert any("os.hostname: 'bad_host!' is not a valid host name" in e for e in errs), errs
    assert any("storage.filesystems[1].mountPoint: '/srv/../srv' is not a normalized path" in e for e in errs), errs
    assert not any("md-home" in e for e in errs), errs


def test_oci_references_load_and_bad_ones_are_named() -> None:
    hc = parse_host_config(with_change("image.url", "oci://registry.example.com:5000/os/cosi@sha256:" + "a" * 64))
    assert hc.image is not None and hc.image.url.startswith("oci://registry.example.com:5000/")
    errs = errors_of(with_change("image.url", "oci://puller:s3cret@registry/os:1"))
    assert any("image: url: oci://registry/…: credentials do not go in the URL" in e for e in errs), errs
    assert not any("s3cret" in e for e in errs), errs
    errs = errors_of(with_change("image.url", "oci://registry/OS:1"))
    assert any("image: url: " in e and "'OS' is not a repository name" in e for e in errs), errs


def _esp_fs() -> dict[str, Any]:
    return {"deviceId": "esp", "mountPoint": {"path": "/boot/efi", "options": "umask=0077"}}


@pytest.mark.parametrize("change,expect", [
    (lambda d: d["storage"]["filesystems"].pop(0),
     "storage.filesystems: no EFI system partition: mount a partition of type esp at /boot/efi"),
    (lambda d: d["storage"]["disks"][0]["partitions"][0].update(type="linux-generic"),
     "storage.filesystems[0].deviceId: the ESP mounted at /boot/efi must be a partition of type esp"),
    (lambda d: d["storage"]["filesystems"][0].update(deviceId="root") or d["storage"]["filesystems"][1].update(
        deviceId="esp"),
     "storage.filesystems[0].deviceId: the ESP cannot be on A/B volume pair 'root'"),
    (lambda d: d["storage"]["filesystems"][1].update(deviceId="state") or d["storage"]["filesystems"][2].update(
        deviceId="root"),
     "storage.filesystems[1].deviceId: with abUpdate configured, '/' must be on an A/B volume pair"),
    (lambda d: d["storage"]["filesystems"].append({"deviceId": "state2", "source": "new", "mountPoint": {
        "path": "/var", "options": "ro,noatime"}}) or d["storage"]["disks"][0]["partitions"].insert(
        3, {"id": "state2", "size": "1G"}),
     "storage.filesystems[3].mountPoint.options: /var/tmp must be writable, but the filesystem holding it (/var) "
     "is mounted read-only"),
    (lambda d: d["storage"]["disks"].append({"id": "other", "device": "/dev/vdb", "partitions": []}),
     "storage.disks[1].device: '/dev/vdb' is already the device of storage.disks[0]"),
    (lambda d: d["storage"]["disks"][0]["partitions"][0].update(uuid="not-a-uuid"),
     "storage.disks[0].partitions[0].uuid: 'not-a-uuid' is not a UUID"),
    (lambda d: [p.update(uuid="0FC63DAF-8483-4772-8E79-3D69D8477DE4") for p in d["storage"]["disks"][0]["partitions"]],
     "storage.disks[0].partitions[1].uuid: '0FC63DAF-8483-4772-8E79-3D69D8477DE4' is already the UUID of "
     "storage.disks[0].partitions[0]"),
    (lambda d: d["storage"]["filesystems"].append({"source": "new", "type": "tmpfs"}),
     "storage.filesystems[3].mountPoint: missing: a tmpfs filesystem needs a mount point"),
    (lambda d: d["os"].update(netplan={"version": 1, "config": []}), "os.netplan.version: must be 2"),
    (lambda d: d["os"].update(netplan={"network": {"version": 2, "renderer": "NetworkManager"}}),
     "os.netplan.renderer: NetworkManager is not supported"),
    (lambda d: d["os"].update(netplan={"version": 2, "ethernets": {"eth*": {"dhcp4": True}}}),
     "os.netplan.ethernets.eth*: 'eth*' is not a valid device id"),
    (lambda d: d["os"].update(additionalFiles=[{"destination": "/etc/x", "source": "files/x"}]),
     "os.additionalFiles[0].source: 'files/x' is not an absolute path"),
    (lambda d: d.update(scripts={"postConfigure": [{"name": "s", "path": "s.sh"}]}),
     "scripts.postConfigure[0].path: 's.sh' is not an absolute path"),
])
def test_trident_validation_rules(change: Any, expect: str) -> None:
    data = copy.deepcopy(GOOD)
    change(data)
    errs = errors_of(data)
    assert any(expect in e for e in errs), errs


def test_efi_mount_is_an_esp_too() -> None:
    # tether also takes /efi (systemd's preferred ESP mount point) where Trident names /boot/efi
    data = copy.deepcopy(GOOD)
    data["storage"]["filesystems"][0]["mountPoint"] = "/efi"
    assert parse_host_config(data).storage.filesystems[0].mount.path == "/efi"  # type: ignore[union-attr]


def test_trident_configs_with_selinux_and_modules_load_as_they_are() -> None:
    # the e2e configurations Trident's own tests validate, SELinux enforcing and os.modules included
    e2e = compat_dir("trident") / "tests/e2e_tests/trident_configurations"
    for name in ("base", "extensions", "health-checks-install", "simple", "split"):
        hc = load_host_config((e2e / name / "trident-config.yaml").read_bytes(), name)
        expect = "permissive" if name == "extensions" else "enforcing"  # Trident: no enforcing with sysexts
        assert hc.os.selinux is not None and hc.os.selinux.mode == expect, name
    errs = errors_of(yaml.safe_load((e2e / "misc/trident-config.yaml").read_text()))
    assert len(errs) == 1 and "storage.filesystems[2].type: filesystem type ntfs is not supported" in errs[0], errs
    data = yaml.safe_load((e2e / "misc/trident-config.yaml").read_text())
    del data["storage"]["filesystems"][2]
    hc = parse_host_config(data)
    assert [(m.name, m.load_mode, m.options) for m in hc.os.modules] == [
        ("test-module", "always", {"option1": "value1", "option2": "value2"})]
