"""The four stages end to end against a temporary root, through the real CLI."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_root

EXAMPLE = Path(__file__).resolve().parents[2] / "tether" / "examples" / "nocloud"
SEED = "var/lib/cloud/seed/nocloud"


def tether(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "tether", "--root", str(root), *args],
                          capture_output=True, text=True, timeout=120)
    if check and proc.returncode not in (0, 2):
        raise AssertionError(f"tether {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def seed_root(tmp_path: Path, user_data: str | None = None, meta: str | None = None) -> Path:
    root = make_root(tmp_path / "root")
    seed = root / SEED
    seed.mkdir(parents=True)
    shutil.copy(EXAMPLE / "network-config", seed / "network-config")
    (seed / "meta-data").write_text(meta if meta is not None else (EXAMPLE / "meta-data").read_text())
    (seed / "user-data").write_text(user_data if user_data is not None else (EXAMPLE / "user-data").read_text())
    return root


def boot(root: Path) -> list[subprocess.CompletedProcess[str]]:
    return [tether(root, "init", "--local"), tether(root, "init"), tether(root, "modules", "--mode", "config"),
            tether(root, "modules", "--mode", "final")]


def status(root: Path) -> tuple[int, dict]:
    proc = tether(root, "status", "--format", "json", check=False)
    return proc.returncode, json.loads(proc.stdout)


def test_simple_user_data_runs_all_stages(tmp_path: Path) -> None:
    ud = "#cloud-config\nwrite_files:\n  - path: /etc/hello\n    content: hi\n    permissions: '0600'\n" \
         "runcmd:\n  - echo one\n  - [touch, /tmp/two]\n"
    root = seed_root(tmp_path, ud)
    boot(root)
    assert (root / "etc/hello").read_text() == "hi"
    assert stat.S_IMODE((root / "etc/hello").stat().st_mode) == 0o600
    runcmd = root / "var/lib/tether/instances/iid-tether-demo-0001/scripts/runcmd"
    assert runcmd.read_text() == "#!/bin/sh\necho one\ntouch /tmp/two\n"
    rc, st = status(root)
    assert rc == 0, st
    assert st["status"] == "done"
    assert st["datasource"] == "nocloud"
    for stage in ("init-local", "init", "modules-config", "modules-final"):
        blk = st[stage]
        assert blk["errors"] == [] and blk["start"] is not None and blk["finished"] >= blk["start"]
    result = json.loads((root / "run/tether/result.json").read_text())
    assert result["v1"]["errors"] == []
    assert result["v1"]["datasource"].startswith("DataSourceNoCloud")
    assert (root / "var/lib/tether/instance/boot-finished").exists()
    assert (root / "var/lib/tether/instance").is_symlink()


def test_instance_data_files_and_permissions(tmp_path: Path) -> None:
    ud = "#cloud-config\nchpasswd:\n  users:\n    - {name: root, password: S3cretPassw0rd, type: text}\n"
    root = seed_root(tmp_path, ud)
    tether(root, "init", "--local")
    tether(root, "init")
    public = root / "run/tether/instance-data.json"
    sensitive = root / "run/tether/instance-data-sensitive.json"
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert stat.S_IMODE(sensitive.stat().st_mode) == 0o600
    pub = json.loads(public.read_text())
    assert pub["v1"]["instance_id"] == pub["v1"]["instance-id"] == "iid-tether-demo-0001"
    assert pub["v1"]["local_hostname"] == "tether-demo"
    assert pub["userdata"] == "redacted for non-root user"
    assert pub["merged_cfg"] == "redacted for non-root user"
    assert "S3cretPassw0rd" not in public.read_text()
    assert "S3cretPassw0rd" in sensitive.read_text()
    for world_readable in ("run/tether/status.json", "run/tether/instance-data.json"):
        assert "S3cretPassw0rd" not in (root / world_readable).read_text()
    ud_copy = root / "var/lib/tether/instances/iid-tether-demo-0001/user-data.txt"
    assert stat.S_IMODE(ud_copy.stat().st_mode) == 0o600
    log = root / "var/log/tether.log"
    assert stat.S_IMODE(log.stat().st_mode) == 0o640
    assert "S3cretPassw0rd" not in log.read_text()
    q = tether(root, "query", "v1.instance_id")
    assert q.stdout.strip() == "iid-tether-demo-0001"
    q = tether(root, "query", "local-hostname")
    assert q.stdout.strip() == "tether-demo"


def test_frequencies_across_boots_and_new_instance(tmp_path: Path) -> None:
    ud = "#cloud-config\nwrite_files:\n  - path: /etc/once\n    content: a\n    append: true\n" \
         "bootcmd:\n  - echo hi\n"
    root = seed_root(tmp_path, ud)
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    boot(root)
    assert (root / "etc/once").read_text() == "a"
    # second boot, same instance: per-instance write_files does not run again
    shutil.rmtree(root / "run")
    boot(root)
    assert (root / "etc/once").read_text() == "a"
    events = [json.loads(x) for x in (root / "var/log/tether-events.jsonl").read_text().splitlines()]
    second_init = [e for e in events if e["stage"] == "init"][-1]
    results = {m["name"]: m["result"] for m in second_init["modules"]}
    assert results["write_files"] == "already-ran"
    assert results["bootcmd"] == "ran"
    assert (root / "etc/machine-id").read_text().startswith("0123")
    # a new instance-id on the same disk: per-instance modules run again, machine-id is reset
    (root / SEED / "meta-data").write_text("instance-id: iid-second\n")
    shutil.rmtree(root / "run")
    boot(root)
    assert (root / "etc/once").read_text() == "aa"
    assert (root / "etc/machine-id").read_text() == ""
    assert (root / "var/lib/tether/data/previous-instance-id").read_text().strip() == "iid-tether-demo-0001"
    assert Path(root / "var/lib/tether/instance").resolve().name == "iid-second"


def test_bad_module_section_is_degraded_not_fatal(tmp_path: Path) -> None:
    ud = "#cloud-config\nwrite_files:\n  - path: relative/path\n    content: x\nruncmd:\n  - [touch, /x]\n"
    root = seed_root(tmp_path, ud)
    boot(root)
    rc, st = status(root)
    assert rc == 2, st
    assert st["status"] == "done"
    msgs = st["recoverable_errors"]["WARNING"]
    assert ("module write_files: write_files[0]: path 'relative/path' must be absolute; this entry is skipped, "
            "the others are applied") in msgs, msgs
    assert (root / "var/lib/tether/instances/iid-tether-demo-0001/scripts/runcmd").exists()


@pytest.mark.parametrize("ud", ["#cloud-config\nusers: [\n", "\x00\x01\x02garbage\xff" * 10])
def test_malformed_user_data_ends_cleanly(tmp_path: Path, ud: str) -> None:
    root = seed_root(tmp_path, ud)
    procs = boot(root)
    assert all("Traceback" not in p.stderr for p in procs)
    rc, st = status(root)
    assert st["status"] == "done"
    assert rc == 2
    assert any("user-data" in m for msgs in st["recoverable_errors"].values() for m in msgs)


def test_no_datasource_boots_cleanly(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    boot(root)
    rc, st = status(root)
    assert st["status"] == "done"
    assert st["datasource"] == "none"
    assert any("no datasource found" in m for m in st["recoverable_errors"]["WARNING"])


def test_disabled_by_marker(tmp_path: Path) -> None:
    root = seed_root(tmp_path)
    (root / "etc/tether").mkdir(parents=True)
    (root / "etc/tether/disabled").write_text("")
    boot(root)
    rc, st = status(root)
    assert st["status"] == "disabled" and rc == 0
    assert not (root / "var/lib/tether/instance").exists()


@pytest.mark.skipif(shutil.which("useradd") is None, reason="needs useradd")
def test_write_files_owned_by_user_from_same_user_data(tmp_path: Path) -> None:
    """cloud-init #2573: the owner is created by users_groups, which runs after write_files."""
    import os
    if os.geteuid() != 0:
        pytest.skip("needs root")
    ud = ("#cloud-config\nusers:\n  - name: carol\n    groups: [users]\n"
          "write_files:\n  - path: /home/carol/hello\n    owner: carol:users\n    permissions: '0600'\n"
          "    content: hi\n  - path: /etc/plain\n    content: x\n")
    root = seed_root(tmp_path, ud)
    boot(root)
    uid = next(int(line.split(":")[2]) for line in (root / "etc/passwd").read_text().splitlines()
               if line.startswith("carol:"))
    st = (root / "home/carol/hello").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, 100, 0o600)
    assert (root / "etc/plain").stat().st_uid == 0
    rc, summary = status(root)
    assert rc == 0, summary


def test_network_config_rendered_once_then_memoized(tmp_path: Path) -> None:
    root = seed_root(tmp_path, "#cloud-config\n{}\n")
    (root / SEED / "network-config").write_text(
        "version: 2\nethernets:\n  id0:\n    match: {macaddress: '52:54:00:12:34:56'}\n    set-name: lan0\n"
        "    addresses: [192.0.2.10/24]\n")
    tether(root, "init", "--local")
    files = sorted(p.name for p in (root / "etc/systemd/network").iterdir())
    assert "10-tether-id0.network" in files
    text = (root / "etc/systemd/network/10-tether-id0.network").read_text()
    assert "Address=192.0.2.10/24" in text
    memo = json.loads((root / "var/lib/tether/data/network-applied.json").read_text())
    assert memo["source"].startswith("datasource") or "network-config" in memo["source"] or memo["source"]
    shutil.rmtree(root / "run")
    mtime = (root / "etc/systemd/network/10-tether-id0.network").stat().st_mtime_ns
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "tether", "--root", str(root), "init",
                           "--local"], capture_output=True, text=True, timeout=60)
    assert "tether.network.v2" not in proc.stderr  # unchanged inputs: nothing parsed again
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "import time" in line}
    # the start-up path before READY=1 stays free of what it does not need (tether/record.py)
    assert not imported & {"dataclasses", "inspect", "typing", "ast"}, sorted(imported)
    assert (root / "etc/systemd/network/10-tether-id0.network").stat().st_mtime_ns == mtime
    assert (root / "run/tether/network-applied").exists()
    # a removed file is rendered again
    (root / "etc/systemd/network/10-tether-id0.network").unlink()
    shutil.rmtree(root / "run")
    tether(root, "init", "--local")
    assert (root / "etc/systemd/network/10-tether-id0.network").exists()


def test_second_boot_parses_and_imports_little(tmp_path: Path) -> None:
    ud = "#cloud-config\nwrite_files:\n  - {path: /etc/x, content: x}\nruncmd: [[ls]]\n"
    root = seed_root(tmp_path, ud)
    boot(root)
    shutil.rmtree(root / "run")
    tether(root, "init", "--local")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "tether", "--root", str(root), "init"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "import time" in line}
    assert "tether.userdata.pipeline" not in imported        # same user-data: not parsed again
    events = [json.loads(x) for x in (root / "var/log/tether-events.jsonl").read_text().splitlines()]
    init = {m["name"]: m for m in events[-1]["modules"]}
    # per-instance and already ran: decided from the semaphore, without importing the module
    assert (init["write_files"]["result"], init["write_files"]["detail"]) == ("already-ran", "semaphore")
    assert init["update_hostname"]["result"] == "ran"          # an always module still runs
    # changed user-data on the same instance is processed again
    (root / SEED / "user-data").write_text(ud + "bootcmd: [[true]]\n")
    shutil.rmtree(root / "run")
    tether(root, "init", "--local")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "tether", "--root", str(root), "init"],
                          capture_output=True, text=True, timeout=60)
    assert "tether.userdata.pipeline" in proc.stderr


def test_manual_cache_clean_keeps_the_cached_instance(tmp_path: Path) -> None:
    root = seed_root(tmp_path, "#cloud-config\nwrite_files:\n  - {path: /etc/m, content: m, append: true}\n")
    (root / "etc/tether").mkdir(parents=True)
    (root / "etc/tether/tether.cfg").write_text("manual_cache_clean: true\n")
    boot(root)
    (root / SEED / "meta-data").write_text("instance-id: iid-other\n")
    shutil.rmtree(root / "run")
    boot(root)
    assert (root / "etc/m").read_text() == "m"   # not a new instance: per-instance modules did not rerun
    assert (root / "run/tether/.instance-id").read_text().strip() == "iid-tether-demo-0001"
    tether(root, "clean")
    boot(root)
    assert (root / "etc/m").read_text() == "mm"
    assert (root / "run/tether/.instance-id").read_text().strip() == "iid-other"


def test_deferred_write_with_an_owner_nobody_creates_is_reported(tmp_path: Path) -> None:
    ud = "#cloud-config\nwrite_files:\n  - {path: /etc/ghost, content: x, owner: 'ghost:ghost'}\n"
    root = seed_root(tmp_path, ud)
    boot(root)
    assert (root / "etc/ghost").stat().st_uid == 0     # written as root:root once users_groups had run
    rc, st = status(root)
    assert rc == 2, st
    assert any("owner 'ghost:ghost' does not exist" in m for m in st["recoverable_errors"]["WARNING"])
