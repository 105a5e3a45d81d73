"""Content types and how a payload's first line selects one (cloud-init's start-line table)."""

from __future__ import annotations

import re

CLOUD_CONFIG = "text/cloud-config"
CLOUD_CONFIG_JSONP = "text/cloud-config-jsonp"
CLOUD_CONFIG_ARCHIVE = "text/cloud-config-archive"
SHELLSCRIPT = "text/x-shellscript"
# scripts cloud-init installs into its scripts/per-* directories (MIME type only, no start line)
SCRIPT_DIR_TYPES = {
    "text/x-shellscript-per-boot": "per-boot",
    "text/x-shellscript-per-instance": "per-instance",
    "text/x-shellscript-per-once": "per-once",
}
BOOTHOOK = "text/cloud-boothook"
JINJA = "text/jinja2"
INCLUDE = "text/x-include-url"
INCLUDE_ONCE = "text/x-include-once-url"
PART_HANDLER = "text/part-handler"
UPSTART_JOB = "text/upstart-job"
NOT_MULTIPART = "text/x-not-multipart"   # a whole non-MIME document whose start line is not known
PLAIN = "text/plain"

# Start lines, matched case-insensitively after leading whitespace; longest first so that
# "#cloud-config-archive" is not taken for "#cloud-config".
_STARTS: tuple[tuple[str, str], ...] = tuple(sorted((
    ("#include", INCLUDE),
    ("#include-once", INCLUDE_ONCE),
    ("#!", SHELLSCRIPT),
    ("#cloud-config", CLOUD_CONFIG),
    ("#cloud-config-archive", CLOUD_CONFIG_ARCHIVE),
    ("#cloud-config-jsonp", CLOUD_CONFIG_JSONP),
    ("#upstart-job", UPSTART_JOB),
    ("#part-handler", PART_HANDLER),
    ("#cloud-boothook", BOOTHOOK),
), key=lambda kv: -len(kv[0])))

# "## template: jinja" with any spacing, as cloud-init's template matcher accepts
JINJA_HEADER = re.compile(rb"##\s*template:\s*jinja[ \t]*(\r?\n|$)", re.I)

# Parts whose declared type is a guess: look at the content instead. text/x-shellscript is here because
# some tools label everything that way; every real script starts with "#!" and keeps its type.
TYPES_TO_SNIFF = frozenset({NOT_MULTIPART, PLAIN, SHELLSCRIPT, "application/octet-stream"})
GZIP_TYPES = frozenset({"application/gzip", "application/x-gzip", "application/x-gunzip"})

SHORT_NAMES = {
    CLOUD_CONFIG: "cloud-config",
    CLOUD_CONFIG_JSONP: "cloud-config-jsonp",
    CLOUD_CONFIG_ARCHIVE: "cloud-config-archive",
    SHELLSCRIPT: "script",
    BOOTHOOK: "boothook",
    JINJA: "jinja template",
    INCLUDE: "include",
    INCLUDE_ONCE: "include-once",
    NOT_MULTIPART: "text",
    **{ctype: f"{kind} script" for ctype, kind in SCRIPT_DIR_TYPES.items()},
}


def short_name(ctype: str) -> str:
    return SHORT_NAMES.get(ctype, ctype)


def _lead(data: bytes) -> bytes:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data[:256].lstrip()


def sniff(data: bytes) -> str | None:
    """Content type named by the payload's start line, or None."""
    head = _lead(data)
    if JINJA_HEADER.match(head):
        return JINJA
    low = head[:32].lower()
    for prefix, ctype in _STARTS:
        if low.startswith(prefix.encode()):
            return ctype
    return None


def looks_like_mime(data: bytes) -> bool:
    """A MIME message, as cloud-init decides it (a MIME-Version header near the top), or one that starts
    with a Content-Type header. A document whose start line is known is never parsed as MIME."""
    if sniff(data) is not None:
        return False
    head = data[:4096].lower()
    return b"mime-version:" in head or _lead(data).lower().startswith(b"content-type:")


def is_binary(data: bytes) -> bool:
    """Neither UTF-8 text nor anything tether can unpack (gzip and MIME are checked before this)."""
    if b"\x00" in data[:8192]:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def base_type(value: str | None) -> str:
    """``text/cloud-config; charset=utf-8`` -> ``text/cloud-config``."""
    return (value or "").split(";", 1)[0].strip().lower()
