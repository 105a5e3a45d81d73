"""disable_ec2_metadata: block the EC2 metadata address (169.254.169.254) with a ``prohibit`` route.

A route is runtime state, so this is live only and the module runs on every boot; ``ip route replace``
makes it idempotent. Offline there is nothing to write.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tether import log
from tether.convert import meta
from tether.errors import CommandError
from tether.module import Frequency, ModuleContext, ModuleError, Stage

NAME = "disable_ec2_metadata"
STAGE = Stage.CONFIG
FREQUENCY = Frequency.ALWAYS
KEYS = ("disable_ec2_metadata",)
LOG = log.get(__name__)
METADATA_ADDR = "169.254.169.254"


@dataclass(frozen=True)
class Config:
    disable_ec2_metadata: bool = field(default=False, metadata=meta(doc="block the metadata address"))


def handle(ctx: ModuleContext, cfg: Config) -> None:
    if not cfg.disable_ec2_metadata:
        return
    if not ctx.live:
        LOG.info("disable_ec2_metadata: not live; routes are set at boot")
        return
    try:
        ctx.run(["ip", "route", "replace", "prohibit", METADATA_ADDR], timeout=30)
    except CommandError as e:
        raise ModuleError(f"disable_ec2_metadata: {e}")
