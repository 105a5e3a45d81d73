"""The servicing state store: the host status document, kept as an append-only history in SQLite.

Every change appends a row (the whole document, JSON) in one transaction, so a process killed at any point
leaves either the previous document or the new one, never half of each. The store lives on a partition that
is not an A/B volume; each slot's ``/etc/tether/engine.json`` says where.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

from tether.engine import checkpoints, transitions
from tether.engine.hostcheck import DEFAULT_DATASTORE
from tether.errors import TetherError
from tether.target import Target

POINTER = "/etc/tether/engine.json"

# Trident's servicing state names; the transitions between them are engine/transitions.py's.
NOT_PROVISIONED = transitions.NOT_PROVISIONED
CLEAN_INSTALL_STAGED = transitions.CLEAN_INSTALL_STAGED
CLEAN_INSTALL_FINALIZED = transitions.CLEAN_INSTALL_FINALIZED
AB_UPDATE_STAGED = transitions.AB_UPDATE_STAGED
AB_UPDATE_FINALIZED = transitions.AB_UPDATE_FINALIZED
AB_UPDATE_HEALTH_CHECK_FAILED = transitions.AB_UPDATE_HEALTH_CHECK_FAILED
PROVISIONED = transitions.PROVISIONED
STATES = transitions.STATES

_SCHEMA = """
CREATE TABLE IF NOT EXISTS host_status (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    event TEXT NOT NULL,
    servicing_state TEXT NOT NULL,
    document TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS host_status_no_update BEFORE UPDATE ON host_status
BEGIN SELECT RAISE(ABORT, 'host_status is append-only'); END;
CREATE TRIGGER IF NOT EXISTS host_status_no_delete BEFORE DELETE ON host_status
BEGIN SELECT RAISE(ABORT, 'host_status is append-only'); END;
"""


class StateError(TetherError):
    pass


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def empty_status() -> dict[str, Any]:
    return {
        "servicingState": NOT_PROVISIONED,
        "spec": None,
        "specOld": None,
        "abActiveVolume": None,
        "disks": {},
        "partitionPaths": {},
        "partitionUuids": {},
        "slots": {},
        "staging": None,
        "lastError": None,
    }


class StateStore:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # the full host configuration and image URLs (which may carry tokens) are in here: 0600, and so are
        # the journal files SQLite creates beside it (they take the database's mode)
        old = os.umask(0o077)
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            # EXTRA: after a commit SQLite also syncs the directory it deleted the rollback journal from; with
            # FULL a power cut could bring the journal back and roll back a record the engine had acted on (found
            # by the QEMU power cuts)
            self._db.execute("PRAGMA synchronous=EXTRA")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as e:
            raise StateError(f"servicing datastore {self.path}: {e}") from None
        finally:
            os.umask(old)
        try:
            if stat.S_IMODE(os.stat(self.path).st_mode) != 0o600:
                os.chmod(self.path, 0o600)  # a datastore written before this rule
        except OSError as e:
            if e.errno != errno.EROFS:  # read-only: reading it changes nothing
                raise StateError(f"servicing datastore {self.path}: {e.strerror}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def current(self) -> dict[str, Any]:
        row = self._db.execute("SELECT document FROM host_status ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return empty_status()
        doc: dict[str, Any] = {**empty_status(), **json.loads(row[0])}
        return doc

    def record(self, doc: dict[str, Any], event: str) -> dict[str, Any]:
        """Append ``doc`` as the new host status; ``event`` must be an edge of the transition table from the
        current state to ``doc``'s."""
        state = doc.get("servicingState")
        if state not in STATES:
            raise StateError(f"unknown servicing state {state!r}")
        transitions.check_event(event, self.current()["servicingState"], str(state))
        self._append(doc, event)
        checkpoints.reached(f"state:{event}")
        return doc

    def _append(self, doc: dict[str, Any], event: str) -> None:
        state = str(doc.get("servicingState"))
        text = json.dumps(doc, sort_keys=True)
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT INTO host_status (at, event, servicing_state, document) VALUES (?, ?, ?, ?)",
                             (now(), event, state, text))
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StateError(f"servicing datastore {self.path}: {e}") from None

    def update(self, event: str, **changes: Any) -> dict[str, Any]:
        doc = self.current()
        doc.update(changes)
        return self.record(doc, event)

    def history(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT seq, at, event, servicing_state FROM host_status ORDER BY seq").fetchall()
        return [{"seq": s, "at": a, "event": e, "servicingState": st} for s, a, e, st in rows]

    def rollback_chain(self) -> list[dict[str, Any]]:
        """Provisioned states the host could go back to, newest first (the running one first)."""
        rows = self._db.execute("SELECT seq, at, document FROM host_status WHERE servicing_state = ? "
                                "ORDER BY seq DESC", (PROVISIONED,)).fetchall()
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for seq, at, text in rows:
            doc = json.loads(text)
            key = json.dumps([doc.get("spec"), doc.get("abActiveVolume")], sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            out.append({"seq": seq, "at": at, "abActiveVolume": doc.get("abActiveVolume"), "spec": doc.get("spec")})
        return out


def datastore_location(target: Target) -> Path:
    """Where the running slot's datastore is (its pointer file, else the default path), inside ``target``."""
    path = DEFAULT_DATASTORE
    try:
        pointer = json.loads(target.read_text(POINTER))
        if isinstance(pointer, dict) and isinstance(pointer.get("datastore"), str):
            path = pointer["datastore"]
    except (OSError, ValueError):
        pass
    return target.path(path)


def write_pointer(target: Target, datastore: str) -> None:
    target.write(POINTER, json.dumps({"datastore": datastore}, indent=1) + "\n", mode=0o644)


def error_record(category: str, message: str) -> dict[str, str]:
    return {"category": category, "message": message, "timestamp": now()}
