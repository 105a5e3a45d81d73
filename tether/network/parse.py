"""One entry point from a network config document (v1 or v2, maybe under ``network:``) to the model."""

from __future__ import annotations

from typing import Any

from tether.errors import ConfigError, ConfigErrors
from tether.network.model import NetworkModel


def unwrap(doc: Any) -> Any:
    """``{network: {...}}`` and ``{...}`` are the same config; return the inner mapping."""
    if isinstance(doc, dict) and "version" not in doc and isinstance(doc.get("network"), dict):
        return doc["network"]
    return doc


def parse_config(doc: Any, source: str | None = None) -> NetworkModel:
    """Parse a v1 or v2 document; ``ConfigErrors`` name ``source`` and the path of each problem."""
    doc = unwrap(doc)
    try:
        if not isinstance(doc, dict):
            raise ConfigErrors([ConfigError("", f"expected a mapping, got {type(doc).__name__}")])
        version = doc.get("version")
        # only the parser the document needs is imported: each is a set of dataclasses, slow to create under TCG
        if version == 1:
            from tether.network.v1 import parse_v1
            return parse_v1(doc)
        if version == 2:
            from tether.network.v2 import parse_v2
            return parse_v2(doc)
        raise ConfigErrors([ConfigError("version", f"expected 1 or 2, got {version!r}")])
    except ConfigErrors as e:
        if source:
            e = ConfigErrors([ConfigError(x.path, x.message, source) for x in e.errors])
        raise e from None
