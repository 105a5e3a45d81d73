"""tether's one logging API: ``LOG = log.get(__name__)`` in every file of tether, its modules, datasources and engine.

A lint test (tests/core/test_lint.py) fails when any other file calls ``logging.getLogger``; handlers and levels
are set up in tether/logs.py.

Records go to stdlib logging (handlers set up by tether/logs.py: /var/log/tether.log and stderr). The one
difference: the boot's first stage can ``hold()`` them until ``release()``. ``import logging`` brings traceback,
linecache, tokenize, textwrap, string, threading and weakref with it, about 0.3 s of CPU in a VM without hardware
acceleration, and before READY=1 the whole boot waits for that unit. So while held, each record is kept in memory
(message formatted at once, with its time, exception and the caller's file, line and function, read from the
caller's frame: two strings and a number, no traceback machinery), and ``release()`` (right after READY=1, or when the
process ends) sets up the handlers and hands the records over with their original times; secrets registered by
then are redacted as usual. Nothing waits long or gets lost: a record logged more than ``HOLD_MAX`` seconds after
``hold()`` (a slow datasource, say) releases everything at once, and SIGTERM (systemd stopping a unit that
hangs) releases the records before the process ends as it would have.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # the boot's first stage does not import typing; mypy reads the block below
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType
    from typing import Any

    ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]

DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40
HOLD_MAX = 5.0

# name, level, text, exception, time, and the caller's file, line and function
_held: list[tuple[str, int, str, ExcInfo | None, float, str, int, str]] | None = None
_held_since = 0.0
_setup: Callable[[], None] | None = None
_sigterm: Any = None  # the SIGTERM handler hold() replaced


class Logger:
    """The subset of ``logging.Logger`` tether uses: debug/info/warning/error/exception/log with %-style args.
    Records carry the file, line and function of the call (held or not)."""

    __slots__ = ("name", "_logger")

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger: Any = None

    def debug(self, msg: str, *args: object) -> None:
        self._log(DEBUG, msg, args, False)

    def info(self, msg: str, *args: object) -> None:
        self._log(INFO, msg, args, False)

    def warning(self, msg: str, *args: object) -> None:
        self._log(WARNING, msg, args, False)

    def error(self, msg: str, *args: object) -> None:
        self._log(ERROR, msg, args, False)

    def exception(self, msg: str, *args: object) -> None:
        self._log(ERROR, msg, args, True)

    def log(self, level: int, msg: str, *args: object) -> None:
        self._log(level, msg, args, False)

    def _log(self, level: int, msg: str, args: tuple[object, ...], exc: bool) -> None:
        # the caller of debug()/info()/...: this frame is _log, the one above it the public method
        if _held is not None:
            now = time.time()
            code = (f := sys._getframe(2)).f_code
            _held.append((self.name, level, _format(msg, args), sys.exc_info() if exc else None, now,
                          code.co_filename, f.f_lineno or 0, code.co_name))
            if now - _held_since > HOLD_MAX:
                release()
            return
        logger = self._logger
        if logger is None:
            import logging
            logger = self._logger = logging.getLogger(self.name)
        logger.log(level, msg, *args, exc_info=exc, stacklevel=3)


def get(name: str) -> Logger:
    return Logger(name)


def _format(msg: str, args: tuple[object, ...]) -> str:
    try:
        return msg % args if args else str(msg)
    except (TypeError, ValueError) as e:  # logging would report a broken format at emit time; keep it readable
        return f"{msg!s} {args!r} (log format error: {e})"


def hold() -> None:
    """Keep records in memory until ``release()`` (at the latest when the process exits or is terminated)."""
    global _held, _held_since, _sigterm
    if _held is None:
        import _signal  # the C module: signal.py builds enums at import
        import atexit
        _held, _held_since = [], time.time()
        atexit.register(release)
        _sigterm = _signal.signal(_signal.SIGTERM, _terminated)


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM while held: release the records, then end as SIGTERM would have ended the process."""
    import _signal
    release()
    _signal.signal(signum, _signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def setup(fn: Callable[[], None]) -> None:
    """Set up the handlers with ``fn`` now, or at ``release()`` while records are held."""
    global _setup
    if _held is None:
        fn()
    else:
        _setup = fn


def release() -> None:
    """Set up the handlers (if ``setup`` was deferred) and emit the held records; later records go straight
    to stdlib logging."""
    global _held, _setup, _sigterm
    records, fn = _held, _setup
    _held, _setup = None, None
    if records is None:
        return
    import _signal
    if _signal.getsignal(_signal.SIGTERM) is _terminated:
        _signal.signal(_signal.SIGTERM, _sigterm if _sigterm is not None else _signal.SIG_DFL)
    _sigterm = None
    import logging
    if fn is not None:
        fn()
    for name, level, text, exc, created, pathname, lineno, func in records:
        logger = logging.getLogger(name)
        if not logger.isEnabledFor(level):
            continue
        record = logger.makeRecord(name, level, pathname, lineno, text, (), exc, func)
        record.created = created
        record.msecs = int((created - int(created)) * 1000)
        logger.handle(record)
