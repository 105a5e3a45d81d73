"""systemd-boot: Boot Loader Specification type #1 entries with boot counting, on the ESP.

How systemd 252's systemd-boot behaves, which this backend relies on (measured in QEMU, see
``../shared/vm-notes/README.md`` §4):

- An entry file ``NAME+LEFT[-DONE].conf`` is counted: before booting it, systemd-boot renames it to
  ``NAME+(LEFT-1)-(DONE+1).conf``; ``systemd-bless-boot`` renames it to ``NAME.conf`` after
  ``boot-complete.target``. An entry with 0 tries left sorts after every other entry, but is not hidden.
- The entry id is the file name *with* the counter and ``.conf`` (``LoaderEntrySelected=x+3.conf``). A one-shot
  or default naming ``x.conf`` while the file is ``x+3.conf`` is silently ignored, so tether names the current
  file or a glob.
- Entries sort newest first by id (compared as versions), counted-out ones last; ``default`` in loader.conf is a
  glob and the first entry in that order which matches it boots. With ``default tether-*`` a new counted entry
  (a newer version) boots until its tries are used up, then the older good entry does: automatic rollback.
- systemd-bless-boot needs the ESP mounted before it runs (``write_bless_dropin``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from tether.engine.boot import (
    ENTRY_PREFIX,
    KERNEL_DIR,
    BootError,
    EfiVarsError,
    EntryInfo,
    MissingEspError,
    NoEntryError,
    compare_versions,
    copy_file_atomic,
    fsync_dir,
    parse_entry_id,
    prepare_entry,
    read_cmdline_entry,
    refuse_booted,
    write_error,
    write_file_atomic,
)
from tether.engine.boot_uefi import EfiVars
from tether.target import Target

ENTRIES_DIR = "loader/entries"
LOADER_CONF = "loader/loader.conf"
DEFAULT_PATTERN = ENTRY_PREFIX + "*"
BLESS_DROPIN = "/etc/systemd/system/systemd-bless-boot.service.d/10-esp.conf"
SYSTEMD_BOOT_EFI = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"

_COUNTER_RE = re.compile(r"^(?P<stem>.+?)\+(?P<left>\d+)(?:-(?P<done>\d+))?$")


# ---- names and ordering, as systemd-boot 252 sees them -------------------------------------------------------

@dataclass(frozen=True)
class LoaderEntry:
    """An entry file as systemd-boot reads it."""

    file: str                 # the file name, counter and .conf included (systemd-boot 252's id, lowercased)
    stem: str                 # the name without counter and .conf (tether's entry id)
    tries_left: int | None
    tries_done: int | None
    sort_key: str | None = None
    machine_id: str | None = None
    version: str | None = None

    @property
    def loader_id(self) -> str:
        return self.file.lower()


def parse_entry_name(file: str) -> tuple[str, int | None, int | None] | None:
    """(stem, tries left, tries done) of ``NAME[+LEFT[-DONE]].conf``; None when it is not a .conf file."""
    if not file.endswith(".conf") or len(file) <= 5:
        return None
    base = file[:-5]
    m = _COUNTER_RE.match(base)
    if not m:
        return base, None, None
    return m.group("stem"), int(m.group("left")), int(m.group("done") or 0)


def entry_file_name(stem: str, tries_left: int | None, tries_done: int | None = None) -> str:
    if tries_left is None:
        return f"{stem}.conf"
    if not tries_done:
        return f"{stem}+{tries_left}.conf"
    return f"{stem}+{tries_left}-{tries_done}.conf"


def next_counted_name(file: str) -> str | None:
    """The name systemd-boot gives a counted entry before booting it (``x+3.conf`` → ``x+2-1.conf``)."""
    parsed = parse_entry_name(file)
    if parsed is None or parsed[1] is None:
        return None
    stem, left, done = parsed
    return entry_file_name(stem, max(left - 1, 0), (done or 0) + 1)  # type: ignore[operator]


def _cmp(a: int | str | None, b: int | str | None) -> int:
    return (a > b) - (a < b)  # type: ignore[operator]


def compare_entries(a: LoaderEntry, b: LoaderEntry) -> int:
    """systemd-boot 252's menu order: negative when ``a`` comes first."""
    r = _cmp(a.tries_left == 0, b.tries_left == 0)  # used-up entries last
    if r:
        return r
    r = _cmp(a.sort_key is None, b.sort_key is None)  # entries with a sort key before those without
    if r:
        return r
    if a.sort_key is not None and b.sort_key is not None:
        r = _cmp(a.sort_key, b.sort_key) or _cmp(a.machine_id or "", b.machine_id or "")
        if r:
            return r
        r = -compare_versions(a.version or "", b.version or "")
        if r:
            return r
    r = -compare_versions(a.loader_id, b.loader_id)  # newest id first
    if r:
        return r
    if a.tries_left is None or b.tries_left is None:
        return 0
    return -_cmp(a.tries_left, b.tries_left) or _cmp(a.tries_done, b.tries_done)


def sort_entries(entries: list[LoaderEntry]) -> list[LoaderEntry]:
    return sorted(entries, key=functools.cmp_to_key(compare_entries))


def match_pattern(pattern: str, entries: list[LoaderEntry]) -> LoaderEntry | None:
    """The first entry in menu order whose id matches the glob (systemd-boot compares case-insensitively)."""
    pat = pattern.lower()
    for e in entries:
        if fnmatch.fnmatchcase(e.loader_id, pat):
            return e
    return None


def select_entry(entries: list[LoaderEntry], *, oneshot: str | None, efi_default: str | None,
                 conf_default: str | None) -> tuple[LoaderEntry | None, str]:
    """What systemd-boot boots with no key pressed, and why: the one-shot variable, the default variable, the
    loader.conf default, else the first entry."""
    ordered = sort_entries(entries)
    for why, pattern in (("LoaderEntryOneShot", oneshot), ("LoaderEntryDefault", efi_default),
                         ("loader.conf default", conf_default)):
        if pattern:
            hit = match_pattern(pattern, ordered)
            if hit is not None:
                return hit, why
    return (ordered[0], "first entry") if ordered else (None, "no entries")


def conf_default(text: str) -> str | None:
    value = None
    for line in text.splitlines():
        words = line.strip().split(None, 1)
        if len(words) == 2 and words[0] == "default":
            value = words[1].strip()
    return value


def with_default(text: str, pattern: str) -> str:
    """loader.conf with its ``default`` set to ``pattern``; every other line kept."""
    out, done = [], False
    for line in text.splitlines():
        words = line.strip().split(None, 1)
        if words and words[0] == "default":
            if not done:
                out.append(f"default {pattern}")
                done = True
            continue
        out.append(line)
    if not done:
        out.append(f"default {pattern}")
    return "\n".join(out) + "\n"


def write_bless_dropin(target: Target, esp_mount: str = "/efi") -> Path:
    """systemd 252 orders systemd-bless-boot only after local-fs.target, and an ESP mounted ``nofail`` is not
    waited for, so blessing fails with "Couldn't find $BOOT partition". Make it wait for the ESP mount."""
    if not esp_mount.startswith("/") or any(c.isspace() for c in esp_mount):
        raise BootError(f"ESP mount point {esp_mount!r} must be an absolute path without spaces")
    text = ("# Written by tether: bless the boot only once the ESP (which holds the counted entry) is mounted.\n"
            f"[Unit]\nRequiresMountsFor={esp_mount}\n")
    return target.write(BLESS_DROPIN, text, mode=0o644)


# ---- the backend ---------------------------------------------------------------------------------------------

class SystemdBoot:
    """Entries in ``<esp>/loader/entries``, kernels in ``<esp>/tether/<slot>/<version>/``, one-shot and default
    in EFI variables (``efivars``: the real efivarfs, or a directory in tests)."""

    name = "systemd-boot"

    def __init__(self, esp: str | os.PathLike[str], efivars: EfiVars | None = None, *,
                 cmdline_path: str | os.PathLike[str] = "/proc/cmdline", pattern: str = DEFAULT_PATTERN) -> None:
        self.esp = Path(esp)
        self.efivars = efivars if efivars is not None else EfiVars()
        self.cmdline_path = Path(cmdline_path)
        self.pattern = pattern

    # -- reading
    def check_esp(self) -> None:
        if not self.esp.is_dir():
            raise MissingEspError(f"no EFI system partition at {self.esp}")
        if not (self.esp / "loader").is_dir() and not (self.esp / "EFI").is_dir():
            raise MissingEspError(f"{self.esp} holds neither loader/ nor EFI/: the ESP is not mounted there "
                                  "(or systemd-boot was never installed on it)")

    def loader_entries(self) -> list[LoaderEntry]:
        d = self.esp / ENTRIES_DIR
        out: list[LoaderEntry] = []
        try:
            names = sorted(os.listdir(d))
        except FileNotFoundError:
            return out
        for fname in names:
            parsed = parse_entry_name(fname)
            if parsed is None or fname.startswith("."):
                continue
            fields: dict[str, str] = {}
            with contextlib.suppress(OSError):
                for line in (d / fname).read_text(errors="replace").splitlines():
                    words = line.strip().split(None, 1)
                    if len(words) == 2 and words[0] in ("sort-key", "machine-id", "version"):
                        fields[words[0]] = words[1].strip()
            out.append(LoaderEntry(fname, parsed[0], parsed[1], parsed[2], fields.get("sort-key"),
                                   fields.get("machine-id"), fields.get("version")))
        return out

    def _conf_text(self) -> str | None:
        try:
            return (self.esp / LOADER_CONF).read_text(errors="replace")
        except FileNotFoundError:
            return None

    def _var(self, name: str) -> str | None:
        try:
            return self.efivars.get_string(name)
        except EfiVarsError:
            return None

    def next_boot(self) -> tuple[str | None, str]:
        """(file name, reason) of the entry systemd-boot will boot next if nobody touches a key."""
        hit, why = select_entry(self.loader_entries(), oneshot=self._var("LoaderEntryOneShot"),
                                efi_default=self._var("LoaderEntryDefault"),
                                conf_default=conf_default(self._conf_text() or ""))
        return (hit.file if hit else None), why

    def _find(self, entry_id: str) -> LoaderEntry:
        found = [e for e in self.loader_entries() if e.stem == entry_id]
        if not found:
            raise NoEntryError(f"systemd-boot: no boot entry {entry_id!r} in {self.esp / ENTRIES_DIR}")
        return sort_entries(found)[0]

    def booted_entry(self) -> str | None:
        selected = self._var("LoaderEntrySelected")
        if selected:
            parsed = parse_entry_name(selected)
            return parsed[0] if parsed else selected
        return read_cmdline_entry(self.cmdline_path)

    def entries(self) -> list[EntryInfo]:
        all_entries = self.loader_entries()
        ordered = sort_entries(all_entries)
        oneshot_var = self._var("LoaderEntryOneShot")
        oneshot = match_pattern(oneshot_var, ordered) if oneshot_var else None
        default, _ = select_entry(all_entries, oneshot=None, efi_default=self._var("LoaderEntryDefault"),
                                  conf_default=conf_default(self._conf_text() or ""))
        booted = self.booted_entry()
        out = []
        for e in ordered:
            parsed = parse_entry_id(e.stem)
            if parsed is None:
                continue
            out.append(EntryInfo(id=e.stem, slot=parsed[1], version=parsed[0], tries_left=e.tries_left,
                                 tries_done=e.tries_done, default=default is e, oneshot=oneshot is e,
                                 booted=booted == e.stem, handle=e.file))
        return out

    # -- writing
    def install_loader(self, efi_binary: str | os.PathLike[str] = SYSTEMD_BOOT_EFI, *, timeout: int = 0,
                       fallback: bool = True) -> None:
        """Put systemd-boot on an empty ESP (clean install): systemd's own path, the removable-media path (unless
        ``fallback`` is off: ``os.uefiFallback: disabled``; an existing file there is left alone), the entries
        directory, and a loader.conf that boots the newest good tether entry. An existing loader.conf keeps its
        other settings."""
        src = Path(efi_binary)
        if not src.is_file():
            raise BootError(f"systemd-boot EFI binary {src} not found (install systemd-boot in the image)")
        if not self.esp.is_dir():
            raise MissingEspError(f"no EFI system partition at {self.esp}")
        try:
            copy_file_atomic(src, self.esp / "EFI" / "systemd" / "systemd-bootx64.efi")
            if fallback:
                copy_file_atomic(src, self.esp / "EFI" / "BOOT" / "BOOTX64.EFI")
            (self.esp / ENTRIES_DIR).mkdir(parents=True, exist_ok=True)
            old = self._conf_text()
            base = old if old is not None else f"timeout {int(timeout)}\neditor no\n"
            new = with_default(base, self.pattern)
            if new != old:
                write_file_atomic(self.esp / LOADER_CONF, new.encode())
        except OSError as e:
            raise write_error(f"systemd-boot onto {self.esp}", e) from None

    def install_entry(self, slot: str, *, kernel: Path, initrd: Path | None, root_partuuid: str, cmdline: str,
                      version: str, tries: int) -> str:
        entry_id, options = prepare_entry(slot, kernel=kernel, initrd=initrd, root_partuuid=root_partuuid,
                                          cmdline=cmdline, version=version, tries=tries)
        self.check_esp()
        booted = self.booted_entry()
        refuse_booted("systemd-boot", entry_id, booted)
        rel = f"{KERNEL_DIR}/{slot}/{version}"
        kdir = self.esp / rel
        lines = [f"# Written by tether for slot {slot}. systemd-boot counts tries by renaming this file.",
                 f"title tether {slot} ({version})", f"version {version}", f"linux /{rel}/vmlinuz"]
        if initrd is not None:
            lines.append(f"initrd /{rel}/initrd.img")
        lines.append(f"options {options}")
        fname = entry_file_name(entry_id, tries if tries > 0 else None)
        stale = [e for e in self.loader_entries() if e.stem == entry_id and e.file != fname]
        try:
            copy_file_atomic(Path(kernel), kdir / "vmlinuz")
            if initrd is not None:
                copy_file_atomic(Path(initrd), kdir / "initrd.img")
            # the entry goes in last: a loader never sees an entry whose kernel is not complete
            write_file_atomic(self.esp / ENTRIES_DIR / fname, ("\n".join(lines) + "\n").encode())
        except OSError as ex:
            if not stale:  # leave what an earlier run of this install (its entry still present) relies on
                shutil.rmtree(kdir, ignore_errors=True)
            raise write_error(f"boot entry {fname} on {self.esp}", ex) from None
        for e in stale:  # an earlier, interrupted run of this same install
            with contextlib.suppress(FileNotFoundError):
                (self.esp / ENTRIES_DIR / e.file).unlink()
        # The slot's older entries boot a kernel that no longer matches the root just written: drop them.
        for e in self.loader_entries():
            parsed = parse_entry_id(e.stem)
            if parsed and parsed[1] == slot and e.stem != entry_id and e.stem != booted:
                self._remove(e)
        fsync_dir(self.esp / ENTRIES_DIR)
        return entry_id

    def set_oneshot(self, entry_id: str) -> None:
        e = self._find(entry_id)
        # A glob survives the renames of counting and blessing; fall back to the current file name when the glob
        # would also catch another entry. Never the bare id: systemd 252 ignores that silently.
        glob = f"{e.stem}*"
        others = [x for x in self.loader_entries() if x.file != e.file and fnmatch.fnmatchcase(x.loader_id, glob)]
        self.efivars.set_string("LoaderEntryOneShot", e.file if others else glob)

    def set_default(self, entry_id: str) -> None:
        """Make ``entry_id`` what boots when no one-shot is set. loader.conf keeps the ``tether-*`` glob (a pinned
        name would keep booting a counted-out entry); so the entry must already be first in systemd-boot's
        order, or this refuses and names the entry that outranks it."""
        self.check_esp()
        e = self._find(entry_id)
        hit, _ = select_entry(self.loader_entries(), oneshot=None, efi_default=None, conf_default=self.pattern)
        if hit is None or hit.stem != e.stem:
            raise BootError(f"systemd-boot: {hit.file if hit else '?'} sorts above {e.file}; mark it bad or remove "
                            f"it before making {entry_id} the default")
        old = self._conf_text()
        new = with_default(old or "timeout 0\neditor no\n", self.pattern)
        conf = self.esp / LOADER_CONF
        if new != old:
            try:
                write_file_atomic(conf, new.encode())
            except OSError as ex:
                raise write_error(str(conf), ex) from None
        try:
            # the variable overrides loader.conf; one left over from `bootctl set-default` would pin an old entry
            if self._var("LoaderEntryDefault") is not None:
                self.efivars.delete("LoaderEntryDefault")
        except EfiVarsError:
            if new != old:
                if old is None:
                    conf.unlink()
                else:
                    write_file_atomic(conf, old.encode())
            raise

    def mark_good(self, entry_id: str) -> None:
        """What systemd-bless-boot does on success: drop the counter from the name. Idempotent."""
        e = self._find(entry_id)
        if e.tries_left is None:
            return
        self._rename(e, entry_file_name(e.stem, None))

    def mark_bad(self, entry_id: str) -> None:
        """What ``systemd-bless-boot bad`` does: no tries left, so the entry sorts last and the old one boots."""
        e = self._find(entry_id)
        target = entry_file_name(e.stem, 0, e.tries_done or 0)
        if e.file != target:
            self._rename(e, target)

    def remove_entry(self, entry_id: str) -> None:
        e = self._find(entry_id)
        if self.booted_entry() == entry_id:
            raise BootError(f"systemd-boot: {entry_id} is the running system's entry; it cannot be removed")
        self._remove(e)

    def _rename(self, e: LoaderEntry, new_name: str) -> None:
        d = self.esp / ENTRIES_DIR
        try:
            os.replace(d / e.file, d / new_name)
        except OSError as ex:
            raise write_error(f"{d / new_name} (renaming {e.file})", ex) from None
        fsync_dir(d)

    def _remove(self, e: LoaderEntry) -> None:
        try:
            (self.esp / ENTRIES_DIR / e.file).unlink()
        except FileNotFoundError:
            pass
        except OSError as ex:
            raise write_error(f"removal of {e.file}", ex) from None
        parsed = parse_entry_id(e.stem)
        if parsed:
            shutil.rmtree(self.esp / KERNEL_DIR / parsed[1] / parsed[0], ignore_errors=True)
