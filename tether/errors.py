"""Typed errors. The CLI turns each into one clear message and an exit code."""

from __future__ import annotations

TYPE_CHECKING = False  # the boot's first stage does not import typing; mypy reads the block below
if TYPE_CHECKING:
    from collections.abc import Sequence


class TetherError(Exception):
    """Base for every error tether reports to a user."""

    exit_code = 1


class ConfigError(TetherError):
    """Bad configuration; `path` names where (``users[2].ssh_authorized_keys``)."""

    def __init__(self, path: str, message: str, source: str | None = None) -> None:
        self.path = path
        self.message = message
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{path}: {message}" if path else f"{where}{message}")


class ConfigErrors(TetherError):
    """Several configuration errors found in one document."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


class DatasourceError(TetherError):
    """A datasource was found but could not be read."""


class CommandError(TetherError):
    """A command exited non-zero or timed out. Its argv, output and message hold no secret: the ones named in
    ``secrets`` and the ones registered for the process (tether.redact) are replaced where they are stored."""

    def __init__(self, argv: list[str], code: int | None, stdout: str = "", stderr: str = "",
                 reason: str = "", secrets: Sequence[str] = ()) -> None:
        from tether.redact import redact

        self.argv = [redact(str(a), secrets) for a in argv]
        self.code = code
        self.stdout = redact(stdout, secrets)
        self.stderr = stderr = redact(stderr, secrets)
        argv = self.argv
        what = reason or f"exit code {code}"
        tail = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        super().__init__(f"command {argv[0]!r} failed ({what})" + (f": {tail}" if tail else ""))
