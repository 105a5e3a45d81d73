"""write_files: files with content, encodings, owner, permissions, append and defer.

Beyond cloud-init (its issue #2573): an entry whose ``owner`` names a user or group that does not exist yet
(because the same user-data creates it) is deferred automatically until ``users_groups`` has run in this stage,
then written with the right owner. Entries with ``defer: true`` are left to ``write_files_deferred`` (final).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from tether import log
from tether.convert import meta
from tether.module import Frequency, ModuleContext, ModuleError, Stage

NAME = "write_files"
STAGE = Stage.INIT
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("write_files",)
LOG = log.get(__name__)
DEFAULT_OWNER = "root:root"
DEFAULT_PERMS = 0o644
MAX_CONTENT_BYTES = 128 * 1024 * 1024  # one entry's decoded content: a gzip bomb stops here, while inflating
ENCODINGS = ("b64", "base64", "gz", "gzip", "gz+b64", "gzip+base64", "gz+base64", "gzip+b64", "text/plain")


@dataclass(frozen=True)
class Source:
    uri: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Entry:
    path: str
    content: str | bytes = ""  # bytes when the YAML says !!binary
    source: Source | None = None
    owner: str = DEFAULT_OWNER
    permissions: str | int | None = None
    encoding: str = "text/plain"
    append: bool = False
    defer: bool = False

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"path {self.path!r} must be absolute")
        if self.encoding.lower() not in ENCODINGS:
            raise ValueError(f"encoding {self.encoding!r} is not one of {', '.join(ENCODINGS)}")
        parse_mode(self.permissions)


@dataclass(frozen=True)
class Config:
    # An invalid entry is reported by its index and skipped; the valid ones are still written.
    write_files: tuple[Entry, ...] = field(default=(), metadata=meta(doc="files to write", skip_invalid=True))


def parse_mode(perms: str | int | None) -> int:
    if perms is None:
        return DEFAULT_PERMS
    if isinstance(perms, int):
        # YAML 1.1 already read an unquoted 0644 as octal; an int is used as is, as cloud-init does.
        if not 0 <= perms <= 0o7777:
            raise ValueError(f"permissions {perms} is out of range")
        return perms
    try:
        value = int(perms.strip(), 8)
    except ValueError:
        raise ValueError(f"permissions {perms!r} is not an octal mode") from None
    if value > 0o7777:
        raise ValueError(f"permissions {perms!r} is out of range")
    return value


def decode(entry: Entry) -> bytes:
    enc = entry.encoding.lower()
    data: bytes = entry.content.encode() if isinstance(entry.content, str) else entry.content
    from tether.userdata.decompress import DecompressError, gunzip
    from tether.userdata.limits import LimitExceeded

    try:
        if "b64" in enc or "base64" in enc:
            data = base64.b64decode(data, validate=False)
        if enc.startswith("gz"):
            data = gunzip(data, limit=MAX_CONTENT_BYTES)
    except (binascii.Error, DecompressError, LimitExceeded) as e:
        raise ModuleError(f"{entry.path}: cannot decode {entry.encoding} content: {e}; not written")
    return data


def _ids(ctx: ModuleContext, owner: str) -> tuple[int, int] | None:
    user, _, group = owner.partition(":")
    uid = _lookup(ctx, "/etc/passwd", user, 2)
    if uid is None:
        return None
    gid = _lookup(ctx, "/etc/group", group, 2) if group else _lookup(ctx, "/etc/passwd", user, 3)
    if gid is None:
        return None
    return uid, gid


def _lookup(ctx: ModuleContext, db: str, name: str, col: int) -> int | None:
    if name.isdigit():
        return int(name)
    for line in ctx.target.read_text(db, default="").splitlines():
        parts = line.split(":")
        if len(parts) > col and parts[0] == name:
            try:
                return int(parts[col])
            except ValueError:
                return None
    return None


def content_of(ctx: ModuleContext, entry: Entry) -> bytes:
    if entry.source is not None:
        from tether.http import HttpError, request
        try:
            return request(entry.source.uri, headers=entry.source.headers, timeout=10, retries=2).body
        except HttpError as e:
            if not entry.content:
                raise ModuleError(f"{entry.path}: source {entry.source.uri}: {e}")
            ctx.warn(f"{entry.path}: source unavailable ({e}); using the inline content")
    return decode(entry)


def write_entry(ctx: ModuleContext, entry: Entry, owner_ids: tuple[int, int] | None) -> None:
    data = content_of(ctx, entry)
    mode = parse_mode(entry.permissions)
    ctx.target.write(entry.path, data, mode=mode, owner=owner_ids, append=entry.append)
    LOG.info("wrote %s (%d bytes, mode %o, owner %s)", entry.path, len(data), mode, entry.owner)


def write_entries(ctx: ModuleContext, entries: tuple[Entry, ...] | list[Entry], allow_defer: bool = True) -> None:
    """Write entries; owners that do not exist yet wait for users_groups (when ``allow_defer``)."""
    failed: list[str] = []
    waiting: list[Entry] = []
    for entry in entries:
        ids = _ids(ctx, entry.owner)
        if ids is None and allow_defer:
            waiting.append(entry)
            continue
        if ids is None:
            ctx.warn(f"{entry.path}: owner {entry.owner!r} does not exist; written as root:root")
            ids = (0, 0)
        try:
            write_entry(ctx, entry, ids)
        except (ModuleError, OSError) as e:
            failed.append(str(e))
    if waiting:
        LOG.info("deferring %s until users_groups has run (owner not created yet)",
                 ", ".join(e.path for e in waiting))
        ctx.after("users_groups", lambda: write_entries(ctx, waiting, allow_defer=False))
    if failed:
        raise ModuleError("; ".join(failed))


def handle(ctx: ModuleContext, cfg: Config) -> None:
    write_entries(ctx, [e for e in cfg.write_files if not e.defer])
