"""Requests over ``wire``: sessions that keep connections alive, redirects, retries, streams.

Time: a try has ``timeout`` seconds to connect, finish the TLS handshake and receive the status line and headers,
and ``timeout`` more for the body (a buffered try lasts at most 2 x ``timeout``); everything ends at the caller's
``deadline`` (monotonic), retries and their backoff included. A stream's body instead must bring at least
``min_rate`` bytes a second, measured over every ``timeout``-long window. Size: the head is capped (``wire``), a
buffered body at ``max_body``. Redirects: at most ``max_redirects``, never from https to http, and of the
caller's headers only those that carry no credentials (``CROSS_ORIGIN_HEADERS``) go to another origin.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tether import log
from tether.errors import TetherError
from tether.http import urls, wire

LOG = log.get(__name__)
MAX_BODY = 32 * 1024 * 1024
MAX_REDIRECTS = 5
MAX_BACKOFF = 5.0
RETRY_STATUSES = (429, 500, 502, 503, 504)
REDIRECTS = (301, 302, 303, 307, 308)
MAX_DRAIN = 64 * 1024
USER_AGENT = "tether"
# what a redirect to another origin keeps of the caller's headers (a Range resume must survive a CDN redirect);
# anything else may be a credential (Authorization, a token header from configuration) and is dropped
CROSS_ORIGIN_HEADERS = frozenset({"range", "if-range", "user-agent", "accept", "accept-encoding", "accept-language",
                                  "content-type", "if-none-match", "if-modified-since"})


class HttpError(TetherError):
    """A request that failed. ``url`` is the redacted URL; ``status`` the HTTP status when there was one;
    ``retryable`` whether another try could help (network trouble, a timeout, a retry status)."""

    def __init__(self, url: str, message: str, status: int | None = None, retryable: bool = False,
                 kind: str = "") -> None:
        self.url = urls.redact_url(url)
        self.status = status
        self.retryable = retryable
        # "status", "other", wire.WireError's kinds, or "deadline": a timeout because the caller's deadline came
        self.kind = kind or ("status" if status is not None else "other")
        super().__init__(f"{self.url}: {message}")


@dataclass
class Response:
    url: str                       # the URL that answered (after redirects)
    status: int
    body: bytes
    headers: Mapping[str, str]     # lower-case names

    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def worth_reporting(last: HttpError | None, e: HttpError) -> HttpError:
    """The error to quote after several tries: one cut short by the caller's deadline does not hide an
    earlier, more telling one (a reset, a malformed answer)."""
    return last if last is not None and e.kind == "deadline" else e


def backoff(attempt: int, sleep: float, cap: float = MAX_BACKOFF) -> float:
    """The pause after try ``attempt`` (0-based): doubling from ``sleep``, at most ``cap`` (or ``sleep``)."""
    return float(min(sleep * (2 ** min(attempt, 16)), max(sleep, cap)))


def pause(attempt: int, sleep: float, deadline: float | None, cap: float = MAX_BACKOFF) -> bool:
    """Sleep before the next try; False (without sleeping) when the next try would start past the deadline."""
    delay = backoff(attempt, sleep, cap)
    if deadline is not None and time.monotonic() + delay >= deadline:
        return False
    time.sleep(delay)
    return True


def _check_header(name: str, value: str, url: str) -> None:
    if not name or any(c in name for c in ":\r\n ") or any(c in value for c in "\r\n\0"):
        raise HttpError(url, f"request header {name!r}: names may not contain ':', spaces or line breaks, "
                             "values may not contain line breaks")
    if not name.isascii() or not value.isascii():
        raise HttpError(url, f"request header {name!r}: names and values must be ASCII")


def _request_bytes(method: str, target: urls.Target, headers: Mapping[str, str], data: bytes | None,
                   proxy: urls.Target | None = None) -> bytes:
    where = target.path
    if proxy is not None and target.scheme == "http":         # a plain-http proxy wants the absolute URL
        where = f"http://{target.host_header}{target.path}"
    lines = [f"{method} {where} HTTP/1.1", f"Host: {target.host_header}"]
    if proxy is not None and proxy.auth and target.scheme == "http":
        lines.append(f"Proxy-Authorization: {proxy.auth}")
    given = {k.lower() for k in headers}
    defaults = {"user-agent": USER_AGENT, "accept-encoding": "identity", "connection": "keep-alive"}
    lines += [f"{k.title()}: {v}" for k, v in defaults.items() if k not in given]
    if target.auth and "authorization" not in given:
        lines.append(f"Authorization: {target.auth}")
    for k, v in headers.items():
        _check_header(k, v, target.url)
        lines.append(f"{k}: {v}")
    if data is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(data or b'')}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (data or b"")


def _error(url: str, e: wire.WireError) -> HttpError:
    return HttpError(url, str(e), retryable=e.kind in ("net", "timeout"), kind=e.kind)


class Session:
    """Connections kept alive between requests, one per origin (the EC2 crawl makes ~80 small requests)."""

    def __init__(self, proxies: bool = True) -> None:
        """``proxies``: honour ``http_proxy``/``https_proxy``/``no_proxy``; metadata services (link-local, the
        instance's own) are always reached directly."""
        self._idle: dict[tuple[str, str, int], wire.Conn] = {}
        self.proxies = proxies

    def _proxy(self, target: urls.Target) -> urls.Target | None:
        if not self.proxies:
            return None
        import os

        try:
            return urls.proxy_for(target, os.environ)
        except urls.UrlError as e:
            raise HttpError(target.url, f"cannot use the proxy: {e}") from None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for conn in self._idle.values():
            conn.close()
        self._idle.clear()

    def _exchange(self, method: str, target: urls.Target, headers: Mapping[str, str], data: bytes | None,
                  deadline: float) -> tuple[wire.Conn, wire.Head]:
        proxy = self._proxy(target)
        payload = _request_bytes(method, target, headers, data, proxy)
        for _ in (0, 1):
            conn = self._idle.pop(target.origin, None)
            reused = conn is not None
            if conn is None:
                try:
                    conn = wire.Conn(wire.open_socket(target, deadline, proxy), target.origin)
                except wire.WireError as e:
                    raise _error(target.url, e) from None
            try:
                conn.send(payload, deadline)
                head = conn.read_head(deadline)
                conn.used += 1
                return conn, head
            except wire.WireError as e:
                conn.close()
                # a kept-alive connection the server closed meanwhile: one fresh connection
                if reused and e.kind == "net":
                    continue
                raise _error(target.url, e) from None
        raise HttpError(target.url, "the server closed the connection without answering", retryable=True)

    def open(self, url: str, *, method: str = "GET", headers: Mapping[str, str] | None = None,
             data: bytes | None = None, head_deadline: float, body_deadline: Callable[[], float],
             max_body: int = MAX_BODY, max_redirects: int = MAX_REDIRECTS) -> tuple[str, wire.Head, wire.Body]:
        """Send the request, follow redirects; the head and a body to read (any status)."""
        try:
            first = urls.parse(url)
        except urls.UrlError as e:
            raise HttpError(url, str(e).split(": ", 1)[-1]) from None
        target = first
        hops = 0
        while True:
            sent = dict(headers or {})
            if target.origin != first.origin:      # another server: only headers that carry no credentials
                sent = {k: v for k, v in sent.items() if k.lower() in CROSS_ORIGIN_HEADERS}
            conn, head = self._exchange(method, target, sent, data, head_deadline)
            location = head.headers.get("location")
            if head.status not in REDIRECTS or not location:
                try:
                    body = wire.Body(conn, head, method, max_body, body_deadline)
                except wire.WireError as e:
                    conn.close()
                    raise _error(target.url, e) from None
                return target.url, head, body
            self._drain(conn, head, method, head_deadline)
            new = urls.resolve(target.url, location)
            try:
                nxt = urls.parse(new)
            except urls.UrlError as e:
                raise HttpError(target.url, f"redirected to a URL that is not fetched: {e}") from None
            if target.scheme == "https" and nxt.scheme == "http":
                raise HttpError(target.url, f"refused a redirect from https to http ({nxt.shown})")
            if hops >= max_redirects:
                raise HttpError(first.url, f"more than {max_redirects} redirects (the last to {nxt.shown})")
            if head.status == 303 or (head.status in (301, 302) and method == "POST"):
                method, data = "GET", None
            LOG.debug("%s: HTTP %d, redirected to %s", target.shown, head.status, nxt.shown)
            target = nxt
            hops += 1

    def _drain(self, conn: wire.Conn, head: wire.Head, method: str, deadline: float) -> None:
        """Read a small redirect body so the connection can be reused; close it otherwise."""
        try:
            body = wire.Body(conn, head, method, MAX_DRAIN, lambda: deadline)
            body.read_all()
        except wire.WireError:
            conn.close()
            return
        self._keep(conn)

    def _keep(self, conn: wire.Conn) -> None:
        if conn.reusable:
            old = self._idle.pop(conn.origin, None)
            if old is not None:
                old.close()
            self._idle[conn.origin] = conn
        else:
            conn.close()

    def call(self, url: str, *, method: str = "GET", headers: Mapping[str, str] | None = None,
             data: bytes | None = None, timeout: float = 5.0, deadline: float | None = None,
             max_body: int = MAX_BODY, max_redirects: int = MAX_REDIRECTS) -> Response:
        """One try, any status: ``timeout`` for the head, ``timeout`` more for the body, all before ``deadline``."""
        start = time.monotonic()
        head_end = start + timeout
        body_end = start + 2 * timeout
        if deadline is not None:
            if deadline <= start:
                raise HttpError(url, "no time left before the deadline", kind="deadline")
            head_end, body_end = min(head_end, deadline), min(body_end, deadline)
        try:
            final, head, body = self.open(url, method=method, headers=headers, data=data, head_deadline=head_end,
                                          body_deadline=lambda: body_end, max_body=max_body,
                                          max_redirects=max_redirects)
            try:
                content = body.read_all()
            except wire.WireError as e:
                body.conn.close()
                raise _error(final, e) from None
        except HttpError as e:
            if e.kind == "timeout" and deadline is not None and time.monotonic() >= deadline:
                e.kind = "deadline"       # cut short by the caller's deadline rather than by this try's timeout
            raise
        self._keep(body.conn)
        return Response(final, head.status, content, head.headers)


def request(url: str, *, method: str = "GET", headers: Mapping[str, str] | None = None, data: bytes | None = None,
            timeout: float = 5.0, retries: int = 2, deadline: float | None = None,
            retry_statuses: tuple[int, ...] = RETRY_STATUSES, max_body: int = MAX_BODY, sleep: float = 0.5,
            max_redirects: int = MAX_REDIRECTS, session: Session | None = None, proxies: bool = True) -> Response:
    """Fetch ``url`` and return a 2xx answer; anything else raises HttpError.

    Retried (at most ``retries`` more tries, pausing ``backoff``): network errors, timeouts and
    ``retry_statuses``. Another 4xx fails at once (a 404 is an answer, not an outage); so do a body over
    ``max_body``, a malformed answer and a refused redirect. No try starts after ``deadline``.
    """
    own = session is None
    s = session or Session(proxies)
    last: HttpError | None = None
    try:
        for attempt in range(retries + 1):
            try:
                resp = s.call(url, method=method, headers=headers, data=data, timeout=timeout, deadline=deadline,
                              max_body=max_body, max_redirects=max_redirects)
                if 200 <= resp.status < 300:
                    return resp
                reason = f"HTTP {resp.status}"
                last = HttpError(url, reason, resp.status, retryable=resp.status in retry_statuses)
            except HttpError as e:
                last = worth_reporting(last, e)
                if not e.retryable and e.kind != "deadline":
                    raise e from None
            if not last.retryable:
                raise last
            LOG.debug("%s (try %d of %d)", last, attempt + 1, retries + 1)
            if attempt < retries and not pause(attempt, sleep, deadline):
                break
        raise last or HttpError(url, "deadline passed before the request could be made")
    finally:
        if own:
            s.close()


class Stream:
    """A response body read as it arrives (an image): each read ends at the deadline, and the body must bring
    at least ``min_rate`` bytes a second over every ``window``-second stretch."""

    def __init__(self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 30.0,
                 deadline: float | None = None, min_rate: int = 1024, max_body: int = 1 << 62,
                 max_redirects: int = MAX_REDIRECTS) -> None:
        self.window = timeout
        self.need = int(min_rate * timeout)
        self.overall = deadline
        self._start = time.monotonic()
        self._got = 0
        self._session = Session()
        head_end = self._start + timeout
        if deadline is not None:
            head_end = min(head_end, deadline)
        try:
            self.url, head, self._body = self._session.open(url, headers=headers, head_deadline=head_end,
                                                            body_deadline=self._read_deadline, max_body=max_body,
                                                            max_redirects=max_redirects)
        except BaseException:
            self._session.close()
            raise
        self.status = head.status
        self.headers = head.headers
        self.min_rate = min_rate

    @property
    def length(self) -> int | None:
        cl = self.headers.get("content-length", "")
        return int(cl) if cl.isdigit() and not self._body.chunked else None

    def _read_deadline(self) -> float:
        now = time.monotonic()
        if self._got >= self.need:          # enough arrived in this window: a new one starts
            self._start, self._got = now, 0
        end = self._start + self.window
        return min(end, self.overall) if self.overall is not None else end

    def read(self, n: int) -> bytes:
        try:
            data = self._body.read(n)
        except wire.WireError as e:
            self.close()
            if e.kind == "timeout" and (self.overall is None or time.monotonic() < self.overall):
                raise HttpError(self.url, f"the body arrived slower than {self.min_rate} bytes/s for "
                                          f"{self.window:g}s ({e})", retryable=True) from None
            raise _error(self.url, e) from None
        self._got += len(data)
        return data

    def readinto(self, buf: memoryview) -> int:
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.conn.close()
        self._session.close()
