"""The one HTTP client: every datasource, ``#include``, ``seedfrom``, phone_home and the image source use it.

Built on sockets rather than urllib so that every wait has a deadline a slow server cannot stretch (see
``wire``), every response has a size cap, and connections can be kept alive (``Session``). TLS verification is
always on. Imported lazily: the boot's local stage never loads it. The bounds are listed in docs/bounds.md.
"""

from __future__ import annotations

from tether.http.client import (
    MAX_BODY,
    MAX_REDIRECTS,
    RETRY_STATUSES,
    HttpError,
    Response,
    Session,
    Stream,
    backoff,
    pause,
    request,
    worth_reporting,
)
from tether.http.urls import redact_url

__all__ = ["MAX_BODY", "MAX_REDIRECTS", "RETRY_STATUSES", "HttpError", "Response", "Session", "Stream", "backoff",
           "pause", "redact_url", "request",
           "worth_reporting"]
