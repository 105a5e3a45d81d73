"""The first-boot module interface and the context every module receives.

A module is one file in ``modules/`` with::

    NAME = "write_files"                    # cloud-init's module name
    STAGE = Stage.INIT                      # INIT | CONFIG | FINAL (cloud_init/config/final_modules)
    FREQUENCY = Frequency.ONCE_PER_INSTANCE # ALWAYS | ONCE_PER_INSTANCE | ONCE
    KEYS = ("write_files",)         # cloud-config keys that activate it
    RUN_WITHOUT_KEYS = False        # True: handle() runs even when no key is present (e.g. ssh host keys)
    @dataclass(frozen=True)
    class Config: ...               # fields are the top-level cloud-config keys it reads
    def handle(ctx: ModuleContext, cfg: Config) -> None: ...

Offline effects (files in ``ctx.target``) always; live effects (``hostname``, ``systemctl restart``) only when
``ctx.live``. Commands go through ``ctx.run`` / ``ctx.run_in_target``; never spawn processes directly.
``Module`` states that interface as a protocol; ``tether/modules/__init__.py`` has mypy check every module file
against it. Stage and frequency are ``str`` enums, so they compare equal to, and serialise as, cloud-init's strings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from tether import log
from tether.errors import CommandError
from tether.instance import InstanceData
from tether.paths import PATHS, Paths
from tether.runner import Result, Runner
from tether.target import Target

LOG = log.get(__name__)


class Stage(StrEnum):
    """The stage whose module list runs a module (cloud_init_modules, cloud_config_modules, cloud_final_modules)."""
    INIT = "init"
    CONFIG = "config"
    FINAL = "final"


class Frequency(StrEnum):
    """How often a module runs: every boot, once per instance-id, or once ever (semaphores in docs/state.md)."""
    ALWAYS = "always"
    ONCE_PER_INSTANCE = "once-per-instance"
    ONCE = "once"


FREQUENCIES: tuple[str, ...] = tuple(Frequency)
STAGES: tuple[str, ...] = tuple(Stage)


class ModuleError(Exception):
    """A module could not do what its config asks; the stage records it and goes on."""


@dataclass
class ModuleContext:
    target: Target
    runner: Runner
    instance: InstanceData
    cloud_config: dict[str, Any]             # the whole merged cloud-config (read-only by convention)
    system_config: dict[str, Any]            # merged tether.cfg / cloud.cfg
    paths: Paths = PATHS
    live: bool = False                       # True only on the booted host, root "/"
    warnings: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)   # lines for the console only, never the log
    # (module name, callback): run right after that module finishes in this stage, or at the stage's end
    deferred: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    @property
    def instance_id(self) -> str:
        return self.instance.instance_id

    def warn(self, msg: str) -> None:
        """A recoverable problem: logged, shown in status as a recoverable error, the boot goes on."""
        LOG.warning("%s", msg)
        self.warnings.append(msg)

    def after(self, module: str, fn: Callable[[], None]) -> None:
        """Run ``fn`` once ``module`` has run in this stage (or at the end of the stage)."""
        self.deferred.append((module, fn))

    def to_console(self, msg: str) -> None:
        """Print to the console (e.g. generated passwords) without it ever reaching a log file."""
        self.console.append(msg)
        if self.live:
            try:
                with open("/dev/console", "w") as f:
                    f.write(msg + "\n")
            except OSError:
                pass
        print(msg, flush=True)

    def run(self, argv: Sequence[str], **kw: Any) -> Result:
        """Run a host tool (one that acts on the target through its own --root option, or live)."""
        return self.runner.run(argv, **kw)

    def can_run_in_target(self) -> bool:
        return self.target.live or self.target.has_system()

    def run_in_target(self, argv: Sequence[str], **kw: Any) -> Result | None:
        """Run inside the target: directly when live, chrooted when the root holds a usable system,
        otherwise not at all (returns None; callers write the command out instead)."""
        if self.target.live:
            return self.runner.run(argv, **kw)
        if self.target.has_system():
            return self.runner.run(argv, chroot=str(self.target.root), **kw)
        LOG.info("not running %s: %s holds no runnable system", argv[0], self.target.root)
        return None

    def distro_family(self) -> str:
        """debian, rhel, suse, arch, alpine or unknown, from the target's os-release."""
        text = self.target.read_text("/etc/os-release", default="") or self.target.read_text(
            "/usr/lib/os-release", default="")
        fields: dict[str, str] = {}
        for line in text.splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                fields[k] = v.strip().strip('"')
        ids = [fields.get("ID", "")] + fields.get("ID_LIKE", "").split()
        for fam, names in (("debian", ("debian", "ubuntu")), ("rhel", ("rhel", "fedora", "centos", "azurelinux",
                           "mariner")), ("suse", ("suse", "opensuse")), ("arch", ("arch",)),
                           ("alpine", ("alpine",))):
            if any(i in names for i in ids):
                return fam
        return "unknown"


class Module(Protocol):
    """What a module file declares (read-only, so a module's narrower types match). ``RUN_WITHOUT_KEYS`` is optional
    and read with ``getattr``."""

    @property
    def NAME(self) -> str: ...

    @property
    def STAGE(self) -> Stage: ...

    @property
    def FREQUENCY(self) -> Frequency: ...

    @property
    def KEYS(self) -> tuple[str, ...]: ...

    @property
    def Config(self) -> type[Any]: ...

    def handle(self, ctx: ModuleContext, cfg: Any, /) -> None: ...


__all__ = ["FREQUENCIES", "STAGES", "CommandError", "Frequency", "Module", "ModuleContext", "ModuleError", "Stage"]
