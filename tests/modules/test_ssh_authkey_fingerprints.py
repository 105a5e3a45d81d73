"""ssh_authkey_fingerprints: the ci-info table of each user's authorized keys, on the console only."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.modules.fake_accounts import accounts_runner
from tests.modules.treesnap import diff, snapshot
from tether.convert import convert
from tether.errors import ConfigErrors
from tether.modules import ssh_authkey_fingerprints as saf
from tether.modules import users_groups

BLOB = "AAAAC3NzaC1lZDI1NTE5AAAAIGm0dZ6oTzqcH8WjAWn7uN2x0t0mDxPpB1n6Ew0Y0B2H"
KEY = f"ssh-ed25519 {BLOB} one@host"


def cfg(data: dict[str, Any]) -> saf.Config:
    return convert(saf.Config, data, strict=False)


def test_good_and_bad_configs() -> None:
    assert cfg({"authkey_hash": "sha512"}).authkey_hash == "sha512"
    with pytest.raises(ConfigErrors, match="authkey_hash: unknown hash 'nope'"):
        cfg({"authkey_hash": "nope"})
    with pytest.raises(ConfigErrors, match="no_ssh_fingerprints: expected a boolean"):
        cfg({"no_ssh_fingerprints": "true"})


def test_table_for_users(make_ctx: Any, root: Path) -> None:
    data = {"users": ["default", {"name": "bob", "ssh_authorized_keys": [KEY]}, {"name": "svc", "system": True}]}
    ctx = make_ctx(data, runner=accounts_runner())
    users_groups.handle(ctx, convert(users_groups.Config, data, strict=False))
    before = snapshot(root)
    saf.handle(ctx, cfg({"authkey_hash": "md5"}))
    assert diff(before, snapshot(root)) == {}
    out = "\n".join(ctx.console)
    assert "ci-info: no authorized SSH keys fingerprints found for user debian." in out
    digest = hashlib.md5(base64.b64decode(BLOB)).hexdigest()
    pairs = ":".join(digest[i:i + 2] for i in range(0, 32, 2))
    assert "Authorized keys from /home/bob/.ssh/authorized_keys for user bob" in out
    assert f"| ssh-ed25519 | {pairs} | -       | one@host |" in out
    assert "svc" not in out


def test_disabled(make_ctx: Any) -> None:
    ctx = make_ctx({})
    saf.handle(ctx, cfg({"no_ssh_fingerprints": True}))
    assert ctx.console == []
