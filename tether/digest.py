"""SHA-256 for the stages' change keys without importing ``hashlib``.

``import hashlib`` loads OpenSSL's libcrypto (~0.25 s in a TCG guest at boot); CPython's own SHA-256 module
gives the same digests. hashlib stays the fallback where that module is absent or renamed.
"""

from __future__ import annotations

TYPE_CHECKING = False  # the boot's first stage does not import typing; mypy reads the block below
if TYPE_CHECKING:
    from typing import Any


def sha256(data: bytes = b"") -> Any:
    """A ``hashlib.sha256``-compatible object (``update``, ``digest``, ``hexdigest``)."""
    for name in ("_sha256", "_sha2"):  # CPython 3.11 / 3.12+
        try:
            mod = __import__(name)
            return mod.sha256(data)
        except (ImportError, AttributeError):
            continue
    import hashlib
    return hashlib.sha256(data)
