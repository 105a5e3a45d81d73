"""Running user commands and scripts inside the target, with output to /var/log/tether-output.log."""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Mapping, Sequence

from tether import log
from tether.errors import CommandError
from tether.runner import Runner
from tether.target import Target

LOG = log.get(__name__)
SCRIPT_TIMEOUT = 3600.0


def append_output(target: Target, log_path: str, header: str, text: str, stderr: str = "") -> None:
    """One block of command output into /var/log/tether-output.log (stdout then stderr), and to where the
    stage's cloud-config ``output`` sends it (tether.output_cfg), if anywhere."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    both = text + stderr
    target.write(log_path, f"--- {stamp} {header}\n{both}" + ("" if both.endswith("\n") or not both else "\n"),
                 mode=0o640, append=True)
    from tether import output_cfg
    if output_cfg.ROUTE is not None and output_cfg.ROUTE.target is target:
        output_cfg.ROUTE.write(text, stderr)


def run_script(target: Target, runner: Runner, path: str, log_path: str,
               extra_env: Mapping[str, str] | None = None, args: Sequence[str] = (),
               prefix: Sequence[str] = ()) -> str | None:
    """Run an executable inside the target. Returns None on success, else a one-line reason.

    Live it runs directly; in an offline root it runs chrooted when the root holds a system, otherwise it is
    left on disk unrun (returns None, logs why).
    """
    if not target.live and not target.has_system():
        LOG.info("not running %s: %s holds no runnable system (left on disk)", path, target.root)
        return None
    env = dict(extra_env or {})
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    chroot = None if target.live else str(target.root)
    host_path = target.path(path)
    if not os.access(host_path, os.X_OK):
        return f"{path} is not executable"
    try:
        res = runner.run([*prefix, path, *args], env=env, chroot=chroot, check=False, timeout=SCRIPT_TIMEOUT)
    except CommandError as e:
        append_output(target, log_path, f"{path} failed", str(e))
        return str(e)
    append_output(target, log_path, f"{path} (exit {res.code})", res.stdout, res.stderr)
    if res.code != 0:
        return f"exit code {res.code}"
    return None


def command_to_argv(cmd: str | Sequence[str]) -> list[str]:
    """A cloud-config command: a list is an argv; a string runs under ``sh -c`` (the user's own shell text,
    never one built from other input)."""
    if isinstance(cmd, str):
        return ["sh", "-c", cmd]
    return [str(c) for c in cmd]


def shell_line(cmd: str | Sequence[str]) -> str:
    """The same command as one line of a shell script (runcmd/bootcmd are written out as scripts)."""
    if isinstance(cmd, str):
        return cmd
    return " ".join(shlex.quote(str(c)) for c in cmd)
