"""One process for the boot's stages: ``tether init --local --serve`` (as tether-local.service, Type=notify) and
``units/tether-stage`` (the later stage units) handing stages over through FIFOs, with the fallback to a process of
their own whenever the server is not there or dies. Real processes, a real notify socket, the real client run by
the system's POSIX shell (dash on Debian)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import make_root
from tether.bootserver import Server

HERE = Path(__file__).resolve().parents[2]
CLIENT = HERE / "units/tether-stage"
STAGES = ("init", "modules-config", "modules-final")


def seeded_root(base: Path) -> Path:
    root = make_root(base)
    seed = root / "var/lib/cloud/seed/nocloud"
    seed.mkdir(parents=True)
    for n in ("meta-data", "user-data", "network-config"):
        shutil.copy(HERE / "tether/examples/nocloud" / n, seed / n)
    return root


def fallback_bin(tmp: Path) -> tuple[Path, Path]:
    """A stand-in for the tether command that records how the client fell back to it."""
    log = tmp / "fallback.log"
    exe = tmp / "fake-tether"
    exe.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexit 7\n')
    exe.chmod(0o755)
    return exe, log


def client(run_dir: Path, stage: str, exe: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TETHER_RUN_DIR": str(run_dir), "TETHER_BIN": str(exe)}
    return subprocess.run(["sh", str(CLIENT), stage], env=env, capture_output=True, text=True, timeout=timeout)


class Notify:
    """systemd's side of sd_notify: a datagram socket the server reports READY=1 to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.5)

    def wait_ready(self, proc: subprocess.Popen[str], timeout: float = 120) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                msg = self.sock.recv(4096).decode()
            except TimeoutError:
                assert proc.poll() is None, f"server exited before READY: {proc.communicate()}"
                continue
            if "READY=1" in msg.split("\n"):
                return msg
        raise AssertionError("no READY=1 within the timeout")


@contextlib.contextmanager
def serving(root: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Notify]]:
    """``init --local --serve`` on ``root`` under a notify socket, as tether-local.service runs it."""
    notify = Notify(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path)}
    proc = subprocess.Popen([sys.executable, "-m", "tether", "--root", str(root), "init", "--local", "--serve"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        yield proc, notify
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
        notify.sock.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str], Notify]]:
    root = seeded_root(tmp_path / "root")
    with serving(root, tmp_path) as (proc, notify):
        yield root, proc, notify


def serve_to_the_end(root: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """``init --local --serve`` under a notify socket, for a run that ends on its own (no later stages asked
    for): its result and every message it sent to systemd."""
    notify = Notify(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path)}
    messages: list[str] = []
    try:
        res = subprocess.run([sys.executable, "-m", "tether", "--root", str(root), "init", "--local", "--serve"],
                             env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        notify.sock.setblocking(False)
        while True:
            try:
                messages.append(notify.sock.recv(4096).decode())
            except BlockingIOError:
                break
    finally:
        notify.sock.close()
    return res, messages


def status(root: Path) -> dict:
    return json.loads((root / "run/tether/status.json").read_text())["v1"]


def test_one_process_runs_all_four_stages(tmp_path: Path, served: tuple[Path, subprocess.Popen[str], Notify]) -> None:
    root, proc, notify = served
    msg = notify.wait_ready(proc)
    assert "STATUS=" in msg
    run = root / "run/tether"
    assert (run / "boot.ctl").is_fifo()
    assert int((run / "boot.pid").read_text()) == proc.pid
    assert status(root)["init-local"]["finished"] is not None
    exe, log = fallback_bin(tmp_path)
    for stage in STAGES:
        res = client(run, stage, exe)
        assert res.returncode == 0, (stage, res.stderr)
        assert res.stderr == "", res.stderr
    assert not log.exists(), f"a stage fell back to its own process: {log.read_text()}"
    assert proc.wait(timeout=60) == 0            # it leaves after the final stage
    assert not (run / "boot.ctl").exists() and not (run / "boot.pid").exists()
    assert not list(run.glob("reply.*"))             # the server removes its FIFOs when it leaves
    # the boot's work is all there, as with four processes
    st = status(root)
    for stage in ("init-local", "init", "modules-config", "modules-final"):
        assert st[stage]["finished"] is not None and st[stage]["errors"] == [], (stage, st[stage])
    assert (root / "etc/hostname").read_text().strip() == "tether-demo"
    assert "alice:" in (root / "etc/passwd").read_text()
    assert json.loads((run / "result.json").read_text())["v1"]["errors"] == []
    assert (root / "var/lib/tether/instance/boot-finished").exists()
    # the local stage's lines, held until READY=1 (tether/log.py), are in the log, before the next stage's
    lines = (root / "var/log/tether.log").read_text().splitlines()
    local_done = next(i for i, line in enumerate(lines) if "stage init-local done" in line)
    assert local_done < next(i for i, line in enumerate(lines) if "stage init: pid" in line)


def test_failed_local_stage_under_systemd_logs_its_error_and_is_not_ready(tmp_path: Path) -> None:
    root = seeded_root(tmp_path / "root")
    (root / "var/lib/tether").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/tether/instances").write_text("not a directory\n")   # the instance cache cannot be written
    res, messages = serve_to_the_end(root, tmp_path)
    assert res.returncode == 1, res.stderr
    assert messages == []                           # no READY=1: the unit fails, the later units run alone
    text = (root / "var/log/tether.log").read_text()
    assert "stage init-local failed" in text and "Traceback" in text, text[-2000:]
    assert "stage init-local failed" in res.stderr     # and on stderr (the journal), as before


def test_stage_failure_exit_code_reaches_the_unit(tmp_path: Path,
                                                   served: tuple[Path, subprocess.Popen[str], Notify]) -> None:
    root, proc, notify = served
    notify.wait_ready(proc)
    exe, log = fallback_bin(tmp_path)
    res = client(root / "run/tether", "init", exe)
    assert res.returncode == 0
    # the config stage fails without instance data: take it away while the server waits for that stage
    shutil.move(str(root / "var/lib/tether"), tmp_path / "hidden-lib")
    res = client(root / "run/tether", "modules-config", exe)
    assert res.returncode == 1, res
    assert not log.exists()
    assert "no instance data" in json.dumps(status(root)["modules-config"]["errors"])


def test_client_runs_the_stage_itself_without_a_server(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    exe, log = fallback_bin(tmp_path)
    res = client(run, "modules-final", exe)
    assert res.returncode == 7                    # the stand-in's exit status: the stage ran in its own process
    assert log.read_text().split() == ["modules", "--mode", "final"]


def test_client_falls_back_when_the_server_is_gone(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    os.mkfifo(run / "boot.ctl")
    os.mkfifo(run / "reply.init")
    (run / "boot.pid").write_text("999999\n")      # no such process
    exe, log = fallback_bin(tmp_path)
    res = client(run, "init", exe, timeout=30)
    assert res.returncode == 7
    assert "is gone" in res.stderr
    assert log.read_text().split() == ["init"]


def test_client_falls_back_when_the_server_dies_mid_stage(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    os.mkfifo(run / "boot.ctl")
    os.mkfifo(run / "reply.modules-config")
    # a "server" that holds its FIFOs as the real one does, takes the request and dies without answering
    fake = subprocess.Popen([sys.executable, "-c", (
        "import os,sys,time\n"
        f"fd=os.open({str(run / 'boot.ctl')!r}, os.O_RDWR)\n"
        f"out=os.open({str(run / 'reply.modules-config')!r}, os.O_RDWR)\n"
        f"open({str(run / 'boot.pid')!r},'w').write(str(os.getpid()))\n"
        "print(os.read(fd, 4096).decode(), flush=True)\n"
        "time.sleep(1)\n")], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (run / "boot.pid").exists() or not (run / "boot.pid").read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    exe, log = fallback_bin(tmp_path)
    outs: list[str] = []
    reaper = threading.Thread(target=lambda: outs.append(fake.communicate(timeout=60)[0]))
    reaper.start()                                 # reaped at once, as systemd reaps a dead service process
    t0 = time.monotonic()
    res = client(run, "modules-config", exe, timeout=60)
    reaper.join(timeout=60)
    out = outs[0]
    assert out.split()[0] == "modules-config" and out.split()[1].isdigit()   # the stage and the client's tag
    assert res.returncode == 7 and "exited before answering" in res.stderr
    assert log.read_text().split() == ["modules", "--mode", "config"]
    assert time.monotonic() - t0 < 20


def test_serve_outside_systemd_is_plain_local_stage(tmp_path: Path) -> None:
    root = seeded_root(tmp_path / "root")
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    res = subprocess.run([sys.executable, "-m", "tether", "--root", str(root), "init", "--local", "--serve"],
                         env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert status(root)["init-local"]["finished"] is not None
    assert not (root / "run/tether/boot.ctl").exists()


def test_server_ignores_bad_requests_and_leaves_when_idle(tmp_path: Path) -> None:
    run = tmp_path / "run"
    calls: list[str] = []
    srv = Server(str(run), lambda: calls.append("env") or None, idle=0.5)  # type: ignore[func-returns-value]
    fd = srv.open()
    try:
        assert all(os.stat(p).st_mode & 0o777 == 0o600 for p in (run / "boot.ctl", run / "reply.init"))
        for bad in (f"init {tmp_path}/victim", "rm -rf /", "", "init-local", "modules-final; reboot"):
            assert srv.handle(bad) is None, bad
        assert calls == []
        t0 = time.monotonic()
        srv.serve(fd)                                                    # nobody asks: returns after idle
        assert 0.4 < time.monotonic() - t0 < 10
    finally:
        srv.close(fd)
    assert sorted(os.listdir(run)) == []


def test_answer_is_not_written_into_a_replaced_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    srv = Server(str(run), lambda: None, idle=0.5)                       # type: ignore[arg-type,return-value]
    fd = srv.open()
    try:
        os.unlink(run / "reply.init")
        (run / "reply.init").write_text("keep")                           # no longer a FIFO
        import tether.bootserver as bs
        orig = bs.run_stage
        bs.run_stage = lambda stage, make_env: 0                          # type: ignore[assignment]
        try:
            assert srv.handle("init") == "init"
        finally:
            bs.run_stage = orig
        assert (run / "reply.init").read_text() == "keep"
    finally:
        srv.close(fd)


def test_disabled_tether_still_reports_ready(tmp_path: Path) -> None:
    """tether-local.service is Type=notify: even when tether is disabled it must say READY=1 before it exits."""
    root = seeded_root(tmp_path / "root")
    (root / "etc/tether").mkdir(parents=True, exist_ok=True)
    (root / "etc/tether/disabled").write_text("")
    res, messages = serve_to_the_end(root, tmp_path)
    assert res.returncode == 0, res.stderr
    assert messages and "READY=1" in messages[0].split("\n")
    assert not (root / "run/tether/boot.ctl").exists()
    assert "/etc/tether/disabled exists" in (root / "run/tether/disabled").read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="raising a process's priority needs root")
def test_local_stage_runs_at_the_units_priority_and_later_stages_at_normal(tmp_path: Path) -> None:
    """tether-local.service starts the server with Nice=-10 (it holds up sysinit.target); once the local stage is
    done the process is back at nice 0, so the later stages and the commands they run are not favoured."""
    assert "\nNice=-10\n" in (HERE / "units/tether-local.service").read_text()
    root = seeded_root(tmp_path / "root")
    notify = Notify(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path)}
    proc = subprocess.Popen([sys.executable, "-m", "tether", "--root", str(root), "init", "--local", "--serve"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            preexec_fn=lambda: os.setpriority(os.PRIO_PROCESS, 0, -10))  # as systemd starts it
    try:
        # Popen returns once the child has exec'd: Python is still starting, long before the local stage ends
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == -10
        notify.wait_ready(proc)
        deadline = time.monotonic() + 10
        while os.getpriority(os.PRIO_PROCESS, proc.pid) != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == 0
        fake, _ = fallback_bin(tmp_path)
        for stage in STAGES:
            assert client(root / "run/tether", stage, fake).returncode == 0, stage
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
        notify.sock.close()


def test_an_answer_nobody_read_does_not_reach_the_next_client(tmp_path: Path) -> None:
    run = tmp_path / "run"
    srv = Server(str(run), lambda: None, idle=0.5)                       # type: ignore[arg-type,return-value]
    fd = srv.open()                                                      # boot.pid: this (live) process
    import tether.bootserver as bs
    orig = bs.run_stage
    try:
        bs.run_stage = lambda stage, make_env: 3                          # type: ignore[assignment]
        earlier = subprocess.Popen(["sleep", "30"])                       # a client that is killed after
        try:                                                              # the answer, before reading it
            assert srv.handle(f"modules-config {earlier.pid}") == "modules-config"
        finally:
            earlier.kill()
            earlier.wait()
        bs.run_stage = lambda stage, make_env: 0                          # type: ignore[assignment]
        exe, log = fallback_bin(tmp_path)
        env = {**os.environ, "TETHER_RUN_DIR": str(run), "TETHER_BIN": str(exe)}
        proc = subprocess.Popen(["sh", str(CLIENT), "modules-config"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(0.5)                                               # the client reads the stale answer first
            deadline = time.monotonic() + 30
            line = b""
            while not line.endswith(b"\n"):
                assert time.monotonic() < deadline
                if select.select([fd], [], [], 1)[0]:
                    line += os.read(fd, 4096)
            assert line.decode().split() == ["modules-config", str(proc.pid)]
            assert srv.handle(line.decode()) == "modules-config"
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err                                  # its own answer, not the stale 3
        assert not log.exists()
        for bad in ("modules-config x1", "modules-config 1 2", "modules-config ١"):
            assert srv.handle(bad) is None, bad
    finally:
        bs.run_stage = orig
        srv.close(fd)
    assert sorted(os.listdir(run)) == []


def test_launcher_runs_the_local_stage_without_cyclic_gc_and_the_server_turns_it_back_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    from tether.bootserver import serve_boot
    from tether.cli_units import launcher
    from tether.host import Host
    from tether.runner import Runner
    from tether.stages import Env
    from tether.target import Target
    # the launcher turns collection off on the local stage's command line only
    text = launcher(Target.at("/")).decode()
    branch = text.split('if sys.argv[1:3] == ["init", "--local"]:', 1)[1].split("\nsys.path", 1)[0]
    assert "gc.disable()" in branch and text.count("gc.disable()") == 1
    # and the boot server turns it back on once the local stage is done, before it serves anything
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    root = seeded_root(tmp_path / "root")
    runner = Runner()
    env = Env.create(Target.at(root), Host(runner=runner), runner)
    gc.disable()
    try:
        assert serve_boot(env, lambda: env) == 0
        on = gc.isenabled()
    finally:
        gc.enable()
    assert on
    assert status(root)["init-local"]["finished"] is not None


# --- a stage that hangs after READY=1 -------------------------------------------------------------------------

HANG = "#cloud-config\nbootcmd:\n  - echo $$ > /run/hang.pid; exec sleep 1000\n"
needs_chroot = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ldd") or not shutil.which("chroot"),
                                  reason="running bootcmd chrooted in a test root needs root, ldd and chroot")


def runnable_root(base: Path, user_data: str) -> Path:
    """A seeded root that holds a shell and sleep with their libraries, so its bootcmd really runs (chrooted)."""
    root = seeded_root(base)
    (root / "var/lib/cloud/seed/nocloud/user-data").write_text(user_data)
    for prog, dest in (("/bin/dash", "bin/sh"), ("/bin/sleep", "bin/sleep")):
        libs = subprocess.run(["ldd", prog], capture_output=True, text=True, check=True).stdout.split()
        for src in [prog, *(w for w in libs if w.startswith("/"))]:
            to = root / (dest if src == prog else src.lstrip("/"))
            to.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.realpath(src), to)
    return root


def wait_for(check: Callable[[], object], what: str, timeout: float = 60) -> object:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def hang_pid(root: Path) -> int:
    text = str(wait_for(lambda: (root / "run/hang.pid").exists() and (root / "run/hang.pid").read_text().strip(),
                        "bootcmd's sleep started"))
    return int(text)


def gone(pid: int) -> bool:
    """No such process, or a zombie waiting for a reaper (an orphan in a container whose PID 1 does not reap)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def start_client(run: Path, stage: str, exe: Path, preexec: Callable[[], None] | None = None,
                 ) -> subprocess.Popen[str]:
    env = {**os.environ, "TETHER_RUN_DIR": str(run), "TETHER_BIN": str(exe)}
    return subprocess.Popen(["sh", str(CLIENT), stage], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=preexec)


def assert_killed_and_next_stages_served(root: Path, proc: subprocess.Popen[str], tmp_path: Path,
                                         killed_at: float, log: Path, exe: Path) -> None:
    st = wait_for(lambda: status(root)["init"]["finished"] is not None and status(root), "init reported")
    assert isinstance(st, dict)
    assert any("stage init stopped" in e or "stage init killed" in e for e in st["init"]["errors"]), st["init"]
    assert time.monotonic() - killed_at < 15                 # KILL_GRACE is 5 s
    text = (root / "var/log/tether.log").read_text()
    assert "boot server: stage init" in text and ("stopped" in text or "killed" in text), text[-2000:]
    assert proc.poll() is None                               # the server lives on
    for stage in ("modules-config", "modules-final"):        # and the next stages still run there
        res = client(root / "run/tether", stage, exe, timeout=60)
        assert status(root)[stage]["finished"] is not None, (stage, res.stderr)
    assert not log.exists(), f"a stage fell back to its own process: {log.read_text()}"
    assert proc.wait(timeout=60) == 0


@needs_chroot
def test_a_stage_whose_client_is_killed_is_stopped_and_the_next_stage_runs(tmp_path: Path) -> None:
    """The unit's TimeoutStartSec= kills its main process, the tether-stage shell (KillMode=process, or a host
    where the stage could not join the unit's cgroup): the server stops the stage and what it started."""
    root = runnable_root(tmp_path / "root", HANG)
    with serving(root, tmp_path) as (proc, notify):
        notify.wait_ready(proc)
        exe, log = fallback_bin(tmp_path)
        c = start_client(root / "run/tether", "init", exe)
        sleeper = hang_pid(root)
        assert os.getpgid(sleeper) not in (proc.pid, os.getpgid(proc.pid))   # the stage's own process group
        t0 = time.monotonic()
        c.terminate()                                                        # systemd: the unit timed out
        c.communicate(timeout=30)
        wait_for(lambda: gone(sleeper), "the hung command stopped", timeout=15)
        assert_killed_and_next_stages_served(root, proc, tmp_path, t0, log, exe)


def _cgroup2() -> Path | None:
    from tether.stageproc import cgroup2_mount
    mount = cgroup2_mount()
    if os.geteuid() != 0 or mount is None:
        return None
    probe = Path(mount) / f"tether-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError:
        return None
    return Path(mount)


@needs_chroot
@pytest.mark.skipif(_cgroup2() is None, reason="needs root and a writable unified cgroup hierarchy")
def test_a_stage_runs_in_its_units_cgroup_and_dies_with_it(tmp_path: Path) -> None:
    """As under systemd: the client is a unit's main process in the unit's cgroup. The stage and the commands it
    starts run in that cgroup (accounted to that unit); the unit's timeout (SIGTERM to every process of the
    cgroup, KillMode=control-group) stops them all, the server reports it and serves the next stage."""
    mount = _cgroup2()
    assert mount is not None
    cg = mount / f"tether-test-unit-{os.getpid()}"
    cg.mkdir()
    try:
        root = runnable_root(tmp_path / "root", HANG)
        with serving(root, tmp_path) as (proc, notify):
            notify.wait_ready(proc)
            exe, log = fallback_bin(tmp_path)
            c = start_client(root / "run/tether", "init", exe,
                             preexec=lambda: (cg / "cgroup.procs").write_text(f"{os.getpid()}\n") and None)
            sleeper = hang_pid(root)
            members = {int(p) for p in (cg / "cgroup.procs").read_text().split()}
            stage = members - {c.pid, sleeper}                                  # the server's stage child
            assert {c.pid, sleeper} <= members and len(stage) == 1, members
            assert os.getppid() != proc.pid and ppid(stage.pop()) == proc.pid
            from tether.stageproc import cgroup_of
            assert cgroup_of(proc.pid) != cgroup_of(c.pid)                    # the server stays in its own
            t0 = time.monotonic()
            for pid in members:
                os.kill(pid, signal.SIGTERM)
            c.communicate(timeout=30)
            wait_for(lambda: gone(sleeper), "the hung command stopped", timeout=15)
            assert_killed_and_next_stages_served(root, proc, tmp_path, t0, log, exe)
    finally:
        for pid in (cg / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        wait_for(lambda: not (cg / "cgroup.procs").read_text().strip() or (cg / "cgroup.procs").read_text() == "",
                 "the test cgroup empty", timeout=10)
        cg.rmdir()


def test_a_stage_without_a_client_to_watch_is_stopped_at_its_limit(tmp_path: Path) -> None:
    from tether import stageproc
    marker = tmp_path / "child"

    def hang() -> int:
        p = subprocess.Popen(["sleep", "1000"])
        marker.write_text(f"{p.pid}\n")
        p.wait()
        return 0

    t0 = time.monotonic()
    out = stageproc.run("modules-final", hang, None, [], 1.0, None)
    assert 0.9 < time.monotonic() - t0 < 10
    assert out.rc == 1 and out.killed is not None and "more than 1 s" in out.killed and not out.client_gone
    wait_for(lambda: gone(int(marker.read_text())), "the stage's command stopped", timeout=10)


def test_a_stage_child_that_dies_by_a_signal_is_reported(tmp_path: Path) -> None:
    from tether import stageproc
    out = stageproc.run("modules-config", lambda: os.kill(os.getpid(), signal.SIGKILL) or 0, os.getpid(), [],
                        60.0, None)
    assert out.rc == 1 and out.killed is not None and "killed by SIGKILL" in out.killed and not out.client_gone
    out = stageproc.run("modules-config", lambda: 3, os.getpid(), [], 60.0, None)
    assert (out.rc, out.killed) == (3, None)


def test_a_request_for_a_client_already_gone_runs_nothing(tmp_path: Path) -> None:
    from tether import stageproc
    dead = subprocess.Popen(["true"])
    dead.wait()
    ran = tmp_path / "ran"
    out = stageproc.run("init", lambda: ran.write_text("x") and 0, dead.pid, [], 60.0, None)
    assert out.client_gone and out.rc == 1 and not ran.exists()


def test_requests_with_an_impossible_client_pid_are_refused(tmp_path: Path) -> None:
    srv = Server(str(tmp_path / "run"), lambda: None, idle=0.5)           # type: ignore[arg-type,return-value]
    fd = srv.open()
    try:
        for bad in ("init 0", "init 1", "init 99999999", "init 4194305", "init 00000000001"):
            assert srv.handle(bad) is None, bad
    finally:
        srv.close(fd)


def test_the_unwatched_limit_is_the_longest_stage_units_timeout() -> None:
    from tether.bootserver import UNWATCHED_LIMIT
    limits = []
    for unit in ("tether-network", "tether-config", "tether-final"):
        text = (HERE / f"units/{unit}.service").read_text()
        assert "ExecStart=/usr/lib/tether/tether-stage" in text
        limits.append(float(text.split("\nTimeoutSec=", 1)[1].split()[0]))
    assert UNWATCHED_LIMIT == max(limits)


def test_a_stage_child_dies_with_the_server(tmp_path: Path) -> None:
    """A server killed mid-stage (SIGKILL, OOM) must not leave its stage running: the client falls back to running
    the stage itself, and two copies of a stage must never run at once (PR_SET_PDEATHSIG)."""
    marker = tmp_path / "stage.pid"
    code = ("import os, time\n"
            "from tether import stageproc\n"
            "def stage():\n"
            f"    open({str(marker)!r}, 'w').write(str(os.getpid()))\n"
            "    time.sleep(1000)\n"
            "    return 0\n"
            "stageproc.run('modules-config', stage, None, [], 1000.0, None)\n")
    server = subprocess.Popen([sys.executable, "-c", code], cwd=HERE)
    try:
        child = int(str(wait_for(lambda: marker.exists() and marker.read_text(), "the stage started")))
        assert ppid(child) == server.pid
        server.kill()
        server.wait(timeout=30)
        wait_for(lambda: gone(child), "the stage child gone with its server", timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_the_server_imports_ahead_only_beside_the_network_stage_and_stops_when_told() -> None:
    """What the later stages' children would each import again is imported in the server while the network stage
    runs; not beside the short later stages, and not past the moment the stage ends (``stop``)."""
    code = ("import sys\n"
            "from tether.bootserver import SHARED, Server\n"
            "srv = Server('/nonexistent', lambda: None)\n"
            "wanted = [n for n in SHARED if n not in sys.modules]\n"
            "assert wanted, SHARED\n"
            "srv.import_ahead('modules-config', lambda: False)\n"
            "srv.import_ahead('init', lambda: True)\n"
            "assert not [n for n in wanted if n in sys.modules]\n"
            "srv.import_ahead('init', lambda: False)\n"
            "assert all(n in sys.modules for n in SHARED), [n for n in SHARED if n not in sys.modules]\n"
            "assert 'tether.modrunner' in sys.modules and 'tether.userdata_stage' in sys.modules\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=HERE)
    assert res.returncode == 0, res.stderr
