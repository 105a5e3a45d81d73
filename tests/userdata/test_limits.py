"""Bounds: huge input, gzip bombs, too many parts, alias bombs; each ends quickly in one clear error."""

from __future__ import annotations

import gzip
import json
import time
import zlib

import pytest

from tests.userdata.helpers import mime, run
from tether.userdata.decompress import DecompressError, gunzip
from tether.userdata.limits import LimitExceeded


def _bomb(size: int) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (1 << 20)
    return b"".join(c.compress(chunk) for _ in range(size >> 20)) + c.flush()


def test_50_mb_userdata_is_refused_quickly() -> None:
    data = b"#cloud-config\n" + b"a" * (50 * 1000 * 1000)
    t = time.monotonic()
    r = run(data)
    elapsed = time.monotonic() - t
    assert r.errors == ["user-data: 50.0 MB is over the 16 MiB limit; ignored"]
    assert r.cloud_config == {}
    assert elapsed < 0.5, elapsed


def test_gzip_bomb_is_stopped_while_inflating() -> None:
    bomb = _bomb(32 << 20)  # 32 MiB of zeros in one stream, about 33 kB compressed
    assert len(bomb) < 50_000
    t = time.monotonic()
    r = run(bomb)
    assert r.errors == ["user-data: gzip data inflates to more than 16 MiB (a gzip bomb?); ignored"]
    assert time.monotonic() - t < 2
    r = run(mime(("text/cloud-config", bomb)))
    assert r.errors == ["user-data part 1 (cloud-config): gzip data inflates to more than 16 MiB (a gzip bomb?); "
                        "ignored"]


def test_multi_member_gzip_bomb() -> None:
    # 1000 members of 1 MiB each: every member is small, their sum is not
    r = run(gzip.compress(b"\0" * (1 << 20)) * 1000)
    assert r.errors == ["user-data: gzip data inflates to more than 16 MiB (a gzip bomb?); ignored"]


def test_gunzip_multi_member_and_trailing_garbage() -> None:
    assert gunzip(gzip.compress(b"ab") + gzip.compress(b"cd")) == b"abcd"
    assert gunzip(gzip.compress(b"ab") + b"\0\0\0") == b"ab"
    with pytest.raises(LimitExceeded):
        gunzip(gzip.compress(b"x" * 1000), limit=100)
    with pytest.raises(DecompressError):
        gunzip(gzip.compress(b"x" * 1000)[:-12])


def test_total_expansion_is_bounded() -> None:
    # three parts of 12 MiB each: each under the per-stream cap, together over the total
    part = gzip.compress(b"#!/bin/sh\n" + b"#" * (12 << 20))
    r = run(mime(*[("text/x-shellscript", part)] * 3))
    assert len(r.scripts) == 2
    assert r.errors == ["user-data: user-data part 3: the data expands to more than 32 MiB in all; "
                        "the rest was not processed"]


def test_part_count_is_bounded() -> None:
    entries = "".join("- '#cloud-config\n\n  k: 1'\n" for _ in range(1500))
    r = run(("#cloud-config-archive\n" + entries).encode())
    assert r.cloud_config == {"k": 1}
    assert r.errors == ["user-data: more than 1000 parts; the rest was not processed"]


def test_mime_part_count_is_bounded() -> None:
    boundary = b"BB"
    body = b"".join(b"--BB\nContent-Type: text/cloud-config\n\n#cloud-config\na: 1\n" for _ in range(1200))
    data = b'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="' + boundary + b'"\n\n' + body + b"--BB--\n"
    r = run(data)
    assert r.errors == ["user-data: more than 1000 MIME parts; ignored"]


def test_deeply_nested_mime_is_refused() -> None:
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    msg = MIMEMultipart()
    cur = msg
    for _ in range(15):
        sub = MIMEMultipart()
        cur.attach(sub)
        cur = sub
    cur.attach(MIMEText("#cloud-config\na: 1\n", "cloud-config"))
    r = run(msg.as_bytes())
    assert r.errors == ["user-data: multipart nested more than 10 levels deep; ignored"]


def test_yaml_alias_bomb() -> None:
    lines = ["#cloud-config", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
                     f"*a{i - 1}, *a{i - 1}, *a{i - 1}]")
    t = time.monotonic()
    r = run("\n".join(lines).encode())
    assert time.monotonic() - t < 2
    assert r.cloud_config == {}
    assert len(r.errors) == 1 and "alias bomb" in r.errors[0]
    assert r.errors[0].startswith("user-data part 1 (cloud-config): refused YAML")


_LOW_MEMORY_RUN = """
import json, os, resource, sys
from tests.userdata.helpers import mime, run
big = "#cloud-config\\nbig:\\n" + "- [a, b, c, d]\\n" * 350_000   # about 5 MB of YAML: 1.75 million nodes
data = mime(("text/cloud-config", big), ("text/cloud-config", "#cloud-config\\nsmall: 2\\n"))
with open("/proc/self/statm") as f:
    vsize = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
resource.setrlimit(resource.RLIMIT_AS, (vsize + 150 * 1024 * 1024, resource.RLIM_INFINITY))
r = run(data)
print(json.dumps({"cfg": r.cloud_config, "errors": r.errors}))
"""


def test_running_out_of_memory_costs_only_that_part() -> None:
    """A host with little memory and a big part: MemoryError while parsing it is that part's error only."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.run([sys.executable, "-c", _LOW_MEMORY_RUN], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["cfg"] == {"small": 2}
    assert out["errors"] == ["user-data part 1 (cloud-config): ran out of memory while processing it; ignored"]


def test_string_alias_bomb_costs_only_its_part() -> None:
    refs = ", ".join(["*s"] * 1000)
    bomb = f"#cloud-config\ns: &s {'x' * 500_000}\nl1: &l1 [{refs}]\nl2: [{', '.join(['*l1'] * 200)}]\n"
    r = run(mime(("text/cloud-config", bomb), ("text/cloud-config", "#cloud-config\nusers: [default]\n")))
    assert r.cloud_config == {"users": ["default"]}
    assert r.errors == ["user-data part 1 (cloud-config): refused YAML: expands to more than 64 MiB of text "
                        "through aliases (an alias bomb?)"]


def test_jsonpatch_copy_bomb_is_refused_quickly() -> None:
    ops = [{"op": "copy", "from": "/a", "path": "/a/-"}] * 40  # each copy doubles the list: 2**40 items
    data = mime(("text/cloud-config", "#cloud-config\na: [1, 2]\n"),
                ("text/cloud-config-jsonp", "#cloud-config-jsonp\n" + json.dumps(ops)),
                ("text/cloud-config", "#cloud-config\nb: 1\n"))
    t = time.monotonic()
    r = run(data)
    assert time.monotonic() - t < 15  # ~3 s here (deep copies up to the bound); unbounded it never ends
    assert r.cloud_config == {"a": [1, 2], "b": 1}
    assert r.errors == ["user-data part 2 (cloud-config-jsonp): operation 18 (copy): the copies would grow the "
                        "configuration past 1000000 nodes or 64 MiB of text (a copy bomb?); ignored"]


def test_deeply_nested_jsonpatch_costs_only_its_part() -> None:
    for depth, why in ((900, "operation 0 (add): nesting deeper than 200 levels"),
                       (100_000, "invalid JSON: nested too deeply")):
        value = "[" * depth + "]" * depth
        patch = f'#cloud-config-jsonp\n[{{"op": "add", "path": "/runcmd", "value": {value}}}]'
        r = run(mime(("text/cloud-config-jsonp", patch), ("text/cloud-config", "#cloud-config\nb: 1\n")))
        assert r.cloud_config == {"b": 1}
        assert r.errors == [f"user-data part 1 (cloud-config-jsonp): {why}; ignored"]
