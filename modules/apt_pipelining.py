"""apt_pipelining: apt's HTTP pipeline depth (``Acquire::http::Pipeline-Depth``), as cloud-init sets it.

``os`` (the default; also the deprecated ``none``/``unchanged``) and ``true`` leave apt's own default, so a
snippet tether wrote for an earlier instance is removed; ``false`` writes depth 0; a number 0-5 writes that
depth. Only on a target that uses apt; elsewhere one warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tether import packages
from tether.convert import meta
from tether.ensure import ensure_absent
from tether.module import Frequency, ModuleContext, Stage
from tether.target import REPLACE_LINK

NAME = "apt_pipelining"
STAGE = Stage.CONFIG
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("apt_pipelining",)
SNIPPET = "/etc/apt/apt.conf.d/90tether-pipelining"
KEEP_OS = ("os", "none", "unchanged")
MAX_DEPTH = 5


@dataclass(frozen=True)
class Config:
    apt_pipelining: bool | int | str = field(default="os", metadata=meta(
        doc="os: keep apt's default; false: no pipelining; 0-5: pipeline depth"))

    def __post_init__(self) -> None:
        v = self.apt_pipelining
        if isinstance(v, str) and v.strip().lower() not in KEEP_OS:
            raise ValueError(f"apt_pipelining: expected os, true, false or a depth from 0 to {MAX_DEPTH}, got {v!r}")
        if isinstance(v, int) and not isinstance(v, bool) and not 0 <= v <= MAX_DEPTH:
            raise ValueError(f"apt_pipelining: a depth must be from 0 to {MAX_DEPTH}, got {v}")

    @property
    def depth(self) -> int | None:
        """The depth to write, or None for apt's own default."""
        v = self.apt_pipelining
        if v is False:
            return 0
        if v is True or isinstance(v, str):
            return None
        return v


def handle(ctx: ModuleContext, cfg: Config) -> None:
    if packages.manager(ctx) is not packages.APT:
        ctx.warn(f"apt_pipelining: {ctx.target.root} does not use apt; nothing done")
        return
    if cfg.depth is None:
        ensure_absent(ctx.target, SNIPPET)
        return
    ctx.target.ensure_file(SNIPPET, "// Written by tether (cloud-config apt_pipelining)\n"
                           f'Acquire::http::Pipeline-Depth "{cfg.depth}";\n', links=REPLACE_LINK)
