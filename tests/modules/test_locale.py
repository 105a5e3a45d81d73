from __future__ import annotations

from tests.conftest import needs_root
from tests.modules.sysmod_support import apply_twice, config_errors, fake_system, parse
from tether.modules import locale as mod

LOCALE_GEN = "# en_US ISO-8859-1\n# en_US.UTF-8 UTF-8\n# fr_CA.UTF-8 UTF-8\n# ar_AE ISO-8859-6\n"


def test_good_and_bad_configs():
    assert parse(mod, {"locale": "ar_AE"}).locale == "ar_AE"
    assert parse(mod, {"locale": False}).locale is False
    assert config_errors(mod.Config, {"locale": 5}) == [
        "locale: expected a boolean or a string or null, got a number (5)"]
    assert any("must be an absolute path" in e for e in config_errors(mod.Config, {"locale_configfile": "x"}))
    assert any("not a locale name" in e for e in config_errors(mod.Config, {"locale": "en US; rm"}))


def test_writes_default_locale_keeping_other_lines(make_ctx, root):
    (root / "etc/default").mkdir()
    (root / "etc/default/locale").write_text('LANG="en_US.UTF-8"\nLC_TIME="C"\n')
    changed = apply_twice(mod, make_ctx(), {"locale": "C.UTF-8"}, root)
    assert changed == {"/etc/default/locale": "changed"}
    assert (root / "etc/default/locale").read_text() == 'LANG="C.UTF-8"\nLC_TIME="C"\n'


def test_enables_locale_gen_and_warns_when_it_cannot_generate(make_ctx, root, fake_runner):
    (root / "etc/locale.gen").write_text(LOCALE_GEN)
    ctx = make_ctx()
    changed = apply_twice(mod, ctx, {"locale": "fr_CA.UTF-8"}, root)
    assert changed == {"/etc/default": "added", "/etc/default/locale": "added", "/etc/locale.gen": "changed"}
    assert (root / "etc/default/locale").read_text() == 'LANG="fr_CA.UTF-8"\n'
    assert "\nfr_CA.UTF-8 UTF-8\n" in (root / "etc/locale.gen").read_text()
    assert "# en_US.UTF-8 UTF-8" in (root / "etc/locale.gen").read_text()
    assert len(ctx.warnings) == 1 and "not generated" in ctx.warnings[0]
    assert fake_runner.calls == []


@needs_root()
def test_runs_locale_gen_chrooted_when_the_root_holds_a_system(make_ctx, root, fake_runner):
    fake_system(root)
    (root / "etc/locale.gen").write_text(LOCALE_GEN)
    fake_runner.expect("chroot * locale-gen")
    mod.handle(make_ctx(), parse(mod, {"locale": "ar_AE"}))
    assert fake_runner.commands() == [f"chroot {root} locale-gen"]
    mod.handle(make_ctx(), parse(mod, {"locale": "ar_AE"}))
    assert len(fake_runner.calls) == 1  # already enabled: not generated again


def test_custom_configfile_and_unknown_locale(make_ctx, root):
    (root / "etc/locale.gen").write_text(LOCALE_GEN)
    ctx = make_ctx()
    changed = apply_twice(mod, ctx, {"locale": "xx_YY.UTF-8", "locale_configfile": "/etc/alternate_path/locale"},
                          root)
    assert changed == {"/etc/alternate_path": "added", "/etc/alternate_path/locale": "added"}
    assert any("not listed in /etc/locale.gen" in w for w in ctx.warnings)


def test_locale_false_does_nothing(make_ctx, root):
    assert apply_twice(mod, make_ctx(), {"locale": False}, root) == {}


def test_non_debian_uses_locale_conf(make_ctx, root):
    (root / "etc/os-release").write_text("ID=fedora\n")
    assert apply_twice(mod, make_ctx(), {"locale": "en_US.UTF-8"}, root) == {"/etc/locale.conf": "added"}


def test_live_calls_localectl(make_ctx, root, fake_runner):
    fake_runner.expect("localectl set-locale LANG=C.UTF-8")
    mod.handle(make_ctx(live=True), parse(mod, {"locale": True}))
    assert fake_runner.commands() == ["localectl set-locale LANG=C.UTF-8"]
