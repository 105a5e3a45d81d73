"""snap: ``snap.assertions`` are acknowledged with ``snap ack``, then ``snap.commands`` run in order.

Both lists may be mappings, run in the order of their keys (numeric keys numerically), as cloud-init does. A
command given as a list gets ``snap`` in front unless it starts with it; a string runs under ``/bin/sh -c``.
snap talks to the running snapd, so acknowledging and commands happen only live (``snapd`` is installed first
when the system has no ``snap``); offline the assertions are written to the instance directory and one
warning says what was not run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from tether import log, packages
from tether.errors import CommandError
from tether.module import Frequency, ModuleContext, ModuleError, Stage

NAME = "snap"
STAGE = Stage.CONFIG
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("snap",)
LOG = log.get(__name__)
COMMAND_TIMEOUT = 1800.0

Command = str | tuple[str, ...]
T = TypeVar("T")


def _ordered(value: tuple[T, ...] | Mapping[str, T]) -> list[T]:
    if isinstance(value, Mapping):
        return [value[k] for k in sorted(value, key=lambda k: (0, int(k), "") if k.isdigit() else (1, 0, k))]
    return list(value)


@dataclass(frozen=True)
class Snap:
    assertions: tuple[str, ...] | dict[str, str] = ()
    commands: tuple[Command, ...] | dict[str, Command] = ()

    def __post_init__(self) -> None:
        for c in _ordered(self.commands):
            if not c:
                raise ValueError("commands: an empty command")

    def assertion_list(self) -> list[str]:
        return [str(a) for a in _ordered(self.assertions)]

    def argvs(self) -> list[list[str]]:
        out = []
        for c in _ordered(self.commands):
            if isinstance(c, str):
                out.append(["/bin/sh", "-c", c])
            else:
                argv = [str(a) for a in c]
                out.append(argv if argv[0] == "snap" else ["snap", *argv])
        return out


@dataclass(frozen=True)
class Config:
    snap: Snap | None = None


def handle(ctx: ModuleContext, cfg: Config) -> None:
    if cfg.snap is None:
        return
    assertions = cfg.snap.assertion_list()
    commands = cfg.snap.argvs()
    path = f"{ctx.paths.instance_dir(ctx.instance_id)}/snapd.assertions"
    if assertions:
        ctx.target.write(path, "\n".join(a.rstrip("\n") for a in assertions) + "\n", mode=0o600)
    if not ctx.live:
        if assertions or commands:
            ctx.warn(f"snap: {len(assertions)} assertion(s) and {len(commands)} command(s) not run, snapd runs only "
                     "on the booted system" + (f" (assertions kept in {path})" if assertions else ""))
        return
    packages.ensure_installed(ctx, "snap", ["snapd"], "snap")
    if assertions:
        ctx.run(["snap", "ack", path], timeout=COMMAND_TIMEOUT)
    errors = []
    for i, argv in enumerate(commands):
        try:
            ctx.run(argv, timeout=COMMAND_TIMEOUT)
        except CommandError as e:
            # named by position and program only: the rest may hold a token (``canonical-livepatch enable KEY``)
            program = argv[2].split()[0] if argv[0] == "/bin/sh" else " ".join(argv[:2])
            errors.append(f"commands[{i}] ({program}): {e}")
    if errors:
        raise ModuleError("snap commands failed: " + "; ".join(errors))
