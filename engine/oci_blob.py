"""Reading an image blob from a registry as an engine ``Source``: streamed, resumed and seeked with ``Range``,
checked against its digest as it streams (see ``engine/oci.py`` for what is resolved and verified)."""

from __future__ import annotations

import hashlib
import hmac
import time

from tether import log
from tether.engine.oci import TAIL_CHECK, Blob, OciAuthError, OciError, Reference
from tether.engine.oci_auth import RegistryClient, RegistryError
from tether.http import HttpError, Stream

LOG = log.get(__name__)


class OciSource:
    """A blob as an engine ``Source``: ``readinto``/``seek``/``size``, resumed with ``Range``, digest-checked."""

    def __init__(self, ref: Reference, clients: list[RegistryClient], blob: Blob, *, timeout: float,
                 retries: int, deadline: float | None, min_rate: int) -> None:
        self.url = str(ref)
        self.size: int | None = blob.size
        self.offset = 0
        self.blob = blob
        self.reconnects = 0
        self._clients = clients
        self._timeout = timeout
        self._retries = retries
        self._deadline = deadline
        self._min_rate = min_rate
        self._resp: Stream | None = None
        self._direct: str | None = None       # a storage URL the registry redirected to
        alg = blob.digest.split(":", 1)[0]
        self._hash = hashlib.new(alg)
        self._hashed = 0                      # bytes hashed, contiguous from 0
        self._checked = False
        self._open()

    # --- opening ------------------------------------------------------------------------------------------
    def _open(self) -> None:
        last: OciError | None = None
        if self._direct is not None:
            try:
                self._resp = self._stream(self._direct, {}, self._direct)
                return
            except OciError as e:
                LOG.info("%s: storage URL failed (%s); asking the registry again", self.url, e)
                self._direct = None
        for client in list(self._clients):
            url = client.url("blobs", self.blob.digest)
            try:
                try:
                    self._resp = self._stream(url, client.headers(), url)
                except OciAuthError:
                    client.request(url, method="HEAD")   # answers the 401 challenge (a token expired meanwhile)
                    self._resp = self._stream(url, client.headers(), url)
            except (OciError, RegistryError) as e:
                retryable = getattr(e, "retryable", False)
                last = e if isinstance(e, OciError) else OciError(f"{self.url}: {e}", retryable)
                if client is self._clients[-1]:
                    break
                LOG.warning("%s: blob from %s failed (%s); trying the next", self.url, client.endpoint.base, e)
                self._clients.remove(client)     # a mirror that failed is not asked again
                continue
            if self._resp.url.split("/v2/", 1)[0] != client.endpoint.base:
                self._direct = self._resp.url
            return
        assert last is not None
        raise last

    def _stream(self, url: str, headers: dict[str, str], shown: str) -> Stream:
        from tether.http import redact_url
        hdrs = {"User-Agent": "tether-engine", **headers}
        if self.offset:
            hdrs["Range"] = f"bytes={self.offset}-"
        try:
            resp = Stream(url, headers=hdrs, timeout=self._timeout, deadline=self._deadline,
                          min_rate=self._min_rate)
        except HttpError as e:
            raise OciError(f"{redact_url(shown)}: {str(e).split(': ', 1)[-1]}", e.retryable) from None
        status = resp.status
        if status == 401:
            resp.close()
            raise OciAuthError(f"{redact_url(shown)}: HTTP 401", False)
        if status >= 300:
            resp.close()
            raise OciError(f"{redact_url(shown)}: HTTP {status}", status in (429, 500, 502, 503, 504))
        if self.offset and status == 206:
            crange = resp.headers.get("content-range", "")
            start = crange.split(" ", 1)[-1].split("-", 1)[0]
            if not start.isdigit() or int(start) != self.offset:
                resp.close()
                raise OciError(f"{redact_url(shown)}: asked for the bytes from {self.offset}, the server answered "
                               f"Content-Range {crange[:80]!r}")
        elif self.offset:
            LOG.warning("%s: the server ignored the Range request; reading forward to byte %d", self.url,
                        self.offset)
            self._discard(resp, self.offset)
        elif resp.length is not None and resp.length != self.size:
            resp.close()
            raise OciError(f"{self.url}: the blob is {resp.length} bytes, the manifest says {self.size}")
        return resp

    def _discard(self, resp: Stream, n: int) -> None:
        buf = bytearray(1 << 20)
        while n:
            got = resp.readinto(memoryview(buf)[:min(n, len(buf))])
            if not got:
                resp.close()
                raise OciError(f"{self.url}: the body ended before byte {self.offset}", True)
            n -= got

    # --- reading ------------------------------------------------------------------------------------------
    def readinto(self, buf: memoryview) -> int:
        attempt = 0
        while True:
            assert self.size is not None
            if self.offset >= self.size:
                self._finish()
                return 0
            why = ""
            try:
                if self._resp is None:
                    self._open()
                assert self._resp is not None
                n = self._resp.readinto(buf[:self.size - self.offset])
                if n:
                    self._account(buf[:n])
                    return n
                why = f"connection ended early ({self.offset} of {self.size} bytes)"
            except HttpError as e:
                if not e.retryable:
                    raise OciError(f"{self.url}: {e}") from None
                why = str(e).split(": ", 1)[-1]
            except OciError as e:
                if not e.retryable:
                    raise
                why = str(e)
            attempt += 1
            self._reconnect(why, attempt)

    def _account(self, data: memoryview) -> None:
        if self._hashed == self.offset:
            self._hash.update(data)
            self._hashed += len(data)
        self.offset += len(data)

    def _finish(self) -> None:
        if self._checked or self._hashed != self.size:
            return
        self._checked = True
        got = self._hash.hexdigest()
        alg, want = self.blob.digest.split(":", 1)
        if not hmac.compare_digest(got, want):
            raise OciError(f"{self.url}: the blob's {alg} is {got}, the manifest says {want}: the registry served "
                           "other bytes than it named")
        LOG.info("%s: blob digest %s verified", self.url, self.blob.digest)

    def _reconnect(self, why: str, attempt: int) -> None:
        self.close_stream()
        if attempt > self._retries:
            raise OciError(f"{self.url}: gave up after {self._retries} reconnects without progress at byte "
                           f"{self.offset} of {self.size}: {why}")
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise OciError(f"{self.url}: deadline passed at byte {self.offset}: {why}")
        LOG.warning("%s: %s at byte %d; resuming (attempt %d of %d)", self.url, why, self.offset, attempt,
                    self._retries)
        delay = min(0.5 * attempt, 5.0)
        if self._deadline is not None:
            delay = min(delay, max(0.0, self._deadline - time.monotonic()))
        time.sleep(delay)
        self.reconnects += 1

    def seek(self, offset: int) -> None:
        if offset == self.offset and self._resp is not None:
            return
        self.close_stream()
        self.offset = offset

    @property
    def verified(self) -> bool:
        return self._checked

    def close_stream(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    def close(self) -> None:
        """Finish the digest check when only a short tail is unread (a COSI file's end), then close."""
        try:
            assert self.size is not None
            left = self.size - self.offset
            if not self._checked and self._hashed == self.offset and 0 < left <= TAIL_CHECK \
                    and self._resp is not None:
                buf = bytearray(left)
                view = memoryview(buf)
                while self.readinto(view):
                    pass
            elif not self._checked and self._hashed != self.size:
                LOG.info("%s: %d of %d bytes read in order; the blob digest was not checked as a whole",
                         self.url, self._hashed, self.size)
        finally:
            self.close_stream()
            for c in self._clients:
                c.close()
