"""NoCloud: a seed directory, a filesystem labelled cidata/CIDATA, ``ds=nocloud;s=...`` on the kernel command
line or in the SMBIOS serial, or a ``seedfrom`` in system config. ``seedfrom`` over http(s) is NoCloudNet's,
which runs in the network stage."""

from __future__ import annotations

from pathlib import Path

from tether import log
from tether.datasource import Datasource
from tether.datasources.seedfiles import FILES, Seed, read_dir
from tether.detect import ds_args, labels, looked_for, parse_ds_arg, seed_dirs, seedfrom
from tether.errors import DatasourceError
from tether.instance import InstanceData

TYPE_CHECKING = False  # the boot's first stage does not import typing; mypy reads the block below
if TYPE_CHECKING:
    from typing import Any

    from tether.datasource import Evidence

EVIDENCE: Evidence = {
    "name": "NoCloud",
    "network": False,
    "aliases": ("nocloud", "nocloud-net", "nocloudnet"),
    "labels": ("cidata",),
    "label_setting": "fs_label",
    "seed_dirs": ("/var/lib/tether/seed/nocloud", "/var/lib/tether/seed/nocloud-net", "/var/lib/cloud/seed/nocloud",
                  "/var/lib/cloud/seed/nocloud-net"),
    "seed_files": ("meta-data", "user-data"),
    "seedfrom": ("/", "file://"),           # a local seed; http(s) is NoCloudNet's (nocloud_net.py)
    "settings": ("user-data", "meta-data"),
    # a platform fact as cloud-init's: the SMBIOS serial names NoCloud (its s= is read as seedfrom)
    "dmi": ("product_serial=ds=nocloud*",),
}
LOG = log.get(__name__)
SEED_DIRS = EVIDENCE["seed_dirs"]
__all__ = ["NoCloud", "NoCloudNet", "parse_ds_arg"]


class NoCloud(Datasource):
    NAME = "NoCloud"
    NEEDS_NETWORK = EVIDENCE["network"]

    def _ds_args(self) -> dict[str, str]:
        return ds_args(self.ctx.host, "NoCloud")[0]

    def _seedfrom(self) -> str | None:
        return seedfrom(self.ctx.host, self.DECLARED_AS or self.NAME, self.ctx.settings)[0]

    def _labels(self) -> tuple[str, ...]:
        return labels("NoCloud", self.ctx.settings)

    def _local_seedfrom(self) -> str | None:
        sf = self._seedfrom()
        if sf and not sf.startswith(("http://", "https://")):
            return sf[len("file://"):] if sf.startswith("file://") else sf
        return None

    def _read_seed(self) -> tuple[Seed, str]:
        for d in seed_dirs("NoCloud", self.ctx.target):
            seed = read_dir(Path(d))
            if seed:
                return seed, f"seed-dir ({d})"
            LOG.warning("seed directory %s has no meta-data; not used", d)
        local = self._local_seedfrom()
        if local:
            seed = read_dir(self.ctx.target.path(local) if not self.ctx.target.live else Path(local))
            if seed is None:
                raise DatasourceError(f"seedfrom {local}: no meta-data there")
            return seed, f"seed-dir ({local})"
        for dev in self.ctx.host.devices_by_label(*self._labels()):
            try:
                with self.ctx.host.mounted_readonly(dev, wanted=FILES) as mnt:
                    seed = read_dir(mnt, where=dev)
            except DatasourceError:
                raise
            except Exception as e:
                raise DatasourceError(f"seed device {dev} (label {'/'.join(self._labels())}): cannot mount: {e}")
            if seed:
                seed.where = dev
                return seed, f"config-disk ({dev})"
            LOG.warning("%s has label %s but no meta-data", dev, "/".join(self._labels()))
        if "user-data" in self.ctx.settings or "meta-data" in self.ctx.settings:
            md = self.ctx.settings.get("meta-data") or {}
            ud = self.ctx.settings.get("user-data")
            return Seed("system config", md if isinstance(md, dict) else {},
                        ud.encode() if isinstance(ud, str) else None, None, None), "system-config"
        missing = looked_for(self.NAME, self.ctx.host, self.ctx.target, self.ctx.settings)
        raise DatasourceError(f"no NoCloud seed found: {missing}")

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

    NEEDS_NETWORK = True   # = nocloud_net.EVIDENCE["network"], its declaration (registered from that file)
    DECLARED_AS = "NoCloudNet"

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
