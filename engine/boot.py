"""The boot loader seam: one interface, one backend per boot loader (systemd-boot, GRUB, UEFI BootNext, a fake).

Every backend speaks in *entry ids* of the form ``tether-<version>-<slot>`` (no boot counter, no ``.conf``):
the id stays the same while a loader renames its files as it counts tries. ``version`` is a generation that
grows with every install of an entry (the servicing history gives one), so that the newest entry sorts first
wherever a boot loader orders entries by name (systemd-boot compares ids as versions, newest first).

The contract every backend keeps:

- ``install_entry`` with ``tries > 0`` makes the new entry the *trial*: the next boots pick it while it has tries
  left, and the previous default once the tries are used up (that is the automatic rollback). ``tries == 0``
  installs it without a counter (a clean install that has nothing to fall back to).
- ``mark_good`` ends the trial successfully (the entry becomes the default); ``mark_bad`` ends it as failed (the
  previous default boots next).
- ``set_oneshot`` picks the next boot only; ``set_default`` the boot after that and on.
- Each operation checks everything it can before it writes, writes files atomically, and on any error raises a
  ``BootError`` subclass with the boot configuration as it was.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from tether.errors import TetherError
from tether.target import fsync_dir, write_atomic

__all__ = ["fsync_dir"]  # the boot backends fsync an entries directory after their renames

ENTRY_PREFIX = "tether-"
# '-' separates version and slot and '+' starts a boot counter, so neither may appear in a version; lower case
# because systemd-boot lowercases entry ids before it matches or reports them.
_VERSION_RE = re.compile(r"^[a-z0-9._~^]{1,64}$")
_SLOT_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_PARTUUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
                          r"|^[0-9a-fA-F]{8}-[0-9a-fA-F]{2}$")  # GPT, or MBR disk-id + partition number
MAX_TRIES = 9  # GRUB decrements through a fixed table; keep every backend to the same range
KERNEL_DIR = "tether"  # where kernels and initrds are copied on the boot partition: /tether/<slot>/<version>/


class BootError(TetherError):
    """A boot configuration change was refused or failed; the boot configuration is as it was."""


class MissingEspError(BootError):
    """The EFI system partition (or the boot partition) is not there or not mounted."""


class EfiVarsError(BootError):
    """The EFI variable store refused a write (read-only efivarfs, firmware refusal, no EFI at all)."""


class NoEntryError(BootError):
    """No boot entry with that id, or none for that slot."""


@dataclass(frozen=True)
class EntryInfo:
    """One tether boot entry as the boot loader will see it."""

    id: str                      # tether-<version>-<slot>
    slot: str
    version: str
    tries_left: int | None = None  # None: the entry carries no boot counter (blessed, or never counted)
    tries_done: int | None = None
    default: bool = False        # what the loader boots when no one-shot is set
    oneshot: bool = False        # what the loader boots next, once
    booted: bool = False         # what the running system was booted from
    handle: str = ""             # the backend's own name for it: file name, BootXXXX, menu entry id

    @property
    def counting(self) -> bool:
        return self.tries_left is not None

    @property
    def good(self) -> bool:
        """No counter: blessed after a successful boot, or installed without boot counting."""
        return self.tries_left is None

    @property
    def bad(self) -> bool:
        """All tries used up (or marked bad): the loader only boots it when nothing else matches."""
        return self.tries_left == 0


class BootBackend(Protocol):
    name: str

    def install_entry(self, slot: str, *, kernel: Path, initrd: Path | None, root_partuuid: str, cmdline: str,
                      version: str, tries: int) -> str: ...

    def set_oneshot(self, entry_id: str) -> None: ...

    def set_default(self, entry_id: str) -> None: ...

    def mark_good(self, entry_id: str) -> None: ...

    def mark_bad(self, entry_id: str) -> None: ...

    def booted_entry(self) -> str | None: ...

    def entries(self) -> list[EntryInfo]: ...

    def remove_entry(self, entry_id: str) -> None: ...


# ---- ids -----------------------------------------------------------------------------------------------------

def make_entry_id(version: str, slot: str) -> str:
    check_version(version)
    check_slot(slot)
    return f"{ENTRY_PREFIX}{version}-{slot}"


def check_version(version: str) -> None:
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise BootError(f"boot entry version {version!r}: use 1-64 of a-z 0-9 . _ ~ ^ (no '-' or '+')")


def check_slot(slot: str) -> None:
    if not isinstance(slot, str) or not _SLOT_RE.match(slot) or len(slot) > 32:
        raise BootError(f"slot name {slot!r}: use lower-case letters, digits and single '-' (e.g. volume-b)")


def check_tries(tries: int) -> None:
    if not isinstance(tries, int) or isinstance(tries, bool) or not 0 <= tries <= MAX_TRIES:
        raise BootError(f"boot tries {tries!r}: must be 0 (no boot counting) to {MAX_TRIES}")


def check_partuuid(partuuid: str) -> None:
    if not isinstance(partuuid, str) or not _PARTUUID_RE.match(partuuid):
        raise BootError(f"root PARTUUID {partuuid!r} is not a partition UUID")


def parse_entry_id(entry_id: str) -> tuple[str, str] | None:
    """(version, slot) of a tether entry id, or None for anything else."""
    if not entry_id.startswith(ENTRY_PREFIX):
        return None
    version, sep, slot = entry_id[len(ENTRY_PREFIX):].partition("-")
    if not sep or not _VERSION_RE.match(version) or not _SLOT_RE.match(slot):
        return None
    return version, slot


def entry_options(root_partuuid: str, cmdline: str, entry_id: str) -> str:
    """The kernel command line of an entry. ``tether.entry=`` lets the booted system name its entry on every
    backend, also where the loader exports nothing (GRUB, a firmware boot entry)."""
    check_partuuid(root_partuuid)
    if "\n" in cmdline or "\0" in cmdline:
        raise BootError("kernel command line must be one line")
    words = [w for w in cmdline.split() if not w.startswith(("root=", "tether.entry="))]
    return " ".join([f"root=PARTUUID={root_partuuid.lower()}", *words, f"tether.entry={entry_id}"])


def entry_from_cmdline(text: str) -> str | None:
    for word in text.split():
        if word.startswith("tether.entry="):
            return word.split("=", 1)[1] or None
    return None


def read_cmdline_entry(path: Path) -> str | None:
    try:
        return entry_from_cmdline(path.read_text(errors="replace"))
    except OSError:
        return None


def entry_for_slot(backend: BootBackend, slot: str) -> EntryInfo:
    """The newest entry of ``slot``; NoEntryError when the slot has none."""
    found = [e for e in backend.entries() if e.slot == slot]
    if not found:
        raise NoEntryError(f"{backend.name}: no boot entry for slot {slot}")
    found.sort(key=lambda e: _VersionKey(e.version), reverse=True)
    return found[0]


def find_entry(backend: BootBackend, entry_id: str) -> EntryInfo:
    for e in backend.entries():
        if e.id == entry_id:
            return e
    raise NoEntryError(f"{backend.name}: no boot entry {entry_id!r}")


def check_kernel_files(kernel: Path, initrd: Path | None) -> None:
    for what, p in (("kernel", kernel), ("initrd", initrd)):
        if p is not None and not Path(p).is_file():
            raise BootError(f"{what} {p} does not exist or is not a file")


def prepare_entry(slot: str, *, kernel: Path, initrd: Path | None, root_partuuid: str, cmdline: str, version: str,
                  tries: int) -> tuple[str, str]:
    """What every backend's ``install_entry`` checks before it touches the boot partition (the id from version and
    slot, the tries, the kernel files, the command line); returns the entry's id and its kernel command line."""
    entry_id = make_entry_id(version, slot)
    check_tries(tries)
    check_kernel_files(kernel, initrd)
    return entry_id, entry_options(root_partuuid, cmdline, entry_id)


def refuse_booted(loader: str, entry_id: str, booted: str | None) -> None:
    """An entry is never rewritten under the running system: its kernel and initrd are the ones in use."""
    if booted == entry_id:
        raise BootError(f"{loader}: {entry_id} is the running system's entry; install a new version")


# ---- version ordering (systemd's strverscmp_improved rules, which systemd-boot applies to entry ids) ---------

def _valid_version_char(c: str) -> bool:
    return (c.isascii() and c.isalnum()) or c in "~-^."


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` is older than, equal to or newer than ``b``.

    Numeric runs compare as numbers, '~' sorts before anything (even the end), '-' before '^' before '.', a
    string with more segments is newer, numbers are newer than letters. Characters outside A-Za-z0-9~-^. are
    skipped; that is why ``+3`` counters and ``.conf`` barely matter when ids are compared.
    """
    if not a or not b:
        return (a > b) - (a < b)
    i = j = 0
    while True:
        while i < len(a) and not _valid_version_char(a[i]):
            i += 1
        while j < len(b) and not _valid_version_char(b[j]):
            j += 1
        ca, cb = a[i:i + 1], b[j:j + 1]
        if ca == "~" or cb == "~":
            if (ca != "~") != (cb != "~"):
                return 1 if ca != "~" else -1
            i += 1
            j += 1
            ca, cb = a[i:i + 1], b[j:j + 1]
        if not ca or not cb:
            ra, rb = a[i:], b[j:]
            return (ra > rb) - (ra < rb)
        for sep in "-^.":
            if ca == sep or cb == sep:
                if (ca != sep) != (cb != sep):
                    return 1 if ca != sep else -1
                i += 1
                j += 1
                ca, cb = a[i:i + 1], b[j:j + 1]
        if ca.isdigit() or cb.isdigit():
            ei, ej = i, j
            while ei < len(a) and a[ei].isdigit():
                ei += 1
            while ej < len(b) and b[ej].isdigit():
                ej += 1
            if (ei > i) != (ej > j):
                return 1 if ei > i else -1
            while i < ei and a[i] == "0":
                i += 1
            while j < ej and b[j] == "0":
                j += 1
            if (ei - i) != (ej - j):
                return 1 if ei - i > ej - j else -1
            sa, sb = a[i:ei], b[j:ej]
            if sa != sb:
                return 1 if sa > sb else -1
        else:
            ei, ej = i, j
            while ei < len(a) and a[ei].isascii() and a[ei].isalpha():
                ei += 1
            while ej < len(b) and b[ej].isascii() and b[ej].isalpha():
                ej += 1
            n = min(ei - i, ej - j)
            sa, sb = a[i:i + n], b[j:j + n]
            if sa != sb:
                return 1 if sa > sb else -1
            if (ei - i) != (ej - j):
                return 1 if ei - i > ej - j else -1
        i, j = ei, ej


class _VersionKey:
    def __init__(self, v: str) -> None:
        self.v = v

    def __lt__(self, other: _VersionKey) -> bool:
        return compare_versions(self.v, other.v) < 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _VersionKey) and compare_versions(self.v, other.v) == 0

    def __hash__(self) -> int:
        return hash(self.v)


def version_key(v: str) -> Any:
    return _VersionKey(v)


# ---- files on the boot partition -----------------------------------------------------------------------------

def copy_file_atomic(src: Path, dst: Path, mode: int = 0o644) -> None:
    """``write_file_atomic`` streaming from ``src``, so a large initrd costs no memory."""
    with open(src, "rb") as inp:
        _boot_write(dst, inp, mode)


def write_file_atomic(dst: Path, data: bytes, mode: int = 0o644) -> None:
    """A file on the boot partition, through tether's one atomic write (temp file, fsync, rename, directory
    fsync): a reader sees the old file or the whole new one. The mode is ignored where vfat has none."""
    _boot_write(dst, data, mode)


def _boot_write(dst: Path, data: bytes | BinaryIO, mode: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(dst, data, mode, strict_mode=False)


def write_error(what: str, e: OSError) -> BootError:
    return BootError(f"cannot write {what}: {e.strerror or e}")


def copy_kernel(entry_id: str, dest: Path, kernel: Path, initrd: Path | None, kernel_name: str = "vmlinuz") -> None:
    """An entry's kernel (as ``kernel_name``) and initrd (``initrd.img``) into ``dest`` on the boot partition; a
    copy that fails leaves no directory behind."""
    try:
        copy_file_atomic(Path(kernel), dest / kernel_name)
        if initrd is not None:
            copy_file_atomic(Path(initrd), dest / "initrd.img")
    except OSError as ex:
        shutil.rmtree(dest, ignore_errors=True)
        raise write_error(f"the kernel for {entry_id} to {dest}", ex) from None


# ---- factory -------------------------------------------------------------------------------------------------

def backend_names() -> tuple[str, ...]:
    return tuple(_factories())


def make_backend(name: str, **kwargs: Any) -> BootBackend:
    """A backend by its name (``systemd-boot``, ``grub``, ``uefi``, ``fake``) with its constructor arguments."""
    factories = _factories()
    factory = factories.get(name)
    if factory is None:
        raise BootError(f"unknown boot loader {name!r}; known: {', '.join(factories)}")
    try:
        backend: BootBackend = factory(**kwargs)
    except TypeError as e:
        raise BootError(f"boot loader {name}: {e}") from None
    return backend


def _factories() -> dict[str, Callable[..., Any]]:
    # imported here: each backend imports this module for the interface
    from tether.engine.boot_fake import FakeBoot
    from tether.engine.boot_grub import GrubBoot
    from tether.engine.boot_systemd import SystemdBoot
    from tether.engine.boot_uefi import UefiBootNext

    return {"systemd-boot": SystemdBoot, "grub": GrubBoot, "uefi": UefiBootNext, "fake": FakeBoot}
