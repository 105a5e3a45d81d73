from __future__ import annotations

import base64

import pytest

from tests.modules.sysmod_support import apply_twice, config_errors, parse
from tether.module import ModuleError
from tether.modules import seed_random as mod


def test_good_and_bad_configs():
    cfg = parse(mod, {"random_seed": {"command": ["sh", "-c", "dd if=/dev/urandom of=$RANDOM_SEED_FILE"],
                                      "command_required": True, "data": "my random string", "encoding": "raw",
                                      "file": "/dev/urandom"}})
    assert cfg.random_seed.command_required
    assert config_errors(mod.Config, {"random_seed": {"encoding": "rot13"}}) == [
        "random_seed.encoding: expected one of 'raw', 'base64', 'b64', 'gzip', 'gz', got a string ('rot13')"]
    assert config_errors(mod.Config, {"random_seed": {"file": "seed"}}) == [
        "random_seed: file 'seed' must be an absolute path"]
    assert config_errors(mod.Config, {"random_seed": {"command": "pollinate"}}) == [
        "random_seed.command: expected a list of strings or null, got a string ('pollinate')"]


def test_regular_file_gets_decoded_data_and_datasource_seed(make_ctx, root):
    ctx = make_ctx()
    ctx.instance.metadata["random_seed"] = base64.b64encode(b"-from-ds").decode()
    data = {"random_seed": {"file": "/var/lib/seed", "data": base64.b64encode(b"\x00\x01seed").decode(),
                            "encoding": "b64"}}
    assert apply_twice(mod, ctx, data, root) == {"/var/lib/seed": "added"}
    assert (root / "var/lib/seed").read_bytes() == b"\x00\x01seed-from-ds"
    assert (root / "var/lib/seed").stat().st_mode & 0o777 == 0o600


def test_offline_device_and_command_are_left_alone(make_ctx, root, fake_runner):
    data = {"random_seed": {"data": "x", "command": ["pollinate"], "command_required": True}}
    assert apply_twice(mod, make_ctx(), data, root) == {}
    assert fake_runner.calls == []


def test_live_runs_the_command_with_the_seed_file(make_ctx, root, fake_runner, monkeypatch):
    monkeypatch.setattr(mod.shutil, "which", lambda name: f"/usr/bin/{name}")
    seen = {}
    fake_runner.expect("sh -c *", handler=lambda argv, kw: seen.update(kw["env"]))
    (root / "dev").mkdir()
    data = {"random_seed": {"file": "/dev/urandom", "command": ["sh", "-c", "true"]}}
    mod.handle(make_ctx(live=True), parse(mod, data))
    assert seen == {"RANDOM_SEED_FILE": "/dev/urandom"}


def test_missing_required_command_fails(make_ctx, monkeypatch):
    monkeypatch.setattr(mod.shutil, "which", lambda name: None)
    with pytest.raises(ModuleError, match="'pollinate' not found"):
        mod.handle(make_ctx(live=True), parse(mod, {"random_seed": {"file": "/var/s", "command": ["pollinate"],
                                                                    "command_required": True}}))
    mod.handle(make_ctx(live=True), parse(mod, {"random_seed": {"file": "/var/s", "command": ["pollinate"]}}))
