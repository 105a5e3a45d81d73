"""URLs as the HTTP client uses and shows them: parsed once, shown without credentials."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from tether.errors import TetherError


class UrlError(TetherError):
    """A URL the client will not fetch (scheme, shape); the message shows it redacted."""


def redact_url(url: str) -> str:
    """The URL without user:password and with the query string shown as ``?…`` (both often carry tokens)."""
    try:
        s = urlsplit(url)
        host = s.hostname or ""
        port = s.port
    except ValueError:
        return "<unparseable URL>"
    if not s.scheme or not s.netloc and s.scheme != "file":  # not a URL at all: may be anything, a password too
        return "<not a URL>"
    if ":" in host:
        host = f"[{host}]"
    if port:
        host = f"{host}:{port}"
    tail = "?…" if s.query else ""
    return urlunsplit((s.scheme, host, s.path, "", "")) + tail


@dataclass(frozen=True)
class Target:
    """Where one request goes: origin, the request target (path and query) and Basic credentials, if any."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    auth: str | None

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port

    @property
    def shown(self) -> str:
        return redact_url(self.url)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse(url: str) -> Target:
    """Split an http(s) URL. ``user:password@`` becomes a Basic ``Authorization`` header, never part of a log."""
    try:
        s = urlsplit(url)
        port = s.port
    except ValueError as e:
        raise UrlError(f"{redact_url(url)}: not a valid URL ({e})") from None
    if s.scheme not in ("http", "https"):
        raise UrlError(f"{redact_url(url)}: only http:// and https:// URLs are fetched")
    if not s.hostname:
        raise UrlError(f"{redact_url(url)}: no host in the URL")
    if any(c in url for c in "\r\n\t ") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise UrlError(f"{redact_url(url)}: the URL contains spaces or control characters")
    if not url.isascii():
        raise UrlError(f"{redact_url(url)}: the URL contains non-ASCII characters (percent-encode them, and use "
                       "the punycode form of a host name)")
    auth = None
    if s.username is not None:
        pair = f"{unquote(s.username)}:{unquote(s.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    path = s.path or "/"
    if s.query:
        path += "?" + s.query
    return Target(url, s.scheme, s.hostname, port or (443 if s.scheme == "https" else 80), path, auth)


def resolve(base: str, location: str) -> str:
    """A redirect's ``Location`` against the URL that answered it (fragments dropped)."""
    return urljoin(base, location.strip()).split("#", 1)[0]


def proxy_for(target: Target, env: Mapping[str, str]) -> Target | None:
    """The proxy for ``target`` from ``http_proxy``/``https_proxy`` (either case) and ``no_proxy``, as curl and
    urllib read them; None for a direct connection. Only http:// proxies are used (https through CONNECT)."""
    if _bypassed(target.host, env.get("no_proxy", env.get("NO_PROXY", ""))):
        return None
    key = f"{target.scheme}_proxy"
    value = (env.get(key) or env.get(key.upper()) or "").strip()
    if not value:
        return None
    proxy = parse(value if "://" in value else "http://" + value)
    if proxy.scheme != "http":
        raise UrlError(f"{key} {proxy.shown}: only http:// proxies are supported")
    return proxy


def _bypassed(host: str, no_proxy: str) -> bool:
    host = host.lower().rstrip(".")
    for entry in no_proxy.replace(",", " ").split():
        entry = entry.lower().strip()
        if entry == "*":
            return True
        if entry.startswith("[") and "]" in entry:          # [::1]:8080
            entry = entry[1:entry.index("]")]
        elif entry.count(":") == 1:                        # host:port
            entry = entry.split(":", 1)[0]
        entry = entry.lstrip(".").rstrip(".")
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False
