"""One process for the boot's stages: ``tether init --local --serve`` (as tether-local.service, Type=notify) and
``units/tether-stage`` (the later stage units) handing stages over through FIFOs, with the fallback to a process of
their own whenever the server is not there or dies. Real processes, a real notify socket, the real client run by
the system's POSIX shell (dash on Debian)."""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
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


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str], Notify]]:
    root = seeded_root(tmp_path / "root")
    notify = Notify(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path)}
    proc = subprocess.Popen([sys.executable, "-m", "tether", "--root", str(root), "init", "--local", "--serve"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        yield root, proc, notify
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
        notify.sock.close()


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
        assert srv.handle("modules-config 4242") == "modules-config"    # its client was killed: nobody reads
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
