"""ntp: time synchronisation with systemd-timesyncd, chrony, ntp (ntpd), openntpd or ntpdate.

Offline (always): the client's configuration file in the target and the service enabled with
``systemctl --root``; a client that is not installed is installed with apt (see tether.packages for when that
can run). Live: the service is restarted so it uses the new servers now. ``config.template`` (a
``## template:jinja`` text) replaces tether's built-in file for the client.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace

from tether import log, packages, services
from tether.convert import meta
from tether.module import Frequency, ModuleContext, ModuleError, Stage
from tether.target import REPLACE_LINK

NAME = "ntp"
STAGE = Stage.CONFIG
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("ntp",)
LOG = log.get(__name__)
HEADER = "# Written by tether (ntp module); changes are kept until the ntp configuration changes.\n"


@dataclass(frozen=True)
class ClientConfig:
    confpath: str | None = field(default=None, metadata=meta(doc="where the client's configuration is written"))
    check_exe: str | None = field(default=None, metadata=meta(doc="executable showing the client is installed"))
    packages: tuple[str, ...] | None = field(default=None, metadata=meta(doc="packages providing the client"))
    service_name: str | None = field(default=None, metadata=meta(doc="the client's service"))
    template: str | None = field(default=None, metadata=meta(doc="'## template:jinja' text for the config"))


@dataclass(frozen=True)
class Ntp:
    pools: tuple[str, ...] = ()
    servers: tuple[str, ...] = ()
    peers: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    ntp_client: str = "auto"
    enabled: bool = True
    config: ClientConfig | None = None

    def __post_init__(self) -> None:
        for name in ("pools", "servers", "peers", "allow"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"{name} lists the same entry twice")
            for v in values:
                if not v or any(c.isspace() for c in v):
                    raise ValueError(f"{name}: {v!r} is not a host name or address")
        for cidr in self.allow:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"allow: {cidr!r} is not an address or CIDR") from None


@dataclass(frozen=True)
class Config:
    ntp: Ntp | None = None


@dataclass(frozen=True)
class Client:
    name: str
    confpath: str
    check_exe: str
    packages: tuple[str, ...]
    service_name: str
    template: str | None = None


def builtin_client(name: str, family: str) -> Client | None:
    deb = family == "debian"
    return {
        "systemd-timesyncd": Client(name, "/etc/systemd/timesyncd.conf.d/tether.conf",
                                    "/lib/systemd/systemd-timesyncd", ("systemd-timesyncd",),
                                    "systemd-timesyncd"),
        "chrony": Client(name, "/etc/chrony/chrony.conf" if deb else "/etc/chrony.conf", "chronyd", ("chrony",),
                         "chrony" if deb else "chronyd"),
        "ntp": Client(name, "/etc/ntp.conf", "ntpd", ("ntp",), "ntp" if deb else "ntpd"),
        "openntpd": Client(name, "/etc/openntpd/ntpd.conf" if deb else "/etc/ntpd.conf", "ntpd", ("openntpd",),
                           "openntpd" if deb else "ntpd"),
        "ntpdate": Client(name, "/etc/default/ntpdate", "ntpdate", ("ntpdate",), "ntpdate"),
    }.get(name)


AUTO_ORDER = ("chrony", "systemd-timesyncd", "ntp")


def _installed(ctx: ModuleContext, client: Client) -> bool:
    if client.name == "systemd-timesyncd":
        return any(ctx.target.path(p).exists() for p in ("/lib/systemd/systemd-timesyncd",
                                                         "/usr/lib/systemd/systemd-timesyncd"))
    return packages.has_executable(ctx, client.check_exe)


def select_client(ctx: ModuleContext, ntp: Ntp) -> Client:
    """The built-in client named (or, for ``auto``, the first installed one), with ``config`` overrides."""
    family = ctx.distro_family()
    name = ntp.ntp_client or "auto"
    base: Client | None
    if name == "auto":
        candidates = [c for c in (builtin_client(n, family) for n in AUTO_ORDER) if c is not None]
        base = next((c for c in candidates if _installed(ctx, c)), None)
        if base is None:
            base = builtin_client("systemd-timesyncd", family)
    else:
        base = builtin_client(name, family)
    over = ntp.config
    if base is None:
        if over is None or not over.confpath or not over.template:
            raise ModuleError(f"ntp.ntp_client {name!r} is not a client tether knows; give ntp.config.confpath "
                              "and ntp.config.template (and check_exe, packages, service_name) for it")
        base = Client(name, over.confpath, over.check_exe or name, over.packages or (),
                      over.service_name or name)
    assert base is not None
    if over is not None:
        base = replace(base, confpath=over.confpath or base.confpath, check_exe=over.check_exe or base.check_exe,
                       packages=over.packages if over.packages is not None else base.packages,
                       service_name=over.service_name or base.service_name, template=over.template)
    return base


def default_pools(ctx: ModuleContext) -> tuple[str, ...]:
    text = ctx.target.read_text("/etc/os-release", default="")
    distro = next((ln.split("=", 1)[1].strip().strip('"') for ln in text.splitlines() if ln.startswith("ID=")), "")
    prefix = f"{distro}." if distro in ("debian", "ubuntu", "fedora", "centos", "opensuse", "alpine") else ""
    return tuple(f"{i}.{prefix}pool.ntp.org" for i in range(4))


def render_template(template: str, ntp: Ntp, pools: tuple[str, ...]) -> str:
    first, _, rest = template.partition("\n")
    if first.replace(" ", "").lower() == "##template:jinja":
        try:
            import jinja2
        except ImportError:
            raise ModuleError("ntp.config.template is a jinja template but Jinja2 is not installed")
        env = jinja2.Environment(autoescape=False, keep_trailing_newline=True)
        try:
            return env.from_string(rest).render(servers=list(ntp.servers), pools=list(pools),
                                                peers=list(ntp.peers), allow=list(ntp.allow))
        except jinja2.TemplateError as e:
            raise ModuleError(f"ntp.config.template: {e}")
    return template


def _restrict(cidr: str) -> str:
    net = ipaddress.ip_network(cidr, strict=False)
    six = " -6" if net.version == 6 else ""
    return f"restrict{six} {net.network_address} mask {net.netmask} nomodify notrap nopeer noquery"


def render_builtin(client: Client, ntp: Ntp, pools: tuple[str, ...], warn: list[str]) -> str:
    servers, peers, allow = ntp.servers, ntp.peers, ntp.allow
    if client.name == "systemd-timesyncd":
        if peers or allow:
            warn.append("ntp: systemd-timesyncd has no peers or allow settings; those are ignored")
        return HEADER + "[Time]\n" + f"NTP={' '.join((*servers, *pools))}\n"
    if client.name == "chrony":
        lines = [f"pool {p} iburst" for p in pools] + [f"server {s} iburst" for s in servers]
        lines += [f"peer {p}" for p in peers] + [f"allow {a}" for a in allow]
        extra: tuple[str, ...] = ("driftfile /var/lib/chrony/chrony.drift", "makestep 1.0 3", "rtcsync",
                                  "leapsectz right/UTC", "logdir /var/log/chrony")
        if client.confpath.startswith("/etc/chrony/"):
            extra = (*extra, "keyfile /etc/chrony/chrony.keys", "sourcedir /run/chrony-dhcp",
                     "sourcedir /etc/chrony/sources.d", "confdir /etc/chrony/conf.d")
        return HEADER + "\n".join(lines) + "\n\n" + "\n".join(extra) + "\n"
    if client.name == "ntp":
        lines = ["driftfile /var/lib/ntp/ntp.drift", "restrict -4 default kod notrap nomodify nopeer noquery limited",
                 "restrict -6 default kod notrap nomodify nopeer noquery limited", "restrict 127.0.0.1",
                 "restrict ::1", "restrict source notrap nomodify noquery"]
        lines += [f"pool {p} iburst" for p in pools] + [f"server {s} iburst" for s in servers]
        lines += [f"peer {p}" for p in peers] + [_restrict(a) for a in allow]
        return HEADER + "\n".join(lines) + "\n"
    if client.name == "openntpd":
        if peers:
            warn.append("ntp: openntpd has no peers; they are ignored")
        lines = [f"servers {p}" for p in pools] + [f"server {s}" for s in servers]
        lines += [f"listen on {a.split('/')[0]}" for a in allow]
        return HEADER + "\n".join(lines) + "\n"
    if client.name == "ntpdate":
        return HEADER + f'NTPDATE_USE_NTP_CONF=no\nNTPSERVERS="{" ".join((*servers, *pools))}"\n'
    raise ModuleError(f"ntp: no built-in configuration for {client.name!r}; give ntp.config.template")


def handle(ctx: ModuleContext, cfg: Config) -> None:
    ntp = cfg.ntp or Ntp()  # "ntp:" alone (null) means the defaults
    if not ntp.enabled:
        LOG.info("ntp: enabled is false, not configuring time synchronisation")
        return
    client = select_client(ctx, ntp)
    pools = ntp.pools if (ntp.pools or ntp.servers) else default_pools(ctx)
    if not _installed(ctx, client) and client.packages:
        packages.install(ctx, client.packages, f"ntp ({client.name})")
    warnings: list[str] = []
    if client.template:
        text = render_template(client.template, ntp, pools)
    else:
        text = render_builtin(client, ntp, pools, warnings)
    for w in warnings:
        ctx.warn(w)
    changed = ctx.target.ensure_file(client.confpath, text, links=REPLACE_LINK)
    services.enable(ctx, client.service_name)
    if changed:
        services.restart(ctx, client.service_name)
