"""Where image bytes come from: ``file://`` paths and ``http(s)://`` URLs read as a resumable byte stream.

HTTP goes through the one client (``tether.http.Stream``): connect, TLS and the response headers within
``timeout``, then the body must bring at least ``min_rate`` bytes a second over every ``timeout``-long stretch,
so a server that drips cannot hold a download forever. A stream that breaks (connection dropped, stalled, ended
short of its Content-Length) is reopened with a ``Range`` request from the byte where it stopped, guarded by
``If-Range`` so a file replaced on the server is not spliced. Retries are bounded: ``retries`` reconnects in a
row without new bytes, and an overall ``deadline``. TLS certificates are always verified. Credentials go in
``headers``; URLs appear in messages redacted (no user:password, no query string).

Both sources can ``seek`` to an absolute offset (a COSI file whose ``metadata.json`` is not at the start is read by
walking its tar headers): a file seeks, an HTTP source reopens lazily with ``Range: bytes=N-`` on its next read,
and a server that answers such a request with the whole file raises ``RangeUnsupportedError``.

"""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from tether import log
from tether.errors import TetherError

if TYPE_CHECKING:
    from tether.http import Stream

LOG = log.get(__name__)
MIN_RATE = 1024               # bytes a second, over every ``timeout``-long stretch of a download
RETRY_STATUSES = (429, 500, 502, 503, 504)


class ImageSourceError(TetherError):
    """The image could not be read (not found, refused, broken beyond the retry budget). ``retryable``: a
    network failure or a 5xx, which a reconnect may get past."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class RangeUnsupportedError(ImageSourceError):
    """The server answered a ``Range`` request with the whole file: this source cannot seek."""

    def __init__(self, url: str, offset: int) -> None:
        self.url = url
        self.offset = offset
        super().__init__(f"{url}: the server does not support Range requests: asked for the bytes from {offset}, "
                         "it sent the whole file (HTTP 200)")


class Source(Protocol):
    url: str
    size: int | None
    offset: int

    def readinto(self, buf: memoryview) -> int: ...

    def seek(self, offset: int) -> None: ...

    def close(self) -> None: ...


class FileSource:
    def __init__(self, url: str, path: str) -> None:
        self.url = url
        try:
            self._f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        except OSError as e:
            raise ImageSourceError(f"{url}: cannot open image: {e.strerror}") from None
        self.size: int | None = os.fstat(self._f.fileno()).st_size
        self.offset = 0

    def readinto(self, buf: memoryview) -> int:
        n = self._f.readinto(buf) or 0
        self.offset += n
        return n

    def skip(self, n: int) -> None:
        self._f.seek(n, os.SEEK_CUR)
        self.offset += n

    def seek(self, offset: int) -> None:
        self._f.seek(offset)
        self.offset = offset

    def close(self) -> None:
        self._f.close()


class HttpSource:
    def __init__(self, url: str, *, timeout: float = 30.0, retries: int = 5, deadline: float | None = None,
                 backoff: float = 0.5, headers: Mapping[str, str] | None = None, min_rate: int = MIN_RATE) -> None:
        from tether.http import redact_url

        self.url = url
        self.shown = redact_url(url)
        self.timeout = timeout
        self.retries = retries
        self.deadline = deadline
        self.backoff = backoff
        self.headers = dict(headers or {})
        self.min_rate = min_rate
        self.offset = 0
        self.size: int | None = None
        self.reconnects = 0
        self._validator: str | None = None
        self._resp: Stream | None = None
        self._open()

    def _open(self) -> None:
        from tether.http import HttpError, Stream

        headers = {"User-Agent": "tether-engine", **self.headers}
        if self.offset:
            headers["Range"] = f"bytes={self.offset}-"
            if self._validator:
                headers["If-Range"] = self._validator
        try:
            resp = Stream(self.url, headers=headers, timeout=self.timeout, deadline=self.deadline,
                          min_rate=self.min_rate)
        except HttpError as e:
            if e.retryable:
                raise ImageSourceError(f"{self.shown}: unreachable ({str(e).split(': ', 1)[-1]})", True) from None
            raise ImageSourceError(str(e)) from None
        status = resp.status
        if status >= 400:
            resp.close()
            if status == 416 and self.size is not None:
                raise ImageSourceError(f"{self.shown}: server announced {self.size} bytes but has only "
                                       f"{self.offset} (HTTP 416 on resume)")
            raise ImageSourceError(f"{self.shown}: HTTP {status}", status in RETRY_STATUSES)
        if status >= 300:
            resp.close()
            raise ImageSourceError(f"{self.shown}: HTTP {status} without a usable Location")
        if resp.headers.get("content-type", "").split(";", 1)[0].strip().lower() == "text/html":
            resp.close()
            raise ImageSourceError(f"{self.shown}: the server answered an HTML page (Content-Type text/html), "
                                   "not an image")
        now = resp.headers.get("etag") or resp.headers.get("last-modified")
        if self.offset == 0:
            self.size = resp.length
            if self._validator and now and now != self._validator:  # reopened at 0 (a seek back, a retry)
                resp.close()
                raise ImageSourceError(f"{self.shown}: the file changed on the server while it was being read "
                                       f"({self._validator} became {now})")
            self._validator = now
        elif status == 206:
            crange = resp.headers.get("content-range", "")
            start = crange.split(" ", 1)[-1].split("-", 1)[0]
            if not start.isdigit() or int(start) != self.offset:
                resp.close()
                raise ImageSourceError(f"{self.shown}: resumed at byte {self.offset} but the server answered "
                                       f"Content-Range {crange[:80]!r}")
        else:
            resp.close()
            if status == 200 and (now is None or self._validator is None or now == self._validator):
                raise RangeUnsupportedError(self.shown, self.offset)
            raise ImageSourceError(f"{self.shown}: cannot resume at byte {self.offset}: the server ignored the "
                                   f"Range request (HTTP {status}) or the file changed")
        self._resp = resp

    def _wait(self, attempt: int) -> None:
        delay = min(self.backoff * attempt, 5.0)
        if self.deadline is not None:
            delay = min(delay, max(0.0, self.deadline - time.monotonic()))
        time.sleep(delay)

    def _reconnect(self, why: str, attempt: int) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None
        if attempt > self.retries:
            raise ImageSourceError(f"{self.shown}: gave up after {self.retries} reconnects without progress at "
                                   f"byte {self.offset}" + (f" of {self.size}" if self.size else "") + f": {why}")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise ImageSourceError(f"{self.shown}: deadline passed at byte {self.offset}: {why}")
        LOG.warning("%s: %s at byte %d; resuming (attempt %d of %d)", self.shown, why, self.offset, attempt,
                    self.retries)
        self._wait(attempt)
        self.reconnects += 1
        while True:
            try:
                self._open()
                return
            except RangeUnsupportedError:
                raise ImageSourceError(f"{self.shown}: {why} at byte {self.offset}, and it cannot be resumed: the "
                                       "server does not support Range requests (it sent the whole file again)"
                                       ) from None
            except ImageSourceError as e:
                if not e.retryable:
                    raise
                attempt += 1
                if attempt > self.retries or (self.deadline is not None and time.monotonic() >= self.deadline):
                    raise ImageSourceError(f"{self.shown}: {why} at byte {self.offset}, and resuming failed: "
                                           f"{str(e).split(': ', 1)[-1]}") from None
                self._wait(attempt)

    def readinto(self, buf: memoryview) -> int:
        from tether.http import HttpError

        attempt = 0
        while True:
            if self.size is not None and self.offset >= self.size:
                return 0
            why = ""
            try:
                if self._resp is None:  # after a seek
                    self._open()
                assert self._resp is not None
                n = self._resp.readinto(buf)
                if n:
                    self.offset += n
                    return n
                if self.size is None:
                    return 0
                why = f"connection ended early ({self.offset} of {self.size} bytes)"
            except HttpError as e:
                if not e.retryable:
                    raise ImageSourceError(str(e)) from None
                why = str(e).split(": ", 1)[-1]
            attempt += 1
            self._reconnect(why, attempt)

    def seek(self, offset: int) -> None:
        """Continue at ``offset``; the next read reopens with a Range request (unless nothing moved)."""
        if offset == self.offset and self._resp is not None:
            return
        self.close()
        self.offset = offset

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None


def configured_auth(host: str) -> dict[str, str] | None:
    """Credentials for an image server come from configuration, never from the URL (which is logged): the
    servicing root's ``/etc/tether/registries.json`` (0600, root's) holds them per host, for OCI registries and
    plain HTTP(S) image servers alike; sent as Basic auth, only to that origin (the client drops them on a
    redirect elsewhere)."""
    import base64

    from tether.engine import oci_config

    creds = oci_config.load().credentials(oci_config.host_key(host))
    if creds is None:
        return None
    token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}


def open_source(url: str, *, timeout: float = 30.0, retries: int = 5, deadline: float | None = None,
                headers: Mapping[str, str] | None = None, min_rate: int = MIN_RATE) -> Source:
    """``headers`` carry credentials (never put them in the URL: URLs are logged, redacted as they may be)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ImageSourceError(f"{url}: file:// URLs must name a local path (file:///path)")
        return FileSource(url, urllib.parse.unquote(parsed.path))
    if parsed.scheme in ("http", "https"):
        if headers is None:
            headers = configured_auth(parsed.netloc.rpartition("@")[2])
        return HttpSource(url, timeout=timeout, retries=retries, deadline=deadline, headers=headers,
                          min_rate=min_rate)
    if parsed.scheme == "oci":  # credentials come from the registries file (engine/oci_config.py), not headers
        from tether.engine.oci import open_oci
        return open_oci(url, timeout=timeout, retries=retries, deadline=deadline, min_rate=min_rate)
    raise ImageSourceError(f"{url}: unsupported URL scheme {parsed.scheme!r} (file, http, https, oci)")
