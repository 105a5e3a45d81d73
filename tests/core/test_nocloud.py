"""NoCloud and ConfigDrive: every way a seed can arrive, and the bad ones."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.datasource import DsContext
from tether.datasources.nocloud import NoCloud, NoCloudNet, parse_ds_arg
from tether.errors import DatasourceError
from tether.host import Host
from tether.runner import Runner
from tether.target import Target


def ctx(root: Path, sysroot: Path, settings: dict | None = None, deadline: float | None = None) -> DsContext:
    return DsContext(Host(sysroot=sysroot), Target.at(root), Runner(), settings or {}, deadline)


def fake_sys(tmp_path: Path, cmdline: str = "", serial: str = "", labels: dict[str, dict[str, str]] | None = None
             ) -> Path:
    sysroot = tmp_path / "sys"
    (sysroot / "proc").mkdir(parents=True)
    (sysroot / "proc/cmdline").write_text(cmdline + "\n")
    dmi = sysroot / "sys/class/dmi/id"
    dmi.mkdir(parents=True)
    if serial:
        (dmi / "product_serial").write_text(serial + "\n")
    for label, files in (labels or {}).items():
        d = sysroot / "dev/disk/by-label" / label
        d.mkdir(parents=True)
        for name, text in files.items():
            (d / name).write_text(text)
    return sysroot


def test_parse_ds_arg() -> None:
    assert parse_ds_arg("nocloud;s=http://10.0.0.1:8000/seed/;i=abc;h=web1") == (
        "nocloud", {"seedfrom": "http://10.0.0.1:8000/seed/", "instance-id": "abc", "local-hostname": "web1"})
    assert parse_ds_arg("nocloud-net;seedfrom=file:///x") == ("nocloud-net", {"seedfrom": "file:///x"})


def test_label_is_matched_case_insensitively(tmp_path: Path) -> None:
    sysroot = fake_sys(tmp_path, labels={"CIDATA": {"meta-data": "instance-id: i-1\n",
                                                    "user-data": "#cloud-config\n{}\n"}})
    ds = NoCloud(ctx(tmp_path / "root", sysroot))
    assert ds.detect()
    inst = ds.fetch()
    assert inst.instance_id == "i-1"
    assert inst.subplatform.startswith("config-disk (")
    assert inst.userdata == b"#cloud-config\n{}\n"


def test_seed_dir_and_cmdline_overrides(tmp_path: Path) -> None:
    root = tmp_path / "root"
    seed = root / "var/lib/cloud/seed/nocloud"
    seed.mkdir(parents=True)
    (seed / "meta-data").write_text("instance-id: from-seed\nlocal-hostname: seedhost\n")
    sysroot = fake_sys(tmp_path, cmdline="ro ds=nocloud;h=cmdhost")
    inst = NoCloud(ctx(root, sysroot)).fetch()
    assert inst.instance_id == "from-seed"
    assert inst.local_hostname == "cmdhost"
    assert inst.userdata is None


def test_smbios_serial_with_file_seedfrom(tmp_path: Path) -> None:
    root = tmp_path / "root"
    seed = root / "srv/seed"
    seed.mkdir(parents=True)
    (seed / "meta-data").write_text("instance-id: via-serial\n")
    sysroot = fake_sys(tmp_path, serial="ds=nocloud;s=file:///srv/seed/")
    ds = NoCloud(ctx(root, sysroot))
    assert ds.detect()
    assert ds.fetch().instance_id == "via-serial"


def test_bad_meta_data_is_a_clear_error(tmp_path: Path) -> None:
    sysroot = fake_sys(tmp_path, labels={"cidata": {"meta-data": "instance-id: [unclosed\n"}})
    with pytest.raises(DatasourceError, match=r"by-label/cidata/meta-data: invalid YAML: line 2"):
        NoCloud(ctx(tmp_path / "root", sysroot)).fetch()


class SeedHandler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    delay = 0.0

    def do_GET(self) -> None:
        time.sleep(self.delay)
        body = self.files.get(self.path.rsplit("/", 1)[-1])
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def seed_server() -> Iterator[tuple[str, type[SeedHandler]]]:
    handler = type("H", (SeedHandler,), {"files": {}, "delay": 0.0})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/seed/", handler
    srv.shutdown()
    srv.server_close()


def test_seedfrom_http(tmp_path: Path, seed_server: tuple[str, type[SeedHandler]]) -> None:
    url, handler = seed_server
    handler.files = {"meta-data": b"instance-id: net-1\n", "user-data": b"#cloud-config\nruncmd: [ls]\n",
                     "network-config": json.dumps({"version": 2, "ethernets": {}}).encode()}
    sysroot = fake_sys(tmp_path, cmdline=f"ds=nocloud-net;s={url}")
    assert not NoCloud(ctx(tmp_path / "root", sysroot)).detect()
    ds = NoCloudNet(ctx(tmp_path / "root", sysroot))
    assert ds.detect()
    inst = ds.fetch()
    assert inst.instance_id == "net-1"
    assert inst.network_config == {"version": 2, "ethernets": {}}
    assert inst.vendordata is None


def test_unreachable_seedfrom_is_bounded(tmp_path: Path, seed_server: tuple[str, type[SeedHandler]]) -> None:
    url, handler = seed_server
    handler.delay = 30
    sysroot = fake_sys(tmp_path, cmdline=f"ds=nocloud;s={url}")
    ds = NoCloudNet(ctx(tmp_path / "root", sysroot, {"timeout": 0.5, "retries": 1},
                        deadline=time.monotonic() + 2))
    start = time.monotonic()
    with pytest.raises(DatasourceError, match="seedfrom"):
        ds.fetch()
    assert time.monotonic() - start < 3.5


def test_refused_seedfrom(tmp_path: Path) -> None:
    sysroot = fake_sys(tmp_path, cmdline="ds=nocloud;s=http://127.0.0.1:9/")
    ds = NoCloudNet(ctx(tmp_path / "root", sysroot, {"timeout": 1, "retries": 0}))
    with pytest.raises(DatasourceError, match="unreachable"):
        ds.fetch()


def test_config_drive_files_that_cannot_be_used_cost_only_themselves(tmp_path: Path) -> None:
    """An oversized user_data or a broken vendor_data.json is dropped with a warning; meta_data (instance-id, keys)
    and the other files still apply, as for a NoCloud seed."""
    from tether.datasources.configdrive import ConfigDrive
    from tether.datasources.seedfiles import MAX_SEED_FILE

    root = tmp_path / "root"
    base = root / "var/lib/cloud/seed/config_drive/openstack/latest"
    base.mkdir(parents=True)
    (base / "meta_data.json").write_text(json.dumps({"uuid": "iid-cd-1", "hostname": "cd-host",
                                                     "public_keys": {"k": "ssh-ed25519 AAAAC3Nz k@x"}}))
    with open(base / "user_data", "wb") as f:
        f.truncate(MAX_SEED_FILE + 1)
    (base / "vendor_data.json").write_text("{not json")
    (base / "network_data.json").write_text(json.dumps({"links": [], "networks": [], "services": []}))
    inst = ConfigDrive(ctx(root, fake_sys(tmp_path))).fetch()
    assert inst.instance_id == "iid-cd-1" and inst.local_hostname == "cd-host"
    assert inst.public_ssh_keys == ["ssh-ed25519 AAAAC3Nz k@x"]
    assert inst.userdata is None and inst.vendordata is None
    warnings = "\n".join(inst.ds["warnings"])
    assert "user_data ignored: larger than the 16 MiB limit" in warnings
    assert "vendor_data.json: invalid JSON" in warnings and "the rest of the config drive is used" in warnings
