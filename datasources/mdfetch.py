"""What the datasources share to read a metadata service and its documents: their settings (numbers, URLs,
request headers), the budget that bounds one fetch by total bytes and number of requests, and the untrusted
shapes of what comes back (``obj``; a host configuration carried as YAML text, ``parse_host_config``).

The budget: every response of one fetch counts against ``max_bytes`` (default 16 MiB) and every request
against ``max_entries`` (default 2000); a response is read with a size cap of what is left, so memory stays
bounded however large or many the service's leaves are. Going over is one DatasourceError naming the
datasource, the limit and its key (``datasource.<NAME>.max_bytes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tether.errors import DatasourceError
from tether.http import HttpError, Response, Session, request

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_ENTRIES = 2000


def setting_number(settings: Mapping[str, Any], key: str, default: float, ds: str) -> float:
    v = settings.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise DatasourceError(f"datasource.{ds}.{key}: expected a non-negative number, got {v!r}")
    return float(v)


def setting_urls(settings: Mapping[str, Any], key: str, default: tuple[str, ...], ds: str) -> list[str]:
    from tether.http import redact_url

    v = settings.get(key)
    if v is None:
        return list(default)
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(u, str) and u.startswith(("http://", "https://"))
                                                   for u in v):
        shown = [redact_url(u) if isinstance(u, str) else u for u in v] if isinstance(v, list) else v
        raise DatasourceError(f"datasource.{ds}.{key}: expected a list of http:// or https:// URLs, got {shown!r}")
    for u in v:
        if "@" in u.split("/", 3)[2]:
            raise DatasourceError(f"datasource.{ds}.{key}: {redact_url(u)}: credentials in a URL end up in logs; "
                                  f"put them in datasource.{ds}.headers")
    return [u.rstrip("/") for u in v]


def setting_headers(settings: Mapping[str, Any], ds: str, key: str = "headers") -> dict[str, str]:
    """Extra request headers (credentials belong here, not in URLs); values are never shown in messages."""
    v = settings.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(k, str) and k and isinstance(x, str) for k, x in v.items()):
        raise DatasourceError(f"datasource.{ds}.{key}: expected a mapping of header names to strings")
    for k, x in v.items():
        if any(c in k for c in ":\r\n ") or any(c in x for c in "\r\n\0"):
            raise DatasourceError(f"datasource.{ds}.{key}.{k}: header names may not contain ':' or spaces, "
                                  "and neither names nor values line breaks")
    return dict(v)


class Budget:
    """The bytes and requests one metadata fetch may use (see the module docstring)."""

    def __init__(self, ds: str, settings: Mapping[str, Any]) -> None:
        self.ds = ds
        self.max_bytes = int(setting_number(settings, "max_bytes", DEFAULT_MAX_BYTES, ds))
        self.max_entries = int(setting_number(settings, "max_entries", DEFAULT_MAX_ENTRIES, ds))
        self.bytes = 0
        self.entries = 0

    def _over_bytes(self, url: str) -> DatasourceError:
        return DatasourceError(f"{self.ds}: the metadata read from {url} and before it exceeds {self.max_bytes} "
                               f"bytes in total (datasource.{self.ds}.max_bytes)")

    def begin(self, url: str) -> int:
        """Count one request; the size cap for its response."""
        from tether.http import redact_url

        self.entries += 1
        if self.entries > self.max_entries:
            raise DatasourceError(f"{self.ds}: more than {self.max_entries} metadata requests, the last for "
                                  f"{redact_url(url)} (datasource.{self.ds}.max_entries)")
        left = self.max_bytes - self.bytes
        if left < 0:
            raise self._over_bytes(redact_url(url))
        return left

    def spend(self, resp: Response) -> Response:
        self.bytes += len(resp.body)
        return resp

    def failed(self, e: HttpError) -> HttpError | DatasourceError:
        """A response cut at the cap is the budget's error, not the server's."""
        if e.kind == "size":
            return self._over_bytes(e.url)
        return e

    def call(self, session: Session, url: str, **kw: Any) -> Response:
        """One try through ``session`` (any status), within the budget."""
        cap = self.begin(url)
        try:
            return self.spend(session.call(url, max_body=cap, **kw))
        except HttpError as e:
            raise self.failed(e) from None

    def request(self, url: str, **kw: Any) -> Response:
        """``tether.http.request`` (2xx or HttpError), within the budget."""
        cap = self.begin(url)
        try:
            # a metadata service is the instance's own (link-local): never through a proxy
            return self.spend(request(url, max_body=cap, proxies=False, **kw))
        except HttpError as e:
            raise self.failed(e) from None


def obj(v: Any) -> dict[str, Any]:
    """``v`` when it is a JSON object, else an empty one (metadata documents are untrusted shapes)."""
    return v if isinstance(v, dict) else {}


def parse_host_config(text: str | bytes | None, source: str) -> dict[str, Any] | None:
    """A host configuration carried as YAML text in the metadata; None when absent or empty."""
    from tether.datasources.seedfiles import yaml_mapping

    return yaml_mapping(text, source, "the host configuration must be a YAML mapping")
