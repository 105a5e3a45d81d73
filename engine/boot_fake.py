"""A boot loader in one JSON file, for unit tests of commit and rollback.

It keeps the same contract as the real backends (see ``engine.boot``) and the same rules as systemd-boot with a
``tether-*`` default: entries order newest version first, counted-out entries last; a one-shot wins once;
``boot()`` plays the firmware and loader for one boot (takes a try from a counted entry, consumes the
one-shot) so a test can walk a host through update, failure and rollback without a VM.
``read_only=True`` makes every write fail the way a refusing EFI variable store does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tether.engine.boot import (
    BootError,
    EfiVarsError,
    EntryInfo,
    NoEntryError,
    prepare_entry,
    refuse_booted,
    version_key,
    write_file_atomic,
)


def _empty() -> dict[str, Any]:
    return {"entries": {}, "oneshot": None, "booted": None, "boots": []}


class FakeBoot:
    name = "fake"

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only

    # -- the file
    def load(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return _empty()
        return {**_empty(), **data}

    def _save(self, st: dict[str, Any]) -> None:
        if self.read_only:
            raise EfiVarsError(f"the boot configuration store {self.path} refuses writes (read-only)")
        write_file_atomic(self.path, (json.dumps(st, indent=1, sort_keys=True) + "\n").encode())

    def _entry(self, st: dict[str, Any], entry_id: str) -> dict[str, Any]:
        e: dict[str, Any] | None = st["entries"].get(entry_id)
        if e is None:
            raise NoEntryError(f"fake: no boot entry {entry_id!r}")
        return e

    @staticmethod
    def _order(st: dict[str, Any]) -> list[str]:
        def key(i: str) -> tuple[bool, Any, int]:
            e = st["entries"][i]
            left = e["tries_left"]
            return (left == 0, _Neg(version_key(e["version"])), -(left if left is not None else 1 << 30))
        return sorted(st["entries"], key=key)

    def next_boot(self) -> str | None:
        st = self.load()
        if st["oneshot"] in st["entries"]:
            return str(st["oneshot"])
        order = self._order(st)
        return order[0] if order else None

    def boot(self) -> str | None:
        """One boot: what the loader picks, with its counter bumped the way systemd-boot renames the file."""
        st = self.load()
        order = self._order(st)
        pick: str | None = st["oneshot"] if st["oneshot"] in st["entries"] else (order[0] if order else None)
        st["oneshot"] = None
        if pick is not None:
            e = st["entries"][pick]
            if e["tries_left"] is not None:
                e["tries_left"] = max(e["tries_left"] - 1, 0)
                e["tries_done"] = (e["tries_done"] or 0) + 1
        st["booted"] = pick
        st["boots"].append(pick)
        self._save(st)
        return pick

    # -- interface
    def install_entry(self, slot: str, *, kernel: Path, initrd: Path | None, root_partuuid: str, cmdline: str,
                      version: str, tries: int) -> str:
        entry_id, options = prepare_entry(slot, kernel=kernel, initrd=initrd, root_partuuid=root_partuuid,
                                          cmdline=cmdline, version=version, tries=tries)
        st = self.load()
        refuse_booted("fake", entry_id, st["booted"])
        for other in [i for i, e in st["entries"].items() if e["slot"] == slot and i != st["booted"]]:
            del st["entries"][other]
        st["entries"][entry_id] = {"slot": slot, "version": version, "kernel": str(kernel),
                                   "initrd": str(initrd) if initrd else None, "options": options,
                                   "tries_left": tries if tries > 0 else None, "tries_done": 0 if tries else None}
        self._save(st)
        return entry_id

    def set_oneshot(self, entry_id: str) -> None:
        st = self.load()
        self._entry(st, entry_id)
        st["oneshot"] = entry_id
        self._save(st)

    def set_default(self, entry_id: str) -> None:
        st = self.load()
        self._entry(st, entry_id)
        first = self._order(st)[0]
        if first != entry_id:
            raise BootError(f"fake: {first} sorts above {entry_id}; mark it bad or remove it first")
        self._save(st)

    def mark_good(self, entry_id: str) -> None:
        st = self.load()
        e = self._entry(st, entry_id)
        e["tries_left"] = e["tries_done"] = None
        self._save(st)

    def mark_bad(self, entry_id: str) -> None:
        st = self.load()
        e = self._entry(st, entry_id)
        e["tries_left"] = 0
        e["tries_done"] = e["tries_done"] or 0
        self._save(st)

    def booted_entry(self) -> str | None:
        b = self.load()["booted"]
        return str(b) if b is not None else None

    def entries(self) -> list[EntryInfo]:
        st = self.load()
        order = self._order(st)
        nxt = st["oneshot"] if st["oneshot"] in st["entries"] else None
        out = []
        for i in order:
            e = st["entries"][i]
            out.append(EntryInfo(id=i, slot=e["slot"], version=e["version"], tries_left=e["tries_left"],
                                 tries_done=e["tries_done"], default=i == order[0], oneshot=i == nxt,
                                 booted=i == st["booted"], handle=i))
        return out

    def remove_entry(self, entry_id: str) -> None:
        st = self.load()
        self._entry(st, entry_id)
        if st["booted"] == entry_id:
            raise BootError(f"fake: {entry_id} is the running system's entry; it cannot be removed")
        del st["entries"][entry_id]
        if st["oneshot"] == entry_id:
            st["oneshot"] = None
        self._save(st)


class _Neg:
    """Reverses an ordering key (newest version first inside an ascending sort)."""

    def __init__(self, k: Any) -> None:
        self.k = k

    def __lt__(self, other: _Neg) -> bool:
        return bool(other.k < self.k)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Neg) and bool(self.k == other.k)

    def __hash__(self) -> int:
        return 0
