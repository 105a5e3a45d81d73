"""Running a command inside the target as one of its users (``runuser``, from util-linux, so no sudo is
needed), with that user's HOME, USER and LOGNAME."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tether import accounts
from tether.module import ModuleContext, ModuleError
from tether.runner import Result


def user_argv(user: str, argv: Sequence[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *argv]


def run_as(ctx: ModuleContext, user: str, argv: Sequence[str], **kw: Any) -> Result | None:
    """Run ``argv`` as ``user`` in the target (None when the root cannot run commands, as run_in_target).
    Raises ModuleError naming the user when the target has no such account."""
    entry = accounts.read_passwd(ctx.target).get(user)
    if entry is None:
        raise ModuleError(f"no user {user!r} in {ctx.target.root}/etc/passwd")
    env = {"HOME": entry.home, "USER": user, "LOGNAME": user, **kw.pop("env", {})}
    return ctx.run_in_target(user_argv(user, argv), env=env, **kw)
