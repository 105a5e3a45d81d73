"""Where image bytes come from: ``file://`` paths and ``http(s)://`` URLs read as a resumable byte stream.

An HTTP stream that breaks (connection dropped, stalled past the read timeout, ended short of its
Content-Length) is reopened with a ``Range`` request from the byte where it stopped, guarded by ``If-Range`` so a
file replaced on the server is not spliced. Retries are bounded: ``retries`` reconnects in a row without new
bytes, and an overall ``deadline``. TLS certificates are always verified (urllib's default context).

Both sources can ``seek`` to an absolute offset (a COSI file whose ``metadata.json`` is not at the start is read by
walking its tar headers): a file seeks, an HTTP source reopens lazily with ``Range: bytes=N-`` on its next read,
and a server that answers such a request with the whole file raises ``RangeUnsupportedError``.

``tether.http.request`` reads a whole body into memory (capped at 32 MiB), so images use this streaming client.
"""

from __future__ import annotations

import http.client
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Protocol

from tether.errors import TetherError

LOG = logging.getLogger(__name__)


class ImageSourceError(TetherError):
    """The image could not be read (not found, refused, broken beyond the retry budget)."""


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
                 backoff: float = 0.5) -> None:
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.deadline = deadline
        self.backoff = backoff
        self.offset = 0
        self.size: int | None = None
        self.reconnects = 0
        self._validator: str | None = None
        self._resp: http.client.HTTPResponse | None = None
        self._open()

    def _open(self) -> None:
        headers = {"User-Agent": "tether-engine", "Accept-Encoding": "identity"}
        if self.offset:
            headers["Range"] = f"bytes={self.offset}-"
            if self._validator:
                headers["If-Range"] = self._validator
        req = urllib.request.Request(self.url, headers=headers)
        try:
            resp = urllib.request.urlopen(req, timeout=self.timeout)  # noqa: S310 - http(s) only, checked above
        except urllib.error.HTTPError as e:
            if e.code == 416 and self.size is not None:
                raise ImageSourceError(f"{self.url}: server announced {self.size} bytes but has only "
                                       f"{self.offset} (HTTP 416 on resume)") from None
            raise ImageSourceError(f"{self.url}: HTTP {e.code} {e.reason}") from None
        status = resp.status
        if self.offset == 0:
            length = resp.headers.get("Content-Length")
            self.size = int(length) if length and length.isdigit() else None
            now = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
            if self._validator and now and now != self._validator:  # reopened at 0 (a seek back, a retry)
                resp.close()
                raise ImageSourceError(f"{self.url}: the file changed on the server while it was being read "
                                       f"({self._validator} became {now})")
            self._validator = now
        elif status == 206:
            crange = resp.headers.get("Content-Range", "")
            start = crange.split(" ", 1)[-1].split("-", 1)[0]
            if not start.isdigit() or int(start) != self.offset:
                resp.close()
                raise ImageSourceError(f"{self.url}: resumed at byte {self.offset} but the server answered "
                                       f"Content-Range {crange!r}")
        else:
            now = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
            resp.close()
            if status == 200 and (now is None or self._validator is None or now == self._validator):
                raise RangeUnsupportedError(self.url, self.offset)
            raise ImageSourceError(f"{self.url}: cannot resume at byte {self.offset}: the server ignored the "
                                   f"Range request (HTTP {status}) or the file changed")
        self._resp = resp

    def _reconnect(self, why: str, attempt: int) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None
        if attempt > self.retries:
            raise ImageSourceError(f"{self.url}: gave up after {self.retries} reconnects without progress at byte "
                                   f"{self.offset}" + (f" of {self.size}" if self.size else "") + f": {why}")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise ImageSourceError(f"{self.url}: deadline passed at byte {self.offset}: {why}")
        LOG.warning("%s: %s at byte %d; resuming (attempt %d of %d)", self.url, why, self.offset, attempt,
                    self.retries)
        time.sleep(min(self.backoff * attempt, 5.0))
        self.reconnects += 1
        while True:
            try:
                self._open()
                return
            except ImageSourceError:
                raise
            except (OSError, http.client.HTTPException, urllib.error.URLError) as e:
                attempt += 1
                if attempt > self.retries:
                    raise ImageSourceError(f"{self.url}: unreachable while resuming at byte {self.offset}: "
                                           f"{getattr(e, 'reason', e)}") from None
                time.sleep(min(self.backoff * attempt, 5.0))

    def readinto(self, buf: memoryview) -> int:
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
            except http.client.IncompleteRead:
                # bytes already read into the exception are not in buf; resuming at self.offset re-fetches them
                why = "connection ended early"
            except TimeoutError:
                why = f"no data for {self.timeout:g}s"
            except (OSError, http.client.HTTPException) as e:
                why = f"connection error ({e})"
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


def open_source(url: str, *, timeout: float = 30.0, retries: int = 5, deadline: float | None = None) -> Source:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ImageSourceError(f"{url}: file:// URLs must name a local path (file:///path)")
        return FileSource(url, urllib.parse.unquote(parsed.path))
    if parsed.scheme in ("http", "https"):
        try:
            return HttpSource(url, timeout=timeout, retries=retries, deadline=deadline)
        except (OSError, http.client.HTTPException, urllib.error.URLError) as e:
            raise ImageSourceError(f"{url}: unreachable ({getattr(e, 'reason', e)})") from None
    raise ImageSourceError(f"{url}: unsupported URL scheme {parsed.scheme!r} (file, http, https)")
