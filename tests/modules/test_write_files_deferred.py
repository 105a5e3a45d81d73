from __future__ import annotations

from tests.modules.sysmod_support import apply_twice, parse
from tether.modules import write_files_deferred as mod

DATA = {"write_files": [
    {"path": "/etc/now.conf", "content": "now\n"},
    {"path": "/etc/later.conf", "content": "later\n", "defer": True, "permissions": "0600"},
    {"path": "/home/app/.profile", "content": "export X=1\n", "defer": True, "owner": "daemon:daemon"},
]}


def test_writes_only_deferred_entries(make_ctx, root):
    changed = apply_twice(mod, make_ctx(), DATA, root)
    assert changed == {"/etc/later.conf": "added", "/home/app": "added", "/home/app/.profile": "added"}
    assert (root / "etc/later.conf").read_text() == "later\n"
    assert (root / "etc/later.conf").stat().st_mode & 0o777 == 0o600
    st = (root / "home/app/.profile").stat()
    assert (st.st_uid, st.st_gid) == (1, 1)


def test_nothing_deferred(make_ctx, root):
    assert apply_twice(mod, make_ctx(), {"write_files": [{"path": "/x", "content": "y"}]}, root) == {}


def test_bad_deferred_entry_is_skipped_alone(make_ctx, root):
    # reported by its index by write_files in the init stage (tests/modules/test_write_files.py)
    data = {"write_files": [{"path": "/a"}, {"path": "/x", "defer": True, "permissions": "rwx"},
                            {"path": "/y", "defer": True, "content": "y\n"}]}
    mod.handle(make_ctx(), parse(mod, data))
    assert not (root / "x").exists()
    assert (root / "y").read_text() == "y\n"
