"""Editing shell-style ``KEY="value"`` files (/etc/default/locale, /etc/default/keyboard) in place.

Lines for other keys, comments and order are kept; a key already present is rewritten where it stands.
"""

from __future__ import annotations

import re
import shlex

_ASSIGN = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=")


def quote(value: str) -> str:
    """Double-quoted, as the Debian tools write these files; $, `, \\ and " escaped."""
    return '"' + re.sub(r'([$`"\\])', r"\\\1", value) + '"'


def set_vars(text: str, values: dict[str, str | None]) -> str:
    """``text`` with each key set to its value (``None`` removes the key)."""
    out: list[str] = []
    done: set[str] = set()
    for line in text.splitlines():
        m = _ASSIGN.match(line)
        if m and m.group(1) in values:
            key = m.group(1)
            if key in done or values[key] is None:
                continue
            out.append(f"{key}={quote(values[key] or '')}")
            done.add(key)
            continue
        out.append(line)
    for key, value in values.items():
        if key not in done and value is not None:
            out.append(f"{key}={quote(value)}")
    return "\n".join(out) + "\n" if out else ""


def parse_vars(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _ASSIGN.match(line)
        if not m:
            continue
        raw = line[m.end():]
        try:
            parts = shlex.split(raw, comments=True)
        except ValueError:
            continue
        out[m.group(1)] = parts[0] if parts else ""
    return out
