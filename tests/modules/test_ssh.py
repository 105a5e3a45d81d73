"""ssh: host keys (given, generated, deleted once), authorized keys for the default user and root."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import needs_tool
from tests.modules.fake_accounts import accounts_runner
from tests.modules.treesnap import diff, snapshot
from tether.convert import convert
from tether.errors import ConfigErrors
from tether.modules import ssh, users_groups
from tether.runner import Runner

KEY1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm0dZ6oTzqcH8WjAWn7uN2x0t0mDxPpB1n6Ew0Y0B2H one@host"
KEY2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK2mB7wM5tR9Q2yQ8m0dD4mZ1s0yH0v3k3nW6Xk0X8Qb two@host"
INST = "/var/lib/tether/instances/iid-test-0001"


def cfg(data: dict[str, Any], warnings: list[str] | None = None) -> ssh.Config:
    return convert(ssh.Config, data, strict=False, warnings=warnings)


def with_default_user(make_ctx: Any, data: dict[str, Any], runner: Any) -> Any:
    ctx = make_ctx(data, runner=runner)
    users_groups.handle(ctx, convert(users_groups.Config, {}, strict=False))
    return ctx


def test_good_and_bad_configs() -> None:
    c = cfg({"ssh_genkeytypes": ["ed25519"], "ssh_keys": {"rsa_private": "x", "rsa_public": "y"},
             "ssh_publish_hostkeys": {"enabled": True, "blacklist": ["rsa"]}, "disable_root": False})
    assert c.ssh_genkeytypes == ("ed25519",) and c.ssh_publish_hostkeys.blacklist == ("rsa",)
    with pytest.raises(ConfigErrors, match=r"ssh_keys.dsa_private"):
        cfg({"ssh_keys": {"dsa_private": "x"}})
    with pytest.raises(ConfigErrors, match=r"ssh_publish_hostkeys.enabled: expected a boolean"):
        cfg({"ssh_publish_hostkeys": {"enabled": "yes"}})
    with pytest.raises(ConfigErrors, match=r"ssh_authorized_keys: expected a list"):
        cfg({"ssh_authorized_keys": KEY1})


def test_generate_default_types_delete_image_keys_and_idempotent(make_ctx: Any, root: Path) -> None:
    (root / "etc/ssh/ssh_host_rsa_key").write_text("image key\n")
    (root / "etc/ssh/ssh_host_rsa_key.pub").write_text("ssh-rsa AAAA image\n")
    runner = accounts_runner()
    ctx = make_ctx({}, runner=runner)
    before = snapshot(root)
    ssh.handle(ctx, cfg({}))
    assert runner.commands("ssh-keygen") == [
        f"ssh-keygen -q -N  -t ed25519 -f {root}/etc/ssh/ssh_host_ed25519_key",
        f"ssh-keygen -q -N  -t ecdsa -f {root}/etc/ssh/ssh_host_ecdsa_key"]
    assert diff(before, snapshot(root)) == {
        "/etc/ssh/ssh_host_rsa_key": "removed", "/etc/ssh/ssh_host_rsa_key.pub": "removed",
        "/etc/ssh/ssh_host_ed25519_key": "added", "/etc/ssh/ssh_host_ed25519_key.pub": "added",
        "/etc/ssh/ssh_host_ecdsa_key": "added", "/etc/ssh/ssh_host_ecdsa_key.pub": "added",
        "/var/lib/tether": "added", "/var/lib/tether/instances": "added", f"{INST}": "added",
        f"{INST}/ssh-deletekeys.done": "added", f"{INST}/ssh-hostkeys.json": "added"}
    published = json.loads((root / INST.lstrip("/") / "ssh-hostkeys.json").read_text())
    assert [k[0] for k in published] == ["ssh-ed25519", "ssh-ed25519"]
    assert any("Generated ed25519 host key" in line for line in ctx.console)
    snap = snapshot(root)
    runner.calls.clear()
    ssh.handle(ctx, cfg({}))
    assert diff(snap, snapshot(root)) == {} and runner.calls == []


def test_quiet_keygen_and_unknown_type(make_ctx: Any) -> None:
    ctx = make_ctx({}, runner=accounts_runner())
    ssh.handle(ctx, cfg({"ssh_genkeytypes": ["rsa", "dsa"], "ssh_quiet_keygen": True}))
    assert ctx.console == []
    assert any("'dsa'" in w for w in ctx.warnings)


def test_given_keys_written_with_modes_and_certificate(make_ctx: Any, root: Path) -> None:
    runner = accounts_runner()
    ctx = make_ctx({}, runner=runner)
    ssh.handle(ctx, cfg({"ssh_keys": {"ed25519_private": "-----BEGIN-----\nPRIV\n-----END-----\n",
                                      "ed25519_certificate": "ssh-ed25519-cert-v01@openssh.com AAAA cert",
                                      "rsa_private": "RSA PRIV", "rsa_public": "ssh-rsa AAAAB3 rsa"},
                         "ssh_publish_hostkeys": {"enabled": False}}))
    etc = root / "etc/ssh"
    assert (etc / "ssh_host_ed25519_key").stat().st_mode & 0o777 == 0o600
    assert (etc / "ssh_host_rsa_key.pub").read_text() == "ssh-rsa AAAAB3 rsa\n"
    assert (etc / "ssh_host_rsa_key.pub").stat().st_mode & 0o777 == 0o644
    assert (etc / "ssh_host_ed25519_key-cert.pub").exists()
    # the missing ed25519 public key is derived from the private one; nothing is generated
    assert runner.commands("ssh-keygen") == [f"ssh-keygen -y -f {root}/etc/ssh/ssh_host_ed25519_key"]
    assert (etc / "ssh_host_ed25519_key.pub").read_text().startswith("ssh-ed25519 ")
    assert (etc / "sshd_config.d/50-tether-hostcerts.conf").read_text().endswith(
        "HostCertificate /etc/ssh/ssh_host_ed25519_key-cert.pub\n")
    assert not (root / INST.lstrip("/") / "ssh-hostkeys.json").exists()


def test_authorized_keys_default_user_and_disabled_root(make_ctx: Any, root: Path) -> None:
    runner = accounts_runner()
    ctx = with_default_user(make_ctx, {"ssh_authorized_keys": [KEY1]}, runner)
    ctx.instance.public_ssh_keys = [KEY2]
    before = snapshot(root)
    ssh.handle(ctx, cfg({"ssh_authorized_keys": [KEY1], "ssh_genkeytypes": ["ed25519"],
                         "ssh_publish_hostkeys": {"enabled": False}, "ssh_deletekeys": False}))
    assert (root / "home/debian/.ssh/authorized_keys").read_text() == f"{KEY2}\n{KEY1}\n"
    root_keys = (root / "root/.ssh/authorized_keys").read_text().splitlines()
    prefix = ('no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command="echo \'Please login as the user '
              '\\"debian\\" rather than the user \\"root\\".\';echo;sleep 10;exit 142" ')
    assert root_keys == [prefix + KEY2, prefix + KEY1]
    assert set(diff(before, snapshot(root))) == {
        "/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub", "/home/debian/.ssh",
        "/home/debian/.ssh/authorized_keys", "/root/.ssh", "/root/.ssh/authorized_keys"}


def test_allow_public_keys_false_and_root_enabled(make_ctx: Any, root: Path) -> None:
    ctx = with_default_user(make_ctx, {}, accounts_runner())
    ctx.instance.public_ssh_keys = [KEY2]
    ssh.handle(ctx, cfg({"ssh_authorized_keys": [KEY1], "allow_public_ssh_keys": False, "disable_root": False,
                         "ssh_genkeytypes": ["ed25519"]}))
    assert (root / "root/.ssh/authorized_keys").read_text() == KEY1 + "\n"
    assert (root / "home/debian/.ssh/authorized_keys").read_text() == KEY1 + "\n"


def test_custom_disable_root_opts_and_existing_key_replaced(make_ctx: Any, root: Path) -> None:
    (root / "root/.ssh").mkdir()
    (root / "root/.ssh/authorized_keys").write_text(f"# mine\n{KEY1}\n")
    ctx = make_ctx({}, runner=accounts_runner(), )
    ssh.handle(ctx, cfg({"ssh_authorized_keys": [KEY1], "disable_root_opts": "no-pty,command=\"echo $USER\"",
                         "ssh_genkeytypes": ["ed25519"]}))
    # no default user exists in this root: warned, root's line replaced in place with the options
    assert (root / "root/.ssh/authorized_keys").read_text() == f"# mine\nno-pty,command=\"echo debian\" {KEY1}\n"
    assert any("default user 'debian' does not exist" in w for w in ctx.warnings)


@needs_tool("ssh-keygen")
def test_real_ssh_keygen_ed25519(make_ctx: Any, root: Path) -> None:
    ctx = make_ctx({}, runner=Runner())
    ssh.handle(ctx, cfg({"ssh_genkeytypes": ["ed25519"], "ssh_keys": None}))
    priv = root / "etc/ssh/ssh_host_ed25519_key"
    assert priv.stat().st_mode & 0o777 == 0o600
    assert (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().startswith("ssh-ed25519 ")
    snap = snapshot(root)
    ssh.handle(ctx, cfg({"ssh_genkeytypes": ["ed25519"]}))
    assert diff(snap, snapshot(root)) == {}
