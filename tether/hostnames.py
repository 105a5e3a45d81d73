"""Hostname selection and the files that hold it (/etc/hostname, /etc/hosts), as cloud-init's hostname
modules use them.

Selection (cloud-init's documented order): ``fqdn`` from the config wins (the hostname is its first label
unless ``hostname`` is given); a ``hostname`` with a dot is taken as the fqdn; otherwise the datasource's
local-hostname, and failing that the target's current hostname, marked as a default.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any

from tether.module import ModuleContext
from tether.target import FOLLOW_LINK

LOCAL_IP = "127.0.1.1"   # Debian's address for the machine's own name
_VALID = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62})?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62})?)*\.?$")


@dataclass(frozen=True)
class Names:
    hostname: str
    fqdn: str
    is_default: bool


def valid(name: str) -> bool:
    return len(name) <= 253 and bool(_VALID.match(name))


def read_hostname_file(ctx: ModuleContext, path: str = "/etc/hostname") -> str | None:
    for line in ctx.target.read_text(path, default="").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            return line
    return None


def current_hostname(ctx: ModuleContext) -> str | None:
    if ctx.live:
        import socket
        return socket.gethostname() or None
    return read_hostname_file(ctx)


def _metadata_hostname(ctx: ModuleContext) -> str | None:
    name = ctx.instance.local_hostname or ctx.instance.metadata.get("local-hostname") \
        or ctx.instance.metadata.get("local_hostname")
    return str(name).strip() or None if name else None


def _cloud_names(ctx: ModuleContext) -> tuple[str, str, bool]:
    """(hostname, fqdn, is_default) from the datasource, else the current hostname, else localhost."""
    lhost = _metadata_hostname(ctx)
    is_default = False
    if lhost:
        try:
            ipaddress.IPv4Address(lhost)
            toks = ["ip-" + lhost.replace(".", "-")]
        except ValueError:
            toks = lhost.split(".")
    else:
        is_default = True
        cur = current_hostname(ctx)
        fq = fqdn_from_hosts(ctx, cur) if cur else None
        if fq and "." in fq:
            toks = fq.split(".")
        elif cur:
            toks = cur.split(".")
        else:
            toks = ["localhost"]
    host = toks[0]
    domain = ".".join(toks[1:])
    return host, f"{host}.{domain}" if domain else host, is_default


def select(ctx: ModuleContext, hostname: str | None, fqdn: str | None) -> Names:
    if fqdn:
        return Names(hostname or fqdn.split(".")[0], fqdn, False)
    if hostname and hostname.find(".") > 0:
        return Names(hostname[:hostname.find(".")], hostname, False)
    host, cloud_fqdn, is_default = _cloud_names(ctx)
    if hostname:
        return Names(hostname, cloud_fqdn, False)
    return Names(host, cloud_fqdn, is_default)


def written_name(names: Names, prefer_fqdn: bool | None) -> str:
    """What goes into /etc/hostname: Debian writes the short name unless prefer_fqdn_over_hostname."""
    if names.fqdn and prefer_fqdn:
        return names.fqdn
    return names.hostname or names.fqdn


def write_hostname_file(ctx: ModuleContext, name: str, path: str = "/etc/hostname") -> bool:
    """Put ``name`` on the first non-comment line, keeping the file's comments."""
    lines = ctx.target.read_text(path, default="").splitlines()
    out: list[str] = []
    done = False
    for line in lines:
        if not done and line.split("#", 1)[0].strip():
            out.append(name)
            done = True
        elif not line.split("#", 1)[0].strip():
            out.append(line)
    if not done:
        out.append(name)
    return ctx.target.ensure_file(path, "\n".join(out) + "\n", 0o644, links=FOLLOW_LINK)


def apply_live(ctx: ModuleContext, name: str) -> None:
    """Set the running kernel hostname (only on the booted host)."""
    if ctx.live:
        ctx.run(["hostname", name])


def load_json(ctx: ModuleContext, path: str) -> dict[str, Any]:
    try:
        data = json.loads(ctx.target.read_text(path, default="") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# --- /etc/hosts --------------------------------------------------------------------------------------------
def fqdn_from_hosts(ctx: ModuleContext, hostname: str) -> str | None:
    """The canonical name of the /etc/hosts line listing ``hostname``, if any."""
    for line in ctx.target.read_text("/etc/hosts", default="").splitlines():
        toks = line.split("#", 1)[0].split()
        if len(toks) >= 2 and hostname in toks[1:]:
            return toks[1]
    return None


def ensure_localhost_entry(text: str, hostname: str, fqdn: str, replace: bool = False) -> str | None:
    """/etc/hosts text with a ``127.0.1.1 fqdn hostname`` line (an existing 127.0.1.1 line naming both is
    left alone; otherwise an entry is added after the existing ones). With ``replace``, 127.0.1.1 lines naming
    other hosts (an image's or the previous name) are dropped and the entry takes the first one's place.
    None when nothing needs to change."""
    names = [fqdn, hostname] if fqdn and fqdn != hostname else [hostname]
    lines = text.splitlines()
    last_local = -1
    found = False
    stale: list[int] = []
    for i, line in enumerate(lines):
        toks = line.split("#", 1)[0].split()
        if toks and toks[0] == LOCAL_IP:
            last_local = i
            if toks[1:1 + len(names)] == names and not found:
                found = True
            else:
                stale.append(i)
    if found and not (replace and stale):
        return None
    entry = f"{LOCAL_IP} {' '.join(names)}"
    if replace and stale:
        first = stale[0]
        lines = [ln for i, ln in enumerate(lines) if i not in stale]
        if not found:
            lines.insert(first, entry)
        return "\n".join(lines) + "\n"
    if last_local >= 0:
        lines.insert(last_local + 1, entry)
    else:
        # keep it near the loopback lines so the file stays readable
        pos = next((i + 1 for i, ln in enumerate(lines) if ln.split()[:1] == ["127.0.0.1"]), len(lines))
        lines.insert(pos, entry)
    return "\n".join(lines) + "\n"


BUILTIN_HOSTS_TEMPLATE = """\
# This file is written by tether on every boot because manage_etc_hosts is true.
# To keep your own changes, edit /etc/cloud/templates/hosts.{family}.tmpl, or set
# manage_etc_hosts to false (or remove it) in the cloud-config.
{local_ip} {names}
127.0.0.1 localhost

# IPv6-capable hosts
::1 localhost ip6-localhost ip6-loopback
ff02::1 ip6-allnodes
ff02::2 ip6-allrouters
"""


def render_hosts(ctx: ModuleContext, hostname: str, fqdn: str) -> str:
    """/etc/hosts from the image's hosts template when present (jinja or cheetah style, as cloud-init ships
    them), else tether's built-in one."""
    family = ctx.distro_family()
    family = "debian" if family == "unknown" else family
    for tpl in (f"/etc/tether/templates/hosts.{family}.tmpl", f"/etc/cloud/templates/hosts.{family}.tmpl"):
        text = ctx.target.read_text(tpl, default="")
        if text:
            return render_template(text, {"hostname": hostname, "fqdn": fqdn})
    names = f"{fqdn} {hostname}" if fqdn and fqdn != hostname else hostname
    return BUILTIN_HOSTS_TEMPLATE.format(family=family, local_ip=LOCAL_IP, names=names)


def render_template(text: str, values: dict[str, str]) -> str:
    first, _, rest = text.partition("\n")
    kind = first.strip().lower().replace(" ", "")
    if kind == "##template:jinja":
        try:
            from jinja2.sandbox import SandboxedEnvironment
        except ImportError:
            body = re.sub(r"\{#.*?#\}\n?", "", rest, flags=re.S)
            return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: values.get(m.group(1), m.group(0)), body)
        env = SandboxedEnvironment(keep_trailing_newline=True)
        return env.from_string(rest).render(**values)
    body = rest if kind == "##template:cheetah" else text
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), body)


@dataclass(frozen=True)
class HostnameConfig:
    """The keys set_hostname and update_hostname read."""

    hostname: str | None = None
    fqdn: str | None = None
    prefer_fqdn_over_hostname: bool | None = None   # None: Debian's default, the short name
    preserve_hostname: bool | None = None           # None: system config's preserve_hostname (false)
    create_hostname_file: bool = True

    def __post_init__(self) -> None:
        for key in ("hostname", "fqdn"):
            v = getattr(self, key)
            if v is not None and not valid(v):
                raise ValueError(f"{key}: {v!r} is not a valid host name")


def preserved(ctx: ModuleContext, cfg: HostnameConfig) -> bool:
    if cfg.preserve_hostname is not None:
        return cfg.preserve_hostname
    return bool(ctx.system_config.get("preserve_hostname", False))


def previous_hostname_path(ctx: ModuleContext) -> str:
    return f"{ctx.paths.data}/previous-hostname"


def set_hostname_record(ctx: ModuleContext) -> str:
    return f"{ctx.paths.data}/set-hostname"
