from __future__ import annotations

import pytest

from tests.modules.sysmod_support import apply_twice, config_errors, parse
from tether.modules import apt_pipelining as mod

SNIPPET = "/etc/apt/apt.conf.d/90tether-pipelining"


def test_good_and_bad_configs():
    assert parse(mod, {}).depth is None
    assert parse(mod, {"apt_pipelining": "os"}).depth is None
    assert parse(mod, {"apt_pipelining": "unchanged"}).depth is None
    assert parse(mod, {"apt_pipelining": True}).depth is None
    assert parse(mod, {"apt_pipelining": False}).depth == 0
    assert parse(mod, {"apt_pipelining": 3}).depth == 3
    assert config_errors(mod.Config, {"apt_pipelining": 9}) == [
        "(top): apt_pipelining: a depth must be from 0 to 5, got 9"]
    assert config_errors(mod.Config, {"apt_pipelining": "fast"}) == [
        "(top): apt_pipelining: expected os, true, false or a depth from 0 to 5, got 'fast'"]
    assert config_errors(mod.Config, {"apt_pipelining": [1]}) == [
        "apt_pipelining: expected a boolean or an integer or a string, got a list"]


@pytest.mark.parametrize(("value", "depth"), [(False, "0"), (3, "3"), (0, "0")])
def test_writes_the_depth(make_ctx, root, value, depth):
    changed = apply_twice(mod, make_ctx(), {"apt_pipelining": value}, root)
    assert changed == {"/etc/apt": "added", "/etc/apt/apt.conf.d": "added", SNIPPET: "added"}
    assert f'Acquire::http::Pipeline-Depth "{depth}";\n' in (root / SNIPPET.lstrip("/")).read_text()


def test_os_default_removes_an_earlier_snippet(make_ctx, root):
    apply_twice(mod, make_ctx(), {"apt_pipelining": False}, root)
    assert apply_twice(mod, make_ctx(), {"apt_pipelining": "os"}, root) == {SNIPPET: "removed"}


def test_not_an_apt_system(make_ctx, root):
    (root / "etc/os-release").write_text("ID=fedora\n")
    ctx = make_ctx()
    assert apply_twice(mod, ctx, {"apt_pipelining": False}, root) == {}
    assert ctx.warnings == [f"apt_pipelining: {root} does not use apt; nothing done"] * 2
