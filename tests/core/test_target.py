from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tether.target import Target


def test_symlinks_cannot_escape_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink("/../../../outside", root / "etc" / "evil")
    os.symlink(str(outside), root / "abs")
    t = Target.at(root)
    assert t.path("/etc/evil/x") == root / "outside" / "x"
    assert t.path("/abs/x").is_relative_to(root)
    t.write("/abs/file", "hi")
    assert not (outside / "file").exists()


def test_atomic_write_sets_mode_and_append(tmp_path: Path) -> None:
    t = Target.at(tmp_path)
    t.write("/a/b/c.txt", "one\n", mode=0o600)
    t.write("/a/b/c.txt", "two\n", append=True)
    p = tmp_path / "a/b/c.txt"
    assert p.read_text() == "one\ntwo\n"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert not [x for x in os.listdir(tmp_path / "a/b") if x.startswith(".")]


def test_deferred_sync_flushes_once_per_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync"))
    monkeypatch.setattr(os, "sync", lambda: calls.append("sync"))
    t = Target(tmp_path)
    t.write("/etc/a", "1\n")
    assert calls == ["fsync"]                      # by default every durable write is flushed on its own
    calls.clear()
    t.defer_sync()
    t.write("/etc/b", "2\n")
    t.write("/var/log/x.log", "line\n", append=True)
    t.write("/run/tether/s", "3\n")
    assert calls == []
    assert (tmp_path / "etc/b").read_text() == "2\n"
    t.sync()
    t.sync()                                        # nothing new written: no second flush
    assert calls == ["sync"]
