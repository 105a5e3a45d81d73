"""keys_to_console: host key fingerprints and keys between cloud-init's markers; blacklists; off switch."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import needs_tool
from tests.modules.treesnap import diff, snapshot
from tether.convert import convert
from tether.errors import ConfigErrors
from tether.modules import keys_to_console as ktc

ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm0dZ6oTzqcH8WjAWn7uN2x0t0mDxPpB1n6Ew0Y0B2H root@img"


def cfg(data: dict[str, Any]) -> ktc.Config:
    return convert(ktc.Config, data, strict=False)


def test_good_and_bad_configs() -> None:
    assert cfg({"ssh": {"emit_keys_to_console": False}}).ssh.emit_keys_to_console is False
    with pytest.raises(ConfigErrors, match=r"ssh_key_console_blacklist: expected a list"):
        cfg({"ssh_key_console_blacklist": "rsa"})


def test_output_and_blacklist(make_ctx: Any, root: Path) -> None:
    (root / "etc/ssh/ssh_host_ed25519_key.pub").write_text(ED + "\n")
    (root / "etc/ssh/ssh_host_rsa_key.pub").write_text("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7 root@img\n")
    ctx = make_ctx()
    before = snapshot(root)
    ktc.handle(ctx, cfg({"ssh_key_console_blacklist": ["rsa"]}))
    assert diff(before, snapshot(root)) == {}
    lines = "\n".join(ctx.console).splitlines()
    assert lines[0] == "ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----"
    assert lines[1].startswith("ec2: 256 SHA256:") and lines[1].endswith(" root@img (ED25519)")
    assert "ec2: -----BEGIN SSH HOST KEY KEYS-----" in lines
    assert f"ec2: {ED}" in lines and not any(line.startswith("ec2: ssh-rsa") for line in lines)


def test_off(make_ctx: Any, root: Path) -> None:
    (root / "etc/ssh/ssh_host_ed25519_key.pub").write_text(ED + "\n")
    ctx = make_ctx()
    ktc.handle(ctx, cfg({"ssh": {"emit_keys_to_console": False}}))
    assert ctx.console == []


@needs_tool("ssh-keygen")
def test_fingerprint_matches_ssh_keygen(make_ctx: Any, root: Path, tmp_path: Path) -> None:
    key = tmp_path / "k"
    subprocess.run([shutil.which("ssh-keygen") or "ssh-keygen", "-q", "-N", "", "-t", "ecdsa", "-f", str(key)],
                   check=True)
    shutil.copy(f"{key}.pub", root / "etc/ssh/ssh_host_ecdsa_key.pub")
    expected = subprocess.run(["ssh-keygen", "-l", "-f", f"{key}.pub"], capture_output=True, text=True,
                              check=True).stdout.strip()
    ctx = make_ctx()
    ktc.handle(ctx, cfg({}))
    assert f"ec2: {expected}" in "\n".join(ctx.console).splitlines()
