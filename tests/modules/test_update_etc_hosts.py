"""update_etc_hosts: manage_etc_hosts true / template / localhost / false."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.modules.treesnap import diff, snapshot
from tether.convert import convert
from tether.errors import ConfigErrors
from tether.modules import update_etc_hosts as ueh

ORIG = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"


def cfg(data: dict[str, Any]) -> ueh.Config:
    return convert(ueh.Config, data, strict=False)


def test_good_and_bad_configs() -> None:
    assert cfg({"manage_etc_hosts": "localhost"}).manage_etc_hosts == "localhost"
    with pytest.raises(ConfigErrors, match="manage_etc_hosts: expected"):
        cfg({"manage_etc_hosts": ["x"]})


def test_false_by_default(make_ctx: Any, root: Path) -> None:
    before = snapshot(root)
    ueh.handle(make_ctx(), cfg({}))
    ueh.handle(make_ctx(), cfg({"manage_etc_hosts": False}))
    assert diff(before, snapshot(root)) == {}


def test_true_builtin_template(make_ctx: Any, root: Path) -> None:
    before = snapshot(root)
    ueh.handle(make_ctx(), cfg({"manage_etc_hosts": True, "fqdn": "web.example.com"}))
    assert diff(before, snapshot(root)) == {"/etc/hosts": "changed"}
    text = (root / "etc/hosts").read_text()
    assert "127.0.1.1 web.example.com web\n127.0.0.1 localhost\n" in text
    assert "::1 localhost ip6-localhost ip6-loopback" in text
    snap = snapshot(root)
    ueh.handle(make_ctx(), cfg({"manage_etc_hosts": True, "fqdn": "web.example.com"}))
    assert diff(snap, snapshot(root)) == {}


def test_true_with_image_template_jinja_and_deprecated_template_value(make_ctx: Any, root: Path) -> None:
    tpl = root / "etc/cloud/templates/hosts.debian.tmpl"
    tpl.parent.mkdir(parents=True)
    tpl.write_text("## template:jinja\n{#\ncomment\n#}\n127.0.1.1 {{fqdn}} {{hostname}}\n127.0.0.1 localhost\n")
    ctx = make_ctx()
    ueh.handle(ctx, cfg({"manage_etc_hosts": "template", "hostname": "db"}))
    # as cloud-init: a dotless hostname keeps the datasource's fqdn (here the metadata local-hostname)
    assert (root / "etc/hosts").read_text() == "\n127.0.1.1 testhost db\n127.0.0.1 localhost\n"
    assert any("deprecated" in w for w in ctx.warnings)


def test_cheetah_template(make_ctx: Any, root: Path) -> None:
    tpl = root / "etc/cloud/templates/hosts.debian.tmpl"
    tpl.parent.mkdir(parents=True)
    tpl.write_text("## template:cheetah\n127.0.1.1 $fqdn ${hostname}\n")
    ueh.handle(make_ctx(), cfg({"manage_etc_hosts": True, "fqdn": "a.b.c"}))
    assert (root / "etc/hosts").read_text() == "127.0.1.1 a.b.c a\n"


def test_localhost_adds_entry_once_and_keeps_rest(make_ctx: Any, root: Path) -> None:
    before = snapshot(root)
    ueh.handle(make_ctx(), cfg({"manage_etc_hosts": "localhost"}))   # metadata local-hostname: testhost
    assert diff(before, snapshot(root)) == {"/etc/hosts": "changed"}
    assert (root / "etc/hosts").read_text() == "127.0.0.1 localhost\n127.0.1.1 testhost\n" \
                                                 "::1 localhost ip6-localhost ip6-loopback\n"
    snap = snapshot(root)
    ueh.handle(make_ctx(), cfg({"manage_etc_hosts": "localhost"}))
    assert diff(snap, snapshot(root)) == {}
    # a new name adds an entry after the existing 127.0.1.1 line
    ueh.handle(make_ctx(), cfg({"manage_etc_hosts": "localhost", "fqdn": "n.example.org"}))
    assert (root / "etc/hosts").read_text() == ("127.0.0.1 localhost\n127.0.1.1 testhost\n"
                                                "127.0.1.1 n.example.org n\n"
                                                "::1 localhost ip6-localhost ip6-loopback\n")


def test_unknown_value_warns(make_ctx: Any, root: Path) -> None:
    ctx = make_ctx()
    ueh.handle(ctx, cfg({"manage_etc_hosts": "sometimes"}))
    assert (root / "etc/hosts").read_text() == ORIG
    assert any("unknown value" in w for w in ctx.warnings)
