"""set_passwords: chpasswd users/list/expire, password, ssh_pwauth; secrets never on argv."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import needs_root, needs_tool
from tests.modules.fake_accounts import accounts_runner
from tests.modules.treesnap import diff, snapshot
from tether import accounts
from tether.convert import convert
from tether.errors import ConfigErrors
from tether.modules import set_passwords as sp
from tether.modules import users_groups
from tether.runner import Runner

HASH = ("$6$rounds=4096$5DJ8a9WMTEzIo5J4$Yms6imfeBvf3Yfu84mQBerh18l7OR1Wm1BJXZqFSpJ6BVas0AYJqIjP7czkOaAZHZi1kxQ5Y1Ih"
        "gWN8K9NgxR1")
DROPIN = "etc/ssh/sshd_config.d/50-tether-pwauth.conf"


def cfg(data: dict[str, Any], warnings: list[str] | None = None) -> sp.Config:
    return convert(sp.Config, data, strict=False, warnings=warnings)


def setup_users(make_ctx: Any, data: dict[str, Any], runner: Any, names: tuple[str, ...] = ()) -> Any:
    ctx = make_ctx(data, runner=runner)
    users_groups.handle(ctx, convert(users_groups.Config, {"users": ["default", *names]}, strict=False))
    runner.calls.clear()
    return ctx


def test_good_and_bad_configs() -> None:
    w: list[str] = []
    c = cfg({"chpasswd": {"expire": False, "users": [{"name": "a", "password": "p", "type": "text"},
                                                     {"name": "b", "type": "RANDOM"}], "list": "x:y"}}, w)
    assert c.chpasswd.users[1].type == "RANDOM" and c.chpasswd.expire is False
    assert any("chpasswd.list: deprecated" in x for x in w)
    with pytest.raises(ConfigErrors, match=r"chpasswd.users\[0\].type: expected one of"):
        cfg({"chpasswd": {"users": [{"name": "a", "password": "p", "type": "plain"}]}})
    with pytest.raises(ConfigErrors, match=r"chpasswd.users\[0\]: password: required"):
        cfg({"chpasswd": {"users": [{"name": "a"}]}})
    with pytest.raises(ConfigErrors, match=r"chpasswd.expire: expected a boolean"):
        cfg({"chpasswd": {"expire": "no"}})


def test_users_text_hash_random_and_expire(make_ctx: Any, root: Path, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    runner = accounts_runner()
    data = {"chpasswd": {"users": [{"name": "user1", "password": "password1", "type": "text"},
                                   {"name": "user2", "password": HASH},
                                   {"name": "user3", "type": "RANDOM"},
                                   {"name": "ghost", "password": "x", "type": "text"}]},
            "ssh_pwauth": False}
    ctx = setup_users(make_ctx, data, runner, ("user1", "user2", "user3"))
    before = snapshot(root)
    sp.handle(ctx, cfg(data))
    r = str(root)
    cmds = runner.commands()
    assert cmds == [f"chpasswd --root {r} --crypt-method SHA512", f"chpasswd --root {r} --encrypted",
                    f"chage --root {r} --lastday 0 user1", f"chage --root {r} --lastday 0 user3",
                    f"chage --root {r} --lastday 0 user2"]
    shadow = accounts.read_shadow_hashes(ctx.target)
    assert accounts.password_matches("password1", shadow["user1"]) and shadow["user2"] == HASH
    # the random password went to the console only
    random_line = next(line for line in "\n".join(ctx.console).splitlines() if line.startswith("user3:"))
    rnd = random_line.split(":", 1)[1]
    assert accounts.password_matches(rnd, shadow["user3"])
    for secret in ("password1", HASH, rnd):
        assert secret not in caplog.text and not any(secret in c for c in cmds)
        assert not any(secret in w for w in ctx.warnings)
    assert any("'ghost' does not exist" in w for w in ctx.warnings)
    assert (root / DROPIN).read_text().endswith("PasswordAuthentication no\n")
    assert set(diff(before, snapshot(root))) == {
        "/etc/shadow", "/etc/ssh/sshd_config.d", f"/{DROPIN}",
        "/var/lib/tether/instances/iid-test-0001/random-passwords-set", "/var/lib/tether/instances", "/var/lib/tether",
        "/var/lib/tether/instances/iid-test-0001"}
    assert "user3" in (root / "var/lib/tether/instances/iid-test-0001/random-passwords-set").read_text()
    snap = snapshot(root)
    runner.calls.clear()
    ctx.console.clear()
    sp.handle(ctx, cfg(data))
    assert diff(snap, snapshot(root)) == {} and runner.calls == [] and ctx.console == []


def test_password_for_default_user_and_legacy_list(make_ctx: Any, root: Path) -> None:
    runner = accounts_runner()
    ctx = setup_users(make_ctx, {}, runner, ("bob",))
    sp.handle(ctx, cfg({"password": "pw1", "chpasswd": {"expire": False}}))
    assert runner.inputs[-1] == "debian:pw1\n"
    runner.calls.clear()
    w: list[str] = []
    sp.handle(ctx, cfg({"password": "ignored", "chpasswd": {"list": f"bob:{HASH}\ndebian:RANDOM\n"}}, w))
    assert f"chpasswd --root {root} --encrypted" in runner.commands()
    assert any("debian:" in line for line in ctx.console)
    assert accounts.read_shadow_hashes(ctx.target)["bob"] == HASH


def test_ssh_pwauth_values(make_ctx: Any, root: Path) -> None:
    ctx = make_ctx({}, runner=accounts_runner())
    sp.handle(ctx, cfg({"ssh_pwauth": True}))
    assert (root / DROPIN).read_text().splitlines()[-1] == "PasswordAuthentication yes"
    sp.handle(ctx, cfg({"ssh_pwauth": "unchanged"}))
    assert (root / DROPIN).read_text().splitlines()[-1] == "PasswordAuthentication yes"
    sp.handle(ctx, cfg({"ssh_pwauth": "no"}))
    assert (root / DROPIN).read_text().splitlines()[-1] == "PasswordAuthentication no"
    assert any("deprecated" in w for w in ctx.warnings)
    sp.handle(ctx, cfg({"ssh_pwauth": "maybe"}))
    assert any("unrecognized" in w for w in ctx.warnings)


def test_ssh_pwauth_without_include_edits_main_config(make_ctx: Any, root: Path) -> None:
    (root / "etc/ssh/sshd_config").write_text(
        "PasswordAuthentication yes\nUsePAM yes\nMatch User x\n  X11Forwarding no\n")
    ctx = make_ctx({}, runner=accounts_runner())
    sp.handle(ctx, cfg({"ssh_pwauth": False}))
    assert (root / "etc/ssh/sshd_config").read_text() == \
        "PasswordAuthentication no\nUsePAM yes\nMatch User x\n  X11Forwarding no\n"


def test_ssh_pwauth_restarts_ssh_only_live_and_active(make_ctx: Any, root: Path) -> None:
    runner = accounts_runner()
    runner.expect("systemctl show *", stdout="active\n").expect("systemctl restart ssh")
    ctx = make_ctx({}, runner=runner, live=True)
    # a live context on a temp root only for the restart decision (files still go to the temp target)
    sp._ssh_pwauth(ctx, True)
    assert runner.commands("systemctl") == ["systemctl show --property ActiveState --value ssh",
                                            "systemctl restart ssh"]
    runner.calls.clear()
    sp._ssh_pwauth(ctx, True)          # unchanged: no restart
    assert runner.calls == []
    offline = make_ctx({}, runner=runner)
    sp._ssh_pwauth(offline, False)
    assert runner.calls == []


@needs_root()
@needs_tool("chpasswd", "useradd", "chage")
def test_real_chpasswd(make_ctx: Any, root: Path) -> None:
    ctx = make_ctx({}, runner=Runner())
    users_groups.handle(ctx, convert(users_groups.Config, {"users": ["u1", "u2"]}, strict=False))
    data = {"chpasswd": {"users": [{"name": "u1", "password": "Secret-1", "type": "text"},
                                   {"name": "u2", "password": HASH}]}}
    sp.handle(ctx, cfg(data))
    shadow = (root / "etc/shadow").read_text()
    hashes = accounts.read_shadow_hashes(ctx.target)
    assert accounts.password_matches("Secret-1", hashes["u1"]) and hashes["u2"] == HASH
    assert accounts.read_shadow_lastchg(ctx.target)["u1"] == "0"     # expired
    snap = snapshot(root)
    sp.handle(ctx, cfg(data))
    assert diff(snap, snapshot(root)) == {} and (root / "etc/shadow").read_text() == shadow
