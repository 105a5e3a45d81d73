"""The per-instance cache under /var/lib/tether: which instance this is, what it was given, whether it is new.

Everything is JSON (never pickle) and files holding user-data are 0600.
"""

from __future__ import annotations

import json
import os

from tether import log
from tether.instance import InstanceData
from tether.paths import PATHS, Paths
from tether.target import Target, replace_symlink

TYPE_CHECKING = False  # the boot's first stage does not import typing; mypy reads the block below
if TYPE_CHECKING:
    from typing import Any

LOG = log.get(__name__)


class InstanceStore:
    def __init__(self, target: Target, paths: Paths = PATHS) -> None:
        self.target, self.paths = target, paths

    # -- which instance --------------------------------------------------------------------------
    def previous_id(self) -> str | None:
        v = self.target.read_text(f"{self.paths.data}/instance-id", default="").strip()
        return v or None

    def activate(self, inst: InstanceData) -> bool:
        """Record ``inst`` as the current instance. Returns True when it is a new instance."""
        prev = self.previous_id()
        new = prev != inst.instance_id
        idir = self.paths.instance_dir(inst.instance_id)
        self.target.makedirs(idir, mode=0o755)
        self.target.makedirs(self.paths.instance_sem(inst.instance_id))
        self.save_instance(inst)
        link = self.target.path_nofollow(self.paths.instance_link)
        rel = os.path.relpath(self.target.path(idir), link.parent)
        if not (link.is_symlink() and os.readlink(link) == rel):
            replace_symlink(link, rel, fsync=self.target.durable(self.paths.instance_link))
        if new:
            if prev:
                self.target.write(f"{self.paths.data}/previous-instance-id", prev + "\n")
            self.target.write(f"{self.paths.data}/instance-id", inst.instance_id + "\n")
        self.target.write(f"{self.paths.run}/.instance-id", inst.instance_id + "\n")
        return new

    def current_id(self) -> str | None:
        """The instance found in this boot (set by the local or network stage)."""
        v = self.target.read_text(f"{self.paths.run}/.instance-id", default="").strip()
        return v or None

    # -- what it was given -----------------------------------------------------------------------
    def save_instance(self, inst: InstanceData) -> None:
        self.target.write(f"{self.paths.instance_dir(inst.instance_id)}/datasource.json",
                          json.dumps(inst.to_cache(), sort_keys=True), mode=0o600)

    def load_instance(self, iid: str) -> InstanceData | None:
        try:
            return InstanceData.from_cache(json.loads(
                self.target.read_text(f"{self.paths.instance_dir(iid)}/datasource.json")))
        except (OSError, ValueError, TypeError) as e:
            LOG.debug("no cached instance %s: %s", iid, e)
            return None

    def save_config(self, iid: str, cfg: dict[str, Any]) -> None:
        self.target.write(f"{self.paths.instance_dir(iid)}/cloud-config.json", json.dumps(cfg, default=str),
                          mode=0o600)

    def load_config(self, iid: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self.target.read_text(f"{self.paths.instance_dir(iid)}/cloud-config.json"))
            return data if isinstance(data, dict) else None
        except (OSError, ValueError):
            return None

    # -- identity of a clone -----------------------------------------------------------------------
    def reset_machine_id(self) -> None:
        """A new instance on an old disk gets a new identity (cloned images must not share machine-id).

        Live, a fresh random id is written now, before networkd starts (its DHCP client id derives from it);
        in an offline root the file is emptied so systemd treats the next boot as a first boot.
        """
        path = "/etc/machine-id"
        if not self.target.exists(path):
            return
        content = os.urandom(16).hex() + "\n" if self.target.live else ""  # 32 random hex digits
        self.target.write(path, content, mode=0o444)
        dbus = self.target.path("/var/lib/dbus/machine-id")
        if dbus.exists() and not dbus.is_symlink():
            self.target.write("/var/lib/dbus/machine-id", content, mode=0o444)
        LOG.info("new instance: machine-id %s", "regenerated" if self.target.live else "reset")
