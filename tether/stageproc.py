"""A later boot stage in a child of the boot server, bounded and accounted like the unit that asked for it.

The boot server (``tether/bootserver.py``) forks one child per later stage: the fork shares everything the server
has imported, so it costs a few milliseconds, not a new Python. The child gets its own process group and, where
the unified cgroup hierarchy allows it, is moved into the cgroup of the client that asked (``units/tether-stage``,
the main process of ``tether-network/config/final.service``) before it starts the stage: the stage and every
command it starts (bootcmd, runcmd, scripts, packages) are then that unit's processes, counted in its CPU and
memory, and stopped by systemd with it. Whatever the cgroups allow, the server watches the client: when the
client is gone (its unit's ``TimeoutStartSec`` or ``systemctl stop`` killed it) the stage's process group is
stopped (SIGTERM, then SIGKILL after ``KILL_GRACE``) and the stage is reported as killed. The child also dies with
the server (``PR_SET_PDEATHSIG``), so a client that falls back to running its stage itself never races an orphan.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Iterable

from tether import log

LOG = log.get(__name__)
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL for a stopped stage's process group
POLL = 0.25  # only without pidfd_open (kernels before 5.3)
PR_SET_PDEATHSIG = 1


class Outcome:
    """How a stage child ended: its exit code, or why it was stopped (``killed``: a sentence for the log/status)."""

    def __init__(self, rc: int, killed: str | None = None, client_gone: bool = False) -> None:
        self.rc, self.killed, self.client_gone = rc, killed, client_gone


def cgroup_of(pid: int) -> str | None:
    """The process's cgroup in the unified (v2) hierarchy: the ``0::`` line of /proc/PID/cgroup."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    path = line[3:].strip()
                    return path if path.startswith("/") and ".." not in path.split("/") else None
    except OSError:
        pass
    return None


def cgroup2_mount() -> str | None:
    """Where the unified cgroup hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified in hybrid mode)."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-") if "-" in fields else -1
                if sep > 0 and len(fields) > sep + 1 and fields[sep + 1] == "cgroup2" and fields[3] == "/":
                    return fields[4]
    except (OSError, ValueError):
        pass
    return None


def join_cgroup(pid: int, client: int, mount: str | None) -> str | None:
    """Move ``pid`` into ``client``'s cgroup; returns that cgroup, or None when it stays where it is (no unified
    hierarchy, the same cgroup already, not permitted). systemd leaves a service's cgroup without controllers in
    ``cgroup.subtree_control``, so a process may join it; root may write any ``cgroup.procs``."""
    if mount is None:
        return None
    theirs = cgroup_of(client)
    if theirs is None or theirs == cgroup_of(os.getpid()):
        return None
    procs = os.path.join(mount, theirs.lstrip("/"), "cgroup.procs")
    try:
        with open(procs, "w") as f:
            f.write(f"{pid}\n")
    except OSError as e:
        LOG.info("boot server: stage stays in the server's cgroup (cannot join %s: %s)", theirs, e)
        return None
    return theirs


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes  # imported ahead by the server (bootserver.SHARED), never before READY=1

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (ImportError, OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the server died before the prctl
        os._exit(1)


def _child(fn: Callable[[], int], go: int, close: Iterable[int], parent: int) -> None:
    rc = 1
    try:
        for fd in close:  # the server's FIFOs: a client must see end-of-file when the server dies, not when we do
            os.close(fd)
        _die_with_parent(parent)
        os.read(go, 1)  # the server has moved us into the client's cgroup (or given up): start
        os.close(go)
        rc = fn()
    except BaseException:
        LOG.exception("boot server: stage child crashed")
    finally:
        try:
            logging = sys.modules.get("logging")
            if logging is not None:
                logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(rc if 0 <= rc < 256 else 1)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        raise
    except (OSError, AttributeError):
        return None


def _gone(pid: int, fd: int | None) -> bool:
    if fd is not None:
        return bool(select.select([fd], [], [], 0)[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return False


def _ended_yet(pid: int) -> bool:
    """Whether the child has ended, without reaping it."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _reap(pid: int) -> int | None:
    done, status = os.waitpid(pid, os.WNOHANG)
    return status if done else None


def _stop(pgid: int) -> int:
    """SIGTERM the stage's process group, SIGKILL what is left after ``KILL_GRACE``; the child's wait status."""
    status: int | None = None
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    end = time.monotonic() + KILL_GRACE
    while time.monotonic() < end:
        if status is None:
            status = _reap(pgid)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    end = time.monotonic() + KILL_GRACE
    while status is None and time.monotonic() < end:  # bounded: a process stuck in the kernel (D state) stays
        status = _reap(pgid)
        time.sleep(0.05)
    if status is None:
        LOG.error("boot server: process %d did not end after SIGKILL; not waiting for it", pgid)
        return int(signal.SIGKILL)  # as a wait status: killed by SIGKILL
    return status


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def run(stage: str, fn: Callable[[], int], client: int | None, close: Iterable[int], limit: float,
        mount: str | None, meanwhile: Callable[[Callable[[], bool]], None] | None = None) -> Outcome:
    """Run ``fn`` (one stage) in a child process for ``client``; return how it ended. Bounded by the client's life
    (its unit's timeout) and, with no client to watch, by ``limit`` seconds. ``meanwhile(stop)`` is work for this
    process while the child runs; it must return soon after ``stop()`` is true (the child ended or the client is
    gone)."""
    theirs: int | None = None
    if client is not None:
        try:
            theirs = _pidfd(client)
        except ProcessLookupError:
            return Outcome(1, f"stage {stage} not run: its client (pid {client}) was gone before it started",
                           client_gone=True)
    go_r, go_w = os.pipe()
    parent = os.getpid()
    gc.freeze()  # the child's collections skip what it inherits: no copy-on-write of the whole heap, less CPU
    try:
        pid = os.fork()
    except OSError as e:  # no memory or process slots: the stage runs here, as before the server forked
        gc.unfreeze()
        LOG.warning("boot server: cannot start a process for stage %s (%s); running it in the server", stage, e)
        for end in (go_r, go_w, *([theirs] if theirs is not None else [])):
            os.close(end)
        return Outcome(fn())
    if pid == 0:
        os.close(go_w)
        os.setpgid(0, 0)
        _child(fn, go_r, [*close, *([theirs] if theirs is not None else [])], parent)
    gc.unfreeze()
    os.close(go_r)
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass  # the child did it first
    where = join_cgroup(pid, client, mount) if client is not None else None
    mine = _pidfd(pid)
    os.write(go_w, b"g")
    os.close(go_w)
    LOG.info("boot server: stage %s in process %d%s", stage, pid, f" (cgroup {where})" if where else "")
    try:
        if meanwhile is not None:
            meanwhile(lambda: _ended_yet(pid) or (client is not None and _gone(client, theirs)))
        return _watch(stage, pid, mine, client, theirs, limit)
    finally:
        for fd in (mine, theirs):
            if fd is not None:
                os.close(fd)


def _watch(stage: str, pid: int, mine: int | None, client: int | None, theirs: int | None,
           limit: float) -> Outcome:
    deadline = time.monotonic() + limit
    while True:
        status = _reap(pid)
        if status is not None:
            return _ended(stage, pid, status, client is not None and _gone(client, theirs))
        if client is not None and _gone(client, theirs):
            why = (f"stage {stage} stopped: its unit's client (pid {client}) ended while the stage ran (the unit's "
                   f"TimeoutStartSec= ran out, or the unit was stopped); process group {pid} killed")
            LOG.error("boot server: %s", why)
            _stop(pid)
            return Outcome(1, why, client_gone=True)
        left = deadline - time.monotonic()
        if left <= 0:
            why = f"stage {stage} stopped: it ran for more than {limit:.0f} s; process group {pid} killed"
            LOG.error("boot server: %s", why)
            _stop(pid)
            return Outcome(1, why)
        fds = [fd for fd in (mine, theirs) if fd is not None]
        wait = left if mine is not None and (client is None or theirs is not None) else min(left, POLL)
        select.select(fds, [], [], wait)


def _ended(stage: str, pid: int, status: int, client_gone: bool) -> Outcome:
    if os.WIFEXITED(status):
        return Outcome(os.WEXITSTATUS(status), client_gone=client_gone)
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
    why = (f"stage {stage} killed by {_signal_name(sig)} (process {pid})"
           + ("; its unit's client ended too (the unit timed out or was stopped)" if client_gone else ""))
    LOG.error("boot server: %s", why)
    try:
        os.killpg(pid, signal.SIGKILL)  # what the stage started, as systemd would stop the rest of the unit
    except ProcessLookupError:
        pass
    return Outcome(1, why, client_gone=client_gone)
