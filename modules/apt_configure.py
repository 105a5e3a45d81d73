"""apt_configure: the ``apt`` key: mirrors and sources lists (deb822 or one-line), extra sources with their
keys, apt.conf snippets, proxies and debconf selections.

Offline (always): every file is written into the target. The primary sources follow the format the image
already uses: deb822 ``/etc/apt/sources.list.d/<distro>.sources`` when the image has it (or when the
``sources_list`` template is deb822), else ``/etc/apt/sources.list``; the other one is retired so no source
is listed twice. Keys are stored ASCII-armoured (``.asc``, which apt reads directly) so no gpg is needed;
``keyid`` keys are fetched from the key server over HTTPS with bounded timeouts. ``add-apt-repository``
(for ``ppa:`` style sources) and ``debconf-set-selections`` write into the system's own databases, so they
run live directly or offline chrooted into a root that holds a system; otherwise a warning says what was
skipped. Non-Debian families get a "not supported" warning.
"""

from __future__ import annotations

import platform
import re
import socket
import threading
import urllib.parse
from dataclasses import dataclass, field

from tether import http, log
from tether.convert import meta
from tether.ensure import ensure_absent
from tether.errors import CommandError
from tether.module import Frequency, ModuleContext, ModuleError, Stage
from tether.target import REPLACE_LINK

NAME = "apt_configure"
STAGE = Stage.CONFIG
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("apt",)
LOG = log.get(__name__)
SOURCES_D = "/etc/apt/sources.list.d"
CONF_FILE = "/etc/apt/apt.conf.d/94tether-config"
PROXY_FILE = "/etc/apt/apt.conf.d/90tether-aptproxy"
TRUSTED_D = "/etc/apt/trusted.gpg.d"
KEYRINGS = "/etc/apt/keyrings"
DEFAULT_MATCH = r"^[\w-]+:\w"
DEFAULT_KEYSERVER = "keyserver.ubuntu.com"
RESOLVE_TIMEOUT = 2.0
ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "i686": "i386", "i386": "i386", "armv7l": "armhf",
          "ppc64le": "ppc64el", "s390x": "s390x", "riscv64": "riscv64"}
SUITE_ALIASES = {"updates": "$RELEASE-updates", "backports": "$RELEASE-backports",
                 "security": "$RELEASE-security", "proposed": "$RELEASE-proposed", "release": "$RELEASE"}


@dataclass(frozen=True)
class Mirror:
    arches: tuple[str, ...]
    uri: str | None = None
    search: tuple[str, ...] = ()
    search_dns: bool = False
    keyid: str | None = None
    key: str | None = None
    keyserver: str | None = None

    def __post_init__(self) -> None:
        if not self.arches:
            raise ValueError("arches must list at least one architecture (or 'default')")


@dataclass(frozen=True)
class Source:
    source: str | None = None
    keyid: str | None = None
    key: str | None = None
    keyserver: str | None = None
    filename: str | None = None
    append: bool = True

    @classmethod
    def normalize(cls, value: object) -> object:
        return {} if value is None else value


@dataclass(frozen=True)
class Apt:
    preserve_sources_list: bool = False
    disable_suites: tuple[str, ...] = ()
    primary: tuple[Mirror, ...] = ()
    security: tuple[Mirror, ...] = ()
    add_apt_repo_match: str = DEFAULT_MATCH
    debconf_selections: dict[str, str] = field(default_factory=dict)
    sources_list: str | None = None
    conf: str | None = None
    https_proxy: str | None = field(default=None, metadata=meta(sensitive=True))
    http_proxy: str | None = field(default=None, metadata=meta(sensitive=True))
    proxy: str | None = field(default=None, metadata=meta(sensitive=True, doc="alias of http_proxy"))
    ftp_proxy: str | None = field(default=None, metadata=meta(sensitive=True))
    sources: dict[str, Source] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            re.compile(self.add_apt_repo_match)
        except re.error as e:
            raise ValueError(f"add_apt_repo_match is not a valid regular expression: {e}") from None


@dataclass(frozen=True)
class Config:
    apt: Apt | None = None


@dataclass(frozen=True)
class Distro:
    id: str
    release: str
    arch: str

    @property
    def primary(self) -> str:
        if self.id == "ubuntu":
            return ("http://archive.ubuntu.com/ubuntu" if self.arch in ("amd64", "i386")
                    else "http://ports.ubuntu.com/ubuntu-ports")
        return "http://deb.debian.org/debian"

    @property
    def security(self) -> str:
        if self.id == "ubuntu":
            return ("http://security.ubuntu.com/ubuntu" if self.arch in ("amd64", "i386")
                    else "http://ports.ubuntu.com/ubuntu-ports")
        return "http://deb.debian.org/debian-security"

    @property
    def components(self) -> str:
        return "main restricted universe multiverse" if self.id == "ubuntu" else "main"

    @property
    def keyring(self) -> str:
        return f"/usr/share/keyrings/{self.id}-archive-keyring.gpg"


# -- facts about the target ----------------------------------------------------------------------

def distro_info(ctx: ModuleContext) -> Distro:
    fields: dict[str, str] = {}
    for line in ctx.target.read_text("/etc/os-release", default="").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            fields[k] = v.strip().strip('"')
    distro = fields.get("ID", "debian")
    if distro not in ("debian", "ubuntu"):
        distro = "ubuntu" if "ubuntu" in fields.get("ID_LIKE", "") else "debian"
    release = fields.get("VERSION_CODENAME") or fields.get("UBUNTU_CODENAME") or ""
    arch = ""
    arch_file = ctx.target.read_text("/var/lib/dpkg/arch", default="").split()
    if arch_file:
        arch = arch_file[0]
    return Distro(distro, release, arch or ARCHES.get(platform.machine(), platform.machine()))


def resolves(host: str, timeout: float = RESOLVE_TIMEOUT) -> bool:
    """Whether ``host`` resolves, giving up after ``timeout`` (getaddrinfo itself has no timeout)."""
    result: list[bool] = []

    def look() -> None:
        try:
            socket.getaddrinfo(host, None)
            result.append(True)
        except (OSError, UnicodeError):
            result.append(False)

    t = threading.Thread(target=look, daemon=True)
    t.start()
    t.join(timeout)
    return bool(result and result[0])


def _search_domains(ctx: ModuleContext) -> list[str]:
    out: list[str] = []
    fqdn = ctx.cloud_config.get("fqdn")
    if isinstance(fqdn, str) and "." in fqdn:
        out.append(fqdn.split(".", 1)[1])
    out.append("localdomain")
    for line in ctx.target.read_text("/etc/resolv.conf", default="").splitlines():
        parts = line.split()
        if parts and parts[0] in ("search", "domain"):
            out.extend(parts[1:])
    return list(dict.fromkeys(out))


def pick_mirror(ctx: ModuleContext, mirrors: tuple[Mirror, ...], arch: str, distro: str,
                kind: str) -> Mirror | None:
    """The mirror entry for ``arch`` (or ``default``) with its URI resolved (uri, search, then search_dns)."""
    entry = next((m for m in mirrors if arch in m.arches), None) or next(
        (m for m in mirrors if "default" in m.arches), None)
    if entry is None:
        return None
    uri = entry.uri
    if uri is None:
        for candidate in entry.search:
            host = urllib.parse.urlsplit(candidate).hostname
            if host and resolves(host):
                uri = candidate
                break
    if uri is None and entry.search_dns:
        name = f"{distro}-security-mirror" if kind == "security" else f"{distro}-mirror"
        for domain in _search_domains(ctx):
            if resolves(f"{name}.{domain}"):
                uri = f"http://{name}.{domain}/{distro}"
                break
    return Mirror(entry.arches, uri, entry.search, entry.search_dns, entry.keyid, entry.key, entry.keyserver)


# -- keys ----------------------------------------------------------------------------------------

def keyserver_url(keyserver: str | None, keyid: str) -> str:
    server = keyserver or DEFAULT_KEYSERVER
    if "://" not in server:
        server = f"https://{server}"
    parts = urllib.parse.urlsplit(server)
    scheme = {"hkps": "https", "hkp": "http"}.get(parts.scheme, parts.scheme)
    netloc = parts.netloc
    if parts.scheme == "hkp" and ":" not in netloc:
        netloc += ":11371"
    fpr = keyid.replace(" ", "")
    query = urllib.parse.urlencode({"op": "get", "options": "mr", "search": f"0x{fpr}"})
    return urllib.parse.urlunsplit((scheme, netloc, "/pks/lookup", query, ""))


def fetch_key(keyid: str, keyserver: str | None) -> str:
    url = keyserver_url(keyserver, keyid)
    try:
        body = http.request(url, timeout=10, retries=2).body.decode("utf-8", "replace")
    except http.HttpError as e:
        raise ModuleError(f"key {keyid}: {e}")
    if "BEGIN PGP PUBLIC KEY BLOCK" not in body:
        raise ModuleError(f"key {keyid}: {url} returned no PGP public key")
    return body


def key_text(key: str | None, keyid: str | None, keyserver: str | None) -> str | None:
    if key:
        if "BEGIN PGP PUBLIC KEY BLOCK" not in key:
            raise ModuleError("key is not an ASCII-armoured PGP public key")
        return key if key.endswith("\n") else key + "\n"
    if keyid:
        return fetch_key(keyid, keyserver)
    return None


# -- text helpers --------------------------------------------------------------------------------

def substitute(text: str, values: dict[str, str]) -> str:
    def rep(m: re.Match[str]) -> str:
        return values.get(m.group(1) or m.group(2), m.group(0))
    return re.sub(r"\$\{(\w+)\}|\$(MIRROR|PRIMARY|SECURITY|RELEASE|KEY_FILE)\b", rep, text)


def is_deb822(text: str) -> bool:
    for line in text.splitlines():
        s = line.strip()
        if s and not s.startswith("#"):
            return s.lower().startswith("types:")
    return False


def default_sources(d: Distro, deb822: bool) -> str:
    suites = "$RELEASE $RELEASE-updates $RELEASE-backports"
    if deb822:
        return ("# Written by tether (apt_configure).\n"
                f"Types: deb\nURIs: $MIRROR\nSuites: {suites}\nComponents: {d.components}\n"
                f"Signed-By: {d.keyring}\n\n"
                f"Types: deb\nURIs: $SECURITY\nSuites: $RELEASE-security\nComponents: {d.components}\n"
                f"Signed-By: {d.keyring}\n")
    lines = [f"deb $MIRROR {s} {d.components}" for s in suites.split()]
    return "# Written by tether (apt_configure).\n" + "\n".join(lines) + \
        f"\ndeb $SECURITY $RELEASE-security {d.components}\n"


def disable_suites(text: str, suites: set[str]) -> str:
    """Comment out one-line entries for ``suites``; drop them from deb822 ``Suites:`` (``Enabled: no`` when
    none are left)."""
    if not suites:
        return text
    if is_deb822(text):
        out_stanzas = []
        for stanza in re.split(r"\n\s*\n", text.strip("\n")):
            lines = stanza.splitlines()
            for i, line in enumerate(lines):
                if line.lower().startswith("suites:"):
                    kept = [s for s in line.split(":", 1)[1].split() if s not in suites]
                    if kept:
                        lines[i] = "Suites: " + " ".join(kept)
                    elif not any(ln.lower().startswith("enabled:") for ln in lines):
                        lines.append("Enabled: no")
            out_stanzas.append("\n".join(lines))
        return "\n\n".join(out_stanzas) + "\n"
    out = []
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] in ("deb", "deb-src"):
            rest = parts[1:]
            if rest and rest[0].startswith("["):
                while rest and not rest[0].endswith("]"):
                    rest = rest[1:]
                rest = rest[1:]
            if len(rest) >= 2 and rest[1] in suites:
                line = f"# suite disabled by tether: {line}"
        out.append(line)
    return "\n".join(out) + "\n"


# -- the module ----------------------------------------------------------------------------------

def handle(ctx: ModuleContext, cfg: Config) -> None:
    apt = cfg.apt
    if apt is None:
        return
    if ctx.distro_family() != "debian":
        ctx.warn(f"apt: not supported on {ctx.distro_family()} (the apt key applies to Debian-family systems)")
        return
    d = distro_info(ctx)
    errors: list[str] = []
    write_conf(ctx, apt)
    if apt.debconf_selections:
        _debconf(ctx, apt, errors)
    primary = pick_mirror(ctx, apt.primary, d.arch, d.id, "primary")
    security = pick_mirror(ctx, apt.security, d.arch, d.id, "security") or primary
    mirror_uri = primary.uri if primary and primary.uri else d.primary
    security_uri = security.uri if security and security.uri else d.security
    values = {"MIRROR": mirror_uri, "PRIMARY": mirror_uri, "SECURITY": security_uri, "RELEASE": d.release}
    for kind, m in (("primary", primary), ("security", security if security is not primary else None)):
        if m is None:
            continue
        try:
            text = key_text(m.key, m.keyid, m.keyserver)
        except ModuleError as e:
            errors.append(f"apt.{kind}: {e}")
            continue
        if text:
            ctx.target.ensure_file(f"{TRUSTED_D}/tether-{kind}.asc", text, links=REPLACE_LINK)
    if apt.preserve_sources_list:
        LOG.info("apt: preserve_sources_list is true; the image's sources are kept")
    else:
        if not d.release:
            errors.append("apt: the target's os-release has no VERSION_CODENAME; sources list not written")
        else:
            write_primary_sources(ctx, apt, d, values)
    add_sources(ctx, apt, d, values, errors)
    if errors:
        raise ModuleError("; ".join(errors))


def write_conf(ctx: ModuleContext, apt: Apt) -> None:
    if apt.conf:
        ctx.target.ensure_file(CONF_FILE, apt.conf if apt.conf.endswith("\n") else apt.conf + "\n", links=REPLACE_LINK)
    else:
        ensure_absent(ctx.target, CONF_FILE)
    lines = []
    for scheme, url in (("http", apt.http_proxy or apt.proxy), ("https", apt.https_proxy),
                        ("ftp", apt.ftp_proxy)):
        if url:
            if '"' in url or "\n" in url:
                raise ModuleError(f"apt.{scheme}_proxy: not a URL")
            lines.append(f'Acquire::{scheme}::Proxy "{url}";\n')
    if lines:
        # Proxy URLs may carry credentials: readable by root only.
        ctx.target.ensure_file(PROXY_FILE, "".join(lines), mode=0o600, links=REPLACE_LINK)
    else:
        ensure_absent(ctx.target, PROXY_FILE)


def _debconf(ctx: ModuleContext, apt: Apt, errors: list[str]) -> None:
    data = "".join(v if v.endswith("\n") else v + "\n" for _k, v in sorted(apt.debconf_selections.items()))
    try:
        res = ctx.run_in_target(["debconf-set-selections"], data=data, timeout=120)
    except CommandError as e:
        errors.append(f"apt.debconf_selections: {e}")
        return
    if res is None:
        ctx.warn(f"apt.debconf_selections: not applied, {ctx.target.root} holds no runnable system")


def write_primary_sources(ctx: ModuleContext, apt: Apt, d: Distro, values: dict[str, str]) -> None:
    deb822_file = f"{SOURCES_D}/{d.id}.sources"
    if apt.sources_list is not None:
        template = apt.sources_list
        deb822 = is_deb822(template)
    else:
        existing = ctx.target.read_text("/etc/apt/sources.list", default="")
        has_lines = any(ln.split()[:1] in (["deb"], ["deb-src"]) for ln in existing.splitlines())
        deb822 = ctx.target.exists(deb822_file) or not has_lines
        template = default_sources(d, deb822)
    text = substitute(template, {**values, "KEY_FILE": ""})
    suites = {substitute(SUITE_ALIASES.get(s, s), values) for s in apt.disable_suites}
    text = disable_suites(text if text.endswith("\n") else text + "\n", suites)
    if deb822:
        ctx.target.ensure_file(deb822_file, text, links=REPLACE_LINK)
        ctx.target.ensure_file("/etc/apt/sources.list",
                               f"# tether: the {d.id} sources are in {deb822_file}\n", links=REPLACE_LINK)
    else:
        ctx.target.ensure_file("/etc/apt/sources.list", text, links=REPLACE_LINK)
        ensure_absent(ctx.target, deb822_file)


def source_path(name: str, src: Source, deb822: bool) -> str:
    fname = src.filename or name
    if not fname.endswith((".list", ".sources")):
        fname += ".sources" if deb822 else ".list"
    if fname.startswith("/"):
        return fname
    if "/" in fname or fname in (".list", ".sources"):
        raise ModuleError(f"apt.sources.{name}: filename {fname!r} must be a plain file name")
    return f"{SOURCES_D}/{fname}"


def add_sources(ctx: ModuleContext, apt: Apt, d: Distro, values: dict[str, str], errors: list[str]) -> None:
    files: dict[str, list[str]] = {}
    fresh: set[str] = set()
    match = re.compile(apt.add_apt_repo_match)
    for name, src in apt.sources.items():
        key_name = re.sub(r"\.(list|sources)$", "", name)
        key_name = re.sub(r"[^A-Za-z0-9_.-]", "_", key_name)
        uses_key_file = bool(src.source and "KEY_FILE" in src.source)
        key_path = f"{KEYRINGS if uses_key_file else TRUSTED_D}/tether-{key_name}.asc"
        try:
            text = key_text(src.key, src.keyid, src.keyserver)
        except ModuleError as e:
            errors.append(f"apt.sources.{name}: {e}")
            continue
        if text:
            ctx.target.ensure_file(key_path, text, links=REPLACE_LINK)
        if not src.source:
            continue
        line = substitute(src.source, {**values, "KEY_FILE": key_path})
        if match.search(line):
            _add_apt_repository(ctx, name, line, errors)
            continue
        try:
            path = source_path(name, src, is_deb822(line))
        except ModuleError as e:
            errors.append(str(e))
            continue
        if not src.append:
            fresh.add(path)
            files[path] = []
        files.setdefault(path, []).append(line.rstrip("\n"))
    for path, entries in files.items():
        deb822 = path.endswith(".sources")
        if path in fresh:
            old_lines: list[str] = []
        else:
            old = ctx.target.read_text(path, default="")
            old_lines = old.rstrip("\n").split("\n\n" if deb822 else "\n") if old.strip() else []
        merged = old_lines + [e for e in entries if e not in old_lines]
        ctx.target.ensure_file(path, ("\n\n" if deb822 else "\n").join(merged) + "\n", links=REPLACE_LINK)


def _add_apt_repository(ctx: ModuleContext, name: str, source: str, errors: list[str]) -> None:
    try:
        res = ctx.run_in_target(["add-apt-repository", "--yes", "--no-update", source], timeout=300)
    except CommandError as e:
        errors.append(f"apt.sources.{name}: add-apt-repository failed: {e}")
        return
    if res is None:
        ctx.warn(f"apt.sources.{name}: {source!r} needs add-apt-repository, which cannot run in "
                 f"{ctx.target.root} (no runnable system); skipped")
