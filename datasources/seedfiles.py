"""Reading a NoCloud-style seed (meta-data, user-data, vendor-data, network-config) from a directory or URL."""

from __future__ import annotations

from pathlib import Path

from tether import log, yamlsafe
from tether.errors import ConfigError, DatasourceError
from tether.record import Record

TYPE_CHECKING = False  # the boot's first stage does not import typing; mypy reads the block below
if TYPE_CHECKING:
    from typing import Any

LOG = log.get(__name__)
MAX_SEED_FILE = 16 * 1024 * 1024
FILES = ("meta-data", "user-data", "vendor-data", "network-config")


class Seed(Record):
    """A seed's parsed meta-data and raw files, with where it was read from."""

    __slots__ = ("where", "meta_data", "user_data", "vendor_data", "network_config")

    def __init__(self, where: str, meta_data: dict[str, Any], user_data: bytes | None, vendor_data: bytes | None,
                 network_config: dict[str, Any] | None) -> None:
        self.where = where
        self.meta_data = meta_data
        self.user_data = user_data
        self.vendor_data = vendor_data
        self.network_config = network_config


def read_file(p: Path) -> bytes | None:
    """A seed file's bytes (None when absent), size-capped; unreadable is a DatasourceError."""
    try:
        with open(p, "rb") as f:
            data = f.read(MAX_SEED_FILE + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise DatasourceError(f"{p}: unreadable: {e}")
    if len(data) > MAX_SEED_FILE:
        raise DatasourceError(f"{p}: larger than {MAX_SEED_FILE >> 20} MiB")
    return data


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


def parse_network_config(raw: bytes | None, where: str) -> dict[str, Any] | None:
    if raw is None or not raw.strip():
        return None
    try:
        nc = yamlsafe.load(raw, source=f"{where}/network-config")
    except ConfigError as e:
        raise DatasourceError(str(e))
    if nc is None:
        return None
    if not isinstance(nc, dict):
        raise DatasourceError(f"{where}/network-config: expected a mapping, got {type(nc).__name__}")
    return nc


def read_dir(d: Path, require_meta: bool = True, where: str | None = None) -> Seed | None:
    """A seed in a directory; None when the directory holds no meta-data (not a seed).
    ``where`` names it in messages (the device, not a temporary mount point)."""
    raw = {name: read_file(d / name) for name in FILES}
    if raw["meta-data"] is None and (require_meta or raw["user-data"] is None):
        return None
    where = where or str(d)
    return Seed(where, parse_meta_data(raw["meta-data"], where), raw["user-data"], raw["vendor-data"],
                parse_network_config(raw["network-config"], where))
