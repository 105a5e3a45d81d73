"""write_files through the real module runner: one invalid entry costs only itself, named by its index."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tether.modrunner import run_modules
from tether.status import StageStatus


def _run(ctx: Any, stage: str = "init", name: str = "write_files") -> tuple[StageStatus, list[Any]]:
    status = StageStatus(ctx.target, stage)
    events = run_modules(ctx, stage, [(name, None)], status, force=True).events
    return status, events


def test_invalid_entry_is_skipped_and_the_valid_ones_written(make_ctx: Any, root: Path) -> None:
    cfg = {"write_files": [
        {"path": "/etc/one.conf", "content": "one\n"},
        {"path": "/etc/two.conf", "content": "two\n", "permissions": "rwx"},
        {"path": "relative/three", "content": "three\n"},
        {"content": "no path\n"},
        {"path": "/etc/five.conf", "content": "five\n", "permissions": "0600"},
    ]}
    status, events = _run(make_ctx(cloud_config=cfg))
    assert (root / "etc/one.conf").read_text() == "one\n"
    assert (root / "etc/five.conf").read_text() == "five\n"
    assert (root / "etc/five.conf").stat().st_mode & 0o777 == 0o600
    assert not (root / "etc/two.conf").exists()
    assert [e.result for e in events] == ["ran"]
    assert status.errors == []
    assert status.recoverable["WARNING"] == [
        "module write_files: write_files[1]: permissions 'rwx' is not an octal mode; "
        "this entry is skipped, the others are applied",
        "module write_files: write_files[2]: path 'relative/three' must be absolute; "
        "this entry is skipped, the others are applied",
        "module write_files: write_files[3].path: missing required key; this entry is skipped, the others are applied",
    ]


def test_entry_of_the_wrong_shape_does_not_quote_its_content(make_ctx: Any, root: Path) -> None:
    cfg = {"write_files": [{"path": "/etc/key", "content": ["-----BEGIN PRIVATE KEY-----", "s3cr3tKeyMaterial"]},
                           {"path": "/etc/ok", "content": 12345678}, {"path": "/etc/fine", "content": "x"}]}
    status, _ = _run(make_ctx(cloud_config=cfg))
    assert (root / "etc/fine").read_text() == "x"
    text = repr(status.recoverable)
    assert "write_files[0].content" in text and "write_files[1].content" in text
    assert "s3cr3tKeyMaterial" not in text and "12345678" not in text


def test_invalid_deferred_entry_does_not_drop_the_other_deferred_ones(make_ctx: Any, root: Path) -> None:
    cfg = {"write_files": [{"path": "/etc/late.conf", "content": "late\n", "defer": True},
                           {"path": "/etc/bad.conf", "defer": True, "permissions": "rwx"}]}
    ctx = make_ctx(cloud_config=cfg)
    status, _ = _run(ctx)  # init: write_files reports the invalid entry and leaves the deferred one
    assert not (root / "etc/late.conf").exists()
    assert status.recoverable["WARNING"] == [
        "module write_files: write_files[1]: permissions 'rwx' is not an octal mode; "
        "this entry is skipped, the others are applied"]
    status, events = _run(ctx, "final", "write_files_deferred")
    assert [e.result for e in events] == ["ran"]
    assert (root / "etc/late.conf").read_text() == "late\n"
    assert not (root / "etc/bad.conf").exists()
    assert status.errors == [] and status.recoverable == {}


def _gzip_zeros(n: int) -> bytes:
    import zlib
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (1 << 20)
    return b"".join(c.compress(chunk) for _ in range(n >> 20)) + c.flush()


def test_gzip_bomb_entry_is_stopped_while_inflating_and_costs_only_itself(make_ctx: Any, root: Path) -> None:
    import base64
    import time

    bomb = base64.b64encode(_gzip_zeros(200 << 20)).decode()  # 200 MiB of zeros, about 270 kB encoded
    cfg = {"write_files": [{"path": "/etc/bomb", "content": bomb, "encoding": "gz+b64"},
                           {"path": "/etc/fine", "content": "fine\n"}]}
    t = time.monotonic()
    status, events = _run(make_ctx(cloud_config=cfg))
    assert time.monotonic() - t < 10
    assert not (root / "etc/bomb").exists()
    assert (root / "etc/fine").read_text() == "fine\n"
    assert [e.result for e in events] == ["failed"]
    assert status.errors == ["module write_files failed: /etc/bomb: cannot decode gz+b64 content: gzip data "
                             "inflates to more than 128 MiB (a gzip bomb?); not written"]
