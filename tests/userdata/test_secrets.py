"""Nothing a part holds (passwords, tokens) ends up in a warning, an error or a log record."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.userdata.helpers import mime, run

SECRET = "s3cr3t-Pa55w0rd"


def test_secrets_stay_out_of_messages_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    inputs = [
        f"#cloud-config\npassword: {SECRET}\nusers: [\n".encode(),
        f"#cloud-config\nchpasswd: {{list: [root:{SECRET}]}}\n\tbad\n".encode(),
        f"## template: jinja\n#cloud-config\npassword: {SECRET} {{{{ broken\n".encode(),
        f"## template: jinja\n#cloud-config\npassword: {SECRET}\n{{{{ v1.nope.deeper }}}}\n".encode(),
        mime(("text/plain", f"password {SECRET}\n"), ("text/x-unknown", SECRET),
             ("text/cloud-config-archive", f"- content: {{a: {SECRET}}}\n")),
        f'#cloud-config-jsonp\n[{{"op": "test", "path": "/p", "value": "{SECRET}"}}]'.encode(),
        f"#include\nhttps://h/x?token={SECRET}\n".encode(),
    ]
    seen = 0
    for data in inputs:
        r = run(data, fetch=lambda url: (_ for _ in ()).throw(OSError(f"{url}: unreachable")))
        seen += len(r.errors) + len(r.warnings)
        for m in r.errors + r.warnings:
            assert SECRET not in m, m
    assert seen >= len(inputs)
    assert SECRET not in caplog.text


SECRET_CONFIGS = [
    # a password written as a YAML number
    ("set_passwords", "password: 86753099\n", "password: expected a string or null, got a number"),
    ("set_passwords", "chpasswd: {users: root:86753099}\n",
     "chpasswd.users: expected a list of mappings, got a string"),
    ("set_passwords", "chpasswd: {users: [{name: root, password: 86753099, type: text}]}\n",
     "chpasswd.users[0].password"),
    ("set_passwords", "chpasswd: {users: [{name: root, password: x86753099, type: plain}]}\n",
     "chpasswd.users[0].type"),
    ("set_passwords", "chpasswd: {list: [86753099]}\n", "chpasswd.list"),
    ("users_groups", "users: [{name: bob, passwd: 86753099}]\n",
     "users[0].passwd: expected a string or null, got a number"),
    ("users_groups", "users: [{name: bob, hashed-passwd: [86753099]}]\n", "users[0].hashed-passwd"),
    ("users_groups", "users: [{name: bob, plain_text_passwd: {a: 86753099}}]\n", "users[0].plain_text_passwd"),
    ("ssh", "ssh_keys: {rsa_private: [86753099]}\n", "ssh_keys.rsa_private"),
    ("seed_random", "random_seed: {data: 86753099}\n", "random_seed.data"),
    ("apt_configure", "apt: {proxy: [http://u:86753099@proxy]}\n", "apt.proxy"),
]


@pytest.mark.parametrize(("module", "doc", "where"), SECRET_CONFIGS)
def test_validation_messages_never_quote_a_secret(module: str, doc: str, where: str, tmp_path: Path) -> None:
    """Through the module runner into status.json (world-readable): the path is named, the value never."""
    from tests.fakes import FakeRunner
    from tether import yamlsafe
    from tether.instance import InstanceData
    from tether.modrunner import run_modules
    from tether.module import ModuleContext
    from tether.status import StageStatus
    from tether.target import Target

    target = Target.at(tmp_path)
    cfg = yamlsafe.load("#cloud-config\n" + doc)
    ctx = ModuleContext(target=target, runner=FakeRunner(), cloud_config=cfg, system_config={},
                        instance=InstanceData(datasource="NoCloud", instance_id="iid-1"))
    status = StageStatus(target, "init")
    status.start()
    events = run_modules(ctx, "init", [(module, None)], status).events
    assert [e.result for e in events] == ["invalid"]
    status.finish()
    text = (tmp_path / "run/tether/status.json").read_text()
    assert where in text
    assert "86753099" not in text


def test_a_check_that_quotes_a_secret_field_is_scrubbed() -> None:
    from dataclasses import dataclass, field

    from tether.convert import convert, meta
    from tether.errors import ConfigErrors

    @dataclass(frozen=True)
    class Login:
        name: str
        secret: str = field(default="", metadata=meta(sensitive=True))

        def __post_init__(self) -> None:
            if len(self.secret) < 20:
                raise ValueError(f"secret {self.secret!r} for {self.name} is too short")

    with pytest.raises(ConfigErrors) as ei:
        convert(Login, {"name": "bob", "secret": "hunter2"})
    assert str(ei.value) == "(top): secret <redacted> for bob is too short"
