"""The issue-18 modules through the real stage runner with tether's default module lists: each is listed in the
stage its STAGE names, runs from there, and keeps cloud-init's frequency (chef every boot, the rest once per
instance)."""

from __future__ import annotations

import pytest

from tests.fakes import FakeRunner
from tether import sysconfig
from tether.modrunner import run_modules
from tether.modules import load
from tether.status import StageStatus

NEW = ("apt_pipelining", "byobu", "ssh_import_id", "wireguard", "snap", "lxd", "ansible", "puppet", "chef")
CFG = {"apt_pipelining": False,
       "wireguard": {"interfaces": [{"name": "wg0", "config_path": "/etc/wireguard/wg0.conf",
                                     "content": "[Interface]\nPrivateKey = x\n"}]},
       "chef": {"validation_cert": "-----BEGIN RSA PRIVATE KEY-----\nk\n-----END RSA PRIVATE KEY-----\n"}}


@pytest.mark.parametrize("name", NEW)
def test_listed_in_its_stage(name):
    mod = load(name)
    assert name in [n for n, _f in sysconfig.module_list(sysconfig.DEFAULTS, mod.STAGE)]
    expected = "always" if name == "chef" else "once-per-instance"
    assert mod.FREQUENCY == expected


def _boot(make_ctx):
    ctx = make_ctx(cloud_config=CFG, runner=FakeRunner().expect("*"))
    events = []
    for stage in ("init", "config", "final"):
        status = StageStatus(ctx.target, f"modules-{stage}")
        names = [(n, f) for n, f in sysconfig.module_list(sysconfig.DEFAULTS, stage) if n in NEW]
        events += run_modules(ctx, stage, names, status).events
        assert status.errors == [], status.errors
    return {e.name: e.result for e in events if e.name in NEW}


def test_default_lists_run_them_with_their_frequencies(make_ctx, root):
    first = _boot(make_ctx)
    assert {n: first[n] for n in ("apt_pipelining", "wireguard", "chef")} == {
        "apt_pipelining": "ran", "wireguard": "ran", "chef": "ran"}
    assert (root / "etc/apt/apt.conf.d/90tether-pipelining").exists()
    assert (root / "etc/wireguard/wg0.conf").stat().st_mode & 0o777 == 0o600
    assert (root / "etc/chef/validation.pem").stat().st_mode & 0o777 == 0o600
    second = _boot(make_ctx)
    assert {n: second[n] for n in ("apt_pipelining", "wireguard", "chef")} == {
        "apt_pipelining": "already-ran", "wireguard": "already-ran", "chef": "ran"}
