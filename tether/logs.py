"""Logging: /var/log/tether.log (0640) in the target, stderr for warnings (everything with --debug).

A filter replaces every registered secret (passwords, tokens, keys) before any handler sees a record, as a
second line of defence behind each caller's own care.
"""

from __future__ import annotations

import logging
import os
import sys

from tether.target import Target

_SECRETS: set[str] = set()
FORMAT = "%(asctime)s - %(name)s[%(levelname)s]: %(message)s"


def add_secret(value: str | None) -> None:
    if value and len(value) >= 4:
        _SECRETS.add(value)


class RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            msg = record.getMessage()
            for s in _SECRETS:
                if s in msg:
                    msg = msg.replace(s, "<redacted>")
            record.msg, record.args = msg, None
        return True


def setup(target: Target, debug: bool = False, to_file: bool = True) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.setLevel(logging.DEBUG)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.DEBUG if debug else logging.WARNING)
    err.setFormatter(logging.Formatter("tether: %(levelname)s: %(message)s" if not debug else FORMAT))
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
        fh.setFormatter(logging.Formatter(FORMAT))
        fh.addFilter(RedactFilter())
        root.addHandler(fh)
    except OSError as e:
        logging.getLogger(__name__).warning("cannot write %s: %s", path, e)
