"""Logging: /var/log/tether.log (0640) in the target, stderr for warnings (everything with --debug).

A filter replaces every registered secret (passwords, tokens, keys) before any handler sees a record, as a
second line of defence behind each caller's own care, and the formatter escapes control characters (a server's
raw bytes, user-data) so a log line cannot rewrite the terminal or forge another line (tether.redact).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

from tether.redact import _SECRETS, add_secret, escape_controls, redact  # _SECRETS: tests clear what they add
from tether.target import Target

FORMAT = "%(asctime)s - %(name)s[%(levelname)s]: %(message)s"
__all__ = ["FORMAT", "_SECRETS", "RedactFilter", "SafeFormatter", "add_secret", "setup", "stderr_at"]


class RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


class SafeFormatter(logging.Formatter):
    """Formats as usual, then escapes control characters; newlines stay (tracebacks, multi-line messages)."""

    def format(self, record: logging.LogRecord) -> str:
        return escape_controls(redact(super().format(record)), multiline=True)


def setup(target: Target, debug: bool = False, to_file: bool = True) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.setLevel(logging.DEBUG)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.DEBUG if debug else logging.WARNING)
    err.setFormatter(SafeFormatter("tether: %(levelname)s: %(message)s" if not debug else FORMAT))
    err.addFilter(RedactFilter())
    root.addHandler(err)
    if not to_file:
        return
    path = target.path("/var/log/tether.log")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o640)
        os.fchmod(fd, 0o640)
        fh = logging.StreamHandler(os.fdopen(fd, "a", buffering=1))
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(SafeFormatter(FORMAT))
        fh.addFilter(RedactFilter())
        root.addHandler(fh)
    except OSError as e:
        logging.getLogger(__name__).warning("cannot write %s: %s", path, e)


@contextlib.contextmanager
def stderr_at(level: int | None) -> Iterator[None]:
    """While the block runs, tether's records at ``level`` and above also go to stderr (the engine verbs'
    ``-v LEVEL``); ``None`` changes nothing."""
    if level is None:
        yield
        return
    logger = logging.getLogger("tether")
    old_level = logger.level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("tether: %(levelname)s: %(message)s"))
    handler.setLevel(level)
    logger.addHandler(handler)
    logger.setLevel(min(level, logging.WARNING))
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
