from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tether.target import Target, TargetPathError


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


def test_path_resolves_links_inside_the_root_like_the_kernel(tmp_path: Path) -> None:
    """Links that stay inside the root resolve as realpath would; absolute ones are re-rooted; missing parts and
    '..' after them are joined as written; a loop is an error naming the path."""
    root = tmp_path / "root"
    (root / "usr/lib/pkg").mkdir(parents=True)
    (root / "etc").mkdir()
    os.symlink("usr/lib", root / "lib")                    # relative, at the top
    os.symlink("../usr/lib/pkg", root / "etc/pkg")         # relative with ..
    os.symlink("/usr/lib/pkg/conf", root / "etc/conf")     # absolute: inside the root, not the host
    os.symlink("loop-b", root / "etc/loop-a")
    os.symlink("loop-a", root / "etc/loop-b")
    (root / "usr/lib/pkg/file").write_text("x")
    t = Target.at(root)
    for p in ("/lib/pkg/file", "/etc/pkg/file", "/etc/pkg/../pkg/file", "/lib/pkg/new/deeper/x", "/etc/pkg",
              "/usr/./lib//pkg/", "/"):
        assert t.path(p) == Path(os.path.realpath(str(root) + p)), p
    assert t.path("/etc/conf/x") == root / "usr/lib/pkg/conf/x"
    assert t.path("/etc/missing/../pkg/file") == root / "usr/lib/pkg/file"
    assert t.path("/usr/lib/pkg/file/under-a-file") == root / "usr/lib/pkg/file/under-a-file"
    assert t.path_nofollow("/etc/pkg") == root / "etc/pkg"
    with pytest.raises(TargetPathError, match="too many symlinks resolving /etc/loop-a/x"):
        t.path("/etc/loop-a/x")
