"""users_groups: config parsing, user-list resolution, files written (fake tools), real tools as root."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import needs_root, needs_tool
from tests.modules.fake_accounts import accounts_runner
from tests.modules.treesnap import diff, snapshot
from tether import accounts
from tether.convert import convert
from tether.errors import ConfigErrors
from tether.modules import users_groups as ug
from tether.runner import Runner

KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm0dZ6oTzqcH8WjAWn7uN2x0t0mDxPpB1n6Ew0Y0B2H alice@laptop")
HASH = ("$6$rounds=4096$5DJ8a9WMTEzIo5J4$Yms6imfeBvf3Yfu84mQBerh18l7OR1Wm1BJXZqFSpJ6BVas0AYJqIjP7czkOaAZHZi1kxQ5Y1Ih"
        "gWN8K9NgxR1")


def cfg(data: dict[str, Any], warnings: list[str] | None = None) -> ug.Config:
    return convert(ug.Config, data, strict=False, warnings=warnings)


def run(make_ctx: Any, data: dict[str, Any], system: dict[str, Any] | None = None, runner: Any = None) -> Any:
    ctx = make_ctx(data, system_config=system or {}, runner=runner or accounts_runner())
    ug.handle(ctx, cfg(data))
    return ctx


# --- config ------------------------------------------------------------------------------------------------
def test_good_configs_convert() -> None:
    c = cfg({"users": ["default", "bob, carol", {"name": "dave", "sudo": None, "groups": "a, b", "uid": 1500}],
             "groups": [{"admingroup": ["root", "sys"]}, "cloud-users"]})
    assert c.users[0] == "default"
    spec = c.users[2]
    assert spec.sudo is False and spec.group_list() == ["a", "b"] and spec.uid == 1500
    assert accounts.normalize_groups(c.groups) == {"admingroup": ["root", "sys"], "cloud-users": []}


def test_bad_config_errors_have_paths() -> None:
    with pytest.raises(ConfigErrors) as e:
        cfg({"users": ["default", {"name": "x", "lock_passwd": "yes"}, {"name": 3}]})
    msg = str(e.value)
    assert "users[1].lock_passwd: expected a boolean" in msg
    assert "users[2].name: expected a string" in msg
    with pytest.raises(ConfigErrors, match=r"users\[0\]: uid: expected an integer"):
        cfg({"users": [{"name": "x", "uid": "abc"}]})
    with pytest.raises(ConfigErrors, match=r"ssh_redirect_user cannot be combined"):
        cfg({"users": [{"name": "x", "ssh_redirect_user": True, "ssh_authorized_keys": [KEY]}]})


def test_unknown_user_key_warns_and_deprecated_spelling_is_folded() -> None:
    w: list[str] = []
    c = cfg({"users": [{"name": "x", "lock-passwd": False, "favourite_colour": "blue"}]}, w)
    assert c.users[0].lock_passwd is False
    assert any("users[0].favourite_colour: unknown key" in x for x in w)
    assert any("users[0].lock-passwd: deprecated" in x for x in w)


def test_resolve_default_user_and_user_override() -> None:
    c = cfg({"user": {"name": "mynewdefault", "sudo": None}, "users": ["bob"]})
    r = accounts.resolve(c.users, c.user, {})
    assert list(r.users) == ["mynewdefault", "bob"]
    d = r.users["mynewdefault"]
    assert r.default_name == "mynewdefault"
    assert d.sudo_rules() == [] and d.shell == "/bin/bash" and "sudo" in d.group_list()


def test_resolve_users_string_and_dict_forms() -> None:
    assert list(accounts.resolve("default, bob", None, {}).users) == ["debian", "bob"]
    c = cfg({"users": {"bob": {"shell": "/bin/zsh"}, "carol": True, "eve": False}})
    r = accounts.resolve(c.users, None, {})
    assert list(r.users) == ["bob", "carol"] and r.users["bob"].shell == "/bin/zsh" and r.default_name is None


def test_resolve_default_groups_are_merged_and_system_default_user_used() -> None:
    system = {"system_info": {"default_user": {"name": "admin", "groups": ["wheel"], "sudo": "ALL=(ALL) ALL"}}}
    c = cfg({"users": ["default", {"name": "admin", "groups": ["docker"]}]})
    r = accounts.resolve(c.users, None, system)
    assert r.users["admin"].group_list() == ["docker", "wheel"]
    assert r.users["admin"].sudo_rules() == ["ALL=(ALL) ALL"]


# --- files written -----------------------------------------------------------------------------------------
def test_default_user_tree_diff_and_idempotent(make_ctx: Any, root: Path) -> None:
    (root / "etc/sudoers").write_text("Defaults env_reset\n@includedir /etc/sudoers.d\n")
    before = snapshot(root)
    runner = accounts_runner()
    run(make_ctx, {}, runner=runner)
    changed = diff(before, snapshot(root))
    assert changed == {"/etc/group": "changed", "/etc/gshadow": "changed", "/etc/passwd": "changed",
                       "/etc/shadow": "changed", "/etc/sudoers.d": "added",
                       "/etc/sudoers.d/90-tether-users": "added", "/home/debian": "added"}
    # missing default groups were created, the user is in all of them
    groups = accounts.read_group(ug_target(root))
    assert all("debian" in groups[g].members for g in ("adm", "sudo", "video", "plugdev"))
    assert accounts.read_passwd(ug_target(root))["debian"].shell == "/bin/bash"
    assert accounts.read_shadow_hashes(ug_target(root))["debian"].startswith("!")
    sudoers = root / "etc/sudoers.d/90-tether-users"
    assert "# User rules for debian\ndebian ALL=(ALL) NOPASSWD:ALL\n" in sudoers.read_text()
    assert oct(sudoers.stat().st_mode & 0o777) == "0o440"
    # second run: nothing changes, no tool runs except the sudoers check when needed
    snap = snapshot(root)
    runner.calls.clear()
    run(make_ctx, {}, runner=runner)
    assert diff(snap, snapshot(root)) == {}
    assert [c[0] for c in runner.calls] == []


def ug_target(root: Path) -> Any:
    from tether.target import Target
    return Target.at(root)


def test_full_user_spec_argv_and_files(make_ctx: Any, root: Path) -> None:
    runner = accounts_runner()
    data = {"users": [{"name": "foobar", "gecos": "Foo B. Bar", "primary_group": "foobar", "groups": "users, admin",
                       "selinux_user": "staff_u", "expiredate": "2032-09-01", "lock_passwd": False,
                       "passwd": HASH, "shell": "/bin/bash", "uid": 1234, "inactive": "5",
                       "ssh_authorized_keys": [KEY], "sudo": ["ALL=(ALL) NOPASSWD:/bin/mysql", "ALL=(ALL) ALL"],
                       "doas": ["permit nopass foobar"], "ssh_import_id": ["gh:someone"]}],
            "groups": ["cloud-users", {"admingroup": ["root", "ghost"]}]}
    before = snapshot(root)
    ctx = run(make_ctx, data, runner=runner)
    cmds = runner.commands()
    r = str(root)
    assert f"groupadd --root {r} cloud-users" in cmds and f"groupadd --root {r} admingroup" in cmds
    assert f"usermod --root {r} --append --groups admingroup root" in cmds
    assert f"groupadd --root {r} admin" in cmds and f"groupadd --root {r} foobar" in cmds
    assert (f"useradd --root {r} --comment Foo B. Bar --gid foobar --uid 1234 --shell /bin/bash --expiredate "
            f"2032-09-01 --inactive 5 --selinux-user staff_u --groups users,admin --create-home foobar") in cmds
    assert f"chpasswd --root {r} --encrypted" in cmds
    assert not any(HASH in c for c in cmds)                       # the hash went on stdin only
    assert runner.inputs[[" ".join(c) for c in runner.calls].index(f"chpasswd --root {r} --encrypted")] \
        == f"foobar:{HASH}\n"
    assert accounts.read_shadow_hashes(ctx.target)["foobar"] == HASH   # lock_passwd: false
    assert any("ghost" in w and "no such user" in w for w in ctx.warnings)
    assert not any("ssh_import_id" in w for w in ctx.warnings)   # the ssh_import_id module imports them
    ak = root / "home/foobar/.ssh/authorized_keys"
    assert ak.read_text() == KEY + "\n"
    assert oct(ak.stat().st_mode & 0o777) == "0o600" and oct(ak.parent.stat().st_mode & 0o777) == "0o700"
    assert (root / "etc/doas.conf").read_text().endswith("# User rules for foobar\npermit nopass foobar\n")
    assert set(diff(before, snapshot(root))) == {
        "/etc/group", "/etc/gshadow", "/etc/passwd", "/etc/shadow", "/etc/sudoers.d",
        "/etc/sudoers.d/90-tether-users", "/etc/doas.conf", "/home/foobar", "/home/foobar/.ssh",
        "/home/foobar/.ssh/authorized_keys"}
    snap = snapshot(root)
    runner.calls.clear()
    ug.handle(ctx, cfg(data))
    assert diff(snap, snapshot(root)) == {} and runner.calls == []


def test_existing_user_gets_only_updatable_settings(make_ctx: Any, root: Path) -> None:
    runner = accounts_runner()
    run(make_ctx, {"users": [{"name": "bob", "shell": "/bin/sh"}]}, runner=runner)
    runner.calls.clear()
    ctx = run(make_ctx, {"users": [{"name": "bob", "shell": "/bin/zsh", "plain_text_passwd": "s3cret-pw",
                                    "lock_passwd": False, "sudo": "ALL=(ALL) ALL"}]}, runner=runner)
    cmds = runner.commands()
    assert not any(c.startswith("useradd") for c in cmds)
    assert f"chpasswd --root {root} --crypt-method SHA512" in cmds
    assert not any("s3cret-pw" in c for c in cmds)
    assert accounts.password_matches("s3cret-pw", accounts.read_shadow_hashes(ctx.target)["bob"])
    assert "bob ALL=(ALL) ALL" in (root / "etc/sudoers.d/90-tether-users").read_text()
    # a second user's rules are added to the file without dropping bob's
    run(make_ctx, {"users": [{"name": "carol", "sudo": "ALL=(ALL) ALL"}]}, runner=runner)
    text = (root / "etc/sudoers.d/90-tether-users").read_text()
    assert "bob ALL=(ALL) ALL" in text and "carol ALL=(ALL) ALL" in text


def test_users_empty_list_creates_nobody(make_ctx: Any, root: Path) -> None:
    before = snapshot(root)
    run(make_ctx, {"users": []})
    assert diff(before, snapshot(root)) == {}


def test_system_user_and_no_home(make_ctx: Any, root: Path) -> None:
    runner = accounts_runner()
    run(make_ctx, {"users": [{"name": "cloudy", "system": True, "gecos": "Daemon", "inactive": "5"},
                             {"name": "nohome", "no_create_home": True, "no_user_group": True,
                              "no_log_init": True, "lock_passwd": True}]}, runner=runner)
    cmds = runner.commands("useradd")
    assert cmds[0].endswith("--system --no-create-home cloudy")
    assert cmds[1].endswith("--no-user-group --no-log-init --no-create-home nohome")
    assert not (root / "home/cloudy").exists()


def test_create_groups_false_skips_missing_groups(make_ctx: Any) -> None:
    runner = accounts_runner()
    ctx = run(make_ctx, {"users": [{"name": "x", "groups": ["adm", "nosuch"], "create_groups": False}]},
              runner=runner)
    assert not runner.commands("groupadd")
    assert any(c.endswith("--groups adm --create-home x") for c in runner.commands("useradd"))
    assert any("nosuch" in w for w in ctx.warnings)


def test_ssh_redirect_user(make_ctx: Any, root: Path) -> None:
    runner = accounts_runner()
    ctx = make_ctx({"users": ["default", {"name": "nosshlogins", "ssh_redirect_user": True}]}, runner=runner)
    ctx.instance.public_ssh_keys = [KEY]
    ug.handle(ctx, cfg(ctx.cloud_config))
    line = (root / "home/nosshlogins/.ssh/authorized_keys").read_text()
    assert line.startswith('no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command="echo \'Please '
                           'login as the user \\"debian\\" rather than the user \\"nosshlogins\\".\';echo;'
                           'sleep 10;exit 142" ')
    assert line.rstrip().endswith(KEY)


def test_invalid_sudo_rule_is_rejected_by_visudo(make_ctx: Any, root: Path) -> None:
    if shutil.which("visudo") is None:
        pytest.skip("needs visudo")
    runner = accounts_runner()
    runner.rules.insert(0, ("visudo *", lambda argv, kw: 1))
    ctx = make_ctx({"users": [{"name": "x", "sudo": "this is ( not sudoers"}]}, runner=runner)
    with pytest.raises(ug.ModuleError, match="rejected by visudo"):
        ug.handle(ctx, cfg(ctx.cloud_config))
    assert not (root / "etc/sudoers.d/90-tether-users").exists()
    assert not list((root / "etc/sudoers.d").iterdir())


# --- real tools --------------------------------------------------------------------------------------------
@needs_root()
@needs_tool("useradd", "groupadd", "usermod", "chpasswd")
def test_real_tools_against_temp_root(make_ctx: Any, root: Path) -> None:
    data = {"users": ["default", {"name": "alice", "groups": ["users", "docker"], "plain_text_passwd": "pw-alice-1",
                                  "lock_passwd": False, "ssh_authorized_keys": [KEY], "sudo": "ALL=(ALL) ALL"},
                      {"name": "svc", "system": True}, {"name": "hashy", "hashed_passwd": HASH, "uid": 2001}],
            "groups": {"ops": ["alice"]}}
    runner = Runner()
    ctx = make_ctx(data, runner=runner)
    ug.handle(ctx, cfg(data))
    pw = accounts.read_passwd(ctx.target)
    assert pw["alice"].uid >= 1000 and pw["alice"].home == "/home/alice"
    assert pw["hashy"].uid == 2001 and pw["svc"].uid < 1000
    groups = accounts.read_group(ctx.target)
    assert "alice" in groups["docker"].members and "alice" in groups["ops"].members
    assert "debian" in groups["sudo"].members
    shadow = accounts.read_shadow_hashes(ctx.target)
    assert accounts.password_matches("pw-alice-1", shadow["alice"]) and not shadow["alice"].startswith("!")
    assert shadow["hashy"] == "!" + HASH and shadow["debian"].startswith("!")
    ak = root / "home/alice/.ssh/authorized_keys"
    assert ak.read_text() == KEY + "\n" and ak.stat().st_uid == pw["alice"].uid
    if shutil.which("visudo"):
        out = subprocess.run(["visudo", "-c", "-f", str(root / "etc/sudoers.d/90-tether-users")],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
    # a second run changes nothing (lastchg dates and hashes included)
    snap = snapshot(root)
    ug.handle(ctx, cfg(data))
    assert diff(snap, snapshot(root)) == {}
    assert os.stat(root / "etc/sudoers.d/90-tether-users").st_mode & 0o777 == 0o440
