from __future__ import annotations

from tests.conftest import needs_root
from tests.modules.sysmod_support import apply_twice, config_errors, config_warnings, fake_system, parse
from tether.modules import ca_certs as mod

CERT = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
CONF = "# comment\nmozilla/ACCVRAIZ1.crt\nmozilla/Actalis.crt\n!mozilla/Old.crt\n"


def test_good_and_bad_configs():
    cfg = parse(mod, {"ca_certs": {"remove_defaults": True, "trusted": [CERT]}})
    assert cfg.ca_certs.remove and cfg.ca_certs.trusted == (CERT,)
    assert config_errors(mod.Config, {"ca_certs": {"trusted": CERT}})[0].startswith(
        "ca_certs.trusted: expected a list of strings")
    assert config_errors(mod.Config, {"ca_certs": {"remove_defaults": "yes"}}) == [
        "ca_certs.remove_defaults: expected a boolean, got a string ('yes')"]
    warns = config_warnings(mod.Config, {"ca-certs": {"remove-defaults": True}})
    assert warns == ["ca-certs.remove-defaults: deprecated, use remove_defaults", "ca-certs: deprecated, use ca_certs"]


def test_writes_certs_and_distrusts_defaults(make_ctx, root, fake_runner):
    (root / "etc/ca-certificates.conf").write_text(CONF)
    ctx = make_ctx()
    data = {"ca_certs": {"remove_defaults": True, "trusted": [CERT, "single_line_cert"]}}
    changed = apply_twice(mod, ctx, data, root)
    assert changed == {"/usr": "added", "/usr/local": "added", "/usr/local/share": "added",
                       "/usr/local/share/ca-certificates": "added",
                       "/usr/local/share/ca-certificates/tether-ca-cert-1.crt": "added",
                       "/usr/local/share/ca-certificates/tether-ca-cert-2.crt": "added",
                       "/etc/ca-certificates.conf": "changed"}
    assert (root / "usr/local/share/ca-certificates/tether-ca-cert-1.crt").read_text() == CERT
    assert (root / "usr/local/share/ca-certificates/tether-ca-cert-2.crt").read_text() == "single_line_cert\n"
    assert (root / "etc/ca-certificates.conf").read_text() == (
        "# comment\n!mozilla/ACCVRAIZ1.crt\n!mozilla/Actalis.crt\n!mozilla/Old.crt\n")
    assert any("does not look like a PEM" in w for w in ctx.warnings)
    assert any("update-ca-certificates not run" in w for w in ctx.warnings)
    assert fake_runner.calls == []


def test_shorter_list_removes_stale_certs(make_ctx, root):
    apply_twice(mod, make_ctx(), {"ca_certs": {"trusted": [CERT, CERT]}}, root)
    changed = apply_twice(mod, make_ctx(), {"ca_certs": {"trusted": [CERT]}}, root)
    assert changed == {"/usr/local/share/ca-certificates/tether-ca-cert-2.crt": "removed"}


@needs_root()
def test_rebuilds_the_store_in_the_target(make_ctx, root, fake_runner):
    fake_system(root)
    (root / "etc/ca-certificates.conf").write_text(CONF)
    fake_runner.expect("chroot * update-ca-certificates*")
    mod.handle(make_ctx(), parse(mod, {"ca_certs": {"trusted": [CERT]}}))
    mod.handle(make_ctx(), parse(mod, {"ca_certs": {"remove_defaults": True, "trusted": [CERT]}}))
    assert fake_runner.commands() == [f"chroot {root} update-ca-certificates",
                                      f"chroot {root} update-ca-certificates --fresh"]


def test_rhel_anchors(make_ctx, root):
    (root / "etc/os-release").write_text("ID=rhel\n")
    ctx = make_ctx()
    changed = apply_twice(mod, ctx, {"ca_certs": {"trusted": [CERT], "remove_defaults": True}}, root)
    assert "/etc/pki/ca-trust/source/anchors/tether-ca-cert-1.crt" in changed
    assert any("remove_defaults: not supported on rhel" in w for w in ctx.warnings)
