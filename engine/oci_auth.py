"""Requests to one registry endpoint for one repository, answering its authentication challenges.

A registry answers an unauthenticated request with 401 and ``WWW-Authenticate``: ``Basic realm=...`` (send the
configured user and password) or ``Bearer realm=...,service=...,scope=...`` (fetch a token from ``realm`` for that
service and scope, with the configured credentials if there are any, anonymously otherwise, then send it as
``Authorization: Bearer``). Tokens and passwords go only into ``Authorization`` headers and are registered with
``tether.redact``; a Bearer realm on plain HTTP is refused unless the registry itself is configured as plain HTTP.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Mapping

from tether import log, redact
from tether.engine.oci_config import REGISTRIES_FILE, Credentials, Endpoint, is_loopback
from tether.errors import TetherError
from tether.http import RETRY_STATUSES, HttpError, Response, Session, pause

LOG = log.get(__name__)
MAX_TOKEN_BODY = 64 << 10
_PARAM = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


class RegistryError(TetherError):
    """A registry request failed. ``retryable``: network trouble or a 5xx; ``status``: the HTTP status."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class RegistryAuthError(RegistryError):
    """The registry wants credentials that are not configured, or refused the ones that are."""


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="x",service="y"`` -> ``("bearer", {"realm": "x", "service": "y"})``."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).replace('\\"', '"')
              for m in _PARAM.finditer(rest)}
    return scheme.lower(), params


def error_codes(body: bytes) -> str:
    """The registry's ``{"errors": [{"code": ..., "message": ...}]}`` as ``CODE (message)``, for messages."""
    try:
        doc = json.loads(body[:MAX_TOKEN_BODY])
        errs = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errs, list):
            return "; ".join(f"{e.get('code', '?')} ({e.get('message', '')})"[:200] for e in errs[:3]
                             if isinstance(e, dict))
    except (ValueError, UnicodeDecodeError):
        pass
    return ""


class RegistryClient:
    """GET/HEAD requests under ``<endpoint>/v2/<repository>/`` with retries and authentication."""

    def __init__(self, endpoint: Endpoint, repository: str, creds: Credentials | None, *, timeout: float,
                 retries: int, deadline: float | None) -> None:
        self.endpoint = endpoint
        self.repository = repository
        self.creds = creds
        self.timeout = timeout
        self.retries = retries
        self.deadline = deadline
        self.session = Session()
        self._authorization: str | None = None

    def url(self, kind: str, ref: str) -> str:
        return f"{self.endpoint.base}/v2/{self.repository}/{kind}/{ref}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": self._authorization} if self._authorization else {}

    def close(self) -> None:
        self.session.close()

    def request(self, url: str, *, method: str = "GET", accept: Mapping[str, str] | None = None,
                max_body: int = 4 << 20, retry_statuses: bool = True) -> Response:
        """A 2xx answer; 401 is answered once through ``authenticate``; network errors and (unless told not to)
        5xx answers are retried."""
        answered = False
        attempt = 0
        while True:
            try:
                resp = self.session.call(url, method=method, headers={**(accept or {}), **self.headers()},
                                         timeout=self.timeout, deadline=self.deadline, max_body=max_body)
            except HttpError as e:
                if not e.retryable:
                    raise RegistryError(str(e)) from None
                err = RegistryError(str(e), retryable=True)
            else:
                if resp.status == 401 and not answered:
                    self.authenticate(resp.headers.get("www-authenticate", ""))
                    answered = True
                    continue
                if 200 <= resp.status < 300:
                    return resp
                err = self.failure(url, resp.status, resp.body)
                if not retry_statuses:
                    raise err
            if not err.retryable or attempt >= self.retries or not pause(attempt, 0.5, self.deadline):
                raise err
            attempt += 1
            LOG.debug("%s (try %d of %d)", err, attempt, self.retries + 1)

    def failure(self, url: str, status: int, body: bytes) -> RegistryError:
        from tether.http import redact_url
        codes = error_codes(body)
        detail = f"HTTP {status}" + (f": {codes}" if codes else "")
        if status == 401:
            if self.creds is None:
                return RegistryAuthError(f"{redact_url(url)}: {detail}: the registry refused an anonymous pull; "
                                         f"add credentials for {self.endpoint.host} to {REGISTRIES_FILE}", status)
            return RegistryAuthError(f"{redact_url(url)}: {detail}: the registry refused the credentials for "
                                     f"{self.endpoint.host} (user {self.creds.username!r}) from {REGISTRIES_FILE}",
                                     status)
        if status == 403:
            return RegistryAuthError(f"{redact_url(url)}: {detail}: access denied", status)
        return RegistryError(f"{redact_url(url)}: {detail}", status, status in RETRY_STATUSES)

    def authenticate(self, challenge: str) -> None:
        """Set the ``Authorization`` header the registry's 401 challenge asks for."""
        scheme, params = parse_challenge(challenge)
        where = self.endpoint.base
        if scheme == "basic":
            if self.creds is None:
                raise RegistryAuthError(f"{where}: HTTP 401: the registry requires a login (Basic realm "
                                        f"{params.get('realm', '')!r}); add credentials for {self.endpoint.host} "
                                        f"to {REGISTRIES_FILE}", 401)
            self._authorization = _basic(self.creds)
            return
        if scheme != "bearer" or not params.get("realm"):
            raise RegistryAuthError(f"{where}: HTTP 401 with an authentication challenge tether does not answer: "
                                    f"{challenge[:120]!r}", 401)
        self._authorization = "Bearer " + self._token(params)

    def _token(self, params: dict[str, str]) -> str:
        from tether.http import redact_url
        realm = params["realm"]
        parsed = urllib.parse.urlsplit(realm)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise RegistryAuthError(f"{self.endpoint.base}: the token service {redact_url(realm)!r} is not an "
                                    "http(s) URL", 401)
        if parsed.scheme == "http" and not (self.endpoint.base.startswith("http://")
                                            or is_loopback(parsed.netloc)):
            raise RegistryAuthError(f"{self.endpoint.base}: refused to ask the token service "
                                    f"{redact_url(realm)} over plain HTTP", 401)
        query = {k: params[k] for k in ("service",) if params.get(k)}
        query["scope"] = params.get("scope") or f"repository:{self.repository}:pull"
        url = realm + ("&" if parsed.query else "?") + urllib.parse.urlencode(query)
        headers = {"Authorization": _basic(self.creds)} if self.creds else {}
        shown = redact_url(realm)
        attempt = 0
        while True:
            try:
                resp = self.session.call(url, headers=headers, timeout=self.timeout, deadline=self.deadline,
                                         max_body=MAX_TOKEN_BODY)
            except HttpError as e:
                if e.retryable and attempt < self.retries and pause(attempt, 0.5, self.deadline):
                    attempt += 1
                    continue
                raise RegistryError(f"token service {shown}: {str(e).split(': ', 1)[-1]}", None,
                                    e.retryable) from None
            if resp.status in RETRY_STATUSES and attempt < self.retries and pause(attempt, 0.5, self.deadline):
                attempt += 1
                continue
            break
        if resp.status in (401, 403):
            who = (f"the credentials for {self.endpoint.host} (user {self.creds.username!r}) from "
                   f"{REGISTRIES_FILE}" if self.creds else "an anonymous token")
            raise RegistryAuthError(f"token service {shown}: HTTP {resp.status}: refused {who} for "
                                    f"{query['scope']}" + ("" if self.creds else f"; add credentials for "
                                                           f"{self.endpoint.host} to {REGISTRIES_FILE}"),
                                    resp.status)
        if not 200 <= resp.status < 300:
            raise RegistryError(f"token service {shown}: HTTP {resp.status}", resp.status,
                                resp.status in RETRY_STATUSES)
        try:
            doc = json.loads(resp.body)
            token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        except (ValueError, UnicodeDecodeError):
            token = None
        if not isinstance(token, str) or not token or any(c in token for c in "\r\n "):
            raise RegistryError(f"token service {shown}: the answer has no usable \"token\"")
        redact.add_secret(token)
        LOG.debug("%s: token for %s from %s", self.endpoint.base, query["scope"], shown)
        return token


def _basic(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode("ascii")
