"""rsyslog: configuration snippets and remote log targets.

Offline (always): each file (``configs`` grouped by file name, then the ``remotes`` lines in
``config_filename``) is written whole, so a second run leaves it unchanged. ``install_rsyslog`` installs the
packages when ``check_exe`` is missing (apt; see tether.packages). Live only, and only when a file changed:
the reload command (``auto``: ``systemctl restart rsyslog``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from tether import log, packages, services
from tether.convert import meta
from tether.errors import CommandError
from tether.module import Frequency, ModuleContext, ModuleError, Stage
from tether.target import REPLACE_LINK

NAME = "rsyslog"
STAGE = Stage.INIT
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("rsyslog",)
LOG = log.get(__name__)
DEFAULT_DIR = "/etc/rsyslog.d"
DEFAULT_FILE = "20-cloud-config.conf"
_REMOTE = re.compile(r"^(?:(?P<filter>\S+)\s+)?(?P<proto>@{1,2})?(?P<host>\[[^\]]+\]|[^\s:@\[\]]+)"
                     r"(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class ConfigEntry:
    content: str
    filename: str | None = None

    @classmethod
    def normalize(cls, value: object) -> object:
        return {"content": value} if isinstance(value, str) else value


@dataclass(frozen=True)
class Rsyslog:
    config_dir: str = field(default=DEFAULT_DIR, metadata=meta(doc="where relative file names go"))
    config_filename: str = field(default=DEFAULT_FILE, metadata=meta(doc="file for entries without filename"))
    configs: tuple[ConfigEntry, ...] = ()
    remotes: dict[str, str] = field(default_factory=dict)
    service_reload_command: Literal["auto"] | tuple[str, ...] = "auto"
    install_rsyslog: bool = False
    check_exe: str = "rsyslogd"
    packages: tuple[str, ...] = ("rsyslog",)

    def __post_init__(self) -> None:
        if not self.config_dir.startswith("/"):
            raise ValueError(f"config_dir {self.config_dir!r} must be an absolute path")
        for name, value in self.remotes.items():
            if not _REMOTE.match(value.strip()):
                raise ValueError(f"remotes.{name}: {value!r} is not [filter] [@|@@]host[:port]")


@dataclass(frozen=True)
class Config:
    rsyslog: Rsyslog | None = None


def remote_line(name: str, value: str) -> str:
    m = _REMOTE.match(value.strip())
    assert m is not None
    host = m.group("host")
    line = f"{m.group('filter') or '*.*'} {m.group('proto') or '@'}{host}"
    if m.group("port"):
        line += f":{m.group('port')}"
    return f"{line} # {name}"


def render(rs: Rsyslog) -> dict[str, str]:
    files: dict[str, list[str]] = {}
    for entry in rs.configs:
        name = entry.filename or rs.config_filename
        path = name if name.startswith("/") else f"{rs.config_dir}/{name}"
        files.setdefault(path, []).append(entry.content.rstrip("\n") + "\n")
    if rs.remotes:
        path = f"{rs.config_dir}/{rs.config_filename}"
        files.setdefault(path, []).append("".join(remote_line(n, v) + "\n" for n, v in rs.remotes.items()))
    return {p: "".join(parts) for p, parts in files.items()}


def handle(ctx: ModuleContext, cfg: Config) -> None:
    rs = cfg.rsyslog
    if rs is None:
        return
    if rs.install_rsyslog and not packages.has_executable(ctx, rs.check_exe):
        packages.install(ctx, rs.packages, "rsyslog")
    changed = False
    for path, text in render(rs).items():
        changed |= ctx.target.ensure_file(path, text, links=REPLACE_LINK)
    if not (changed and ctx.live):
        return
    if rs.service_reload_command == "auto":
        services.restart(ctx, "rsyslog")
        return
    try:
        ctx.run(list(rs.service_reload_command), timeout=60)
    except CommandError as e:
        raise ModuleError(f"rsyslog.service_reload_command failed: {e}")
