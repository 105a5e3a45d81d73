"""UEFI: the EFI variable store (efivarfs, or a directory laid out like it), and the BootNext backend.

efivarfs presents each variable as a file ``<Name>-<vendor GUID>`` whose content is a 4-byte little-endian
attribute word followed by the value. The kernel marks most variables immutable (so that ``rm -rf /`` cannot
brick a machine), so a write or delete first clears ``FS_IMMUTABLE_FL`` with the ``FS_IOC_SETFLAGS`` ioctl
(``chattr -i``), and a value goes in with a single ``write()``. systemd-boot's variables use the systemd vendor
GUID and UTF-16LE strings with a terminating NUL.

The BootNext backend is the firmware's own try-once mechanism (Trident's way): each slot gets a firmware boot
entry that starts the kernel's EFI stub from the ESP; the new slot is booted once through ``BootNext``, and
the firmware falls back to ``BootOrder`` (the old slot) on the boot after. It counts exactly one try.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from tether import log
from tether.engine.boot import (
    KERNEL_DIR,
    BootError,
    EfiVarsError,
    EntryInfo,
    MissingEspError,
    NoEntryError,
    copy_kernel,
    parse_entry_id,
    prepare_entry,
    read_cmdline_entry,
)
from tether.errors import CommandError
from tether.runner import Runner

LOG = log.get(__name__)

EFIVARFS = Path("/sys/firmware/efi/efivars")
SYSTEMD_VENDOR = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
EFI_GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
NON_VOLATILE = 0x1
BOOTSERVICE_ACCESS = 0x2
RUNTIME_ACCESS = 0x4
DEFAULT_ATTRS = NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS

FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_IMMUTABLE_FL = 0x00000010
_REFUSED = (errno.EROFS, errno.EPERM, errno.EACCES)
_NO_FLAGS = (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)
_NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,128}$")
_GUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def encode_string(text: str) -> bytes:
    """A systemd-boot string variable: UTF-16LE with a terminating NUL."""
    return (text + "\0").encode("utf-16-le")


def decode_string(data: bytes) -> str:
    if len(data) % 2:
        raise EfiVarsError(f"EFI string variable has odd length {len(data)}")
    return data.decode("utf-16-le", errors="replace").split("\0", 1)[0]


class EfiVars:
    """Read and write EFI variables under ``path`` (efivarfs, or any directory with the same file layout)."""

    def __init__(self, path: str | os.PathLike[str] = EFIVARFS, *, efivarfs: bool | None = None) -> None:
        self.path = Path(path)
        # efivarfs replaces a variable with each whole write() and cannot be truncated; a plain directory
        # needs O_TRUNC. Decide by what is mounted there.
        self.efivarfs = _is_efivarfs(self.path) if efivarfs is None else efivarfs

    @property
    def available(self) -> bool:
        return self.path.is_dir()

    def _file(self, name: str, guid: str) -> Path:
        if not _NAME_RE.match(name) or not _GUID_RE.match(guid):
            raise EfiVarsError(f"bad EFI variable name {name}-{guid}")
        return self.path / f"{name}-{guid}"

    def get(self, name: str, guid: str = SYSTEMD_VENDOR) -> tuple[int, bytes] | None:
        """(attributes, value) or None when the variable does not exist."""
        try:
            raw = self._file(name, guid).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise EfiVarsError(f"cannot read EFI variable {name}: {e.strerror or e}") from None
        if len(raw) < 4:
            raise EfiVarsError(f"EFI variable {name} is {len(raw)} bytes, shorter than its attribute word")
        return struct.unpack("<I", raw[:4])[0], raw[4:]

    def get_string(self, name: str, guid: str = SYSTEMD_VENDOR) -> str | None:
        got = self.get(name, guid)
        return None if got is None else decode_string(got[1])

    def set(self, name: str, value: bytes, guid: str = SYSTEMD_VENDOR, attrs: int = DEFAULT_ATTRS) -> None:
        path = self._file(name, guid)
        self._need_store()
        payload = struct.pack("<I", attrs) + value
        try:
            _clear_immutable(path)
            flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (0 if self.efivarfs else os.O_TRUNC)
            fd = os.open(path, flags, 0o644)
            try:
                written = os.write(fd, payload)  # one write: efivarfs takes each write() as a whole variable
            finally:
                os.close(fd)
        except OSError as e:
            raise self._refused(f"set {name}", e) from None
        if written != len(payload):
            raise EfiVarsError(f"EFI variable {name}: short write ({written} of {len(payload)} bytes)")

    def set_string(self, name: str, text: str, guid: str = SYSTEMD_VENDOR) -> None:
        self.set(name, encode_string(text), guid)

    def delete(self, name: str, guid: str = SYSTEMD_VENDOR) -> bool:
        path = self._file(name, guid)
        if not path.exists():
            return False
        try:
            _clear_immutable(path)
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as e:
            raise self._refused(f"delete {name}", e) from None
        return True

    def _need_store(self) -> None:
        if not self.path.is_dir():
            raise EfiVarsError(f"no EFI variable store at {self.path} (not booted with UEFI, or efivarfs "
                               "not mounted)")

    def _refused(self, what: str, e: OSError) -> EfiVarsError:
        if e.errno in _REFUSED:
            return EfiVarsError(f"the EFI variable store {self.path} refuses writes ({e.strerror}); cannot {what}"
                                + ("; remount efivarfs read-write" if e.errno == errno.EROFS else ""))
        return EfiVarsError(f"cannot {what} in {self.path}: {e.strerror or e}")


def _clear_immutable(path: Path) -> None:
    """``chattr -i`` through the ioctl; filesystems without inode flags (a test directory) have nothing to
    clear."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return
    try:
        buf = bytearray(8)
        try:
            fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf)
        except OSError as e:
            if e.errno in _NO_FLAGS:
                return
            raise
        flags = struct.unpack("<i", bytes(buf[:4]))[0]
        if flags & FS_IMMUTABLE_FL:
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("<i", flags & ~FS_IMMUTABLE_FL) + b"\0" * 4)
    finally:
        os.close(fd)


def _is_efivarfs(path: Path) -> bool:
    from tether.blockdev import mount_at

    try:
        m = mount_at(os.path.realpath(path))
    except OSError:
        return False
    return m is not None and m.fstype == "efivarfs"


# ---- BootNext backend ----------------------------------------------------------------------------------------

_BOOT_LINE = re.compile(r"^Boot([0-9A-Fa-f]{4})(\*?)\s+([^\t]*?)\s*(?:\t.*)?$")


@dataclass(frozen=True)
class FirmwareEntry:
    num: str      # four hex digits
    label: str
    active: bool


@dataclass(frozen=True)
class FirmwareState:
    current: str | None
    next: str | None
    order: tuple[str, ...]
    entries: tuple[FirmwareEntry, ...]


def parse_efibootmgr(text: str) -> FirmwareState:
    current = nxt = None
    order: tuple[str, ...] = ()
    entries: list[FirmwareEntry] = []
    for line in text.splitlines():
        if line.startswith("BootCurrent:"):
            current = line.split(":", 1)[1].strip().upper() or None
        elif line.startswith("BootNext:"):
            nxt = line.split(":", 1)[1].strip().upper() or None
        elif line.startswith("BootOrder:"):
            order = tuple(x.strip().upper() for x in line.split(":", 1)[1].split(",") if x.strip())
        else:
            m = _BOOT_LINE.match(line)
            if m:
                entries.append(FirmwareEntry(m.group(1).upper(), m.group(3).strip(), m.group(2) == "*"))
    return FirmwareState(current, nxt, order, tuple(entries))


class UefiBootNext:
    """Firmware boot entries per slot (kernel EFI stub on the ESP), BootNext for the one try, BootOrder for the
    default. ``esp`` is where the ESP is mounted; ``disk``/``part`` are what efibootmgr needs to point at it."""

    name = "uefi"

    def __init__(self, runner: Runner, esp: str | os.PathLike[str], *, disk: str, part: int,
                 cmdline_path: str | os.PathLike[str] = "/proc/cmdline") -> None:
        self.runner = runner
        self.esp = Path(esp)
        self.disk = disk
        self.part = int(part)
        self.cmdline_path = Path(cmdline_path)

    # -- firmware state
    def _efibootmgr(self, *args: str) -> str:
        try:
            return self.runner.run(["efibootmgr", *args], timeout=60).stdout
        except CommandError as e:
            detail = (e.stderr.strip().splitlines() or [str(e)])[-1]
            if any(s in e.stderr for s in ("Read-only file system", "Operation not permitted",
                                           "Permission denied")):
                raise EfiVarsError(f"the EFI variable store refuses writes: efibootmgr {' '.join(args)}: "
                                   f"{detail}") from None
            raise BootError(f"efibootmgr {' '.join(args)} failed: {detail}") from None

    def state(self) -> FirmwareState:
        return parse_efibootmgr(self._efibootmgr())

    def _num(self, entry_id: str, st: FirmwareState | None = None) -> str:
        st = st or self.state()
        for e in st.entries:
            if e.label == entry_id:
                return e.num
        raise NoEntryError(f"uefi: no firmware boot entry labelled {entry_id!r}")

    def _check_esp(self) -> None:
        if not self.esp.is_dir() or not (self.esp / "EFI").is_dir():
            raise MissingEspError(f"no EFI system partition mounted at {self.esp} (no EFI directory)")

    # -- interface
    def install_entry(self, slot: str, *, kernel: Path, initrd: Path | None, root_partuuid: str, cmdline: str,
                      version: str, tries: int) -> str:
        entry_id, options = prepare_entry(slot, kernel=kernel, initrd=initrd, root_partuuid=root_partuuid,
                                          cmdline=cmdline, version=version, tries=tries)
        self._check_esp()
        before = self.state()
        booted = self._label_of(before.current, before)
        rel = f"{KERNEL_DIR}/{slot}/{version}"
        dest = self.esp / rel
        copy_kernel(entry_id, dest, kernel, initrd, "vmlinuz.efi")
        loader = "\\" + rel.replace("/", "\\") + "\\vmlinuz.efi"
        if initrd is not None:
            options = f"initrd=\\{rel.replace('/', chr(92))}\\initrd.img {options}"
        for e in before.entries:  # a re-run replaces its own half-made entry
            if e.label == entry_id:
                self._efibootmgr("--bootnum", e.num, "--delete-bootnum")
        try:
            # --create-only: not in BootOrder, so only BootNext ever boots it until it is marked good
            self._efibootmgr("--create-only", "--disk", self.disk, "--part", str(self.part), "--label", entry_id,
                             "--loader", loader, "--unicode", options)
            st = self.state()
            num = self._num(entry_id, st)
            if tries > 0:
                if tries > 1:
                    LOG.info("uefi: the firmware's BootNext gives %s one try, not %d", entry_id, tries)
                self._efibootmgr("--bootnext", num)
        except BootError:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        for e in st.entries:  # the slot's older entries point at a root that was just overwritten
            parsed = parse_entry_id(e.label)
            if parsed and parsed[1] == slot and e.label != entry_id and e.label != booted:
                self._remove(e.label, st)
        return entry_id

    def set_oneshot(self, entry_id: str) -> None:
        self._efibootmgr("--bootnext", self._num(entry_id))

    def set_default(self, entry_id: str) -> None:
        st = self.state()
        num = self._num(entry_id, st)
        order = [num, *(n for n in st.order if n != num)]
        self._efibootmgr("--bootorder", ",".join(order))

    def mark_good(self, entry_id: str) -> None:
        st = self.state()
        num = self._num(entry_id, st)
        if st.order[:1] != (num,):
            self._efibootmgr("--bootorder", ",".join([num, *(n for n in st.order if n != num)]))
        if st.next == num:
            self._efibootmgr("--delete-bootnext")

    def mark_bad(self, entry_id: str) -> None:
        st = self.state()
        num = self._num(entry_id, st)
        if st.next == num:
            self._efibootmgr("--delete-bootnext")
        if num in st.order:
            rest = [n for n in st.order if n != num]
            if not rest:
                raise BootError(f"uefi: {entry_id} is the only entry in BootOrder; marking it bad leaves nothing "
                                "to boot")
            self._efibootmgr("--bootorder", ",".join(rest))

    def booted_entry(self) -> str | None:
        try:
            st = self.state()
        except BootError:
            st = None
        label = self._label_of(st.current, st) if st else None
        if label and parse_entry_id(label):
            return label
        return read_cmdline_entry(self.cmdline_path) or label

    def entries(self) -> list[EntryInfo]:
        st = self.state()
        out = []
        for e in st.entries:
            parsed = parse_entry_id(e.label)
            if not parsed:
                continue
            in_order = e.num in st.order
            tries_left = None if in_order else (1 if st.next == e.num else 0)
            out.append(EntryInfo(
                id=e.label, slot=parsed[1], version=parsed[0], tries_left=tries_left,
                tries_done=None if in_order else (0 if tries_left else 1),
                default=bool(st.order) and st.order[0] == e.num, oneshot=st.next == e.num,
                booted=st.current == e.num, handle=f"Boot{e.num}"))
        return out

    def remove_entry(self, entry_id: str) -> None:
        st = self.state()
        if st.current is not None and self._label_of(st.current, st) == entry_id:
            raise BootError(f"uefi: {entry_id} is the running system's boot entry; it cannot be removed")
        self._remove(entry_id, st)

    def _remove(self, entry_id: str, st: FirmwareState) -> None:
        self._efibootmgr("--bootnum", self._num(entry_id, st), "--delete-bootnum")
        parsed = parse_entry_id(entry_id)
        if parsed:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.esp / KERNEL_DIR / parsed[1] / parsed[0])

    @staticmethod
    def _label_of(num: str | None, st: FirmwareState | None) -> str | None:
        if num is None or st is None:
            return None
        for e in st.entries:
            if e.num == num:
                return e.label
        return None
