"""GRUB 2: per-slot menu entries in a config snippet, and a try counter in grubenv that GRUB decrements itself.

The snippet (``custom.cfg`` by default, which Debian's ``41_custom`` sources at the end of grub.cfg; other
distributions need one ``source`` line) loads ``tether_*`` variables from grubenv at every boot:

- ``tether_oneshot`` set: boot it, clear it (``save_env``).
- else ``tether_trial`` with ``tether_tries`` > 0: boot the trial and store tries - 1. GRUB's script language has
  no arithmetic, so the decrement is a fixed table (9 → 8 … 1 → 0).
- else boot ``tether_default``.

Commit (``mark_good``) makes the trial the default and clears the counter; when the tries run out before that,
GRUB boots the old default again by itself. tether writes grubenv itself in GRUB's exact format (1024 bytes,
``# GRUB Environment Block`` header, ``#`` padding), so no GRUB tools are needed. GRUB refuses ``save_env`` on
LVM, RAID, btrfs and encrypted storage: keep grubenv on the ESP or a plain ext4/vfat /boot.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.engine.boot import (
    KERNEL_DIR,
    MAX_TRIES,
    BootError,
    EntryInfo,
    MissingEspError,
    NoEntryError,
    copy_kernel,
    parse_entry_id,
    prepare_entry,
    read_cmdline_entry,
    refuse_booted,
    version_key,
    write_error,
    write_file_atomic,
)

GRUBENV_SIZE = 1024
GRUBENV_HEADER = b"# GRUB Environment Block\n"
ENV_KEYS = ("tether_default", "tether_trial", "tether_tries", "tether_tries_total", "tether_oneshot")
_RECORD = "# tether-entry "
_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
# What may appear in a kernel command line written into GRUB script: no quoting, expansion or separators.
_SAFE_OPTIONS = re.compile(r"^[A-Za-z0-9_.,:=/+@%\- ]*$")


# ---- grubenv -------------------------------------------------------------------------------------------------

def parse_grubenv(data: bytes) -> dict[str, str]:
    if not data.startswith(GRUBENV_HEADER):
        raise BootError("grubenv does not start with '# GRUB Environment Block'")
    env: dict[str, str] = {}
    for raw in data[len(GRUBENV_HEADER):].split(b"\n"):
        if not raw or raw.startswith(b"#"):
            continue  # comments, and the '#' padding after the last variable
        line = raw.decode("utf-8", errors="replace")
        name, sep, value = line.partition("=")
        if not sep:
            continue
        out, i = [], 0
        while i < len(value):  # GRUB escapes '\' and newline with a backslash
            if value[i] == "\\" and i + 1 < len(value):
                i += 1
            out.append(value[i])
            i += 1
        env[name] = "".join(out)
    return env


def render_grubenv(env: dict[str, str], size: int = GRUBENV_SIZE) -> bytes:
    body = bytearray(GRUBENV_HEADER)
    for name, value in env.items():
        if not _NAME_RE.match(name):
            raise BootError(f"grubenv variable name {name!r} is not valid")
        if "\n" in value or "\\" in value:
            raise BootError(f"grubenv value for {name} must be one line without backslashes")
        body += f"{name}={value}\n".encode()
    if len(body) > size:
        raise BootError(f"grubenv is full: {len(body)} bytes of variables do not fit in {size}")
    return bytes(body) + b"#" * (size - len(body))


def decrement_table(max_tries: int = MAX_TRIES) -> list[tuple[int, int]]:
    return [(n, n - 1) for n in range(max_tries, 0, -1)]


def render_cfg(records: list[dict[str, Any]], *, env_name: str, boot_fs_uuid: str | None) -> str:
    lines = [
        "# Written by tether: A/B boot entries and a boot try counter that GRUB decrements itself.",
        "# Do not edit: tether rewrites this file. State lives in grubenv (tether_* variables).",
    ]
    lines += [_RECORD + json.dumps(r, sort_keys=True) for r in records]
    lines += [
        'if [ -z "${config_directory}" ]; then set config_directory="${prefix}"; fi',
        f'set tether_env="${{config_directory}}/{env_name}"',
        'load_env --file "${tether_env}" tether_default tether_trial tether_tries tether_oneshot',
        'set tether_pick="${tether_default}"',
        'if [ -n "${tether_oneshot}" ]; then',
        '  set tether_pick="${tether_oneshot}"',
        '  set tether_oneshot=""',
        '  save_env --file "${tether_env}" tether_oneshot',
        'elif [ -n "${tether_trial}" ]; then',
        '  if [ "${tether_tries}" -gt 0 ]; then',
        '    set tether_pick="${tether_trial}"',
    ]
    for i, (n, m) in enumerate(decrement_table()):
        lines.append(f'    {"if" if i == 0 else "elif"} [ "${{tether_tries}}" = "{n}" ]; then set tether_tries="{m}"')
    lines += [
        '    else set tether_tries="0"',
        "    fi",
        '    save_env --file "${tether_env}" tether_tries',
        "  fi",
        "fi",
        'if [ -n "${tether_pick}" ]; then set default="${tether_pick}"; fi',
    ]
    for r in records:
        rel = f"/{KERNEL_DIR}/{r['slot']}/{r['version']}"
        find = (f"search --no-floppy --set=root --fs-uuid {boot_fs_uuid}" if boot_fs_uuid
                else f"search --no-floppy --set=root --file {rel}/vmlinuz")
        lines += ["", f"menuentry 'tether {r['slot']} ({r['version']})' --id '{r['id']}' {{",
                  f"  {find}", f"  linux {rel}/vmlinuz {r['options']}"]
        if r.get("initrd"):
            lines.append(f"  initrd {rel}/initrd.img")
        lines.append("}")
    return "\n".join(lines) + "\n"


@dataclass
class _State:
    records: list[dict[str, Any]]
    env: dict[str, str]
    env_size: int


class GrubBoot:
    """``boot_root``: where the filesystem holding GRUB's directory is mounted (the ESP or /boot);
    ``grub_dir``: GRUB's directory inside it (``grub``, ``boot/grub``, ``EFI/debian``)."""

    name = "grub"

    def __init__(self, boot_root: str | os.PathLike[str], grub_dir: str = "grub", *, cfg_name: str = "custom.cfg",
                 env_name: str = "grubenv", boot_fs_uuid: str | None = None,
                 cmdline_path: str | os.PathLike[str] = "/proc/cmdline") -> None:
        self.boot_root = Path(boot_root)
        self.grub_dir = self.boot_root / grub_dir.strip("/")
        self.cfg = self.grub_dir / cfg_name
        self.envfile = self.grub_dir / env_name
        self.env_name = env_name
        self.boot_fs_uuid = boot_fs_uuid
        self.cmdline_path = Path(cmdline_path)

    # -- state
    def check_boot_dir(self) -> None:
        if not self.grub_dir.is_dir():
            raise MissingEspError(f"no GRUB directory at {self.grub_dir} (boot partition not mounted?)")

    def _load(self) -> _State:
        records: list[dict[str, Any]] = []
        try:
            for line in self.cfg.read_text(errors="replace").splitlines():
                if line.startswith(_RECORD):
                    with contextlib.suppress(ValueError):
                        rec = json.loads(line[len(_RECORD):])
                        if isinstance(rec, dict) and parse_entry_id(str(rec.get("id", ""))):
                            records.append(rec)
        except FileNotFoundError:
            pass
        try:
            data = self.envfile.read_bytes()
        except FileNotFoundError:
            return _State(records, {}, GRUBENV_SIZE)
        return _State(records, parse_grubenv(data), max(len(data), GRUBENV_SIZE))

    def read_env(self) -> dict[str, str]:
        return self._load().env

    def _save(self, st: _State, *, cfg: bool = True) -> None:
        """cfg first, then grubenv; if grubenv fails, the old cfg goes back."""
        self.check_boot_dir()
        env_bytes = render_grubenv(st.env, st.env_size)  # fails (too big) before anything is written
        old_cfg = self.cfg.read_bytes() if cfg and self.cfg.exists() else None
        try:
            if cfg:
                write_file_atomic(self.cfg, render_cfg(st.records, env_name=self.env_name,
                                                       boot_fs_uuid=self.boot_fs_uuid).encode())
            write_file_atomic(self.envfile, env_bytes)
        except OSError as e:
            if cfg:
                with contextlib.suppress(OSError):
                    if old_cfg is None:
                        self.cfg.unlink()
                    else:
                        write_file_atomic(self.cfg, old_cfg)
            raise write_error(f"GRUB configuration in {self.grub_dir}", e) from None

    def _record(self, st: _State, entry_id: str) -> dict[str, Any]:
        for r in st.records:
            if r["id"] == entry_id:
                return r
        raise NoEntryError(f"grub: no boot entry {entry_id!r} in {self.cfg}")

    # -- interface
    def install_entry(self, slot: str, *, kernel: Path, initrd: Path | None, root_partuuid: str, cmdline: str,
                      version: str, tries: int) -> str:
        entry_id, options = prepare_entry(slot, kernel=kernel, initrd=initrd, root_partuuid=root_partuuid,
                                          cmdline=cmdline, version=version, tries=tries)
        bad = sorted({c for c in options if not _SAFE_OPTIONS.match(c)})
        if bad:
            raise BootError(f"grub: kernel command line has characters GRUB script would interpret: {''.join(bad)}")
        self.check_boot_dir()
        booted = self.booted_entry()
        refuse_booted("grub", entry_id, booted)
        st = self._load()
        dropped = [r for r in st.records
                   if r["slot"] == slot and r["id"] != booted and r["id"] != st.env.get("tether_default")
                   or r["id"] == entry_id]
        new = _State([r for r in st.records if r not in dropped], dict(st.env), st.env_size)
        new.records.append({"id": entry_id, "slot": slot, "version": version, "options": options,
                            "initrd": initrd is not None})
        new.records.sort(key=lambda r: version_key(r["version"]), reverse=True)
        if tries > 0:
            new.env.update(tether_trial=entry_id, tether_tries=str(tries), tether_tries_total=str(tries))
        for r in dropped:
            if new.env.get("tether_oneshot") == r["id"]:
                new.env.pop("tether_oneshot")
        kdir = self.boot_root / KERNEL_DIR / slot / version
        copy_kernel(entry_id, kdir, kernel, initrd)
        try:
            self._save(new)
        except BootError:
            shutil.rmtree(kdir, ignore_errors=True)
            raise
        for r in dropped:
            if r["id"] != entry_id:
                shutil.rmtree(self.boot_root / KERNEL_DIR / r["slot"] / r["version"], ignore_errors=True)
        return entry_id

    def set_oneshot(self, entry_id: str) -> None:
        st = self._load()
        self._record(st, entry_id)
        st.env["tether_oneshot"] = entry_id
        self._save(st, cfg=False)

    def set_default(self, entry_id: str) -> None:
        st = self._load()
        self._record(st, entry_id)
        trial = st.env.get("tether_trial")
        if trial and trial != entry_id and _int(st.env.get("tether_tries")) > 0:
            raise BootError(f"grub: {trial} is on trial and boots first; mark it good or bad before making "
                            f"{entry_id} the default")
        st.env["tether_default"] = entry_id
        self._save(st, cfg=False)

    def mark_good(self, entry_id: str) -> None:
        """End the trial successfully: the entry becomes the default and the counter goes."""
        st = self._load()
        self._record(st, entry_id)
        if st.env.get("tether_trial") == entry_id:
            for k in ("tether_trial", "tether_tries", "tether_tries_total"):
                st.env.pop(k, None)
        elif st.env.get("tether_default") == entry_id:
            return
        st.env["tether_default"] = entry_id
        self._save(st, cfg=False)

    def mark_bad(self, entry_id: str) -> None:
        st = self._load()
        self._record(st, entry_id)
        if st.env.get("tether_trial") == entry_id:
            st.env["tether_tries"] = "0"  # the trial stays recorded (tries done) so status can say what failed
            self._save(st, cfg=False)
            return
        if st.env.get("tether_default") == entry_id:
            raise BootError(f"grub: {entry_id} is the default, not on trial; marking it bad leaves nothing to boot")

    def booted_entry(self) -> str | None:
        return read_cmdline_entry(self.cmdline_path)

    def entries(self) -> list[EntryInfo]:
        st = self._load()
        env = st.env
        booted = self.booted_entry()
        trial, tries = env.get("tether_trial"), _int(env.get("tether_tries"))
        total = _int(env.get("tether_tries_total"), tries)
        nxt: str | None
        if env.get("tether_oneshot"):
            nxt = env["tether_oneshot"]
        elif trial and tries > 0:
            nxt = trial
        else:
            nxt = env.get("tether_default")
        out = []
        for r in st.records:
            on_trial = r["id"] == trial
            out.append(EntryInfo(
                id=r["id"], slot=r["slot"], version=r["version"],
                tries_left=tries if on_trial else None, tries_done=max(total - tries, 0) if on_trial else None,
                default=(trial if trial and tries > 0 else env.get("tether_default")) == r["id"],
                oneshot=env.get("tether_oneshot") == r["id"] and nxt == r["id"], booted=booted == r["id"],
                handle=r["id"]))
        return out

    def remove_entry(self, entry_id: str) -> None:
        st = self._load()
        rec = self._record(st, entry_id)
        if self.booted_entry() == entry_id:
            raise BootError(f"grub: {entry_id} is the running system's entry; it cannot be removed")
        if st.env.get("tether_default") == entry_id:
            raise BootError(f"grub: {entry_id} is the default entry; make another entry the default first")
        new = _State([r for r in st.records if r["id"] != entry_id], dict(st.env), st.env_size)
        for k in ("tether_trial", "tether_oneshot"):
            if new.env.get(k) == entry_id:
                new.env.pop(k)
                if k == "tether_trial":
                    new.env.pop("tether_tries", None)
                    new.env.pop("tether_tries_total", None)
        self._save(new)
        shutil.rmtree(self.boot_root / KERNEL_DIR / rec["slot"] / rec["version"], ignore_errors=True)


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default
