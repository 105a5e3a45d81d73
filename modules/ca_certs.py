"""ca_certs: add trusted CA certificates and optionally distrust the distribution's bundle.

Offline (always): each ``trusted`` certificate becomes ``tether-ca-cert-N.crt`` in the distribution's local
anchor directory (stale ones from an earlier, longer list are removed); ``remove_defaults`` on Debian-family
roots marks every bundled certificate in /etc/ca-certificates.conf as distrusted (``!`` prefix, the
package's own mechanism, so an upgrade does not bring them back). Then the trust store is rebuilt with the
distribution's tool run in the target: ``update-ca-certificates`` has no root option that keeps the links it
makes valid inside the target, so it runs live directly or offline chrooted; without a runnable system the
certificates are in place and a warning says the store was not rebuilt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from tether import log
from tether.convert import meta
from tether.ensure import ensure_absent
from tether.errors import CommandError
from tether.module import Frequency, ModuleContext, ModuleError, Stage
from tether.target import REPLACE_LINK

NAME = "ca_certs"
STAGE = Stage.INIT
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("ca_certs", "ca-certs")
LOG = log.get(__name__)
PREFIX = "tether-ca-cert-"

# family: (anchor directory, extension, rebuild command)
STORES = {
    "debian": ("/usr/local/share/ca-certificates", "crt", ("update-ca-certificates",)),
    "alpine": ("/usr/local/share/ca-certificates", "crt", ("update-ca-certificates",)),
    "rhel": ("/etc/pki/ca-trust/source/anchors", "crt", ("update-ca-trust", "extract")),
    "suse": ("/etc/pki/trust/anchors", "crt", ("update-ca-certificates",)),
    "arch": ("/etc/ca-certificates/trust-source/anchors", "crt", ("trust", "extract-compat")),
}


@dataclass(frozen=True)
class CaCerts:
    remove_defaults: bool = field(default=False, metadata=meta(doc="distrust the distribution's CA bundle"))
    remove_defaults_old: bool | None = field(default=None, metadata=meta(
        key="remove-defaults", deprecated="use remove_defaults"))
    trusted: tuple[str, ...] = field(default=(), metadata=meta(doc="PEM certificates to trust"))

    @property
    def remove(self) -> bool:
        return self.remove_defaults or bool(self.remove_defaults_old)


@dataclass(frozen=True)
class Config:
    ca_certs: CaCerts | None = None
    ca_certs_old: CaCerts | None = field(default=None, metadata=meta(key="ca-certs", deprecated="use ca_certs"))


def disable_defaults(conf: str) -> str:
    """ca-certificates.conf with every enabled certificate line turned into a distrust (``!``) line."""
    out = []
    for line in conf.splitlines():
        s = line.strip()
        out.append(f"!{s}" if s and not s.startswith(("#", "!")) else line)
    return "\n".join(out) + ("\n" if out else "")


def handle(ctx: ModuleContext, cfg: Config) -> None:
    cc = cfg.ca_certs or cfg.ca_certs_old
    if cc is None:
        return
    family = ctx.distro_family()
    if family not in STORES:
        raise ModuleError(f"ca_certs: not supported on {family}")
    directory, ext, rebuild = STORES[family]
    changed = False
    for i, cert in enumerate(cc.trusted, start=1):
        if "BEGIN CERTIFICATE" not in cert:
            ctx.warn(f"ca_certs.trusted[{i - 1}]: does not look like a PEM certificate; written anyway")
        text = cert if cert.endswith("\n") else cert + "\n"
        changed |= ctx.target.ensure_file(f"{directory}/{PREFIX}{i}.{ext}", text, links=REPLACE_LINK)
    try:
        existing = os.listdir(ctx.target.path(directory))
    except OSError:
        existing = []
    keep = {f"{PREFIX}{i}.{ext}" for i in range(1, len(cc.trusted) + 1)}
    for name in existing:
        if name.startswith(PREFIX) and name not in keep:
            changed |= ensure_absent(ctx.target, f"{directory}/{name}")
    fresh = False
    if cc.remove:
        if family != "debian":
            ctx.warn(f"ca_certs.remove_defaults: not supported on {family}; the bundled CAs stay trusted")
        else:
            conf = ctx.target.read_text("/etc/ca-certificates.conf", default="")
            changed |= ctx.target.ensure_file("/etc/ca-certificates.conf", disable_defaults(conf), links=REPLACE_LINK)
            fresh = True
    argv = list(rebuild) + (["--fresh"] if fresh else [])
    try:
        res = ctx.run_in_target(argv, timeout=300)
    except CommandError as e:
        raise ModuleError(f"ca_certs: {rebuild[0]} failed: {e}")
    if res is None:
        ctx.warn(f"ca_certs: certificates written but {rebuild[0]} not run ({ctx.target.root} holds no "
                 "runnable system); the trust store is rebuilt the next time it runs")
