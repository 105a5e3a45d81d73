"""Test doubles: a runner that fails on commands nobody expected."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tether.errors import CommandError
from tether.runner import Result, Runner

Handler = Callable[[list[str], dict[str, Any]], Result | int | str | None]


@dataclass
class FakeRunner(Runner):
    """Expect commands by glob pattern on the joined argv; anything else raises AssertionError.

    ``expect("useradd *")`` answers exit 0; ``expect("id *", stdout="...")``; ``expect("x", code=1)``;
    ``expect("y", handler=fn)`` lets a test emulate the command (e.g. write a file into the root).
    """

    rules: list[tuple[str, Handler]] = field(default_factory=list)
    calls: list[list[str]] = field(default_factory=list)
    inputs: list[bytes | str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        Runner.__init__(self)

    def expect(self, pattern: str, *, stdout: str = "", stderr: str = "", code: int = 0,
               handler: Handler | None = None) -> FakeRunner:
        def default(argv: list[str], kw: dict[str, Any]) -> Result:
            return Result(argv, code, stdout, stderr)
        self.rules.append((pattern, handler or default))
        return self

    def run(self, argv: Sequence[str], **kw: Any) -> Result:  # type: ignore[override]
        full = [str(a) for a in argv]
        if kw.get("chroot") and kw["chroot"] != "/":
            full = ["chroot", str(kw["chroot"]), *full]
        self.calls.append(full)
        self.inputs.append(kw.get("data"))
        line = " ".join(full)
        for pattern, handler in self.rules:
            if fnmatch.fnmatchcase(line, pattern):
                out = handler(full, kw)
                if out is None or isinstance(out, int):
                    res = Result(full, out or 0, "", "")
                elif isinstance(out, str):
                    res = Result(full, 0, out, "")
                else:
                    res = out
                if kw.get("check", True) and res.code != 0:
                    raise CommandError(full, res.code, res.stdout, res.stderr)
                return res
        raise AssertionError(f"unexpected command: {line}")

    def commands(self, prefix: str = "") -> list[str]:
        return [" ".join(c) for c in self.calls if " ".join(c).startswith(prefix)]
