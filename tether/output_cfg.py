"""cloud-config ``output``: where a stage's script and command output goes, besides /var/log/tether-output.log.

cloud-init's format: ``output: {all|init|config|final: SPEC}``, the stage's own key first, else ``all``. SPEC is
a string (stdout and stderr both), a list ``[stdout, stderr]`` or a mapping ``{output: ..., error: ...}``;
``error: "&1"`` means the same as output. Each destination is ``> file`` (emptied when the stage starts),
``>> file`` (appended; also a bare path) or ``| command`` (a shell command given the output on its stdin).

What reaches a destination is what tether records in /var/log/tether-output.log during that stage (the output
of bootcmd, runcmd, user scripts, boothooks, scripts_per_*), stdout to the output destination and stderr to
the error one; tether-output.log itself is always kept. Differences from cloud-init, which redirects its own
process's file descriptors: a ``| command`` gets the stage's output when the stage ends rather than as it
comes, and tether's log lines are not included (they are in /var/log/tether.log). Files are written inside the
target root (a relative path is taken from ``/``), 0640. The network stage's key is ``init``; the local stage
runs no scripts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tether import log
from tether.runner import Runner
from tether.target import Target

LOG = log.get(__name__)
STAGE_KEYS = ("all", "init", "config", "final")
_OPERATORS = (">>", ">", "|")


class OutputSpecError(ValueError):
    pass


def _normalize(value: Any, where: str) -> str | None:
    """One destination as ``(">"|">>"|"|") + " " + rest``, the way cloud-init normalizes it."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise OutputSpecError(f"{where}: expected a string like '>> /var/log/file', got {type(value).__name__}")
    text = value.strip()
    for op in _OPERATORS:
        if text.startswith(op):
            rest = text[len(op):].strip()
            if not rest:
                raise OutputSpecError(f"{where}: {op!r} names no {'command' if op == '|' else 'file'}")
            return f"{op} {rest}"
    return f">> {text}"


def for_stage(output: Any, stage: str) -> tuple[str | None, str | None]:
    """(stdout destination, stderr destination) for ``stage`` (init, config, final). Raises OutputSpecError
    naming the key for a malformed value."""
    if output is None:
        return None, None
    if not isinstance(output, dict):
        raise OutputSpecError(f"output: expected a mapping of {', '.join(STAGE_KEYS)}, got {type(output).__name__}")
    key = stage if stage in output else "all"
    spec = output.get(key)
    where = f"output.{key}"
    out: Any = None
    err: Any = None
    if spec is None:
        return None, None
    if isinstance(spec, str):
        out = err = spec
    elif isinstance(spec, list):
        if not 1 <= len(spec) <= 2:
            raise OutputSpecError(f"{where}: expected [stdout, stderr], got a list of {len(spec)}")
        out = spec[0]
        err = spec[1] if len(spec) > 1 else None
    elif isinstance(spec, dict):
        unknown = sorted(str(k) for k in spec if k not in ("output", "error"))
        if unknown:
            raise OutputSpecError(f"{where}: unknown key(s) {', '.join(unknown)} (expected output, error)")
        out, err = spec.get("output"), spec.get("error")
    else:
        raise OutputSpecError(f"{where}: expected a string, a [stdout, stderr] list or a mapping, "
                              f"got {type(spec).__name__}")
    if err == "&1":
        err = out
    return _normalize(out, where if not isinstance(spec, dict) else f"{where}.output"), \
        _normalize(err, where if not isinstance(spec, dict) else f"{where}.error")


def unknown_keys(output: Any) -> list[str]:
    if not isinstance(output, dict):
        return []
    return sorted(str(k) for k in output if k not in STAGE_KEYS)


class Route:
    """The destinations of one stage. ``write`` is called for every block tether-output.log gets."""

    def __init__(self, target: Target, runner: Runner, out: str | None, err: str | None) -> None:
        self.target = target
        self.runner = runner
        self.dests = [d for d in (out, err) if d]
        self.out = out
        self.err = err
        self.piped: dict[str, list[str]] = {}
        self.problems: list[str] = []
        for dest in dict.fromkeys(self.dests):  # "> file": emptied when the stage starts, as cloud-init opens it
            if dest.startswith("> "):
                self._write_file(dest, "", append=False)

    @staticmethod
    def _path(rest: str) -> str:
        return rest if rest.startswith("/") else "/" + rest

    def _write_file(self, dest: str, text: str, append: bool) -> None:
        path = self._path(dest.split(" ", 1)[1])
        try:
            self.target.write(path, text, mode=0o640, append=append)
        except OSError as e:
            self.problems.append(f"output: cannot write {path}: {e.strerror or e}")

    def write(self, stdout: str, stderr: str) -> None:
        if self.out == self.err:
            self._send(self.out, stdout + stderr)
            return
        self._send(self.out, stdout)
        self._send(self.err, stderr)

    def _send(self, dest: str | None, text: str) -> None:
        if not dest or not text:
            return
        if dest.startswith("| "):
            self.piped.setdefault(dest, []).append(text)
        else:
            self._write_file(dest, text, append=True)

    def close(self) -> None:
        """Run each ``| command`` with what it was sent (inside the target, as scripts run)."""
        for dest, chunks in self.piped.items():
            cmd = dest[2:]
            argv = ["sh", "-c", cmd]
            if not self.target.live and not self.target.has_system():
                LOG.info("output: not running %r: %s holds no runnable system", cmd, self.target.root)
                continue
            chroot = None if self.target.live else str(self.target.root)
            from tether.errors import CommandError
            try:
                res = self.runner.run(argv, data="".join(chunks), chroot=chroot, check=False, timeout=300)
            except CommandError as e:
                self.problems.append(f"output: {cmd!r} could not run: {e}")
                continue
            if res.code != 0:
                self.problems.append(f"output: {cmd!r} exited {res.code}")
        self.piped.clear()


ROUTE: Route | None = None   # the running stage's route; tether.scripts.append_output writes to it


@contextmanager
def routed(target: Target, runner: Runner, cloud_config: dict[str, Any], stage: str) -> Iterator[list[str]]:
    """Route the stage's script output as ``output`` says while the block runs. Yields a list that holds the
    problems (a malformed ``output``, a file that cannot be written, a failed pipe command) once it ends."""
    global ROUTE
    problems: list[str] = []
    output = cloud_config.get("output")
    problems.extend(f"output.{k}: not a stage (expected {', '.join(STAGE_KEYS)}); ignored"
                    for k in unknown_keys(output))
    try:
        out, err = for_stage(output, stage)
    except OutputSpecError as e:
        problems.append(f"{e}; output not redirected")
        out = err = None
    if not out and not err:
        yield problems
        return
    previous, ROUTE = ROUTE, Route(target, runner, out, err)
    try:
        yield problems
    finally:
        route, ROUTE = ROUTE, previous
        if route is not None:
            route.close()
            problems.extend(route.problems)
