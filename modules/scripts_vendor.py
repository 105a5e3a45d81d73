"""scripts_vendor: run the vendor-data scripts (/var/lib/tether/scripts/vendor/) once per instance.

``vendor_data.enabled: false`` turns them off; ``vendor_data.prefix`` is a command put in front of each
script (e.g. ``[timeout, 30]``). See tether.script_dirs for how they run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tether import log
from tether.convert import meta
from tether.module import Frequency, ModuleContext, Stage
from tether.script_dirs import run_dir

NAME = "scripts_vendor"
STAGE = Stage.FINAL
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS: tuple[str, ...] = ()
RUN_WITHOUT_KEYS = True
LOG = log.get(__name__)


@dataclass(frozen=True)
class VendorData:
    enabled: bool | str = field(default=True, metadata=meta(doc="whether vendor scripts run"))
    prefix: str | tuple[str | int, ...] | None = field(default=None, metadata=meta(
        doc="command run in front of each script"))

    @property
    def is_enabled(self) -> bool:
        if isinstance(self.enabled, str):  # deprecated string form, as cloud-init reads it
            return self.enabled.strip().lower() not in ("false", "0", "no", "off", "")
        return self.enabled


@dataclass(frozen=True)
class Config:
    vendor_data: VendorData | None = None


def handle(ctx: ModuleContext, cfg: Config) -> None:
    vd = cfg.vendor_data or VendorData()
    if not vd.is_enabled:
        LOG.info("vendor_data.enabled is false; vendor scripts not run")
        return
    if isinstance(vd.enabled, str):
        ctx.warn("vendor_data.enabled: a string is deprecated, use true or false")
    prefix: list[str] = []
    if isinstance(vd.prefix, str):
        prefix = [vd.prefix]
    elif vd.prefix:
        prefix = [str(p) for p in vd.prefix]
    run_dir(ctx, ctx.paths.scripts("vendor"), prefix)
