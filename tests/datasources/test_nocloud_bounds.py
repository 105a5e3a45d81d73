"""NoCloud seed files are bounded one by one: an oversized or broken optional file costs only itself."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.core.test_stages import seed_root, tether
from tether.datasource import DsContext
from tether.datasources.nocloud import SEED_DIRS, NoCloud
from tether.datasources.seedfiles import MAX_SEED_FILE
from tether.errors import DatasourceError
from tether.host import Host
from tether.runner import Runner
from tether.target import Target
from tether.userdata.limits import MAX_INPUT_BYTES

META = "instance-id: iid-big-1\nlocal-hostname: bounded\npublic-keys: [ssh-ed25519 AAAAC3Nza bob@x]\n"
NETWORK = "version: 2\nethernets: {eth0: {dhcp4: true}}\n"
HUGE = b"#cloud-config\n" + b"#" * (MAX_SEED_FILE + 10)


def _seed(tmp_path: Path, **files: bytes | str) -> NoCloud:
    root = tmp_path / "root"
    seed = root / SEED_DIRS[0].lstrip("/")
    seed.mkdir(parents=True)
    for name, data in files.items():
        (seed / name.replace("_", "-")).write_bytes(data.encode() if isinstance(data, str) else data)
    sysroot = tmp_path / "sys"
    (sysroot / "proc").mkdir(parents=True)
    (sysroot / "proc/cmdline").write_text("\n")
    return NoCloud(DsContext(Host(sysroot=sysroot), Target.at(root), Runner(), {}))


def test_seed_file_cap_is_the_user_data_cap() -> None:
    assert MAX_SEED_FILE == MAX_INPUT_BYTES


def test_oversized_user_data_costs_only_the_user_data(tmp_path: Path) -> None:
    ds = _seed(tmp_path, meta_data=META, user_data=HUGE, vendor_data="#cloud-config\nruncmd: [[true]]\n",
               network_config=NETWORK)
    inst = ds.fetch()
    assert inst.instance_id == "iid-big-1"
    assert inst.local_hostname == "bounded"
    assert inst.public_ssh_keys == ["ssh-ed25519 AAAAC3Nza bob@x"]
    assert inst.vendordata == b"#cloud-config\nruncmd: [[true]]\n"
    assert inst.network_config == {"version": 2, "ethernets": {"eth0": {"dhcp4": True}}}
    assert inst.userdata is None
    seed_dir = tmp_path / "root" / SEED_DIRS[0].lstrip("/")
    assert inst.ds["warnings"] == [f"{seed_dir}/user-data ignored: larger than the 16 MiB limit on a seed file; "
                                   "the rest of the seed is used"]


def test_oversized_vendor_data_and_bad_network_config_cost_only_themselves(tmp_path: Path) -> None:
    ds = _seed(tmp_path, meta_data=META, user_data="#cloud-config\n{}\n", vendor_data=HUGE,
               network_config="version: 2\nethernets: [\n")
    inst = ds.fetch()
    assert inst.instance_id == "iid-big-1"
    assert inst.userdata == b"#cloud-config\n{}\n"
    assert inst.vendordata is None and inst.network_config is None
    assert len(inst.ds["warnings"]) == 2
    assert "vendor-data ignored: larger than the 16 MiB limit" in inst.ds["warnings"][0]
    assert "network-config: invalid YAML: line 3" in inst.ds["warnings"][1]
    assert inst.ds["warnings"][1].endswith("network-config ignored, the rest of the seed is used")


def test_oversized_meta_data_fails_the_seed(tmp_path: Path) -> None:
    ds = _seed(tmp_path, meta_data=b"instance-id: x\n" + b"#" * (MAX_SEED_FILE + 1), user_data="#cloud-config\n")
    with pytest.raises(DatasourceError, match="meta-data: larger than the 16 MiB limit on a seed file"):
        ds.fetch()


def test_oversized_user_data_on_a_cidata_iso(tmp_path: Path) -> None:
    """Read in user space (tether/isoread.py): the reader stops one byte past the cap, the seed code refuses that
    file alone."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "meta-data").write_text(META)
    (src / "user-data").write_bytes(HUGE)
    iso = tmp_path / "seed.iso"
    try:
        subprocess.run(["xorriso", "-as", "genisoimage", "-output", str(iso), "-volid", "cidata", "-joliet",
                        "-rock", str(src / "user-data"), str(src / "meta-data")], check=True, capture_output=True,
                       timeout=60)
    except FileNotFoundError:
        pytest.skip("xorriso not installed")
    sysroot = tmp_path / "sys"
    (sysroot / "proc").mkdir(parents=True)
    (sysroot / "proc/cmdline").write_text("\n")
    (sysroot / "dev/disk/by-label").mkdir(parents=True)
    (sysroot / "dev/disk/by-label/cidata").symlink_to(iso)
    ds = NoCloud(DsContext(Host(sysroot=sysroot), Target.at(tmp_path / "root"), Runner(), {}))
    inst = ds.fetch()
    dev = str(sysroot / "dev/disk/by-label/cidata")
    assert (inst.instance_id, inst.subplatform, inst.userdata) == ("iid-big-1", f"config-disk ({dev})", None)
    assert inst.public_ssh_keys == ["ssh-ed25519 AAAAC3Nza bob@x"]
    assert inst.ds["warnings"] == [f"{dev}/user-data ignored: larger than the 16 MiB limit on a seed file; "
                                   "the rest of the seed is used"]


def test_local_stage_reports_the_dropped_file_and_applies_the_rest(tmp_path: Path) -> None:
    root = seed_root(tmp_path, meta=META)
    seed = next(root / d.lstrip("/") for d in SEED_DIRS if (root / d.lstrip("/") / "meta-data").exists())
    (seed / "user-data").write_bytes(HUGE)
    tether(root, "init", "--local")
    status = json.loads((root / "run/tether/status.json").read_text())
    warnings = status["v1"]["init-local"]["recoverable_errors"]["WARNING"]
    assert any("user-data ignored: larger than the 16 MiB limit on a seed file" in w for w in warnings), warnings
    assert (root / "run/tether/.instance-id").read_text().strip() == "iid-big-1"


def test_a_fifo_in_the_seed_never_blocks_the_stage(tmp_path: Path) -> None:
    import os
    import threading

    ds = _seed(tmp_path, meta_data=META, network_config=NETWORK)
    seed_dir = tmp_path / "root" / SEED_DIRS[0].lstrip("/")
    os.mkfifo(seed_dir / "user-data")  # nobody ever writes to it
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(ds.fetch()), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "fetch() is blocked opening a FIFO"
    inst = result[0]
    assert inst.instance_id == "iid-big-1" and inst.userdata is None  # type: ignore[attr-defined]
    assert inst.ds["warnings"] == [  # type: ignore[attr-defined]
        f"{seed_dir}/user-data ignored: not a regular file; the rest of the seed is used"]
