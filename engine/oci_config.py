"""Registry settings for ``oci://`` images: credentials, mirrors and plain-HTTP registries.

One file in the servicing root, ``/etc/tether/registries.json``, mode 0600 (it holds passwords), in the
``auths`` format of Docker's ``config.json`` (so a ``docker login``/``oras login`` file can be copied as it is),
plus two tether keys::

    {"auths": {"registry.example.com": {"auth": "<base64 of user:password>"},
               "mirror.lan:5000": {"username": "puller", "password": "..."}},
     "mirrors": {"registry.example.com": ["mirror.lan:5000", "http://cache.lan:5001"]},
     "plainHttp": ["build.lan:5000"]}

Credentials are never taken from the image URL (URLs are logged and stored in the host configuration). Mirrors
are tried in order before the registry itself. A registry or a mirror given without a scheme speaks plain HTTP
only when it is on a loopback address or listed in ``plainHttp``; everything else is HTTPS with verified
certificates.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import stat
from dataclasses import dataclass, field
from typing import Any

from tether import redact
from tether.errors import TetherError
from tether.target import Target

REGISTRIES_FILE = "/etc/tether/registries.json"
MAX_FILE = 1 << 20


class RegistryConfigError(TetherError):
    """The registries file is unreadable, malformed or not private enough."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


@dataclass(frozen=True)
class Endpoint:
    """One place to ask: ``base`` is ``scheme://host[:port]``; ``host`` is how credentials are looked up."""

    base: str
    host: str
    mirror: bool = False


@dataclass(frozen=True)
class RegistryConfig:
    auths: dict[str, Credentials] = field(default_factory=dict)
    mirrors: dict[str, tuple[str, ...]] = field(default_factory=dict)
    plain_http: frozenset[str] = frozenset()
    source: str = ""

    def credentials(self, host: str) -> Credentials | None:
        return self.auths.get(host)

    def endpoints(self, registry: str) -> list[Endpoint]:
        """The mirrors of ``registry`` in their configured order, then the registry itself."""
        out = [self._mirror(m) for m in self.mirrors.get(registry, ())]
        return [*out, Endpoint(f"{self.scheme(registry)}://{registry}", registry)]

    def _mirror(self, entry: str) -> Endpoint:
        if entry.startswith(("http://", "https://")):
            scheme, host = entry.split("://", 1)
            return Endpoint(f"{scheme}://{host.rstrip('/')}", host.rstrip("/"), True)
        return Endpoint(f"{self.scheme(entry)}://{entry}", entry, True)

    def scheme(self, host: str) -> str:
        return "http" if host in self.plain_http or is_loopback(host) else "https"


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


_root: Target | None = None


def use(root: Target | None) -> None:
    """Read registry settings from ``root`` (the CLI calls this with ``--root``; None: ``/``)."""
    global _root
    _root = root


def load() -> RegistryConfig:
    """The settings of the servicing root; no file means anonymous pulls from the registries themselves."""
    root = _root or Target.at("/")
    path = root.path(REGISTRIES_FILE)
    where = f"{REGISTRIES_FILE} in {root.root}" if str(root.root) != "/" else REGISTRIES_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return RegistryConfig()
    except OSError as e:
        raise RegistryConfigError(f"{where}: cannot open: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise RegistryConfigError(f"{where}: not a regular file")
        if st.st_mode & 0o077:
            raise RegistryConfigError(f"{where}: mode {stat.S_IMODE(st.st_mode):04o}; it holds registry "
                                      "credentials and must be readable by its owner only (chmod 600)")
        if st.st_uid not in (0, os.geteuid()):
            raise RegistryConfigError(f"{where}: owned by uid {st.st_uid}; it must belong to root")
        raw = f.read(MAX_FILE + 1)
    if len(raw) > MAX_FILE:
        raise RegistryConfigError(f"{where}: larger than {MAX_FILE} bytes")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise RegistryConfigError(f"{where}: not JSON ({e})") from None
    return parse(doc, where)


def parse(doc: Any, where: str) -> RegistryConfig:
    if not isinstance(doc, dict):
        raise RegistryConfigError(f"{where}: expected a JSON object")
    for key in ("credsStore", "credHelpers"):
        if doc.get(key):
            raise RegistryConfigError(f"{where}: {key}: credential helpers are not supported; put the credentials "
                                      "in \"auths\"")
    auths: dict[str, Credentials] = {}
    for host, entry in _obj(doc.get("auths", {}), f"{where}: auths").items():
        auths[host_key(host)] = _credentials(entry, f"{where}: auths.{host}")
    mirrors: dict[str, tuple[str, ...]] = {}
    for host, lst in _obj(doc.get("mirrors", {}), f"{where}: mirrors").items():
        if not isinstance(lst, list) or not all(isinstance(m, str) and m and "/" not in _strip_scheme(m)
                                                for m in lst):
            raise RegistryConfigError(f"{where}: mirrors.{host}: expected a list of host[:port] or "
                                      "http(s)://host[:port] strings (no path)")
        mirrors[host_key(host)] = tuple(lst)
    plain = doc.get("plainHttp", [])
    if not isinstance(plain, list) or not all(isinstance(h, str) for h in plain):
        raise RegistryConfigError(f"{where}: plainHttp: expected a list of host[:port] strings")
    return RegistryConfig(auths, mirrors, frozenset(plain), where)


def _strip_scheme(entry: str) -> str:
    return entry.split("://", 1)[1] if "://" in entry else entry


def host_key(host: str) -> str:
    """Docker's file may key ``auths`` by a URL (``https://index.docker.io/v1/``): keep the host[:port]."""
    return _strip_scheme(host).split("/", 1)[0]


def _obj(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise RegistryConfigError(f"{where}: expected an object")
    return v


def _credentials(entry: Any, where: str) -> Credentials:
    entry = _obj(entry, where)
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            pair = base64.b64decode(entry["auth"], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise RegistryConfigError(f"{where}.auth: not base64 of user:password") from None
        user, sep, password = pair.partition(":")
        if not sep:
            raise RegistryConfigError(f"{where}.auth: not base64 of user:password (no ':')")
    elif isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        user, password = entry["username"], entry["password"]
    else:
        keys = ", ".join(sorted(entry)) or "nothing"
        raise RegistryConfigError(f"{where}: expected \"auth\" (base64 of user:password) or \"username\" and "
                                  f"\"password\"; found {keys} (identity tokens and credential helpers are not "
                                  "supported)")
    redact.add_secret(password)
    redact.add_secret(base64.b64encode(f"{user}:{password}".encode()).decode("ascii"))  # as Basic sends it
    return Credentials(user, password)
