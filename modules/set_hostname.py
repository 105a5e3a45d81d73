"""set_hostname: set the hostname once per instance from ``hostname``/``fqdn`` or the datasource's
local-hostname (cloud-init's selection rules, see tether.hostnames).

/etc/hostname gets the short name (the fqdn with ``prefer_fqdn_over_hostname: true``); it is created only when
``create_hostname_file`` is true. The names set are recorded in /var/lib/tether/data/set-hostname (nothing is
done when they did not change) and the written name in data/previous-hostname, which update_hostname uses to
tell an administrator's later change apart from its own.
"""

from __future__ import annotations

import json

from tether import hostnames, log
from tether.hostnames import HostnameConfig
from tether.module import Frequency, ModuleContext, ModuleError, Stage
from tether.target import FOLLOW_LINK

NAME = "set_hostname"
STAGE = Stage.INIT
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("hostname", "fqdn", "prefer_fqdn_over_hostname", "preserve_hostname", "create_hostname_file")
RUN_WITHOUT_KEYS = True   # the datasource's local-hostname is applied without any key
LOG = log.get(__name__)

Config = HostnameConfig


def handle(ctx: ModuleContext, cfg: Config) -> None:
    if hostnames.preserved(ctx, cfg):
        LOG.info("preserve_hostname is set: hostname left alone")
        return
    names = hostnames.select(ctx, cfg.hostname, cfg.fqdn)
    prev = hostnames.load_json(ctx, hostnames.set_hostname_record(ctx))
    if prev.get("hostname") == names.hostname and prev.get("fqdn") == names.fqdn:
        LOG.info("hostname unchanged since tether last set it")
        return
    if names.is_default and names.hostname == "localhost":
        LOG.info("no hostname configured; leaving it to the system")
        return
    name = hostnames.written_name(names, cfg.prefer_fqdn_over_hostname)
    if not hostnames.valid(name):
        raise ModuleError(f"hostname: {name!r} is not a valid host name")
    if cfg.create_hostname_file or ctx.target.exists("/etc/hostname"):
        hostnames.write_hostname_file(ctx, name)
    hostnames.apply_live(ctx, name)
    ctx.target.ensure_file(hostnames.previous_hostname_path(ctx), name + "\n", 0o644, links=FOLLOW_LINK)
    ctx.target.ensure_file(hostnames.set_hostname_record(ctx),
                           json.dumps({"hostname": names.hostname, "fqdn": names.fqdn}) + "\n", 0o644,
                           links=FOLLOW_LINK)
