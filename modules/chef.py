"""chef: installs Chef Infra Client (distribution package, gems or the omnibus installer script), writes
``client.rb``, the validation key and ``firstboot.json``, and optionally starts ``chef-client`` as a daemon.

Runs on every boot, as cloud-init's does: the files are rewritten when the config changed, chef is installed
only when missing (or ``force_install``). The validation key is a private key: written 0600 and never logged;
``validation_cert: system`` keeps the key file already in the image. ``firstboot.json`` (run list and initial
attributes) is 0600 too. ``exec`` (default false; true after a gems install, as cloud-init) starts
``chef-client -d -i 1800 -s 20`` live only. Installing runs inside the target (live, or chrooted into a root
that holds a system).
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from tether import http, log, packages
from tether.convert import meta
from tether.ensure import ensure_dir
from tether.errors import CommandError
from tether.module import Frequency, ModuleContext, ModuleError, Stage
from tether.target import REPLACE_LINK

NAME = "chef"
STAGE = Stage.FINAL
FREQUENCY = Frequency.ALWAYS
KEYS = ("chef",)
LOG = log.get(__name__)
DIRECTORIES = ("/etc/chef", "/var/log/chef", "/var/lib/chef", "/var/chef/backup", "/var/chef/cache", "/var/run/chef")
OMNIBUS_URL = "https://www.chef.io/chef/install.sh"
CHEF_CLIENT = "/usr/bin/chef-client"
EXEC_ARGS = ("-d", "-i", "1800", "-s", "20")
SYMBOL = re.compile(r"^:[a-z_]+$")
INSTALL_SCRIPT = "/var/tmp/tether-chef-install.sh"
DEFAULT_KEY_PATH = "/etc/chef/validation.pem"


@dataclass(frozen=True)
class Chef:
    directories: tuple[str, ...] = DIRECTORIES
    config_path: str = "/etc/chef/client.rb"
    validation_cert: str | None = field(default=None, metadata=meta(sensitive=True, doc="the key, or 'system'"))
    validation_key: str = field(default="/etc/chef/validation.pem", metadata=meta(
        doc="path of the validation key file (cloud-init's old form: the key itself)"))
    firstboot_path: str = "/etc/chef/firstboot.json"
    exec: bool | None = None
    client_key: str = "/etc/chef/client.pem"
    encrypted_data_bag_secret: str | None = None
    environment: str = "_default"
    file_backup_path: str = "/var/chef/backup"
    file_cache_path: str = "/var/chef/cache"
    json_attribs: str = "/etc/chef/firstboot.json"
    log_level: str = ":info"
    log_location: str = "/var/log/chef/client.log"
    node_name: str | None = None
    omnibus_url: str = OMNIBUS_URL
    omnibus_url_retries: int = 5
    omnibus_version: str | None = None
    pid_file: str = "/var/run/chef/client.pid"
    server_url: str | None = None
    show_time: bool = True
    ssl_verify_mode: str = ":verify_none"
    validation_name: str | None = None
    force_install: bool = False
    initial_attributes: dict[str, Any] = field(default_factory=dict)
    install_type: Literal["packages", "gems", "omnibus"] = "packages"
    run_list: tuple[str, ...] | None = None
    chef_license: Literal["accept", "accept-silent", "accept-no-persist"] | None = None

    def __post_init__(self) -> None:
        for key in ("log_level", "ssl_verify_mode"):
            if not SYMBOL.match(getattr(self, key)):
                raise ValueError(f"{key}: expected a Ruby symbol like :info, got {getattr(self, key)!r}")
        for key in ("config_path", "validation_key", "firstboot_path"):
            v = getattr(self, key)
            if key == "validation_key" and self.key_in_path_field:
                continue
            if not v.startswith("/") or ".." in v.split("/"):
                raise ValueError(f"{key}: {v!r} must be an absolute path")
        if not self.directories:
            raise ValueError("directories: list at least one directory")
        if self.omnibus_url_retries < 0:
            raise ValueError("omnibus_url_retries: must not be negative")


    @property
    def key_in_path_field(self) -> bool:
        """cloud-init's old form: ``validation_key`` holds the key itself (and wins over validation_cert)."""
        return "\n" in self.validation_key or self.validation_key.startswith("-----BEGIN")

    def validation(self) -> tuple[str, str | None]:
        """(path of the key file, key to write there or None to keep the file that is there)."""
        if self.key_in_path_field:
            return DEFAULT_KEY_PATH, self.validation_key
        cert = self.validation_cert
        return self.validation_key, (None if cert in (None, "", "system") else cert)


@dataclass(frozen=True)
class Config:
    chef: Chef | None = None


def ruby_str(s: str) -> str:
    """A Ruby double-quoted string literal (JSON escaping, plus ``#`` so nothing is interpolated)."""
    return json.dumps(s).replace("#", "\\#")


def client_rb(c: Chef, node_name: str) -> str:
    rows: list[tuple[str, str]] = [("log_level", c.log_level), ("log_location", ruby_str(c.log_location)),
                                   ("ssl_verify_mode", c.ssl_verify_mode)]
    if c.validation_name:
        rows.append(("validation_client_name", ruby_str(c.validation_name)))
    rows += [("validation_key", ruby_str(c.validation()[0])), ("client_key", ruby_str(c.client_key))]
    if c.server_url:
        rows.append(("chef_server_url", ruby_str(c.server_url)))
    rows += [("environment", ruby_str(c.environment)), ("node_name", ruby_str(node_name)),
             ("json_attribs", ruby_str(c.json_attribs)), ("file_cache_path", ruby_str(c.file_cache_path)),
             ("file_backup_path", ruby_str(c.file_backup_path)), ("pid_file", ruby_str(c.pid_file))]
    if c.encrypted_data_bag_secret:
        rows.append(("encrypted_data_bag_secret", ruby_str(c.encrypted_data_bag_secret)))
    if c.chef_license:
        rows.append(("chef_license", ruby_str(c.chef_license)))
    body = "".join(f"{k:<26} {v}\n" for k, v in rows)
    show_time = f"Chef::Log::Formatter.show_time = {str(c.show_time).lower()}\n"
    return f"# Written by tether (cloud-config chef)\n{body}{show_time}"


def handle(ctx: ModuleContext, cfg: Config) -> None:
    c = cfg.chef
    if c is None:
        return
    for d in c.directories:
        ensure_dir(ctx.target, d)
    key_path, key = c.validation()
    if c.key_in_path_field:
        ctx.warn(f"chef.validation_key: holds the key itself (an old form), written to {key_path}; give the key "
                 "in validation_cert and the file's path in validation_key")
    if key is not None:
        ensure_dir(ctx.target, posixpath.dirname(key_path))
        ctx.target.ensure_file(key_path, key, mode=0o600, links=REPLACE_LINK)
    elif c.validation_cert == "system" and not ctx.target.exists(key_path):
        ctx.warn(f"chef: validation_cert is 'system' but there is no {key_path}")
    ctx.target.ensure_file(c.config_path, client_rb(c, c.node_name or ctx.instance_id), mode=0o644, links=REPLACE_LINK)
    firstboot: dict[str, Any] = {"run_list": list(c.run_list)} if c.run_list is not None else {}
    firstboot.update(c.initial_attributes)
    ensure_dir(ctx.target, posixpath.dirname(c.firstboot_path))
    ctx.target.ensure_file(c.firstboot_path, json.dumps(firstboot, indent=2, sort_keys=True) + "\n", mode=0o600,
                           links=REPLACE_LINK)
    run = bool(c.exec)
    if c.force_install or not packages.has_executable(ctx, CHEF_CLIENT):
        _install(ctx, c)
        if c.install_type == "gems" and c.exec is None:
            run = True   # cloud-init's long-standing default after a gems install
    if not run:
        return
    if not ctx.live:
        LOG.info("chef: chef-client is started on the booted system only")
        return
    try:
        ctx.run([CHEF_CLIENT, *EXEC_ARGS], timeout=600.0)
    except CommandError as e:
        raise ModuleError(f"chef-client: {e}") from None


def _install(ctx: ModuleContext, c: Chef) -> None:
    if c.install_type == "packages":
        packages.install(ctx, ["chef"], "chef")
        return
    if not ctx.can_run_in_target():
        ctx.warn(f"chef: {c.install_type} install not done, {ctx.target.root} holds no runnable system")
        return
    if c.install_type == "gems":
        packages.install(ctx, ["ruby"], "chef (gems)")
        try:
            ctx.run_in_target(["gem", "install", "chef", "--no-document"], timeout=packages.INSTALL_TIMEOUT)
        except CommandError as e:
            raise ModuleError(f"chef: gem install chef: {e}") from None
        return
    try:
        script = http.request(c.omnibus_url, timeout=30.0, retries=c.omnibus_url_retries).body
    except http.HttpError as e:
        raise ModuleError(f"chef.omnibus_url: {e}") from None
    ctx.target.write(INSTALL_SCRIPT, script, mode=0o700)
    try:
        ctx.run_in_target(["sh", INSTALL_SCRIPT] + (["-v", c.omnibus_version] if c.omnibus_version else []),
                          timeout=packages.INSTALL_TIMEOUT)
    except CommandError as e:
        raise ModuleError(f"chef omnibus installer: {e}") from None
    finally:
        ctx.target.remove(INSTALL_SCRIPT)
