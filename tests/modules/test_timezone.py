from __future__ import annotations

import os

import pytest

from tests.modules.sysmod_support import apply_twice, config_errors, parse
from tether.module import ModuleError
from tether.modules import timezone as mod


def _zone(root, name="America/New_York"):
    p = root / "usr/share/zoneinfo" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"TZif2 fake")


def test_good_and_bad_configs():
    assert parse(mod, {"timezone": "America/New_York"}).timezone == "America/New_York"
    assert config_errors(mod.Config, {"timezone": 5}) == ["timezone: expected a string or null, got a number (5)"]
    errs = config_errors(mod.Config, {"timezone": "../../etc/shadow"})
    assert len(errs) == 1 and "not a zone name" in errs[0]


def test_writes_timezone_and_localtime_link(make_ctx, root):
    _zone(root)
    changed = apply_twice(mod, make_ctx(), {"timezone": "America/New_York"}, root)
    assert changed == {"/etc/timezone": "added", "/etc/localtime": "added"}
    assert (root / "etc/timezone").read_text() == "America/New_York\n"
    assert os.readlink(root / "etc/localtime") == "/usr/share/zoneinfo/America/New_York"


def test_replaces_existing_localtime_file(make_ctx, root):
    _zone(root, "UTC")
    (root / "etc/localtime").write_text("old zone data")
    changed = apply_twice(mod, make_ctx(), {"timezone": "UTC"}, root)
    assert changed == {"/etc/timezone": "added", "/etc/localtime": "changed"}
    assert os.readlink(root / "etc/localtime") == "/usr/share/zoneinfo/UTC"


def test_unknown_zone_fails_clearly(make_ctx, root):
    with pytest.raises(ModuleError, match="no /usr/share/zoneinfo/Mars/Base"):
        mod.handle(make_ctx(), parse(mod, {"timezone": "Mars/Base"}))
    assert not (root / "etc/localtime").exists()


def test_non_debian_gets_only_the_link(make_ctx, root):
    _zone(root, "UTC")
    (root / "etc/os-release").write_text('ID=fedora\nVERSION_ID=40\n')
    assert apply_twice(mod, make_ctx(), {"timezone": "UTC"}, root) == {"/etc/localtime": "added"}


def test_live_also_calls_timedatectl(make_ctx, root, fake_runner):
    _zone(root)
    fake_runner.expect("timedatectl set-timezone America/New_York")
    mod.handle(make_ctx(live=True), parse(mod, {"timezone": "America/New_York"}))
    assert fake_runner.commands() == ["timedatectl set-timezone America/New_York"]


def test_offline_runs_nothing(make_ctx, root, fake_runner):
    _zone(root)
    mod.handle(make_ctx(), parse(mod, {"timezone": "America/New_York"}))
    assert fake_runner.calls == []
