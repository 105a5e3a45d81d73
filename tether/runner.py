"""The one place that spawns processes.

Every command is an argv list (never a shell string built from input), has a timeout, and is logged as
``+ argv`` with secrets replaced by ``<redacted>``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence

from tether import log
from tether.errors import CommandError
from tether.record import Record
from tether.redact import REDACTED, redact

LOG = log.get(__name__)
DEFAULT_TIMEOUT = 300.0
__all__ = ["CLOCK", "DEFAULT_TIMEOUT", "REDACTED", "Result", "Runner", "redact"]


class Result(Record):
    """A finished command: its argv (with ``chroot`` when it ran chrooted), exit code, output, duration."""

    __slots__ = ("argv", "code", "stdout", "stderr", "seconds")

    def __init__(self, argv: list[str], code: int, stdout: str, stderr: str, seconds: float = 0.0) -> None:
        self.argv = argv
        self.code = code
        self.stdout = stdout
        self.stderr = stderr
        self.seconds = seconds


class _Clock:
    """Seconds spent waiting for child processes in this process (stage timings report it separately)."""

    commands = 0.0


CLOCK = _Clock()


class Runner:
    """Runs commands for real (``chroot=`` other than ``/`` runs them under ``chroot``); ``history`` keeps every
    argv it was given. Subclasses that are dataclasses call ``Runner.__init__`` from ``__post_init__``."""

    def __init__(self) -> None:
        self.history: list[list[str]] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        data: str | bytes | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        chroot: str | None = None,
        cwd: str | None = None,
        secrets: Sequence[str] = (),
        capture: bool = True,
    ) -> Result:
        argv = [str(a) for a in argv]
        full = ["chroot", chroot, *argv] if chroot and chroot != "/" else argv
        LOG.debug("+ %s", redact(" ".join(full), secrets))
        self.history.append(full)
        run_env = None
        if env is not None:
            run_env = dict(os.environ)
            run_env.update(env)
        if isinstance(data, str):
            data = data.encode()
        import subprocess  # here, not at import: a later boot's local stage often runs no command at all

        start = time.monotonic()
        try:
            proc = subprocess.run(
                full,
                input=data,
                stdout=subprocess.PIPE if capture else None,
                stderr=subprocess.PIPE if capture else None,
                stdin=None if data is not None else subprocess.DEVNULL,
                timeout=timeout,
                env=run_env,
                cwd=cwd,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            CLOCK.commands += time.monotonic() - start
            raise CommandError(full, None, _text(e.stdout), _text(e.stderr), reason=f"timed out after {timeout:g}s",
                               secrets=secrets)
        except FileNotFoundError:
            raise CommandError(full, 127, "", f"{full[0]}: command not found", reason="not found", secrets=secrets)
        except PermissionError as e:
            raise CommandError(full, 126, "", str(e), reason="permission denied", secrets=secrets)
        res = Result(full, proc.returncode, _text(proc.stdout), _text(proc.stderr),
                     time.monotonic() - start)
        CLOCK.commands += res.seconds
        LOG.debug("  exit %d after %.3f s: %s", proc.returncode, res.seconds, full[0])
        if check and proc.returncode != 0:
            raise CommandError(full, proc.returncode, res.stdout, res.stderr, secrets=secrets)
        return res


def _text(b: bytes | str | None) -> str:
    if b is None:
        return ""
    if isinstance(b, str):
        return b
    return b.decode("utf-8", "replace")
