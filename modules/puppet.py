"""puppet: installs the Puppet agent (distribution package, or Puppet's ``aio`` installer script), writes
``puppet.conf`` settings, the CA certificate and ``csr_attributes.yaml``, enables the agent service and
optionally runs ``puppet agent`` once.

Paths default by ``install_type`` (packages: /etc/puppet, /var/lib/puppet/ssl; aio: /etc/puppetlabs/puppet).
``conf`` sections are merged into the existing puppet.conf (other lines and comments kept); ``certname`` gets
``%i`` (instance id) and ``%f`` (fqdn) substituted. ``csr_attributes.yaml`` may hold a pre-shared key: 0640.
Installing, ``exec`` and starting the service happen inside the target (live, or chrooted into a root that
holds a system; ``exec`` and ``start`` only live); files are always written.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import Literal

from tether import hostnames, http, log, packages, services
from tether.ensure import ensure_dir
from tether.errors import CommandError
from tether.module import Frequency, ModuleContext, ModuleError, Stage
from tether.target import REPLACE_LINK

NAME = "puppet"
STAGE = Stage.FINAL
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("puppet",)
LOG = log.get(__name__)
AIO_URL = "https://raw.githubusercontent.com/puppetlabs/install-puppet/main/install.sh"
# install_type -> (conf_file, ssl_dir, csr_attributes_path)
PATHS = {"packages": ("/etc/puppet/puppet.conf", "/var/lib/puppet/ssl", "/etc/puppet/csr_attributes.yaml"),
         "aio": ("/etc/puppetlabs/puppet/puppet.conf", "/etc/puppetlabs/puppet/ssl",
                 "/etc/puppetlabs/puppet/csr_attributes.yaml")}
AGENT_TIMEOUT = 1800.0
Value = str | int | float | bool
Section = dict[str, Value]


@dataclass(frozen=True)
class Conf:
    main: Section | None = None
    server: Section | None = None
    agent: Section | None = None
    user: Section | None = None
    ca_cert: str | None = None

    def sections(self) -> dict[str, Section]:
        return {n: s for n, s in (("main", self.main), ("server", self.server), ("agent", self.agent),
                                  ("user", self.user)) if s}


@dataclass(frozen=True)
class CsrAttributes:
    custom_attributes: dict[str, Value] | None = None
    extension_requests: dict[str, Value] | None = None


@dataclass(frozen=True)
class Puppet:
    install: bool = True
    version: str | None = None
    install_type: Literal["packages", "aio"] = "packages"
    collection: str | None = None
    aio_install_url: str = AIO_URL
    cleanup: bool = True
    conf_file: str | None = None
    ssl_dir: str | None = None
    csr_attributes_path: str | None = None
    package_name: str = "puppet"
    exec: bool = False
    exec_args: tuple[str, ...] | str = ("--test",)
    start_service: bool = True
    conf: Conf | None = None
    csr_attributes: CsrAttributes | None = None

    def __post_init__(self) -> None:
        for key in ("conf_file", "ssl_dir", "csr_attributes_path"):
            v = getattr(self, key)
            if v is not None and (not v.startswith("/") or ".." in v.split("/")):
                raise ValueError(f"{key}: {v!r} must be an absolute path")

    def paths(self) -> tuple[str, str, str]:
        conf, ssl, csr = PATHS[self.install_type]
        return self.conf_file or conf, self.ssl_dir or ssl, self.csr_attributes_path or csr

    def agent_argv(self) -> list[str]:
        args = self.exec_args.split() if isinstance(self.exec_args, str) else list(self.exec_args)
        return ["puppet", "agent", *args]


@dataclass(frozen=True)
class Config:
    puppet: Puppet | None = field(default=None)


def _text(v: Value) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def merge_ini(text: str, settings: dict[str, dict[str, str]]) -> str:
    """``text`` with each ``[section] key = value`` set: an existing key's line is replaced, a new key goes at
    the end of its section, a new section at the end; every other line (comments too) stays."""
    lines = text.splitlines()
    todo = {s: dict(kv) for s, kv in settings.items()}
    out: list[str] = []
    section = None

    def flush(sec: str | None) -> None:
        for k, v in todo.pop(sec, {}).items() if sec is not None else ():
            out.append(f"{k} = {v}")

    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            flush(section)
            section = stripped[1:-1].strip()
        elif section in todo and "=" in stripped and not stripped.startswith(("#", ";")):
            key = stripped.split("=", 1)[0].strip()
            if key in todo[section]:
                line = f"{key} = {todo[section].pop(key)}"
        out.append(line)
    flush(section)
    for sec, kv in todo.items():
        if out and out[-1].strip():
            out.append("")
        out.append(f"[{sec}]")
        out.extend(f"{k} = {v}" for k, v in kv.items())
    return "\n".join(out) + "\n"


def handle(ctx: ModuleContext, cfg: Config) -> None:
    p = cfg.puppet
    if p is None:
        return
    if p.install:
        _install(ctx, p)
    conf_file, ssl_dir, csr_path = p.paths()
    if p.conf:
        _write_conf(ctx, p.conf, conf_file, ssl_dir)
    if p.csr_attributes:
        doc = {k: v for k, v in (("custom_attributes", p.csr_attributes.custom_attributes),
                                 ("extension_requests", p.csr_attributes.extension_requests)) if v is not None}
        # JSON is YAML: no YAML writer needed, and Puppet reads it as the YAML file it expects
        ctx.target.ensure_file(csr_path, json.dumps(doc, indent=2) + "\n", mode=0o640, links=REPLACE_LINK)
    if p.start_service:
        services.enable(ctx, "puppet")
    errors = []
    if p.exec:
        if ctx.live:
            try:
                ctx.run(p.agent_argv(), timeout=AGENT_TIMEOUT)
            except CommandError as e:
                # with detailed exit codes (--test implies them) 2 means "applied changes", not a failure
                detailed = {"--test", "-t", "--detailed-exitcodes"} & set(p.agent_argv())
                if not (detailed and e.code == 2):
                    errors.append(f"puppet agent: {e}")
        else:
            LOG.info("puppet: exec is a live-only step; not run in an offline root")
    if p.start_service:
        services.restart(ctx, "puppet")
    if errors:
        raise ModuleError("; ".join(errors))


def _install(ctx: ModuleContext, p: Puppet) -> None:
    if packages.has_executable(ctx, "puppet") or packages.has_executable(ctx, "/opt/puppetlabs/bin/puppet"):
        return
    if p.install_type == "packages":
        packages.install(ctx, [f"{p.package_name}={p.version}" if p.version else p.package_name], "puppet")
        return
    if not ctx.can_run_in_target():
        ctx.warn(f"puppet: aio installer not run, {ctx.target.root} holds no runnable system")
        return
    try:
        script = http.request(p.aio_install_url, timeout=30.0, retries=3).body
    except http.HttpError as e:
        raise ModuleError(f"puppet.aio_install_url: {e}") from None
    path = "/var/tmp/tether-puppet-install.sh"
    ctx.target.write(path, script, mode=0o700)
    argv = ["sh", path] + (["-v", p.version] if p.version else []) + (["-c", p.collection] if p.collection else [])
    try:
        ctx.run_in_target(argv + (["--cleanup"] if p.cleanup else []), timeout=packages.INSTALL_TIMEOUT)
    except CommandError as e:
        raise ModuleError(f"puppet aio installer: {e}") from None
    finally:
        ctx.target.remove(path)


def _write_conf(ctx: ModuleContext, conf: Conf, conf_file: str, ssl_dir: str) -> None:
    fqdn = hostnames.select(ctx, _opt_str(ctx, "hostname"), _opt_str(ctx, "fqdn")).fqdn
    settings: dict[str, dict[str, str]] = {}
    for sec, values in conf.sections().items():
        settings[sec] = {}
        for k, v in values.items():
            text = _text(v)
            if k == "certname":
                text = text.replace("%i", ctx.instance_id).replace("%f", fqdn)
            settings[sec][k] = text
    if settings:
        old = ctx.target.read_text(conf_file, default="")
        ctx.target.ensure_file(conf_file, merge_ini(old, settings), mode=0o644, links=REPLACE_LINK)
    if conf.ca_cert:
        ensure_dir(ctx.target, ssl_dir, mode=0o771)
        ensure_dir(ctx.target, posixpath.join(ssl_dir, "certs"), mode=0o755)
        ctx.target.ensure_file(posixpath.join(ssl_dir, "certs/ca.pem"), conf.ca_cert, mode=0o644, links=REPLACE_LINK)


def _opt_str(ctx: ModuleContext, key: str) -> str | None:
    v = ctx.cloud_config.get(key)
    return v if isinstance(v, str) else None
