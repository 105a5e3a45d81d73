"""Nothing a part holds (passwords, tokens) ends up in a warning, an error or a log record."""

from __future__ import annotations

import json
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


def test_command_error_redacts_argv_output_and_message() -> None:
    from tether.errors import CommandError
    from tether.runner import Runner

    with pytest.raises(CommandError) as ei:
        Runner().run(["sh", "-c", 'echo "out $1"; echo "err $1" >&2; exit 3', "sh", SECRET], secrets=[SECRET])
    e = ei.value
    assert e.code == 3
    assert e.stdout == "out <redacted>\n" and e.stderr == "err <redacted>\n"
    assert e.argv[-1] == "<redacted>" and SECRET not in repr(e.argv)
    assert str(e) == "command 'sh' failed (exit code 3): err <redacted>"


def test_registered_secrets_are_redacted_from_command_errors_and_status(tmp_path: Path) -> None:
    from tether import redact
    from tether.errors import CommandError
    from tether.runner import Runner
    from tether.status import StageStatus
    from tether.target import Target

    redact.add_secret(SECRET)
    try:
        with pytest.raises(CommandError) as ei:
            Runner().run(["sh", "-c", f"echo token={SECRET} >&2; exit 1"])
        assert SECRET not in str(ei.value) and SECRET not in ei.value.stderr and SECRET not in repr(ei.value.argv)
        status = StageStatus(Target.at(tmp_path), "init")
        status.error(f"module x failed: {ei.value}")
        status.recoverable_error(f"a message quoting {SECRET} itself")
        status.finish()
    finally:
        redact._SECRETS.discard(SECRET)
    text = (tmp_path / "run/tether/status.json").read_text()
    assert SECRET not in text and "<redacted>" in text


def test_control_characters_from_outside_are_escaped_in_status_and_log(tmp_path: Path) -> None:
    from tether import logs
    from tether.status import StageStatus
    from tether.target import Target

    hostile = "server said \x1b[2J\x1b]0;owned\x07\rfake: all good\nsecond line \x00\udcff"
    status = StageStatus(Target.at(tmp_path), "init")
    status.recoverable_error(f"datasource Ec2: {hostile}")
    status.finish()
    doc = json.loads((tmp_path / "run/tether/status.json").read_text())
    (msg,) = doc["v1"]["init"]["recoverable_errors"]["WARNING"]
    assert msg == ("datasource Ec2: server said \\x1b[2J\\x1b]0;owned\\x07\\x0dfake: all good\\x0asecond line "
                   "\\x00\\udcff")
    assert msg.isprintable()

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logs.setup(Target.at(tmp_path), to_file=True)
        logging.getLogger("tether.test").warning("got %s", hostile)
        for h in root.handlers:
            h.flush()
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
            if h not in saved[0]:
                h.close()
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
    text = (tmp_path / "var/log/tether.log").read_bytes().decode()
    assert "got server said \\x1b[2J\\x1b]0;owned\\x07\\x0dfake: all good\nsecond line \\x00\\udcff" in text
    assert "\x1b" not in text and "\r" not in text and "\x00" not in text
