"""Servicing state store: append-only history, rollback chain, `tether get`."""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import pytest

from tether.engine import state
from tether.engine.cli import add_parsers
from tether.engine.sources import ImageSourceError, open_source
from tether.target import Target


def test_history_is_append_only(tmp_path: Path) -> None:
    with state.StateStore(tmp_path / "ds.sqlite") as store:
        assert store.current()["servicingState"] == "not-provisioned"
        store.update("clean-install-staged", servicingState=state.CLEAN_INSTALL_STAGED, spec={"os": {"hostname": "a"}})
        store.update("clean-install-finalized", servicingState=state.CLEAN_INSTALL_FINALIZED)
        store.update("committed", servicingState=state.PROVISIONED, abActiveVolume="volume-a")
        store.update("ab-update-staged", servicingState=state.AB_UPDATE_STAGED, spec={"os": {"hostname": "b"}},
                     specOld={"os": {"hostname": "a"}})
        assert [h["event"] for h in store.history()] == ["clean-install-staged", "clean-install-finalized",
                                                         "committed", "ab-update-staged"]
        chain = store.rollback_chain()
        assert [c["spec"] for c in chain] == [{"os": {"hostname": "a"}}]
        with pytest.raises(state.StateError):
            store.update("bad", servicingState="exploded")
    db = sqlite3.connect(tmp_path / "ds.sqlite")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM host_status")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE host_status SET event = 'x'")


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default="/")
    parser.add_argument("--debug", action="store_true")
    add_parsers(parser.add_subparsers(dest="verb"))
    return parser.parse_args(argv)


def test_get_reads_the_store_the_pointer_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = Target.at(tmp_path)
    state.write_pointer(root, "/data/ds.sqlite")
    with state.StateStore(root.path("/data/ds.sqlite")) as store:
        store.update("adopted", servicingState=state.PROVISIONED, spec={"os": {"hostname": "h"}},
                     lastError=state.error_record("image-hash-mismatch", "bad bytes"))
    args = _cli(["--root", str(tmp_path), "get", "last-error", "--format", "json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["message"] == "bad bytes"
    args = _cli(["--root", str(tmp_path), "get", "configuration"])
    assert args.func(args) == 0
    assert "hostname: h" in capsys.readouterr().out
    args = _cli(["--root", str(tmp_path), "get", "rollback-chain", "--format", "json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)[0]["spec"] == {"os": {"hostname": "h"}}


def test_get_on_a_host_never_serviced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _cli(["--root", str(tmp_path), "get"])
    assert args.func(args) == 0
    assert "servicingState: not-provisioned" in capsys.readouterr().out


def test_sources_reject_what_they_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(ImageSourceError, match="unsupported URL scheme 'ftp'"):
        open_source("ftp://registry/x")
    with pytest.raises(ImageSourceError, match="cannot open image"):
        open_source(f"file://{tmp_path}/missing.img")
    with pytest.raises(ImageSourceError, match="unreachable|HTTP"):
        open_source("http://127.0.0.1:9/x.img", timeout=1, retries=0)
