"""What the user-data pipeline hands to the stage runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Part:
    """One piece of user-data: a MIME part, an archive entry, a whole non-MIME document or a fetched include.

    ``headers`` keeps the few MIME headers that change how a part is handled (``Merge-Type``,
    ``Launch-Index``); keys are lower-case.
    """

    filename: str
    content_type: str
    payload: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Script:
    """A ``#!`` script or a boothook body, named as cloud-init names it (the part's filename or ``part-NNN``)."""

    name: str
    content: bytes


@dataclass
class Processed:
    cloud_config: dict[str, Any] = field(default_factory=dict)
    scripts: list[Script] = field(default_factory=list)
    vendor_scripts: list[Script] = field(default_factory=list)
    # text/x-shellscript-per-{boot,instance,once} parts, by directory ("per-boot" ...), user's then vendor's
    dir_scripts: dict[str, list[Script]] = field(default_factory=dict)
    boothooks: list[Script] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
