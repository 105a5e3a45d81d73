"""Host configuration scripts: where they run, with what environment, where their output goes, and failures;
then a clean install and an A/B update on a loop disk whose configuration has users, services, netplan and
scripts (root only)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MINIMAL_ETC, make_root, needs_root, needs_tool
from tests.engine.conftest import BuiltImage, LoopDisk, build_image, sh
from tests.modules.sysmod_support import real_chroot_root
from tether import accounts
from tether.engine import scripts, state
from tether.engine.hostconfig import Script, parse_host_config
from tether.engine.scripts import ScriptError, run_stage
from tether.errors import ConfigErrors
from tether.runner import Runner
from tether.target import Target

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm0dZ6oTzqcH8WjAWn7uN2x0t0mDxPpB1n6Ew0Y0B2H ops@laptop"
ENV_DUMP = 'printf "%s|%s|%s|%s\\n" "$TARGET_ROOT" "$SERVICING_TYPE" "$GREETING" "$*" > "$OUT"\n'


def script(**kw: Any) -> Script:
    data = {"name": "s", **kw}
    return parse_host_config({"scripts": {"postProvision": [data]}}).scripts.post_provision[0]


def test_post_provision_runs_in_the_servicing_os_with_target_root(tmp_path: Path) -> None:
    new = Target.at(make_root(tmp_path / "new"))
    out = tmp_path / "out.txt"
    runs = run_stage(scripts.POST_PROVISION, [
        script(name="dump", content=ENV_DUMP, arguments=["a b", "c"], runOn=["clean-install"],
               environmentVariables={"GREETING": "hello", "OUT": str(out)}),
        script(name="only-on-update", content="exit 1\n", runOn=["ab-update"]),
    ], servicing_type="clean-install", runner=Runner(), servicing_root=Target.at("/"), new_root=new)
    assert [r.name for r in runs] == ["dump"]
    assert out.read_text() == f"{new.root}|clean_install|hello|a b c\n"
    # the log file is kept in the root the script configures
    log = new.root / "var/log/tether/scripts/postProvision-00-dump.log"
    assert "postProvision dump (exit 0)" in log.read_text()
    assert stat.S_IMODE(log.stat().st_mode) == 0o640


def test_output_goes_to_log_file_path_and_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    new = Target.at(make_root(tmp_path / "new"))
    caplog.set_level("INFO")
    run_stage(scripts.POST_PROVISION, [script(name="talk", content="echo to-stdout; echo to-stderr >&2\n",
                                              logFilePath="/var/log/talk.log", interpreter="/bin/bash")],
              servicing_type="ab-update", runner=Runner(), servicing_root=Target.at("/"), new_root=new)
    text = (new.root / "var/log/talk.log").read_text()
    assert "to-stdout\n--- stderr\nto-stderr\n" in text
    assert "to-stdout" in caplog.text and "to-stderr" in caplog.text


def test_failing_script_names_itself_and_its_exit_code_and_stops_the_stage(tmp_path: Path) -> None:
    new = Target.at(make_root(tmp_path / "new"))
    later = tmp_path / "later"
    with pytest.raises(ScriptError) as e:
        run_stage(scripts.POST_CONFIGURE, [
            script(name="migrate-db", content="echo 'schema too old' >&2; exit 3\n"),
            script(name="after", content=f"touch {later}\n"),
        ], servicing_type="ab-update", runner=Runner(), servicing_root=Target.at("/"), new_root=new)
    msg = str(e.value)
    assert "scripts.postConfigure[0] 'migrate-db' failed with exit code 3: schema too old" in msg
    assert "postConfigure-00-migrate-db.log" in msg
    assert not later.exists()
    assert "schema too old" in (new.root / "var/log/tether/scripts/postConfigure-00-migrate-db.log").read_text()


def test_timeout_and_missing_interpreter_fail_with_the_script_name(tmp_path: Path) -> None:
    new = Target.at(make_root(tmp_path / "new"))
    with pytest.raises(ScriptError, match=r"'slow' failed: did not finish within 0.5s"):
        run_stage(scripts.POST_PROVISION, [script(name="slow", content="sleep 5\n")], servicing_type="ab-update",
                  runner=Runner(), servicing_root=Target.at("/"), new_root=new, timeout=0.5)
    with pytest.raises(ScriptError, match=r"'py' failed: .*not found"):
        run_stage(scripts.POST_PROVISION, [script(name="py", content="x", interpreter="/nonexistent/python")],
                  servicing_type="ab-update", runner=Runner(), servicing_root=Target.at("/"), new_root=new)


def test_path_script_is_read_from_the_servicing_os(tmp_path: Path) -> None:
    servicing = Target.at(make_root(tmp_path / "servicing"))
    servicing.write("/opt/hooks/pre.sh", f"echo \"$SERVICING_TYPE\" > {tmp_path}/pre.out\n", mode=0o644)
    run_stage(scripts.PRE_SERVICING, [script(name="pre", path="/opt/hooks/pre.sh")], servicing_type="ab-update",
              runner=Runner(), servicing_root=servicing)
    assert (tmp_path / "pre.out").read_text() == "ab_update\n"
    with pytest.raises(ScriptError, match=r"scripts.preServicing\[0\] 'gone': cannot read /opt/hooks/gone.sh"):
        run_stage(scripts.PRE_SERVICING, [script(name="gone", path="/opt/hooks/gone.sh")],
                  servicing_type="ab-update", runner=Runner(), servicing_root=servicing)


@needs_root()
@needs_tool("chroot", "ldd")
def test_post_configure_runs_chrooted_in_a_root_that_holds_a_system(tmp_path: Path) -> None:
    root = make_root(tmp_path / "new")
    real_chroot_root(root)
    new = Target.at(root)
    runs = run_stage(scripts.POST_CONFIGURE, [script(
        name="in-root", content='echo "$TARGET_ROOT $SERVICING_TYPE $1" > /etc/configured-by-script\n',
        arguments=["arg1"])], servicing_type="clean-install", runner=Runner(), servicing_root=Target.at("/"),
        new_root=new)
    assert runs[0].chrooted
    assert (root / "etc/configured-by-script").read_text() == "/ clean_install arg1\n"
    assert not list((root / "run").glob("tether-script-*"))   # the temporary script file is gone


def test_post_configure_without_a_shell_in_the_root_runs_with_target_root(tmp_path: Path) -> None:
    new = Target.at(make_root(tmp_path / "new"))
    runs = run_stage(scripts.POST_CONFIGURE, [script(name="outside", content='touch "$TARGET_ROOT/etc/marker"\n')],
                     servicing_type="ab-update", runner=Runner(), servicing_root=Target.at("/"), new_root=new)
    assert not runs[0].chrooted and (new.root / "etc/marker").exists()


def test_script_model_checks() -> None:
    with pytest.raises(ConfigErrors, match="logFilePath: 'x.log' is not an absolute path"):
        script(content="true", logFilePath="x.log")
    with pytest.raises(ConfigErrors, match="exactly one of content or path"):
        script(content="true", path="/x")


# --- on a loop disk ---------------------------------------------------------------------------------------
ESP, ROOT_A, ROOT_B, STATE = 1, 2, 3, 4
UNIT = b"[Unit]\nDescription=test\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"


def account_image(work: Path, name: str, version: str) -> BuiltImage:
    files = {k: v.encode() for k, v in MINIMAL_ETC.items()}
    files.update({
        "etc/os-release": f"ID=test\nVERSION_ID={version}\n".encode(), "etc/hostname": b"image-default\n",
        "etc/hosts": b"127.0.0.1 localhost\n127.0.1.1 image-default\n",
        "etc/machine-id": b"11111111111111111111111111111111\n",
        "usr/lib/systemd/system/web.service": UNIT, "usr/lib/systemd/system/telemetry.service": UNIT,
        "etc/systemd/system/": b"", "home/": b"", "var/lib/servicing/": b"", "var/lib/tether/": b"",
        "boot/efi/": b"", "run/": b"", "tmp/": b""})
    return build_image(work, name, files, size_mb=24)


@pytest.fixture(scope="module")
def acct_images(engine_tools: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuiltImage]:
    work = tmp_path_factory.mktemp("acct-images")
    return {"v1": account_image(work, "a1", "1"), "v2": account_image(work, "a2", "2")}


def host_config(disk: str, img: BuiltImage, out: Path, hostname: str, fail_configure: bool = False) -> dict[str, Any]:
    from tests.engine.servicing_rig import config
    cfg = config(disk, img, hostname=hostname)
    cfg["os"].update({
        "users": [{"name": "ops", "sshMode": "key-only", "sshPublicKeys": [KEY], "secondaryGroups": ["sudo"]}],
        "services": {"enable": ["web"], "disable": ["telemetry"]},
        "netplan": {"version": 2, "ethernets": {"eth0": {"dhcp4": True}}},
        "additionalFiles": [{"destination": "/etc/motd", "content": f"welcome to {hostname}\n"}],
    })
    env = {"OUT": str(out)}
    cfg["scripts"] = {
        "preServicing": [{"name": "pre", "content": 'echo "pre $SERVICING_TYPE $TARGET_ROOT" >> "$OUT"\n',
                          "environmentVariables": env, "logFilePath": str(out.parent / "pre.log")}],
        "postProvision": [{
            "name": "provision", "environmentVariables": env,
            # runs before the os section: the image's telemetry unit is enabled here, then os.services disables it
            "content": 'mkdir -p "$TARGET_ROOT/etc/systemd/system/multi-user.target.wants"\n'
                       'ln -sf /usr/lib/systemd/system/telemetry.service '
                       '"$TARGET_ROOT/etc/systemd/system/multi-user.target.wants/telemetry.service"\n'
                       'echo "provision $SERVICING_TYPE" > "$TARGET_ROOT/etc/provisioned"\n'
                       'echo "provision $SERVICING_TYPE" >> "$OUT"\n'}],
        "postConfigure": [{
            "name": "configure", "environmentVariables": env,
            # after the os section: the user and the motd are there
            "content": 'grep -q "^ops:" "$TARGET_ROOT/etc/passwd" && cp "$TARGET_ROOT/etc/motd" '
                       '"$TARGET_ROOT/etc/configured"\n' + ("exit 7\n" if fail_configure else "")}],
    }
    return cfg


@contextlib.contextmanager
def mounted(dev: str, where: Path, opts: str = "ro,noload") -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    sh("mount", "-o", opts, dev, str(where))
    try:
        yield where
    finally:
        sh("umount", str(where))


def sha(dev: str) -> str:
    out = subprocess.run(["dd", f"if={dev}", "bs=1M", "iflag=direct", "status=none"], capture_output=True,
                         check=True).stdout
    return hashlib.sha256(out).hexdigest()


def check_slot(slot: Path, hostname: str, servicing_type: str) -> None:
    target = Target.at(slot)
    pw = accounts.read_passwd(target)
    assert pw["ops"].home == "/home/ops"
    assert "ops" in accounts.read_group(target)["sudo"].members
    assert accounts.read_shadow_hashes(target)["ops"].startswith("!")
    ak = slot / "home/ops/.ssh/authorized_keys"
    assert ak.read_text() == KEY + "\n"
    assert (ak.stat().st_uid, stat.S_IMODE(ak.stat().st_mode)) == (pw["ops"].uid, 0o600)
    assert stat.S_IMODE(ak.parent.stat().st_mode) == 0o700 and ak.parent.stat().st_uid == pw["ops"].uid
    wants = slot / "etc/systemd/system/multi-user.target.wants"
    assert os.readlink(wants / "web.service") == "/usr/lib/systemd/system/web.service"
    assert not (wants / "telemetry.service").is_symlink()
    assert "DHCP=ipv4" in (slot / "etc/systemd/network/10-tether-eth0.network").read_text()
    assert (slot / "etc/hostname").read_text() == hostname + "\n"
    assert f"127.0.1.1 {hostname}" in (slot / "etc/hosts").read_text()
    assert (slot / "etc/provisioned").read_text() == f"provision {servicing_type}\n"
    assert (slot / "etc/configured").read_text() == f"welcome to {hostname}\n"
    logs = sorted(p.name for p in (slot / "var/log/tether/scripts").iterdir())
    assert logs == ["postConfigure-00-configure.log", "postProvision-00-provision.log"]


def test_install_and_update_apply_os_and_run_scripts(loopdisk: LoopDisk, acct_images: dict[str, BuiltImage],
                                                     tmp_path: Path) -> None:
    from tether.engine.install import InstallOptions, install
    from tether.engine.update import UpdateOptions, stage
    out = tmp_path / "script-trace"
    install(parse_host_config(host_config(loopdisk.device, acct_images["v1"], out, "node-1")), Runner(),
            InstallOptions())
    assert out.read_text() == "pre clean_install /\nprovision clean_install\n"
    with mounted(loopdisk.part(ROOT_A), tmp_path / "a") as a:
        check_slot(a, "node-1", "clean_install")

    # the installed slot booted and committed (the bootloader step's part, simulated)
    with mounted(loopdisk.part(STATE), tmp_path / "st", "rw") as st, \
            state.StateStore(st / "datastore.sqlite") as store:
        store.update("clean-install-finalized", servicingState=state.CLEAN_INSTALL_FINALIZED)
        store.update("committed", servicingState=state.PROVISIONED)
    a_before = sha(loopdisk.part(ROOT_A))
    out.write_text("")

    live = tmp_path / "live"
    with mounted(loopdisk.part(ROOT_A), live):
        sh("mount", loopdisk.part(STATE), str(live / "var/lib/servicing"))
        try:
            root = Target.at(live)
            # a failing postConfigure script fails the staging, names itself, and marks slot B bad
            bad = parse_host_config(host_config(loopdisk.device, acct_images["v2"], out, "node-2", fail_configure=True))
            with pytest.raises(ScriptError, match=r"scripts.postConfigure\[0\] 'configure' failed with exit code 7"):
                stage(bad, Runner(), root, UpdateOptions())
            with state.StateStore(state.datastore_location(root)) as store:
                doc = store.current()
            assert doc["servicingState"] == state.PROVISIONED and doc["spec"]["os"]["hostname"] == "node-1"
            assert doc["lastError"]["category"] == "script" and "exit code 7" in doc["lastError"]["message"]
            assert doc["slots"]["volume-b"]["state"] == "bad"
            # preServicing ran in the servicing OS: here a mounted root without a shell, so TARGET_ROOT names it
            assert out.read_text() == f"pre ab_update {live}\nprovision ab_update\n"

            good = parse_host_config(host_config(loopdisk.device, acct_images["v2"], out, "node-2"))
            what, doc = stage(good, Runner(), root, UpdateOptions())
            assert what == "staged into volume-b" and doc["servicingState"] == state.AB_UPDATE_STAGED
        finally:
            sh("umount", str(live / "var/lib/servicing"))
    assert sha(loopdisk.part(ROOT_A)) == a_before
    with mounted(loopdisk.part(ROOT_B), tmp_path / "b") as b:
        check_slot(b, "node-2", "ab_update")
        assert (b / "etc/os-release").read_text() == "ID=test\nVERSION_ID=2\n"
