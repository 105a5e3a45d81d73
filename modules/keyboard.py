"""keyboard: the console and X11 keyboard layout.

Offline (always): Debian-family roots get XKBMODEL/XKBLAYOUT/XKBVARIANT/XKBOPTIONS in /etc/default/keyboard
(other lines such as BACKSPACE kept); other families get the same keys in /etc/vconsole.conf, which
systemd-localed reads. Live: ``localectl set-x11-keymap`` as well, so the running session follows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tether import log
from tether.convert import meta
from tether.errors import CommandError
from tether.module import Frequency, ModuleContext, Stage
from tether.shellvars import set_vars
from tether.target import REPLACE_LINK

NAME = "keyboard"
STAGE = Stage.CONFIG
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("keyboard",)
LOG = log.get(__name__)


@dataclass(frozen=True)
class Keyboard:
    layout: str = field(metadata=meta(doc="XKBLAYOUT, e.g. us, de"))
    model: str = field(default="pc105", metadata=meta(doc="XKBMODEL"))
    variant: str = field(default="", metadata=meta(doc="XKBVARIANT"))
    options: str = field(default="", metadata=meta(doc="XKBOPTIONS, e.g. compose:rwin"))

    def __post_init__(self) -> None:
        for name in ("layout", "model", "variant", "options"):
            value = getattr(self, name)
            if any(c in value for c in "\n\"'`$\\"):
                raise ValueError(f"{name} {value!r} contains characters a keymap name never has")
        if not self.layout.strip():
            raise ValueError("layout must not be empty")


@dataclass(frozen=True)
class Config:
    keyboard: Keyboard | None = None


def handle(ctx: ModuleContext, cfg: Config) -> None:
    kb = cfg.keyboard
    if kb is None:
        return
    path = "/etc/default/keyboard" if ctx.distro_family() == "debian" else "/etc/vconsole.conf"
    values: dict[str, str | None] = {"XKBMODEL": kb.model, "XKBLAYOUT": kb.layout, "XKBVARIANT": kb.variant,
                                     "XKBOPTIONS": kb.options}
    old = ctx.target.read_text(path, default="")
    text = set_vars(old, values)
    if path == "/etc/default/keyboard" and "BACKSPACE=" not in text:
        text += 'BACKSPACE="guess"\n'
    ctx.target.ensure_file(path, text, links=REPLACE_LINK)
    if ctx.live:
        try:
            ctx.run(["localectl", "set-x11-keymap", kb.layout, kb.model, kb.variant, kb.options], timeout=30)
        except CommandError as e:
            ctx.warn(f"keyboard: {path} written but localectl failed: {e}")
