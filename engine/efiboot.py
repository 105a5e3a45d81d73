"""Firmware boot entries (``Boot####``, ``BootOrder``) written straight into the EFI variable store.

A clean install onto a second disk must tell the firmware about that disk: the firmware otherwise keeps booting
the installer's medium, which is first in its order. This is what ``bootctl install`` and ``efibootmgr --create``
do, without needing either tool in the installer environment: an ``EFI_LOAD_OPTION`` (UEFI 2.10 §3.1.3) whose
device path is the short form ``HD(partition, GPT, PARTUUID, start, size)/File(\\EFI\\...)``, which the firmware
resolves to whatever disk holds that partition, and the entry's number put first in ``BootOrder``.

Variables of the EFI global vendor GUID are named ``Boot`` plus four upper-case hex digits; values are
little-endian. ``EfiVars`` (``boot_uefi``) does the efivarfs details (attribute word, immutable flag).
"""

from __future__ import annotations

import os
import re
import stat
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

from tether.engine.boot import EfiVarsError
from tether.engine.boot_uefi import DEFAULT_ATTRS, EFI_GLOBAL, EfiVars

LOAD_OPTION_ACTIVE = 0x1
SYSTEMD_BOOT_LOADER = "\\EFI\\systemd\\systemd-bootx64.efi"
_MEDIA, _HARDDRIVE, _FILEPATH = 0x04, 0x01, 0x04
_END = b"\x7f\xff\x04\x00"
_GPT, _GUID_SIGNATURE = 0x02, 0x02
_BOOT_VAR = re.compile(r"^Boot([0-9A-F]{4})-" + EFI_GLOBAL + "$")


class FirmwareEntryError(EfiVarsError):
    """A firmware boot entry could not be built or written."""


@dataclass(frozen=True)
class FirmwarePartition:
    """What an ``HD()`` device path node says about a GPT partition; LBAs in the disk's logical blocks."""

    number: int
    start_lba: int
    size_lba: int
    partuuid: str


@dataclass(frozen=True)
class LoadOption:
    attributes: int
    description: str
    device_path: bytes
    optional_data: bytes = b""


def _node(kind: int, sub: int, body: bytes) -> bytes:
    return struct.pack("<BBH", kind, sub, 4 + len(body)) + body


def device_path(part: FirmwarePartition, loader: str) -> bytes:
    """``HD(...)/File(loader)/End``: the short-form path firmware and efibootmgr use for a file on a partition."""
    if not loader.startswith("\\") or "/" in loader:
        raise FirmwareEntryError(f"EFI loader path {loader!r} must be absolute with backslashes (\\EFI\\...)")
    try:
        signature = uuid.UUID(part.partuuid).bytes_le
    except ValueError:
        raise FirmwareEntryError(f"{part.partuuid!r} is not a GPT partition UUID") from None
    hd = struct.pack("<IQQ", part.number, part.start_lba, part.size_lba) + signature + bytes([_GPT, _GUID_SIGNATURE])
    return _node(_MEDIA, _HARDDRIVE, hd) + _node(_MEDIA, _FILEPATH, (loader + "\0").encode("utf-16-le")) + _END


def encode_load_option(option: LoadOption) -> bytes:
    if "\0" in option.description:
        raise FirmwareEntryError("a boot entry description cannot contain NUL")
    return (struct.pack("<IH", option.attributes, len(option.device_path))
            + (option.description + "\0").encode("utf-16-le") + option.device_path + option.optional_data)


def decode_load_option(data: bytes) -> LoadOption:
    if len(data) < 6:
        raise FirmwareEntryError(f"load option of {len(data)} bytes is too short")
    attributes, path_len = struct.unpack_from("<IH", data)
    end = 6
    while True:
        if end + 2 > len(data):
            raise FirmwareEntryError("load option description is not NUL-terminated")
        if data[end:end + 2] == b"\0\0":
            break
        end += 2
    description = data[6:end].decode("utf-16-le", errors="replace")
    start = end + 2
    if start + path_len > len(data):
        raise FirmwareEntryError("load option device path runs past its end")
    return LoadOption(attributes, description, data[start:start + path_len], data[start + path_len:])


def partition_of(device: str, partuuid: str, sys_root: Path = Path("/sys")) -> FirmwarePartition:
    """Number, start and size of partition ``device`` from sysfs (start and size are in 512-byte sectors there,
    converted to the disk's logical blocks)."""
    try:
        st = os.stat(device)
    except OSError as e:
        raise FirmwareEntryError(f"{device}: {e.strerror}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise FirmwareEntryError(f"{device} is not a block device")
    node = (sys_root / "dev/block" / f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}").resolve()
    try:
        number = int((node / "partition").read_text())
        start = int((node / "start").read_text())
        size = int((node / "size").read_text())
        block = int((node.parent / "queue/logical_block_size").read_text())
    except (OSError, ValueError) as e:
        raise FirmwareEntryError(f"{device}: not a partition, or its sysfs entry ({node}) is unreadable: {e}") from None
    per = max(1, block // 512)
    return FirmwarePartition(number, start // per, size // per, partuuid)


def boot_order(efivars: EfiVars) -> list[int]:
    got = efivars.get("BootOrder", EFI_GLOBAL)
    if got is None:
        return []
    raw = got[1][: len(got[1]) // 2 * 2]
    return list(struct.unpack(f"<{len(raw) // 2}H", raw))


def boot_entries(efivars: EfiVars) -> dict[int, LoadOption]:
    """Every ``Boot####`` variable that parses, by number."""
    out: dict[int, LoadOption] = {}
    try:
        names = os.listdir(efivars.path)
    except OSError:
        return out
    for name in names:
        m = _BOOT_VAR.match(name)
        if not m:
            continue
        got = efivars.get(f"Boot{m.group(1)}", EFI_GLOBAL)
        if got is None:
            continue
        try:
            out[int(m.group(1), 16)] = decode_load_option(got[1])
        except FirmwareEntryError:
            continue
    return out


def register(efivars: EfiVars, description: str, part: FirmwarePartition, loader: str) -> int:
    """Create (or reuse, when one points at the same partition and file) a firmware boot entry and put it first
    in ``BootOrder``; returns its number. A failed ``BootOrder`` write removes an entry created here."""
    if not efivars.available:
        raise FirmwareEntryError(f"no EFI variable store at {efivars.path} (not booted with UEFI?)")
    path = device_path(part, loader)
    existing = boot_entries(efivars)
    num = next((n for n, opt in sorted(existing.items()) if opt.device_path == path), None)
    created = num is None
    if num is None:
        num = next(n for n in range(0x10000) if n not in existing)
    option = LoadOption(LOAD_OPTION_ACTIVE, description, path)
    name = f"Boot{num:04X}"
    old = efivars.get(name, EFI_GLOBAL)
    if old is None or old[1] != encode_load_option(option):
        efivars.set(name, encode_load_option(option), EFI_GLOBAL, DEFAULT_ATTRS)
    order = boot_order(efivars)
    if order[:1] != [num]:
        new_order = [num, *(n for n in order if n != num)]
        try:
            efivars.set("BootOrder", struct.pack(f"<{len(new_order)}H", *new_order), EFI_GLOBAL, DEFAULT_ATTRS)
        except EfiVarsError:
            if created:
                efivars.delete(name, EFI_GLOBAL)
            raise
    return num
