"""Nothing a part holds (passwords, tokens) ends up in a warning, an error or a log record."""

from __future__ import annotations

import logging

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
