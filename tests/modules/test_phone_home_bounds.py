"""phone_home's time bound: tries x (2 x timeout) plus the pauses between tries, whatever the server does."""

from __future__ import annotations

import time

from tests.hostile.server import HostileServer
from tests.modules.sysmod_support import config_errors, parse
from tether.modules import phone_home as mod


def test_timeout_key() -> None:
    assert parse(mod, {"phone_home": {"url": "http://x/"}}).phone_home.timeout == 10.0
    assert parse(mod, {"phone_home": {"url": "http://x/", "timeout": 2.5}}).phone_home.timeout == 2.5
    assert any("timeout must be more than 0" in e
               for e in config_errors(mod.Config, {"phone_home": {"url": "http://x/", "timeout": 0}}))
    errs = config_errors(mod.Config, {"phone_home": {"url": "ftp://user:SECRET@x/?t=TOKEN"}})
    assert errs and not any("SECRET" in e or "TOKEN" in e for e in errs), errs


def test_a_server_that_drips_costs_at_most_the_bound(make_ctx) -> None:
    ctx = make_ctx(live=True, cloud_config={"fqdn": "h.example"})
    with HostileServer("drip_body") as srv:
        url = srv.url
        t0 = time.monotonic()
        mod.handle(ctx, parse(mod, {"phone_home": {"url": url.replace("http://", "http://u:pw@") + "/?k=SECRET",
                                                   "tries": 2, "timeout": 0.3}}))
        elapsed = time.monotonic() - t0
    # 2 tries x 0.6 s + one 3 s pause
    assert 3.9 < elapsed < 4.8 + 0.5, elapsed
    assert ctx.warnings == [f"phone_home: posting to {url}/?… failed after 2 tries: {url}/?…: reading the response "
                            "body: no answer within the time allowed"]
