"""final_message: the line printed when the boot's configuration is done."""

from __future__ import annotations

import string
import time
from dataclasses import dataclass

from tether import __version__, log
from tether.module import Frequency, ModuleContext, Stage
from tether.status import uptime

NAME = "final_message"
STAGE = Stage.FINAL
FREQUENCY = Frequency.ALWAYS
KEYS = ("final_message",)
RUN_WITHOUT_KEYS = True
LOG = log.get(__name__)
DEFAULT = "tether v. $version finished at $timestamp. Datasource $datasource.  Up $uptime seconds"


@dataclass(frozen=True)
class Config:
    final_message: str | None = None


def render(template: str, ctx: ModuleContext) -> str:
    up = f"{uptime(ctx.target):.2f}"
    values = {"uptime": up, "UPTIME": up, "timestamp": time.strftime("%a, %d %b %Y %H:%M:%S %z"),
              "version": __version__, "datasource": f"DataSource{ctx.instance.datasource}",
              "instance_id": ctx.instance_id}
    values.update({k.upper(): v for k, v in values.items()})
    # cloud-init renders this with its own templating; both $x and ${x} forms work here.
    return string.Template(template).safe_substitute(values)


def handle(ctx: ModuleContext, cfg: Config) -> None:
    msg = render(cfg.final_message or DEFAULT, ctx)
    LOG.info("%s", msg)
    ctx.to_console(msg)
