"""Split a MIME multipart user-data into parts. ``email`` is imported here only, so a plain #cloud-config
never pays for it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tether.userdata.detect import base_type
from tether.userdata.limits import MAX_MIME_DEPTH, MAX_PARTS, LimitExceeded
from tether.userdata.model import Part

if TYPE_CHECKING:
    from email.message import Message

# headers that change how a part is handled; everything else is dropped
KEPT_HEADERS = ("merge-type", "x-merge-type", "launch-index")


class MimeError(Exception):
    pass


def split(data: bytes) -> list[Part]:
    """The leaf parts of a MIME message, in order, with transfer encodings (base64, quoted-printable) undone."""
    from email import message_from_bytes

    try:
        msg = message_from_bytes(data)
    except (RecursionError, ValueError, LookupError) as e:
        raise MimeError(f"unreadable MIME message ({type(e).__name__})") from None
    parts: list[Part] = []
    _collect(msg, parts, 0)
    return parts


def _collect(msg: Message, out: list[Part], depth: int) -> None:
    if depth > MAX_MIME_DEPTH:
        raise LimitExceeded(f"multipart nested more than {MAX_MIME_DEPTH} levels deep")
    if msg.is_multipart():
        payload = msg.get_payload()
        for sub in payload if isinstance(payload, list) else []:
            if not isinstance(sub, str):
                _collect(sub, out, depth + 1)
        return
    if len(out) >= MAX_PARTS:
        raise LimitExceeded(f"more than {MAX_PARTS} MIME parts")
    raw = msg.get_payload(decode=True)
    if raw is None:
        raw = b""
    elif not isinstance(raw, bytes):  # pragma: no cover - decode=True always gives bytes for leaf parts
        raw = str(raw).encode()
    headers = {h: str(msg[h]).strip() for h in KEPT_HEADERS if msg[h] is not None}
    ctype = base_type(msg.get("Content-Type")) if msg.get("Content-Type") is not None else ""
    try:
        filename = msg.get_filename() or ""
    except (ValueError, LookupError):
        filename = ""
    out.append(Part(filename=str(filename), content_type=ctype, payload=raw, headers=headers))
