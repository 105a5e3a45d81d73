"""``#cloud-config-archive``: a YAML list of parts, each a string (its content) or a mapping with ``content``
and optional ``type``, ``filename``, ``launch-index`` and extra headers (``Merge-Type``)."""

from __future__ import annotations

from typing import Any

from tether.userdata.detect import CLOUD_CONFIG, base_type, sniff
from tether.userdata.model import Part

_NOT_HEADERS = {"content", "type", "filename", "launch-index", "content-type", "content-disposition", "mime-version"}


class ArchiveError(ValueError):
    pass


def explode(text: str, source: str) -> tuple[list[Part], list[str]]:
    """The archive's parts and a warning per entry that could not be used."""
    from tether import yamlsafe

    entries: Any = yamlsafe.load(text, source)
    if entries is None:
        return [], []
    if not isinstance(entries, list):
        raise ArchiveError(f"expected a list of parts, got {type(entries).__name__}")
    parts: list[Part] = []
    problems: list[str] = []
    for i, ent in enumerate(entries):
        if isinstance(ent, str | bytes):
            ent = {"content": ent}
        if not isinstance(ent, dict):
            problems.append(f"entry {i + 1}: expected a string or a mapping, got {type(ent).__name__}; skipped")
            continue
        content = ent.get("content", "")
        if content is None:
            content = ""
        if not isinstance(content, str | bytes):
            problems.append(f"entry {i + 1}: content must be a string, got {type(content).__name__}; skipped")
            continue
        payload = content.encode() if isinstance(content, str) else content
        ctype = ent.get("type")
        if not isinstance(ctype, str) or not ctype.strip():
            # cloud-init: an untyped entry is cloud-config unless its start line says otherwise
            ctype = sniff(payload) or (CLOUD_CONFIG if isinstance(content, str) else "application/octet-stream")
        headers = {str(k).lower(): str(v) for k, v in ent.items()
                   if str(k).lower() not in _NOT_HEADERS and isinstance(v, str | int)}
        if "launch-index" in ent and ent["launch-index"] is not None:
            headers["launch-index"] = str(ent["launch-index"])
        filename = ent.get("filename")
        parts.append(Part(filename=str(filename) if filename is not None else "", content_type=base_type(ctype),
                          payload=payload, headers=headers))
    return parts, problems
