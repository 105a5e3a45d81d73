"""ConfigDrive: a filesystem labelled config-2 holding OpenStack's openstack/latest/*.json files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tether import log
from tether.datasource import Datasource
from tether.datasources.seedfiles import optional, read_file
from tether.detect import labels, looked_for, seed_dirs
from tether.errors import DatasourceError
from tether.instance import InstanceData

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tether.datasource import Evidence

EVIDENCE: Evidence = {
    "name": "ConfigDrive",
    "network": False,
    "aliases": ("configdrive", "config-drive", "config_drive"),
    "labels": ("config-2",),
    "seed_dirs": ("/var/lib/tether/seed/config_drive", "/var/lib/cloud/seed/config_drive"),
    "seed_files": ("openstack",),
}
LOG = log.get(__name__)
DRIVE_FILES = tuple(f"openstack/latest/{n}" for n in ("meta_data.json", "user_data", "vendor_data.json",
                                                      "network_data.json"))


def _json(raw: bytes | None, p: Path) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise DatasourceError(f"{p}: invalid JSON: {e}")
    if not isinstance(data, dict):
        raise DatasourceError(f"{p}: expected a JSON object")
    return data


def read_drive(root: Path, warnings: list[str] | None = None
               ) -> tuple[dict[str, Any], bytes | None, dict[str, Any] | None, dict[str, Any] | None]:
    """meta_data.json is required; user_data, vendor_data.json and network_data.json that cannot be used (too
    large, unreadable, not JSON) are each dropped with a warning, and cost only themselves."""
    base = root / "openstack" / "latest"
    md = _json(read_file(base / "meta_data.json"), base / "meta_data.json")
    if md is None:
        raise DatasourceError(f"{root}: no openstack/latest/meta_data.json")
    notes: list[str] = [] if warnings is None else warnings
    where = str(base)
    ud = optional(base, "user_data", where, notes)
    docs: list[dict[str, Any] | None] = []
    for name in ("vendor_data.json", "network_data.json"):
        try:
            docs.append(_json(optional(base, name, where, notes), base / name))
        except DatasourceError as e:
            notes.append(f"{e}; {name} ignored, the rest of the config drive is used")
            docs.append(None)
    return md, ud, docs[0], docs[1]


class ConfigDrive(Datasource):
    NAME = "ConfigDrive"
    NEEDS_NETWORK = EVIDENCE["network"]

    def _sources(self) -> list[str]:
        return seed_dirs(self.NAME, self.ctx.target) + self.ctx.host.devices_by_label(
            *labels(self.NAME, self.ctx.settings))

    def fetch(self) -> InstanceData:
        from tether.datasources.openstack_format import parse_openstack

        for src in self._sources():
            try:
                warnings: list[str] = []
                with self.ctx.host.mounted_readonly(src, wanted=DRIVE_FILES) as mnt:
                    md, ud, vd, nd = read_drive(mnt, warnings)
            except DatasourceError:
                raise
            except Exception as e:
                raise DatasourceError(f"config drive {src}: cannot mount: {e}")
            inst = parse_openstack(md, ud, vd, nd)
            inst.datasource = self.NAME
            if warnings:
                inst.ds = {**(inst.ds or {}), "warnings": [*((inst.ds or {}).get("warnings") or []), *warnings]}
            inst.subplatform = f"config-disk ({src})" if not Path(src).is_dir() else f"seed-dir ({src})"
            self._where = src
            return inst
        missing = looked_for(self.NAME, self.ctx.host, self.ctx.target, self.ctx.settings)
        raise DatasourceError(f"no config drive found: {missing}")

    def describe(self) -> str:
        return f"DataSource{self.NAME} [source={getattr(self, '_where', '?')}]"


DATASOURCE = ConfigDrive
