"""Read files from an ISO 9660 image without mounting it (Joliet or Rock Ridge names).

Used when the kernel cannot mount the seed (no iso9660 driver in a container or minimal initramfs): the
seed is then read in user space. Only what seeds need: regular files by path, size-capped.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

SECTOR = 2048
MAX_FILE = 16 * 1024 * 1024


class IsoError(Exception):
    pass


def _records(f: BinaryIO, extent: int, size: int) -> list[tuple[str, int, int, bool, bytes, int]]:
    """(raw name, extent, size, is_dir, system use area, name encoding flag) of one directory."""
    f.seek(extent * SECTOR)
    data = f.read(min(size, 4 * 1024 * 1024))
    out = []
    pos = 0
    while pos < len(data):
        length = data[pos]
        if length == 0:  # records never span sectors: skip to the next one
            pos = (pos // SECTOR + 1) * SECTOR
            continue
        rec = data[pos:pos + length]
        if len(rec) < 34:
            break
        ext = struct.unpack_from("<I", rec, 2)[0]
        sz = struct.unpack_from("<I", rec, 10)[0]
        flags = rec[25]
        nlen = rec[32]
        name = rec[33:33 + nlen]
        su_start = 33 + nlen + (1 - nlen % 2)
        out.append((name.decode("latin-1"), ext, sz, bool(flags & 2), rec[su_start:], nlen))
        pos += length
    return out


def _rr_name(su: bytes) -> str | None:
    i, parts = 0, []
    while i + 4 <= len(su):
        sig, ln = su[i:i + 2], su[i + 2]
        if ln < 4:
            break
        if sig == b"NM":
            parts.append(su[i + 5:i + ln].decode("utf-8", "replace"))
        i += ln
    return "".join(parts) if parts else None


def _volumes(f: BinaryIO) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    primary = joliet = None
    for n in range(16, 64):
        f.seek(n * SECTOR)
        vd = f.read(SECTOR)
        if len(vd) < SECTOR or vd[1:6] != b"CD001":
            raise IsoError("not an ISO 9660 image")
        kind = vd[0]
        root = vd[156:156 + 34]
        loc = (struct.unpack_from("<I", root, 2)[0], struct.unpack_from("<I", root, 10)[0])
        if kind == 1:
            primary = loc
        elif kind == 2 and vd[88:91] in (b"%/@", b"%/C", b"%/E"):
            joliet = loc
        elif kind == 255:
            break
    return primary, joliet


def read_files(path: str, wanted: list[str]) -> dict[str, bytes]:
    """Contents of the ``wanted`` paths (``meta-data``, ``openstack/latest/meta_data.json``) that exist."""
    out: dict[str, bytes] = {}
    with open(path, "rb") as f:
        primary, joliet = _volumes(f)
        root, use_joliet = (joliet, True) if joliet else (primary, False)
        if root is None:
            raise IsoError("no primary volume descriptor")
        for want in wanted:
            ext, size = root
            found = True
            parts = [p for p in want.split("/") if p]
            for i, part in enumerate(parts):
                match = None
                for raw, e, s, is_dir, su, _n in _records(f, ext, size):
                    if raw in ("\x00", "\x01"):
                        continue
                    if use_joliet:
                        name = raw.encode("latin-1").decode("utf-16-be", "replace").split(";")[0]
                    else:
                        name = _rr_name(su) or raw.split(";")[0].rstrip(".").lower()
                    if name == part and is_dir == (i < len(parts) - 1):
                        match = (e, s)
                        break
                if match is None:
                    found = False
                    break
                ext, size = match
            if found:
                f.seek(ext * SECTOR)
                # an oversized file is read one byte past the cap, no further: the seed code refuses that file
                # alone (the rest of the seed still applies)
                out[want] = f.read(min(size, MAX_FILE + 1))
    return out
