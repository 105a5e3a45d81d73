from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tether.ensure import ensure_symlink
from tether.target import FOLLOW_LINK, REPLACE_LINK, Target, TargetPathError, replace_symlink, write_atomic


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
    assert calls == ["fsync", "fsync"]             # by default every durable write is flushed: file, directory
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


@pytest.mark.parametrize("links", [REPLACE_LINK, FOLLOW_LINK])
def test_ensure_file_never_writes_through_a_link_that_points_outside_the_root(tmp_path: Path, links: str) -> None:
    outside = tmp_path / "outside.conf"
    outside.write_text("host file\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/app.conf").symlink_to(outside)      # absolute: the host's file, if it were followed as is
    t = Target.at(root)
    assert t.ensure_file("/etc/app.conf", "tether\n", links=links)
    assert outside.read_text() == "host file\n"
    if links == REPLACE_LINK:
        assert not (root / "etc/app.conf").is_symlink()
        assert (root / "etc/app.conf").read_text() == "tether\n"
    else:  # followed inside the root: the link stays, its destination re-rooted under the target is written
        assert (root / "etc/app.conf").is_symlink()
        assert (root / str(outside).lstrip("/")).read_text() == "tether\n"
    assert not t.ensure_file("/etc/app.conf", "tether\n", links=links)   # a re-run changes nothing


def test_ensure_file_needs_an_explicit_link_policy(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="links must be"):
        Target.at(tmp_path).ensure_file("/etc/x", "x", links="maybe")
    assert not (tmp_path / "etc/x").exists()


def test_ensure_file_writes_only_what_differs(tmp_path: Path) -> None:
    t = Target.at(tmp_path)
    assert t.ensure_file("/etc/a", "one\n", 0o600, links=REPLACE_LINK)
    before = os.stat(tmp_path / "etc/a")
    assert not t.ensure_file("/etc/a", "one\n", 0o600, links=REPLACE_LINK)
    assert os.stat(tmp_path / "etc/a").st_ino == before.st_ino          # not rewritten
    assert t.ensure_file("/etc/a", "one\n", 0o644, links=REPLACE_LINK)  # the mode alone differs
    assert stat.S_IMODE(os.stat(tmp_path / "etc/a").st_mode) == 0o644


def test_atomic_replace_keeps_the_mode_and_owner_of_the_file_it_replaces(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_text("old")
    os.chmod(p, 0o640)
    if os.geteuid() == 0:
        os.chown(p, 1234, 5678)
    write_atomic(p, b"new")
    st = os.stat(p)
    assert p.read_bytes() == b"new" and stat.S_IMODE(st.st_mode) == 0o640
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (1234, 5678)
    write_atomic(tmp_path / "g", b"fresh")
    assert stat.S_IMODE(os.stat(tmp_path / "g").st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["f", "g"]                    # no temporary file left


def test_a_crash_between_write_and_rename_leaves_the_old_file(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "state.json"
    p.write_text("old")

    def crash(src: object, dst: object) -> None:
        raise OSError(5, "simulated power cut before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        Target.at(tmp_path).write("/state.json", "new")
    monkeypatch.undo()
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_atomic_write_fsyncs_the_file_and_its_directory_unless_deferred(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "sync", lambda: synced.append("sync"))
    t = Target.at(tmp_path)
    t.write("/var/lib/a", "1")
    assert synced == ["file", "dir"]
    synced.clear()
    t.ensure_file("/run/x", "1", links=REPLACE_LINK)                     # tmpfs: nothing to flush
    assert synced == []
    t.defer_sync()
    t.write("/var/lib/b", "2")
    t.ensure_file("/var/lib/c", "3", links=REPLACE_LINK)
    ensure_symlink(t, "/var/lib/d", "c")
    assert synced == []                                                  # left to the stage's one sync
    t.sync()
    assert synced == ["sync"]


def test_replace_symlink_is_one_step(tmp_path: Path) -> None:
    t = Target.at(tmp_path)
    (tmp_path / "l").write_text("a regular file")
    assert ensure_symlink(t, "/l", "dest")
    assert os.readlink(tmp_path / "l") == "dest"
    assert not ensure_symlink(t, "/l", "dest")
    replace_symlink(tmp_path / "l", "other")
    assert os.readlink(tmp_path / "l") == "other" and os.listdir(tmp_path) == ["l"]


def test_a_temporary_file_left_by_a_power_cut_does_not_block_the_next_boot(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Early-boot pids repeat from boot to boot, and so does the sequence of writes: the next boot's process may
    pick the very temporary name a cut-off write left behind."""
    import itertools

    from tether import atomicfile

    stale = tmp_path / f".state.{os.getpid()}.0.tmp"
    stale.write_text("half of the last boot's write")
    monkeypatch.setattr(atomicfile, "_TMP_SEQ", itertools.count())
    write_atomic(tmp_path / "state", b"this boot")
    assert (tmp_path / "state").read_bytes() == b"this boot"
    assert os.listdir(tmp_path) == ["state"]
