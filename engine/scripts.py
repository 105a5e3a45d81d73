"""The host configuration's ``scripts``: preServicing, postProvision and postConfigure, with Trident's semantics.

* ``preServicing`` runs in the servicing OS before anything is written (before partitioning, before staging).
  ``TARGET_ROOT`` is ``/``.
* ``postProvision`` runs in the servicing OS once the new root is imaged and mounted, before the ``os`` section
  is applied; ``TARGET_ROOT`` names the new root's mount point (other filesystems of the new OS are mounted
  relative to it).
* ``postConfigure`` runs after the ``os`` section is applied, chrooted into the new root when it holds a usable
  system (``Target.has_system``: a shell, and we are root) with ``TARGET_ROOT=/``; a root without a shell
  cannot be entered, so the script then runs in the servicing OS with ``TARGET_ROOT`` naming the new root.

Only scripts whose ``runOn`` names the servicing type (``clean-install``, ``ab-update``) or ``all`` run, in
configuration order. ``content`` is written to a temporary file where the script runs; ``path`` names a file in
the servicing OS (read from there, as Trident stages it). The script runs as ``interpreter file arguments...``
(``/bin/sh`` by default) through tether's one command runner with a bounded timeout, ``SERVICING_TYPE``
(``clean_install``/``ab_update``), ``TARGET_ROOT`` and the script's ``environmentVariables`` in its environment.
Its output goes to tether's log and is appended to its log file in the root it configures (the servicing OS
for preServicing, the new root otherwise): ``logFilePath`` or ``/var/log/tether/scripts/<stage>-<n>-<name>.log``.
A script that exits non-zero or times out raises ScriptError naming the stage, the script and its exit code.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tether import log
from tether.engine.hostconfig import Script
from tether.errors import CommandError, TetherError
from tether.runner import Runner
from tether.scripts import append_output
from tether.target import Target

LOG = log.get(__name__)

PRE_SERVICING = "preServicing"
POST_PROVISION = "postProvision"
POST_CONFIGURE = "postConfigure"
SCRIPT_TIMEOUT = 1800.0
DEFAULT_INTERPRETER = "/bin/sh"
LOG_DIR = "/var/log/tether/scripts"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SERVICING_TYPE_ENV = {"clean-install": "clean_install", "ab-update": "ab_update", "runtime-update": "runtime_update"}
MAX_LOGGED_OUTPUT = 64 * 1024
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


class ScriptError(TetherError):
    """A host configuration script failed; the message names the stage, the script and its exit code."""


@dataclass(frozen=True)
class ScriptRun:
    stage: str
    name: str
    code: int
    log_file: str
    chrooted: bool


def applies(script: Script, servicing_type: str) -> bool:
    return "all" in script.run_on or servicing_type in script.run_on


def script_name(script: Script, index: int) -> str:
    return script.name or script.path or f"{index}"


def default_log_path(stage: str, index: int, script: Script) -> str:
    name = _SAFE_NAME.sub("_", script.name or Path(script.path or "script").name)[:64]
    return f"{LOG_DIR}/{stage}-{index:02d}-{name}.log"


def run_stage(stage: str, scripts: Sequence[Script], *, servicing_type: str, runner: Runner, servicing_root: Target,
              new_root: Target | None = None, timeout: float = SCRIPT_TIMEOUT) -> list[ScriptRun]:
    """Run the applicable scripts of ``stage`` in order; raises ScriptError at the first failure."""
    if stage not in (PRE_SERVICING, POST_PROVISION, POST_CONFIGURE):
        raise ValueError(f"unknown script stage {stage!r}")
    if stage != PRE_SERVICING and new_root is None:
        raise ValueError(f"{stage} scripts need the new root")
    done: list[ScriptRun] = []
    for i, script in enumerate(scripts):
        name = script_name(script, i)
        if not applies(script, servicing_type):
            LOG.info("scripts.%s[%d] %r: not run for %s (runOn: %s)", stage, i, name, servicing_type,
                     ", ".join(script.run_on))
            continue
        done.append(_run_one(stage, i, script, servicing_type=servicing_type, runner=runner,
                             servicing_root=servicing_root, new_root=new_root, timeout=timeout))
    return done


def _run_one(stage: str, index: int, script: Script, *, servicing_type: str, runner: Runner,
             servicing_root: Target, new_root: Target | None, timeout: float) -> ScriptRun:
    name = script_name(script, index)
    where = f"scripts.{stage}[{index}] {name!r}"
    body = _script_bytes(script, servicing_root, where)
    # where it runs (chroot or not), what TARGET_ROOT says, and which root keeps its log file
    if stage == PRE_SERVICING:
        run_root, log_root = servicing_root, servicing_root
    elif stage == POST_PROVISION:
        assert new_root is not None
        run_root, log_root = Target.at("/"), new_root
    else:
        assert new_root is not None
        run_root, log_root = new_root, new_root
    chroot = not run_root.live and run_root.has_system()
    if stage == POST_PROVISION:
        target_root = str(new_root.root) if new_root else "/"
    elif chroot or run_root.live:
        target_root = "/"
    else:
        target_root = str(run_root.root)
        LOG.warning("%s: %s holds no runnable system; running the script in the servicing OS with "
                    "TARGET_ROOT=%s", where, run_root.root, target_root)
    log_path = script.log_file_path or default_log_path(stage, index, script)
    env = {"PATH": PATH, **script.environment_variables,
           "TARGET_ROOT": target_root, "SERVICING_TYPE": SERVICING_TYPE_ENV.get(servicing_type, servicing_type)}

    tmp = _temp_dir(run_root if chroot else Target.at("/"))
    try:
        host_file = tmp / "script"
        host_file.write_bytes(body)
        host_file.chmod(0o700)
        in_root = "/" + str(host_file.relative_to(run_root.root)) if chroot else str(host_file)
        argv = [script.interpreter or DEFAULT_INTERPRETER, in_root, *script.arguments]
        LOG.info("%s: running%s (TARGET_ROOT=%s)", where, f" chrooted in {run_root.root}" if chroot else "",
                 target_root)
        try:
            res = runner.run(argv, env=env, timeout=timeout, check=False,
                             chroot=str(run_root.root) if chroot else None)
        except CommandError as e:
            reason = f"did not finish within {timeout:g}s" if e.code is None else str(e)
            _keep_log(log_root, log_path, f"{stage} {name}: {reason}", e.stdout + e.stderr)
            raise ScriptError(f"{where} failed: {reason}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    output = res.stdout + (f"--- stderr\n{res.stderr}" if res.stderr else "")
    logged = _keep_log(log_root, log_path, f"{stage} {name} (exit {res.code})", output)
    if output.strip():
        LOG.info("%s output:\n%s", where, output[-MAX_LOGGED_OUTPUT:].rstrip("\n"))
    if res.code != 0:
        tail = (res.stderr.strip() or res.stdout.strip()).splitlines()[-1:] or [""]
        raise ScriptError(f"{where} failed with exit code {res.code}" + (f": {tail[0][:200]}" if tail[0] else "")
                          + (f" (output in {log_path} of {log_root.root})" if logged else ""))
    LOG.info("%s: done", where)
    return ScriptRun(stage, name, res.code, log_path, chroot)


def _script_bytes(script: Script, servicing_root: Target, where: str) -> bytes:
    if script.content is not None:
        return script.content.encode()
    assert script.path is not None
    try:
        return servicing_root.read_bytes(script.path)
    except OSError as e:
        raise ScriptError(f"{where}: cannot read {script.path} in the servicing OS ({servicing_root.root}): "
                          f"{e.strerror or e}") from None


def _temp_dir(root: Target) -> Path:
    """A private directory for the script file: the host's temp dir, or /run inside a root we chroot into."""
    if root.live:
        return Path(tempfile.mkdtemp(prefix="tether-script-"))
    base = root.makedirs("/run")
    return Path(tempfile.mkdtemp(prefix="tether-script-", dir=base))


def _keep_log(root: Target, path: str, header: str, text: str) -> bool:
    """Append to the script's log file; a root that cannot take it (read-only) is logged, not fatal."""
    try:
        append_output(root, path, header, text)
        return True
    except OSError as e:
        LOG.warning("cannot write the script log %s in %s: %s", path, root.root, e.strerror or e)
        return False
