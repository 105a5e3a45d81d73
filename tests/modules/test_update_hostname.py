"""update_hostname: follows the config every boot, but never undoes an administrator's change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.modules.treesnap import diff, snapshot
from tether.convert import convert
from tether.errors import ConfigErrors
from tether.modules import set_hostname
from tether.modules import update_hostname as uh

PREV = "var/lib/tether/data/previous-hostname"


def cfg(data: dict[str, Any]) -> uh.Config:
    return convert(uh.Config, data, strict=False)


def test_good_and_bad_configs() -> None:
    assert cfg({"prefer_fqdn_over_hostname": False}).prefer_fqdn_over_hostname is False
    with pytest.raises(ConfigErrors, match="create_hostname_file: expected a boolean"):
        cfg({"create_hostname_file": "no"})


def test_first_boot_records_previous_and_is_idempotent(make_ctx: Any, root: Path) -> None:
    ctx = make_ctx({"hostname": "alpha"})
    set_hostname.handle(ctx, cfg({"hostname": "alpha"}))
    before = snapshot(root)
    uh.handle(ctx, cfg({"hostname": "alpha"}))
    assert diff(before, snapshot(root)) == {}
    assert (root / PREV).read_text() == "alpha\n"


def test_without_set_hostname_writes_previous_then_follows_config(make_ctx: Any, root: Path) -> None:
    (root / "etc/hostname").unlink()
    before = snapshot(root)
    uh.handle(make_ctx(), cfg({"hostname": "alpha"}))
    assert diff(before, snapshot(root)) == {
        "/etc/hostname": "added", "/var/lib/tether": "added", "/var/lib/tether/data": "added", f"/{PREV}": "added"}
    # the config changes: /etc/hostname still holds tether's name, so it follows
    uh.handle(make_ctx(), cfg({"hostname": "beta"}))
    assert (root / "etc/hostname").read_text() == "beta\n" and (root / PREV).read_text() == "beta\n"


def test_admin_change_is_kept(make_ctx: Any, root: Path) -> None:
    uh.handle(make_ctx(), cfg({"hostname": "alpha", "fqdn": "alpha.example.com"}))
    (root / "etc/hostname").write_text("admins-choice\n")
    before = snapshot(root)
    for _ in range(2):
        uh.handle(make_ctx(), cfg({"hostname": "alpha", "fqdn": "alpha.example.com"}))
    assert diff(before, snapshot(root)) == {}


def test_preserve_and_localhost_default(make_ctx: Any, root: Path) -> None:
    before = snapshot(root)
    uh.handle(make_ctx(), cfg({"preserve_hostname": True, "hostname": "x"}))
    ctx = make_ctx()
    ctx.instance.local_hostname = None
    uh.handle(ctx, cfg({}))
    assert diff(before, snapshot(root)) == {}


def test_live_sets_kernel_hostname_only_on_change(make_ctx: Any, root: Path, fake_runner: Any) -> None:
    (root / "etc/hostname").unlink()
    fake_runner.expect("hostname *")
    uh.handle(make_ctx(live=True), cfg({"hostname": "alpha"}))
    uh.handle(make_ctx(live=True), cfg({"hostname": "alpha"}))
    assert fake_runner.commands() == ["hostname alpha"]
