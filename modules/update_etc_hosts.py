"""update_etc_hosts: ``manage_etc_hosts``.

``true`` (or the deprecated ``"template"``): /etc/hosts is rendered on every boot from
/etc/cloud/templates/hosts.<family>.tmpl when the image has it, else from tether's built-in template.
``"localhost"``: a ``127.0.1.1 <fqdn> <hostname>`` line is added when no such line exists; the rest of the file
is kept. ``false`` (the default): /etc/hosts is not touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tether import hostnames
from tether.module import Frequency, ModuleContext, Stage
from tether.target import FOLLOW_LINK

NAME = "update_etc_hosts"
STAGE = Stage.INIT
FREQUENCY = Frequency.ALWAYS
KEYS = ("manage_etc_hosts", "hostname", "fqdn")

_TRUE = ("true", "yes", "on", "1")


@dataclass(frozen=True)
class Config:
    manage_etc_hosts: bool | Literal["localhost", "template"] | str = False
    hostname: str | None = None
    fqdn: str | None = None


def handle(ctx: ModuleContext, cfg: Config) -> None:
    mode = cfg.manage_etc_hosts
    if isinstance(mode, str):
        low = mode.strip().lower()
        if low == "template":
            ctx.warn("manage_etc_hosts: 'template' is deprecated, use true")
            mode = True
        elif low in _TRUE:
            mode = True
        elif low == "localhost":
            mode = "localhost"
        elif low not in ("false", "no", "off", "0"):
            ctx.warn(f"manage_etc_hosts: unknown value {cfg.manage_etc_hosts!r}; /etc/hosts not managed")
            return
        else:
            mode = False
    if mode is False:
        return
    names = hostnames.select(ctx, cfg.hostname, cfg.fqdn)
    if not names.hostname:
        ctx.warn("manage_etc_hosts is set but no hostname was found")
        return
    if mode is True:
        ctx.target.ensure_file("/etc/hosts", hostnames.render_hosts(ctx, names.hostname, names.fqdn), 0o644,
                               links=FOLLOW_LINK)
        return
    existing = ctx.target.read_text("/etc/hosts", default="")
    new = hostnames.ensure_localhost_entry(existing, names.hostname, names.fqdn)
    if new is not None:
        ctx.target.ensure_file("/etc/hosts", new, 0o644, links=FOLLOW_LINK)
