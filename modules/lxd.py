"""lxd: initializes LXD with ``lxd.init`` (``lxd init --auto`` options) or ``lxd.preseed`` (``lxd init
--preseed``), and sets up ``lxd.bridge`` (a new or existing bridge attached to the default profile).

LXD is configured through its running daemon, so everything happens only live: the ``lxd`` package (and the
storage backend's tools: zfsutils-linux, lvm2, btrfs-progs) is installed when missing, then ``lxd waitready``.
Offline one warning says nothing was done. The trust password never reaches a log (redacted from the argv
debug line); the preseed goes on standard input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tether import log, packages
from tether.errors import CommandError
from tether.module import Frequency, ModuleContext, ModuleError, Stage

NAME = "lxd"
STAGE = Stage.FINAL
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("lxd",)
LOG = log.get(__name__)
TIMEOUT = 600.0
# storage backend -> (a program that shows it is installed, the package that brings it)
BACKEND_TOOLS = {"zfs": ("zfs", "zfsutils-linux"), "lvm": ("lvcreate", "lvm2"), "btrfs": ("mkfs.btrfs", "btrfs-progs")}


@dataclass(frozen=True)
class Init:
    network_address: str | None = None
    network_port: int | None = None
    storage_backend: Literal["zfs", "dir", "lvm", "btrfs"] = "dir"
    storage_create_device: str | None = None
    storage_create_loop: int | None = None
    storage_pool: str | None = None
    trust_password: str | None = None

    def argv(self) -> list[str]:
        out = ["lxd", "init", "--auto", f"--storage-backend={self.storage_backend}"]
        for opt, value in (("network-address", self.network_address), ("network-port", self.network_port),
                           ("storage-create-device", self.storage_create_device),
                           ("storage-create-loop", self.storage_create_loop), ("storage-pool", self.storage_pool),
                           ("trust-password", self.trust_password)):
            if value is not None:
                out.append(f"--{opt}={value}")
        return out


@dataclass(frozen=True)
class Bridge:
    mode: Literal["none", "existing", "new"]
    name: str = "lxdbr0"
    mtu: int = -1
    ipv4_address: str | None = None
    ipv4_netmask: int | None = None
    ipv4_dhcp_first: str | None = None
    ipv4_dhcp_last: str | None = None
    ipv4_dhcp_leases: int | None = None
    ipv4_nat: bool = False
    ipv6_address: str | None = None
    ipv6_netmask: int | None = None
    ipv6_nat: bool = False
    domain: str | None = None

    def __post_init__(self) -> None:
        if self.mtu < -1:
            raise ValueError(f"mtu must be -1 (LXD's default) or more, got {self.mtu}")
        if not self.name or self.name.startswith("-"):
            raise ValueError(f"name {self.name!r} is not a network name")

    def create_argv(self) -> list[str]:
        keys = []
        if self.ipv4_address and self.ipv4_netmask is not None:
            keys += [f"ipv4.address={self.ipv4_address}/{self.ipv4_netmask}", f"ipv4.nat={str(self.ipv4_nat).lower()}"]
            if self.ipv4_dhcp_first and self.ipv4_dhcp_last:
                keys.append(f"ipv4.dhcp.ranges={self.ipv4_dhcp_first}-{self.ipv4_dhcp_last}")
        else:
            keys.append("ipv4.address=none")
        if self.ipv6_address and self.ipv6_netmask is not None:
            keys += [f"ipv6.address={self.ipv6_address}/{self.ipv6_netmask}", f"ipv6.nat={str(self.ipv6_nat).lower()}"]
        else:
            keys.append("ipv6.address=none")
        if self.domain:
            keys.append(f"dns.domain={self.domain}")
        if self.mtu != -1:
            keys.append(f"bridge.mtu={self.mtu}")
        return ["lxc", "network", "create", self.name, *keys]

    def attach_argv(self) -> list[str]:
        return ["lxc", "network", "attach-profile", self.name, "default", "eth0"]


@dataclass(frozen=True)
class Lxd:
    init: Init | None = None
    bridge: Bridge | None = None
    preseed: str | None = None

    def __post_init__(self) -> None:
        if self.preseed is not None and (self.init is not None or self.bridge is not None):
            raise ValueError("preseed replaces init and bridge; give either preseed or init/bridge")


@dataclass(frozen=True)
class Config:
    lxd: Lxd | None = None


def needed_packages(ctx: ModuleContext, lxd: Lxd) -> list[str]:
    out = [] if packages.has_executable(ctx, "lxd") else ["lxd"]
    if lxd.init is not None and lxd.init.storage_backend in BACKEND_TOOLS:
        tool, pkg = BACKEND_TOOLS[lxd.init.storage_backend]
        if not packages.has_executable(ctx, tool):
            out.append(pkg)
    return out


def handle(ctx: ModuleContext, cfg: Config) -> None:
    lxd = cfg.lxd
    if lxd is None or (lxd.init is None and lxd.bridge is None and lxd.preseed is None):
        return
    if not ctx.live:
        ctx.warn("lxd: not initialized, LXD is configured through its daemon on the booted system only")
        return
    packages.install(ctx, needed_packages(ctx, lxd), "lxd")
    ctx.run(["lxd", "waitready", "--timeout=300"], timeout=TIMEOUT)
    if lxd.preseed is not None:
        ctx.run(["lxd", "init", "--preseed"], data=lxd.preseed, timeout=TIMEOUT)
        return
    if lxd.init is not None:
        secrets = [lxd.init.trust_password] if lxd.init.trust_password else []
        ctx.run(lxd.init.argv(), timeout=TIMEOUT, secrets=secrets)
    if lxd.bridge is not None and lxd.bridge.mode != "none":
        _bridge(ctx, lxd.bridge)


def _bridge(ctx: ModuleContext, bridge: Bridge) -> None:
    try:
        if bridge.mode == "new":
            exists = ctx.run(["lxc", "network", "show", bridge.name], check=False, timeout=TIMEOUT).code == 0
            if exists:
                LOG.info("lxd: network %s already exists; not creating it", bridge.name)
            else:
                ctx.run(bridge.create_argv(), timeout=TIMEOUT)
        ctx.run(bridge.attach_argv(), timeout=TIMEOUT)
    except CommandError as e:
        raise ModuleError(f"lxd bridge {bridge.name}: {e}") from None
