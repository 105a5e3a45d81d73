from __future__ import annotations

from tests.modules.sysmod_support import apply_twice, config_errors, config_warnings, parse
from tether.modules import keyboard as mod


def test_good_and_bad_configs():
    kb = parse(mod, {"keyboard": {"layout": "gb", "variant": "gb-extd"}}).keyboard
    assert (kb.layout, kb.model, kb.variant, kb.options) == ("gb", "pc105", "gb-extd", "")
    assert config_errors(mod.Config, {"keyboard": {"model": "pc104"}}) == ["keyboard.layout: missing required key"]
    assert config_errors(mod.Config, {"keyboard": {"layout": 1}}) == [
        "keyboard.layout: expected a string, got a number (1)"]
    assert any("never has" in e for e in config_errors(mod.Config, {"keyboard": {"layout": 'us"\nX=1'}}))
    assert config_warnings(mod.Config, {"keyboard": {"layout": "us", "colour": "red"}}) == [
        "keyboard.colour: unknown key, ignored"]


def test_writes_default_keyboard(make_ctx, root):
    data = {"keyboard": {"layout": "de", "model": "pc105", "variant": "nodeadkeys", "options": "compose:rwin"}}
    assert apply_twice(mod, make_ctx(), data, root) == {"/etc/default": "added", "/etc/default/keyboard": "added"}
    assert (root / "etc/default/keyboard").read_text() == (
        'XKBMODEL="pc105"\nXKBLAYOUT="de"\nXKBVARIANT="nodeadkeys"\nXKBOPTIONS="compose:rwin"\nBACKSPACE="guess"\n')


def test_keeps_other_settings(make_ctx, root):
    (root / "etc/default").mkdir()
    (root / "etc/default/keyboard").write_text('# KEYBOARD CONFIGURATION FILE\nXKBLAYOUT="us"\nBACKSPACE="guess"\n')
    assert apply_twice(mod, make_ctx(), {"keyboard": {"layout": "fr"}}, root) == {"/etc/default/keyboard": "changed"}
    assert (root / "etc/default/keyboard").read_text() == (
        '# KEYBOARD CONFIGURATION FILE\nXKBLAYOUT="fr"\nBACKSPACE="guess"\nXKBMODEL="pc105"\nXKBVARIANT=""\n'
        'XKBOPTIONS=""\n')


def test_other_families_use_vconsole_conf(make_ctx, root):
    (root / "etc/os-release").write_text("ID=arch\n")
    assert apply_twice(mod, make_ctx(), {"keyboard": {"layout": "us"}}, root) == {"/etc/vconsole.conf": "added"}


def test_live_calls_localectl(make_ctx, fake_runner):
    fake_runner.expect("localectl set-x11-keymap *")
    mod.handle(make_ctx(live=True), parse(mod, {"keyboard": {"layout": "us"}}))
    assert fake_runner.calls == [["localectl", "set-x11-keymap", "us", "pc105", "", ""]]
