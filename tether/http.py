"""A small bounded HTTP client on urllib (no requests import at boot).

Every call has a per-try timeout, a bounded number of retries and an overall deadline. TLS verification is
always on. Responses are size-capped so a hostile server cannot exhaust memory.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from tether import log
from tether.errors import TetherError

LOG = log.get(__name__)
MAX_BODY = 32 * 1024 * 1024


class HttpError(TetherError):
    def __init__(self, url: str, message: str, status: int | None = None) -> None:
        self.url = url
        self.status = status
        super().__init__(f"{url}: {message}")


@dataclass
class Response:
    url: str
    status: int
    body: bytes
    headers: Mapping[str, str]


def request(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    data: bytes | None = None,
    timeout: float = 5.0,
    retries: int = 2,
    deadline: float | None = None,
    retry_statuses: tuple[int, ...] = (429, 500, 502, 503, 504),
    max_body: int = MAX_BODY,
    sleep: float = 0.5,
) -> Response:
    """Fetch ``url``. ``deadline`` is an absolute ``time.monotonic()`` after which no retry starts.

    4xx other than those in ``retry_statuses`` fail at once (a 404 is an answer, not an outage).
    """
    if not url.startswith(("http://", "https://")):
        raise HttpError(url, "only http:// and https:// URLs are fetched")
    import urllib.error  # here, not at import: urllib.request pulls in http.client, email and ssl
    import urllib.request

    last: HttpError | None = None
    for attempt in range(retries + 1):
        t = timeout
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            t = min(timeout, left)
        req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
        # the socket timeout bounds each read; this bounds the whole try (a server trickling bytes)
        try_end = time.monotonic() + 2 * t
        if deadline is not None:
            try_end = min(try_end, deadline)
        try:
            with urllib.request.urlopen(req, timeout=t) as resp:
                chunks: list[bytes] = []
                size = 0
                while True:
                    chunk = resp.read1(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > max_body:
                        raise HttpError(url, f"response larger than {max_body} bytes")
                    if time.monotonic() > try_end:
                        raise TimeoutError(f"body still arriving after {2 * t:g}s")
                return Response(url, resp.status, b"".join(chunks), dict(resp.headers.items()))
        except urllib.error.HTTPError as e:
            last = HttpError(url, f"HTTP {e.code} {e.reason}", e.code)
            if e.code not in retry_statuses:
                raise last from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            last = HttpError(url, f"unreachable ({reason})")
        LOG.debug("%s (try %d of %d)", last, attempt + 1, retries + 1)
        if attempt < retries:
            if deadline is not None and time.monotonic() + sleep >= deadline:
                break
            time.sleep(sleep)
    raise last or HttpError(url, "deadline passed before the request could be made")
