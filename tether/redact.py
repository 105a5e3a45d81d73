"""What may leave tether in a message: secrets replaced, control characters from outside escaped.

One place for both rules. The log formatter (tether/logs.py), the status writer (tether/status.py), the runner and
``CommandError`` use them. Imports nothing: the boot's first stage loads it.

Secrets are known two ways: a caller names them (``Runner.run(secrets=...)``) or registers them for the whole
process (``add_secret``: passwords, tokens, webhook credentials), and every message is checked against both.
Control characters (terminal escapes, carriage returns, NUL, lone surrogates from undecodable bytes) come from
servers and user-data; written raw they can rewrite a terminal or forge a log line, so they become ``\\x1b``-style
escapes. Log records keep their newlines (tracebacks); a status message is one line.
"""

from __future__ import annotations

TYPE_CHECKING = False  # the boot's first stage does not import typing; mypy reads the block below
if TYPE_CHECKING:
    from collections.abc import Iterable

REDACTED = "<redacted>"
MIN_SECRET = 4  # shorter registered values would blank out ordinary words
_SECRETS: set[str] = set()


def add_secret(value: str | None) -> None:
    """Register a secret for the rest of this process (values shorter than 4 characters are ignored)."""
    if value and len(value) >= MIN_SECRET:
        _SECRETS.add(value)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every named and every registered secret replaced by ``<redacted>``, longest first."""
    found = [s for s in (*secrets, *_SECRETS) if s and s in text]
    for s in sorted(found, key=len, reverse=True):
        text = text.replace(s, REDACTED)
    return text


_TABLES: dict[bool, dict[int, str]] = {}  # built on first use: nothing to pay at import


def _table(multiline: bool) -> dict[int, str]:
    table = _TABLES.get(multiline)
    if table is None:
        keep = "\n\t" if multiline else ""
        table = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if chr(c) not in keep}
        table.update({c: f"\\u{c:04x}" for c in range(0xD800, 0xE000)})  # lone surrogates (surrogateescape)
        _TABLES[multiline] = table
    return table


def escape_controls(text: str, multiline: bool = False) -> str:
    """Control characters as visible escapes; ``multiline`` keeps newlines and tabs (log records)."""
    if text.isprintable() or (multiline and text.replace("\n", "").replace("\t", "").isprintable()):
        return text  # the common case, checked in C
    return text.translate(_table(multiline))


def clean(text: str, secrets: Iterable[str] = ()) -> str:
    """A one-line message for status: secrets out, control characters escaped."""
    return escape_controls(redact(text, secrets))
