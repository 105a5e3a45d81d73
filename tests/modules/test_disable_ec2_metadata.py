from __future__ import annotations

from tests.modules.sysmod_support import apply_twice, config_errors, parse
from tether.modules import disable_ec2_metadata as mod


def test_good_and_bad_configs():
    assert parse(mod, {"disable_ec2_metadata": True}).disable_ec2_metadata is True
    assert config_errors(mod.Config, {"disable_ec2_metadata": "yes"}) == [
        "disable_ec2_metadata: expected a boolean, got a string ('yes')"]


def test_live_adds_a_prohibit_route_every_boot(make_ctx, fake_runner):
    fake_runner.expect("ip route replace prohibit 169.254.169.254")
    ctx = make_ctx(live=True)
    mod.handle(ctx, parse(mod, {"disable_ec2_metadata": True}))
    mod.handle(ctx, parse(mod, {"disable_ec2_metadata": True}))
    assert fake_runner.commands() == ["ip route replace prohibit 169.254.169.254"] * 2
    assert mod.FREQUENCY == "always"


def test_offline_or_false_does_nothing(make_ctx, root, fake_runner):
    assert apply_twice(mod, make_ctx(), {"disable_ec2_metadata": True}, root) == {}
    mod.handle(make_ctx(live=True), parse(mod, {"disable_ec2_metadata": False}))
    assert fake_runner.calls == []
