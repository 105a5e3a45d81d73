"""NoCloud: a seed directory, a filesystem labelled cidata/CIDATA, ``ds=nocloud;s=...`` on the kernel command
line or in the SMBIOS serial, or a ``seedfrom`` in system config. ``seedfrom`` over http(s) is NoCloudNet's,
which runs in the network stage."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

from tether import log
from tether.datasource import Datasource
from tether.datasources.seedfiles import FILES, Seed, read_dir
from tether.errors import DatasourceError
from tether.instance import InstanceData

TYPE_CHECKING = False  # the boot's first stage does not import typing; mypy reads the block below
if TYPE_CHECKING:
    from typing import Any

LOG = log.get(__name__)
SEED_DIRS = ("/var/lib/tether/seed/nocloud", "/var/lib/cloud/seed/nocloud", "/var/lib/cloud/seed/nocloud-net")
DEFAULT_LABEL = "cidata"
KEY_ALIASES = {"s": "seedfrom", "i": "instance-id", "h": "local-hostname"}


def parse_ds_arg(value: str) -> tuple[str, dict[str, str]]:
    """``nocloud;s=http://x/;i=abc;h=host`` -> ("nocloud", {"seedfrom": ..., ...})."""
    name, *rest = value.split(";")
    out: dict[str, str] = {}
    for item in rest:
        if "=" in item:
            k, v = item.split("=", 1)
            out[KEY_ALIASES.get(k.strip(), k.strip())] = unquote(v.strip())
    return name.strip().lower(), out


class NoCloud(Datasource):
    NAME = "NoCloud"
    NEEDS_NETWORK = False

    def _ds_args(self) -> dict[str, str]:
        serial = self.ctx.host.dmi("product_serial") or ""
        for source in (self.ctx.host.cmdline_value("ds"), serial[3:] if serial.startswith("ds=") else None):
            if source:
                name, args = parse_ds_arg(source)
                if name in ("nocloud", "nocloud-net"):
                    return args
        return {}

    def _seedfrom(self) -> str | None:
        return self._ds_args().get("seedfrom") or self.ctx.settings.get("seedfrom")

    def _label(self) -> str:
        label = self.ctx.settings.get("fs_label", DEFAULT_LABEL)
        return str(label) if label else DEFAULT_LABEL

    def _seed_dirs(self) -> list[Path]:
        return [self.ctx.target.path(d) for d in SEED_DIRS if (self.ctx.target.path(d) / "meta-data").exists()]

    def _local_seedfrom(self) -> str | None:
        sf = self._seedfrom()
        if sf and not sf.startswith(("http://", "https://")):
            return sf[len("file://"):] if sf.startswith("file://") else sf
        return None

    def detect(self) -> bool:
        if self._seed_dirs() or self._local_seedfrom():
            return True
        if "user-data" in self.ctx.settings or "meta-data" in self.ctx.settings:
            return True
        return bool(self.ctx.host.devices_by_label(self._label()))

    def _read_seed(self) -> tuple[Seed, str]:
        dirs = self._seed_dirs()
        if dirs:
            seed = read_dir(dirs[0])
            if seed:
                return seed, f"seed-dir ({dirs[0]})"
        local = self._local_seedfrom()
        if local:
            seed = read_dir(self.ctx.target.path(local) if not self.ctx.target.live else Path(local))
            if seed is None:
                raise DatasourceError(f"seedfrom {local}: no meta-data there")
            return seed, f"seed-dir ({local})"
        for dev in self.ctx.host.devices_by_label(self._label()):
            try:
                with self.ctx.host.mounted_readonly(dev, wanted=FILES) as mnt:
                    seed = read_dir(mnt, where=dev)
            except DatasourceError:
                raise
            except Exception as e:
                raise DatasourceError(f"seed device {dev} (label {self._label()}): cannot mount: {e}")
            if seed:
                seed.where = dev
                return seed, f"config-disk ({dev})"
            LOG.warning("%s has label %s but no meta-data", dev, self._label())
        if "user-data" in self.ctx.settings or "meta-data" in self.ctx.settings:
            md = self.ctx.settings.get("meta-data") or {}
            ud = self.ctx.settings.get("user-data")
            return Seed("system config", md if isinstance(md, dict) else {},
                        ud.encode() if isinstance(ud, str) else None, None, None), "system-config"
        raise DatasourceError("no NoCloud seed found")

    def fetch(self) -> InstanceData:
        seed, sub = self._read_seed()
        return self._instance(seed, sub)

    def _instance(self, seed: Seed, sub: str) -> InstanceData:
        md: dict[str, Any] = dict(seed.meta_data)
        md.update({k: v for k, v in self._ds_args().items() if k != "seedfrom"})
        iid = md.get("instance-id") or md.get("instance_id")
        if not iid:
            LOG.warning("%s: meta-data has no instance-id; using 'nocloud'", seed.where)
            iid = "nocloud"
        self._seed = seed
        keys = md.get("public-keys") or md.get("public_keys") or []
        if isinstance(keys, str):
            keys = [keys]
        elif isinstance(keys, dict):
            keys = [v for v in keys.values() if isinstance(v, str)]
        net = seed.network_config
        if isinstance(net, dict) and isinstance(net.get("network"), dict):
            net = net["network"]
        return InstanceData(
            datasource=self.NAME, instance_id=str(iid), subplatform=sub, platform="nocloud", cloud_name="nocloud",
            metadata=md, userdata=seed.user_data, vendordata=seed.vendor_data, network_config=net,
            local_hostname=str(md["local-hostname"]) if md.get("local-hostname") else None,
            public_ssh_keys=[str(k) for k in keys], host_configuration=md.get("host-configuration"),
            # a seed file that could not be used costs only itself: said here, reported in status
            ds={"warnings": list(seed.warnings)} if seed.warnings else None)

    def describe(self) -> str:
        seed = getattr(self, "_seed", None)
        return f"DataSource{self.NAME} [seed={seed.where if seed else '?'}][dsmode=local]"

    def desired_host_config(self) -> Any:
        inst = self.fetch()
        return inst.host_configuration


class NoCloudNet(NoCloud):
    """``seedfrom`` over http(s), fetched in the network stage with bounded waits."""

    NEEDS_NETWORK = True

    def detect(self) -> bool:
        sf = self._seedfrom()
        return bool(sf and sf.startswith(("http://", "https://")))

    def fetch(self) -> InstanceData:
        sf = self._seedfrom()
        if not sf:
            raise DatasourceError("no seedfrom URL")
        from tether.datasources.nocloud_net import read_seed  # the HTTP half lives there
        seed, warnings = read_seed(self.ctx, sf)
        inst = self._instance(seed, f"seed-dir ({seed.where})")
        if warnings:
            inst.ds["warnings"] = warnings
        return inst

    def describe(self) -> str:
        seed = getattr(self, "_seed", None)
        return f"DataSource{self.NAME} [seed={seed.where if seed else '?'}][dsmode=net]"


DATASOURCE = NoCloud
