"""set_hostname: selection rules, files written, once-per-change, create_hostname_file, live only when live."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.modules.treesnap import diff, snapshot
from tether.convert import convert
from tether.errors import ConfigErrors
from tether.modules import set_hostname as sh

DATA = "/var/lib/tether/data"


def cfg(data: dict[str, Any]) -> sh.Config:
    return convert(sh.Config, data, strict=False)


def test_good_and_bad_configs() -> None:
    assert cfg({"hostname": "myhost", "fqdn": "myhost.example.com", "prefer_fqdn_over_hostname": True,
                "create_hostname_file": True}).fqdn == "myhost.example.com"
    with pytest.raises(ConfigErrors, match="preserve_hostname: expected a boolean"):
        cfg({"preserve_hostname": "yes"})
    with pytest.raises(ConfigErrors, match="hostname: 'bad_name!' is not a valid host name"):
        cfg({"hostname": "bad_name!"})


def test_hostname_and_fqdn_tree_diff_and_idempotent(make_ctx: Any, root: Path) -> None:
    data = {"hostname": "myhost", "fqdn": "myhost.example.com"}
    ctx = make_ctx(data)
    before = snapshot(root)
    sh.handle(ctx, cfg(data))
    assert (root / "etc/hostname").read_text() == "myhost\n"
    assert diff(before, snapshot(root)) == {
        "/etc/hostname": "changed", "/var/lib/tether": "added", DATA: "added",
        f"{DATA}/previous-hostname": "added", f"{DATA}/set-hostname": "added"}
    assert json.loads((root / DATA.lstrip("/") / "set-hostname").read_text()) == {
        "hostname": "myhost", "fqdn": "myhost.example.com"}
    snap = snapshot(root)
    sh.handle(ctx, cfg(data))
    assert diff(snap, snapshot(root)) == {}
    assert ctx.runner.calls == []          # offline: no hostname command


def test_prefer_fqdn_and_dotted_hostname(make_ctx: Any, root: Path) -> None:
    sh.handle(make_ctx(), cfg({"hostname": "myhost", "fqdn": "myhost.example.com", "prefer_fqdn_over_hostname": True}))
    assert (root / "etc/hostname").read_text() == "myhost.example.com\n"
    sh.handle(make_ctx(), cfg({"hostname": "web.corp.example"}))
    assert (root / "etc/hostname").read_text() == "web\n"


def test_metadata_local_hostname_fallback(make_ctx: Any, root: Path) -> None:
    sh.handle(make_ctx(), cfg({}))
    assert (root / "etc/hostname").read_text() == "testhost\n"


def test_no_name_anywhere_leaves_localhost_alone(make_ctx: Any, root: Path) -> None:
    ctx = make_ctx()
    ctx.instance.local_hostname = None
    before = snapshot(root)
    sh.handle(ctx, cfg({}))
    assert diff(before, snapshot(root)) == {}


def test_preserve_hostname(make_ctx: Any, root: Path) -> None:
    before = snapshot(root)
    sh.handle(make_ctx(), cfg({"preserve_hostname": True, "hostname": "x"}))
    sh.handle(make_ctx(system_config={"preserve_hostname": True}), cfg({"hostname": "x"}))
    assert diff(before, snapshot(root)) == {}


def test_create_hostname_file_false(make_ctx: Any, root: Path) -> None:
    (root / "etc/hostname").unlink()
    sh.handle(make_ctx(), cfg({"hostname": "x", "create_hostname_file": False}))
    assert not (root / "etc/hostname").exists()
    sh.handle(make_ctx(), cfg({"hostname": "y", "create_hostname_file": True}))
    assert (root / "etc/hostname").read_text() == "y\n"


def test_keeps_comments_in_hostname_file(make_ctx: Any, root: Path) -> None:
    (root / "etc/hostname").write_text("# set by image\nold\n")
    sh.handle(make_ctx(), cfg({"hostname": "new"}))
    assert (root / "etc/hostname").read_text() == "# set by image\nnew\n"


def test_live_runs_hostname(make_ctx: Any, fake_runner: Any) -> None:
    fake_runner.expect("hostname myhost")
    sh.handle(make_ctx(live=True), cfg({"hostname": "myhost"}))
    assert fake_runner.commands() == ["hostname myhost"]
