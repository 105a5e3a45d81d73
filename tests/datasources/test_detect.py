"""tether.detect on fake sysroots: disable switches, ds= on the kernel command line, DMI, labels, seeds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.datasources.conftest import write_tree
from tests.fakes import FakeRunner
from tether.detect import Detection, detect, evidence, kernel_datasource, read_detection, write_detection
from tether.host import Host
from tether.target import Target

DMI = "sys/class/dmi/id/"


def host(root: Path, files: dict[str, str] | None = None) -> Host:
    write_tree(root, files or {})
    return Host(sysroot=root, runner=FakeRunner())


def label(root: Path, name: str, dev: str = "vdb") -> None:
    (root / "dev").mkdir(exist_ok=True)
    (root / "dev" / dev).write_text("")
    d = root / "dev/disk/by-label"
    d.mkdir(parents=True, exist_ok=True)
    (d / name).symlink_to(f"../../{dev}")


@pytest.mark.parametrize("files, expected", [
    ({DMI + "sys_vendor": "Amazon EC2\n"}, ["Ec2", "None"]),
    ({DMI + "product_uuid": "EC2E1916-9099-7CAF-FD21-012345ABCDEF", DMI + "product_serial": "ec2e1916-9099"},
     ["Ec2", "None"]),
    ({"sys/hypervisor/uuid": "ec2e1916-9099-7caf-fd21-012345abcdef\n"}, ["Ec2", "None"]),
    ({DMI + "product_name": "Google Compute Engine\n"}, ["GCE", "None"]),
    ({DMI + "chassis_asset_tag": "7783-7084-3265-9085-8269-3286-77\n"}, ["Azure", "None"]),
    ({DMI + "product_name": "OpenStack Nova\n"}, ["OpenStack", "None"]),
    ({DMI + "chassis_asset_tag": "OpenStack Compute\n"}, ["OpenStack", "None"]),
    # NoCloud's seedfrom URL is its network part's (NoCloudNet, the network stage)
    ({DMI + "product_serial": "ds=nocloud;s=http://10.0.0.1/\n"}, ["NoCloudNet", "None"]),
    ({DMI + "product_serial": "ds=nocloud;s=file:///srv/seed/\n"}, ["NoCloud", "None"]),
    ({"var/lib/cloud/seed/nocloud/meta-data": "instance-id: x\n"}, ["NoCloud", "None"]),
    ({"var/lib/tether/seed/nocloud/user-data": "#cloud-config\n"}, ["NoCloud", "None"]),
    ({"var/lib/cloud/seed/nocloud-net/meta-data": "instance-id: x\n"}, ["NoCloud", "None"]),
    ({}, ["None"]),
    # a random UUID starting with ec2 alone is not enough
    ({DMI + "product_uuid": "ec2a0000-0000-0000-0000-000000000000", DMI + "product_serial": "VMware-1"}, ["None"]),
])
def test_candidates_from_dmi_and_seeds(tmp_path, files, expected):
    det = detect(host(tmp_path, files), {})
    assert det.enabled
    assert det.candidates == expected


def test_labels(tmp_path):
    label(tmp_path, "cidata")
    label(tmp_path, "config-2", "vdc")
    det = detect(host(tmp_path, {DMI + "product_name": "OpenStack Nova"}), {})
    assert det.candidates == ["NoCloud", "ConfigDrive", "OpenStack", "None"]
    assert "filesystem label cidata" in det.evidence["NoCloud"]


def test_uppercase_label(tmp_path):
    label(tmp_path, "CIDATA")
    assert detect(host(tmp_path), {}).candidates == ["NoCloud", "None"]


def test_datasource_list_narrows_and_orders(tmp_path):
    label(tmp_path, "cidata")
    h = host(tmp_path, {DMI + "sys_vendor": "Amazon EC2"})
    assert detect(h, {"datasource_list": ["Ec2", "NoCloud", "None"]}).candidates == ["Ec2", "NoCloud", "None"]
    assert detect(h, {"datasource_list": ["ConfigDrive", "GCE", "None"]}).candidates == ["None"]


def test_single_entry_list_is_trusted(tmp_path):
    det = detect(host(tmp_path), {"datasource_list": ["ec2", "None"]})
    assert det.candidates == ["Ec2", "None"] and "only Ec2" in det.reason


def test_unknown_list_entries_reported(tmp_path):
    det = detect(host(tmp_path, {DMI + "sys_vendor": "Amazon EC2"}), {"datasource_list": ["Oracle", "Ec2", "GCE"]})
    assert det.candidates == ["Ec2", "None"] and "Oracle" in det.reason


@pytest.mark.parametrize("cmdline, expected", [
    ("root=/dev/vda1 ds=nocloud;s=http://10.0.0.2:8000/", ["NoCloudNet", "None"]),
    ("ds=nocloud-net", ["NoCloud", "None"]),
    ("ds=ec2 quiet", ["Ec2", "None"]),
    ("ci.ds=GCE", ["GCE", "None"]),
    ("ci.datasource=Azure", ["Azure", "None"]),
    ("ds=none", ["None"]),
])
def test_kernel_ds_wins(tmp_path, cmdline, expected):
    h = host(tmp_path, {"proc/cmdline": cmdline, DMI + "sys_vendor": "Amazon EC2"})
    det = detect(h, {"datasource_list": ["OpenStack", "Ec2", "None"]})
    assert det.candidates == expected
    assert det.reason.startswith("kernel command line ds=")


def test_unknown_kernel_ds_falls_back_to_evidence(tmp_path):
    det = detect(host(tmp_path, {"proc/cmdline": "ds=bogus", DMI + "sys_vendor": "Amazon EC2"}), {})
    assert det.candidates == ["Ec2", "None"] and "ignored unknown kernel ds=bogus" in det.reason


def test_kernel_datasource_parsing(tmp_path):
    assert kernel_datasource(host(tmp_path, {"proc/cmdline": "ds=nocloud;s=/x/ ds=ec2"})) == ("Ec2", "ec2")


@pytest.mark.parametrize("files, reason", [
    ({"proc/cmdline": "quiet tether=disabled"}, "kernel command line tether=disabled"),
    ({"proc/cmdline": "cloud-init=disabled"}, "kernel command line cloud-init=disabled"),
    ({"etc/tether/disabled": ""}, "/etc/tether/disabled exists"),
])
def test_disabled(tmp_path, files, reason):
    det = detect(host(tmp_path, files), {})
    assert det.enabled is False and det.candidates == [] and det.reason == reason


def test_kernel_enabled_beats_disabled_file(tmp_path):
    det = detect(host(tmp_path, {"etc/tether/disabled": "", "proc/cmdline": "tether=enabled"}), {})
    assert det.enabled


def test_disabled_file_under_separate_target(tmp_path):
    sysroot, target = tmp_path / "sys", tmp_path / "target"
    write_tree(target, {"etc/tether/disabled": ""})
    sysroot.mkdir()
    assert not detect(Host(sysroot=sysroot), {}, Target.at(target)).enabled
    assert detect(Host(sysroot=sysroot), {}).enabled


def test_write_and_read_detection(tmp_path):
    det = detect(host(tmp_path, {DMI + "sys_vendor": "Amazon EC2"}), {})
    path = write_detection(Target.at(tmp_path), det)
    assert path == tmp_path / "run/tether/detect.json"
    data = json.loads(path.read_text())
    assert data["enabled"] is True and data["candidates"] == ["Ec2", "None"]
    assert data["evidence"]["Ec2"] == "DMI sys_vendor=Amazon EC2"
    assert read_detection(Target.at(tmp_path)) == det
    assert read_detection(Target.at(tmp_path / "nowhere")) is None


def test_evidence_is_what_datasources_use(tmp_path):
    h = host(tmp_path, {DMI + "sys_vendor": "Amazon EC2"})
    assert evidence("Ec2", h) == "DMI sys_vendor=Amazon EC2"
    assert evidence("GCE", h) is None
    h2 = host(tmp_path / "b", {"proc/cmdline": "ds=gce"})
    assert evidence("GCE", h2) == "kernel command line ds=gce"


def test_detect_imports_only_stdlib_and_light_tether():
    code = ("import sys, tether.detect; bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('yaml', 'urllib3', 'requests', 'http', 'jinja2', 'pyroute2') or m in ('tether.http', "
            "'tether.yamlsafe', 'urllib.request')); print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_main_writes_json(tmp_path, capsys):
    from tether.detect import main
    write_tree(tmp_path, {DMI + "product_name": "Google Compute Engine"})
    assert main([str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["candidates"] == ["GCE", "None"]
    assert (tmp_path / "run/tether/detect.json").exists()
    assert isinstance(read_detection(Target.at(tmp_path)), Detection)


def test_refusals_are_recorded_with_what_was_looked_for(tmp_path):
    det = detect(host(tmp_path, {DMI + "sys_vendor": "QEMU\n"}), {"datasource_list": ["Ec2", "NoCloud", "None"]})
    assert det.candidates == ["None"]
    assert det.refused["Ec2"].startswith("not its platform (DMI sys_vendor=QEMU, DMI board_vendor=(none)")
    assert "no filesystem labelled cidata" in det.refused["NoCloud"]
    assert det.refused["NoCloudNet"] == "no seedfrom starting http:// or https://"
    assert json.loads(det.to_json())["refused"] == det.refused


def test_seedfrom_credentials_stay_out_of_detect_json(tmp_path):
    h = host(tmp_path, {"proc/cmdline": "ds=nocloud;s=https://user:secret@seed.example/x/?token=abc"})
    det = detect(h, {})
    assert det.candidates == ["NoCloudNet", "None"]
    assert det.evidence == {"NoCloudNet": "seedfrom https://seed.example/x/ (kernel command line)"}
    serial = {DMI + "product_serial": "ds=nocloud;s=https://user:secret@seed.example/x/"}
    det = detect(host(tmp_path / "b", serial), {"datasource_list": ["NoCloud", "GCE"]})
    assert det.candidates == ["NoCloudNet", "None"] and "secret" not in det.to_json()
    assert det.refused["GCE"].endswith("DMI product_serial=ds=nocloud)")
    assert det.refused["NoCloud"].startswith("no filesystem labelled cidata; no seed in ")  # its platform matched


def test_system_config_seedfrom_and_fs_label_count(tmp_path):
    label(tmp_path, "MYSEED")
    h = host(tmp_path)
    assert detect(h, {}).candidates == ["None"]
    cfg = {"datasource": {"NoCloud": {"fs_label": "myseed"}}}
    assert detect(h, cfg).evidence == {"NoCloud": f"filesystem label myseed on {tmp_path}/dev/disk/by-label/MYSEED"}
    cfg = {"datasource": {"NoCloud": {"seedfrom": "http://10.0.0.1/seed/"}}}
    assert detect(h, cfg).candidates == ["NoCloudNet", "None"]
