"""update_hostname: keep the hostname in line with the config on every boot, without undoing an
administrator's change.

data/previous-hostname holds the name tether last wrote. /etc/hostname is rewritten only when it is missing,
or when it still holds tether's previous name and the wanted name differs; when it holds anything else the
administrator changed it and it is left alone (cloud-init's rule).
"""

from __future__ import annotations

from tether import hostnames, log
from tether.hostnames import HostnameConfig
from tether.module import Frequency, ModuleContext, ModuleError, Stage
from tether.target import FOLLOW_LINK

NAME = "update_hostname"
STAGE = Stage.INIT
FREQUENCY = Frequency.ALWAYS
KEYS = ("hostname", "fqdn", "prefer_fqdn_over_hostname", "preserve_hostname", "create_hostname_file")
RUN_WITHOUT_KEYS = True
LOG = log.get(__name__)

Config = HostnameConfig


def handle(ctx: ModuleContext, cfg: Config) -> None:
    if hostnames.preserved(ctx, cfg):
        return
    names = hostnames.select(ctx, cfg.hostname, cfg.fqdn)
    if names.is_default and names.hostname == "localhost":
        return
    name = hostnames.written_name(names, cfg.prefer_fqdn_over_hostname)
    if not hostnames.valid(name):
        raise ModuleError(f"hostname: {name!r} is not a valid host name")
    prev_path = hostnames.previous_hostname_path(ctx)
    prev = hostnames.read_hostname_file(ctx, prev_path)
    system = hostnames.read_hostname_file(ctx)
    if system and prev and system != prev:
        LOG.info("/etc/hostname (%s) differs from the name tether set (%s): keeping the administrator's",
                 system, prev)
        return
    if prev != name:
        ctx.target.ensure_file(prev_path, name + "\n", 0o644, links=FOLLOW_LINK)
    if not system or (system == prev and system != name):
        if cfg.create_hostname_file or ctx.target.exists("/etc/hostname"):
            hostnames.write_hostname_file(ctx, name)
        hostnames.apply_live(ctx, name)
