"""timezone: set the system timezone.

Offline (always): ``/etc/localtime`` becomes a link to the zone file and, on Debian-family roots,
``/etc/timezone`` names the zone. Live: ``timedatectl set-timezone`` as well, so systemd-timedated and running
programs see the change without a reboot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tether import log
from tether.convert import meta
from tether.ensure import ensure_symlink
from tether.errors import CommandError
from tether.module import Frequency, ModuleContext, ModuleError, Stage
from tether.target import REPLACE_LINK

NAME = "timezone"
STAGE = Stage.CONFIG
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("timezone",)
LOG = log.get(__name__)
ZONEINFO = "/usr/share/zoneinfo"
_ZONE = re.compile(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")


@dataclass(frozen=True)
class Config:
    timezone: str | None = field(default=None, metadata=meta(doc="zone name under /usr/share/zoneinfo"))

    def __post_init__(self) -> None:
        if self.timezone is not None and not _ZONE.match(self.timezone):
            raise ValueError(f"timezone {self.timezone!r} is not a zone name like Europe/Berlin")


def handle(ctx: ModuleContext, cfg: Config) -> None:
    tz = cfg.timezone
    if not tz:
        LOG.info("timezone: empty, nothing to do")
        return
    zone_file = f"{ZONEINFO}/{tz}"
    if not ctx.target.path(zone_file).is_file():
        raise ModuleError(f"timezone {tz!r}: no {zone_file} in the target (is tzdata installed?)")
    if ctx.distro_family() == "debian":
        ctx.target.ensure_file("/etc/timezone", tz + "\n", links=REPLACE_LINK)
    ensure_symlink(ctx.target, "/etc/localtime", zone_file)
    if ctx.live:
        try:
            ctx.run(["timedatectl", "set-timezone", tz], timeout=30)
        except CommandError as e:
            ctx.warn(f"timezone: files written but timedatectl failed: {e}")
