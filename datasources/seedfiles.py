"""Reading a NoCloud-style seed (meta-data, user-data, vendor-data, network-config) from a directory or URL.

Each file is bounded (16 MiB) and costs only itself: meta-data is required (the instance-id is in it), so a bad
one fails the seed; an oversized or unreadable user-data or vendor-data, or a network-config that is oversized or
not valid YAML, is dropped with a warning (``Seed.warnings``) and the rest of the seed still applies.
"""

from __future__ import annotations

from pathlib import Path

from tether import log, yamlsafe
from tether.errors import ConfigError, DatasourceError
from tether.record import Record

TYPE_CHECKING = False  # the boot's first stage does not import typing; mypy reads the block below
if TYPE_CHECKING:
    from typing import Any

LOG = log.get(__name__)
MAX_SEED_FILE = 16 * 1024 * 1024  # = tether.userdata.limits.MAX_INPUT_BYTES (not imported: the local stage)
FILES = ("meta-data", "user-data", "vendor-data", "network-config")


class Seed(Record):
    """A seed's parsed meta-data and raw files, with where it was read from."""

    __slots__ = ("where", "meta_data", "user_data", "vendor_data", "network_config", "warnings")

    def __init__(self, where: str, meta_data: dict[str, Any], user_data: bytes | None, vendor_data: bytes | None,
                 network_config: dict[str, Any] | None, warnings: list[str] | None = None) -> None:
        self.where = where
        self.meta_data = meta_data
        self.user_data = user_data
        self.vendor_data = vendor_data
        self.network_config = network_config
        self.warnings: list[str] = [] if warnings is None else warnings  # files dropped, and why


def read_file(p: Path) -> bytes | None:
    """A seed file's bytes (None when absent), size-capped; unreadable is a DatasourceError. Opened without
    blocking and read only when it is a regular file: a FIFO or a device in a seed directory never holds the
    stage up or feeds it without end."""
    import os
    import stat

    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise DatasourceError(f"{p}: unreadable: {e.strerror}")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DatasourceError(f"{p}: not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_SEED_FILE + 1)
    except OSError as e:
        raise DatasourceError(f"{p}: unreadable: {e.strerror}")
    finally:
        os.close(fd)
    if len(data) > MAX_SEED_FILE:
        raise DatasourceError(f"{p}: larger than the {MAX_SEED_FILE >> 20} MiB limit on a seed file")
    return data


def optional(d: Path, name: str, where: str, warnings: list[str]) -> bytes | None:
    """An optional seed file; one that cannot be used is a warning and None, never the whole seed."""
    try:
        return read_file(d / name)
    except DatasourceError as e:
        reason = str(e).removeprefix(f"{d / name}: ")
        warnings.append(f"{where}/{name} ignored: {reason}; the rest of the seed is used")
        return None


def _optional_network_config(raw: bytes | None, where: str, warnings: list[str]) -> dict[str, Any] | None:
    try:
        return parse_network_config(raw, where)
    except DatasourceError as e:
        warnings.append(f"{e}; network-config ignored, the rest of the seed is used")
        return None


def parse_meta_data(raw: bytes | None, where: str) -> dict[str, Any]:
    if raw is None or not raw.strip():
        return {}
    try:
        md = yamlsafe.load(raw, source=f"{where}/meta-data")
    except ConfigError as e:
        raise DatasourceError(str(e))
    if md is None:
        return {}
    if not isinstance(md, dict):
        raise DatasourceError(f"{where}/meta-data: expected a mapping, got {type(md).__name__}")
    return md


def yaml_mapping(raw: str | bytes | None, source: str, expected: str = "expected a mapping") -> dict[str, Any] | None:
    """A YAML mapping carried by a datasource (a seed file, a metadata value): None when absent, empty or null;
    anything else is a DatasourceError naming ``source``."""
    if raw is None or not raw.strip():
        return None
    try:
        doc = yamlsafe.load(raw, source=source)
    except ConfigError as e:
        raise DatasourceError(str(e))
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise DatasourceError(f"{source}: {expected}, got {type(doc).__name__}")
    return doc


def parse_network_config(raw: bytes | None, where: str) -> dict[str, Any] | None:
    return yaml_mapping(raw, f"{where}/network-config")


def read_dir(d: Path, require_meta: bool = True, where: str | None = None) -> Seed | None:
    """A seed in a directory; None when the directory holds no meta-data (not a seed).
    ``where`` names it in messages (the device, not a temporary mount point)."""
    meta = read_file(d / "meta-data")
    if meta is None and (require_meta or not (d / "user-data").exists()):
        return None
    where = where or str(d)
    warnings: list[str] = []
    raw = {name: optional(d, name, where, warnings) for name in FILES[1:]}
    seed = Seed(where, parse_meta_data(meta, where), raw["user-data"], raw["vendor-data"],
                _optional_network_config(raw["network-config"], where, warnings), warnings)
    for w in warnings:
        LOG.warning("%s", w)
    return seed
