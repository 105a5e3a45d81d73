from __future__ import annotations

from tests.conftest import needs_root
from tests.modules.sysmod_support import config_errors, fake_system, parse
from tether.modules import scripts_vendor as mod

DIR = "var/lib/tether/scripts/vendor"


def _script(root):
    p = root / DIR / "v1"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("#!/bin/sh\n")
    p.chmod(0o755)


def test_good_and_bad_configs():
    assert parse(mod, {"vendor_data": {"enabled": True, "prefix": "/usr/bin/ltrace"}}).vendor_data.prefix == (
        "/usr/bin/ltrace")
    assert parse(mod, {"vendor_data": {"prefix": ["timeout", 30]}}).vendor_data.prefix == ("timeout", 30)
    assert config_errors(mod.Config, {"vendor_data": {"enabled": 1}}) == [
        "vendor_data.enabled: expected a boolean or a string, got a number (1)"]
    assert config_errors(mod.Config, {"vendor_data": {"prefix": {"a": 1}}})[0].startswith("vendor_data.prefix")


@needs_root()
def test_prefix_is_put_in_front(make_ctx, root, fake_runner):
    fake_system(root)
    _script(root)
    fake_runner.expect("chroot *")
    mod.handle(make_ctx(), parse(mod, {"vendor_data": {"prefix": ["timeout", 30]}}))
    assert fake_runner.commands() == [f"chroot {root} timeout 30 /{DIR}/v1"]


@needs_root()
def test_disabled(make_ctx, root, fake_runner):
    fake_system(root)
    _script(root)
    mod.handle(make_ctx(), parse(mod, {"vendor_data": {"enabled": False}}))
    ctx = make_ctx()
    mod.handle(ctx, parse(mod, {"vendor_data": {"enabled": "false"}}))
    assert fake_runner.calls == [] and ctx.warnings == []
