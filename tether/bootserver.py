"""One tether process for a boot's four stages.

``tether init --local --serve`` is what ``tether-local.service`` (``Type=notify``) runs. It runs the local stage;
when that succeeded it tells systemd it is ready (so units ordered after the local stage start) and stays alive,
serving the later stages: ``tether-network/config/final.service`` run ``tether-stage`` (a small POSIX shell script,
``units/tether-stage``, builtins only), which writes the stage's name to the FIFO ``/run/tether/boot.ctl`` and
waits for its exit status on the FIFO ``/run/tether/reply.STAGE``; the server makes all of them (0600). Each
stage runs in a forked child of this process (``tether/stageproc.py``), exactly as ``tether init`` and ``tether
modules --mode ...`` would run it, moved into the asking unit's cgroup where the unified hierarchy allows, and
stopped when that unit's client is gone (its timeout): a hung stage costs its own unit, not the later ones.
systemd's ordering of the units is unchanged and each unit still takes as long as its stage
(``systemd-analyze blame`` stays honest).

Why: every stage in its own process starts Python and imports tether again, about a second per stage in a VM
without hardware acceleration (imports cost ~12x there), most of a later boot's time.

Nothing waits forever: the server leaves after the final stage, or after ``IDLE_TIMEOUT`` seconds without a
request; the client runs the stage itself when the server is not there or dies while it waits. Outside systemd
(no ``NOTIFY_SOCKET``) ``--serve`` is plain ``init --local``.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable

from tether import log
from tether.target import write_atomic

TYPE_CHECKING = False  # the boot's first stage does not import typing; mypy reads the block below
if TYPE_CHECKING:
    from tether import stageproc
    from tether.stages import Env

LOG = log.get(__name__)
CTL = "boot.ctl"
PIDFILE = "boot.pid"
IDLE_TIMEOUT = 900.0
STAGES = ("init", "modules-config", "modules-final")
# A request without the client's PID (an older tether-stage) has no client to watch: its stage is stopped after the
# longest stage unit's TimeoutSec= (tether-final.service); tests/core/test_bootserver.py checks the two agree.
UNWATCHED_LIMIT = 3600.0
PID_MAX = 4194304  # the kernel's highest pid_max
# libraries the config and final stages' usual modules (runcmd, scripts_*, ssh_authkey_fingerprints,
# write_files_deferred) share with the network stage's, and ctypes (each stage child's PR_SET_PDEATHSIG,
# tether/stageproc.py): imported ahead for their children (Server.import_ahead)
SHARED = ("tether.scripts", "tether.accounts", "tether.sshkeys", "tether.filesync", "shlex", "hashlib", "ctypes")


def notify(message: str) -> bool:
    """sd_notify(3): send ``message`` to systemd's notification socket; False when not run by systemd."""
    addr = os.environ.get("NOTIFY_SOCKET", "")
    if not addr or addr[0] not in ("/", "@"):
        return False
    # the C module: socket.py builds its enums when imported (~5 ms on a fast host, 0.1-0.2 s in a TCG guest),
    # and READY=1 is what the whole boot waits for
    import _socket
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    try:
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
        try:
            s.connect(addr)
            s.sendall(message.encode())
        finally:
            s.close()
    except OSError as e:
        LOG.warning("cannot notify systemd (%s): %s", addr.lstrip("\0"), e)
        return False
    return True


def run_stage(stage: str, make_env: Callable[[], Env]) -> int:
    """One later stage in this process, as its own command line would run it (fresh system config, etc.)."""
    from tether import stages
    from tether.runner import CLOCK
    CLOCK.commands = 0.0
    env = make_env()
    from tether.detect import is_disabled
    if is_disabled(env.host, env.target):
        return 0
    if stage == "init":
        return stages.run_network(env)
    return stages.run_modules_stage(env, stage.split("-", 1)[1])


class Server:
    """The FIFO end of the hand-over (``units/tether-stage`` is the other)."""

    def __init__(self, run_dir: str, make_env: Callable[[], Env], idle: float = IDLE_TIMEOUT,
                 record: str | None = None) -> None:
        self.run_dir = run_dir
        self.record = record  # tether/bootimports.py: what the network stage ran, imported ahead next boot
        self.ctl = os.path.join(run_dir, CTL)
        self.pidfile = os.path.join(run_dir, PIDFILE)
        self.make_env = make_env
        self.idle = idle
        self.served: list[tuple[str, int]] = []
        self.replies: dict[str, int] = {}
        self.fd = -1
        self.cgroups: str | None | bool = True  # the unified hierarchy's mount, found at the first stage

    def reply_path(self, stage: str) -> str:
        return os.path.join(self.run_dir, f"reply.{stage}")

    def _fifos(self) -> list[str]:
        return [self.ctl] + [self.reply_path(s) for s in STAGES]

    def open(self) -> int:
        os.makedirs(self.run_dir, mode=0o755, exist_ok=True)
        for p in [self.pidfile, *self._fifos()]:
            if os.path.lexists(p):
                os.unlink(p)
        for p in self._fifos():
            os.mkfifo(p, 0o600)
        # read-write: the FIFO never reports end-of-file between clients, and clients' opens never block
        fd = os.open(self.ctl, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        # each reply FIFO stays open for writing while this process lives: a client's open for reading returns at
        # once, and its read ends with end-of-file when this process exits, however it exits
        for stage in STAGES:
            self.replies[stage] = os.open(self.reply_path(stage), os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        write_atomic(self.pidfile, f"{os.getpid()}\n".encode(), 0o644, fsync=False)  # /run: tmpfs
        self.fd = fd
        return fd

    def close(self, fd: int) -> None:
        os.close(fd)
        for out in self.replies.values():
            os.close(out)
        self.replies.clear()
        for p in [self.pidfile, *self._fifos()]:
            try:
                os.unlink(p)
            except OSError:
                pass

    def prewarm(self, fd: int) -> None:
        """Import what the network stage ran last boot while nothing is asked for (tether/bootimports.py)."""
        if not self.record:
            return
        from tether import bootimports
        try:
            bootimports.prewarm(bootimports.load(self.record), lambda: bool(select.select([fd], [], [], 0)[0]))
        except Exception as e:  # only ever a loss of time
            LOG.warning("boot server: importing ahead failed: %s", e)

    def save_record(self) -> None:
        from tether.stages import MODULES_RAN
        ran = MODULES_RAN.pop("init", None)
        if self.record and ran is not None:
            from tether import bootimports
            try:
                bootimports.save(self.record, ran)
            except OSError as e:
                LOG.warning("boot server: cannot write %s: %s", self.record, e)

    def serve(self, fd: int) -> None:
        buf = b""
        self.prewarm(fd)
        deadline = time.monotonic() + self.idle
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                LOG.info("boot server: no stage asked for %.0f s; leaving (later stages run on their own)", self.idle)
                return
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                continue
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                stage = self.handle(line.decode("utf-8", "replace"))
                deadline = time.monotonic() + self.idle
                if stage == "modules-final":
                    return

    def handle(self, line: str) -> str | None:
        # "STAGE TAG": the answer is "TAG RC", so a client skips an answer left unread by an earlier one (killed
        # while it waited); TAG is the client's PID. A bare "STAGE" (an older client) is answered with "RC".
        parts = line.split()
        stage = parts[0] if parts else ""
        tag = parts[1] if len(parts) == 2 and parts[1].isdigit() and parts[1].isascii() else None
        if tag is not None and not (len(tag) <= 7 and 1 < int(tag) <= PID_MAX):
            tag = None  # not a client's PID: the request is refused below
        if stage not in STAGES or len(parts) != (1 if tag is None else 2):
            LOG.warning("boot server: ignoring request %r", line[:200])
            return None
        out = self.replies.get(stage)
        if out is not None:
            _drain(out)  # nobody will read what an earlier client left
        result = self.run_child(stage, int(tag) if tag else None)
        rc = result.rc
        if result.killed:
            self.report(stage, result.killed)
        self.served.append((stage, rc))
        if result.client_gone:
            return stage  # nobody waits for the answer
        if out is None:
            LOG.warning("boot server: no reply FIFO for %s; not answering", stage)
            return stage
        try:
            os.write(out, (f"{tag} {rc}\n" if tag else f"{rc}\n").encode())
        except OSError as e:
            LOG.warning("boot server: cannot answer on %s: %s", self.reply_path(stage), e)
        return stage

    def run_child(self, stage: str, client: int | None) -> stageproc.Outcome:
        """The stage in a child process (tether/stageproc.py): in the client's cgroup where possible, stopped when
        the client is gone."""
        from tether import stageproc
        if self.cgroups is True:
            self.cgroups = stageproc.cgroup2_mount()

        def work() -> int:
            try:
                rc = run_stage(stage, self.make_env)
            except Exception:
                LOG.exception("boot server: stage %s crashed", stage)
                return 1
            if stage == "init":
                self.save_record()  # in the child: it knows which modules the stage ran
            return rc

        mount = self.cgroups if isinstance(self.cgroups, str) else None
        return stageproc.run(stage, work, client, [self.fd, *self.replies.values()], UNWATCHED_LIMIT, mount,
                             meanwhile=lambda stop: self.import_ahead(stage, stop))

    def import_ahead(self, stage: str, stop: Callable[[], bool]) -> None:
        """While the network stage runs in its child (the longest stage; the server is idle), import here what the
        later stages' children would otherwise import again, each for itself: the machinery, the modules the
        network stage ran last boot (tether/bootimports.py) and the libraries the later stages' modules share.
        Each child starts from this process's imports. Not during the later stages: they are short, and importing
        beside them only competes with them for the CPU."""
        if stage != "init":
            return
        import importlib
        import sys

        from tether import bootimports
        names = [*bootimports.wanted(bootimports.load(self.record) if self.record else []), *SHARED]
        for name in names:
            if stop():
                return
            if name not in sys.modules:
                try:
                    importlib.import_module(name)
                except Exception as e:  # the stage meets and reports the same error itself
                    LOG.debug("boot server: importing %s ahead failed: %s", name, e)

    def report(self, stage: str, why: str) -> None:
        """A stage killed before it could finish: its error in status.json, as its unit's failure."""
        from tether.status import StageStatus, read_status
        try:
            env = self.make_env()
            block = read_status(env.target, env.paths)["v1"].get(stage) or {}
            st = StageStatus(env.target, stage, env.paths)
            st.errors = [*(block.get("errors") or []), why]
            st.recoverable = dict(block.get("recoverable_errors") or {})
            st.finish()
        except Exception as e:
            LOG.warning("boot server: cannot record in status.json that %s: %s", why, e)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def normal_priority() -> None:
    """Back to the normal CPU priority. tether-local.service starts the local stage at a raised one (``Nice=``):
    the unit holds up sysinit.target, so the whole boot waits for it while udev, fsck and the rest compete for the
    CPU. The later stages, and the scripts and commands they start, run at the normal priority like any service.
    Lowering one's own priority needs no privilege."""
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) < 0:
            os.setpriority(os.PRIO_PROCESS, 0, 0)
    except OSError as e:
        LOG.debug("cannot reset the CPU priority: %s", e)


def serve_boot(env: Env, make_env: Callable[[], Env], idle: float = IDLE_TIMEOUT) -> int:
    """The local stage, then (under systemd, when it succeeded) the later stages until the final one."""
    from tether import stages
    rc = stages.run_local(env)
    normal_priority()
    import gc
    gc.enable()  # the launcher turns it off for the local stage's start-up (units/tether-launcher)
    if rc != 0 or not os.environ.get("NOTIFY_SOCKET"):
        log.release()
        return rc  # a failed local stage fails its unit as before; the later units run their stages themselves
    server = Server(str(env.target.path(env.paths.run)), make_env, idle,
                    record=str(env.target.path(env.paths.boot_imports)))
    try:
        fd = server.open()
    except OSError as e:
        LOG.warning("boot server: cannot listen on %s (%s); later stages run on their own", server.ctl, e)
        notify("READY=1")
        log.release()
        return rc
    try:
        notify("READY=1\nSTATUS=local stage done; serving the later stages")
        log.release()  # the local stage's records, held until the unit is ready (tether/log.py)
        server.serve(fd)
    finally:
        server.close(fd)
    return 0
