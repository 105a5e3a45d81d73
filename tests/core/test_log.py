"""tether/log.py: records held during the boot's first stage reach the log intact, after READY=1."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.core.test_stages import boot, seed_root
from tether import log, logs


@pytest.fixture(name="held")
def held_fixture() -> object:
    yield None
    log.release()  # never leave the process holding records


def test_held_records_keep_their_time_text_and_exception(held: object, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    lg = log.get("tether.test")
    log.hold()
    lg.info("one %s", "arg")
    try:
        raise ValueError("boom")
    except ValueError:
        lg.exception("it failed: %d", 7)
    lg.warning("100%% sure %s", "!")
    lg.debug("bad format %d", "x")   # logging would complain at emit time; the text is kept readable instead
    assert caplog.records == []      # nothing reached stdlib logging yet
    calls: list[str] = []
    log.setup(lambda: calls.append("setup"))
    assert calls == []               # deferred while held
    log.release()
    assert calls == ["setup"]
    texts = [r.getMessage() for r in caplog.records]
    assert texts[:3] == ["one arg", "it failed: 7", "100% sure !"]
    assert "bad format" in texts[3] and "'x'" in texts[3] and "log format error" in texts[3]
    assert caplog.records[1].exc_info and caplog.records[1].exc_info[0] is ValueError
    first = caplog.records[0]
    assert first.name == "tether.test" and first.levelno == logging.INFO
    assert first.created <= caplog.records[-1].created
    # not held any more: straight through, setup runs at once
    lg.error("after %s", "release")
    assert caplog.records[-1].getMessage() == "after release"
    log.setup(lambda: calls.append("now"))
    assert calls == ["setup", "now"]


def test_secrets_registered_before_release_are_redacted_in_held_records(tmp_path: Path, held: object) -> None:
    from tether.target import Target
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        log.hold()
        log.get("tether.test").info("password is %s", "hunter2-secret")
        logs.add_secret("hunter2-secret")
        log.setup(lambda: logs.setup(Target.at(tmp_path), to_file=True))
        log.release()
        for h in root.handlers:
            h.flush()
        text = (tmp_path / "var/log/tether.log").read_text()
        assert "password is <redacted>" in text and "hunter2" not in text
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)
        logs._SECRETS.discard("hunter2-secret")


def test_a_long_hold_ends_by_itself(held: object, caplog: pytest.LogCaptureFixture,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(log, "HOLD_MAX", 0.0)   # as if the stage had already run past the bound
    log.hold()
    log.get("tether.test").info("slow datasource")
    assert [r.getMessage() for r in caplog.records] == ["slow datasource"]   # released, not held any more
    log.get("tether.test").info("next")
    assert caplog.records[-1].getMessage() == "next"


def _log_from_here(lg: log.Logger) -> int:
    """Logs one held-or-not record per level and method; returns the line of the first call."""
    first = sys._getframe().f_lineno + 1
    lg.info("i")
    lg.warning("w")
    lg.log(logging.ERROR, "l")
    return first


@pytest.mark.parametrize("hold", [True, False], ids=["held", "straight"])
def test_records_keep_the_callers_file_line_and_function(held: object, caplog: pytest.LogCaptureFixture,
                                                        hold: bool) -> None:
    """A held record reads in the log like one emitted at once: the caller's file, line and function (what
    ``%(pathname)s:%(lineno)d`` and ``%(funcName)s`` show), not tether/log.py's or a placeholder."""
    caplog.set_level(logging.DEBUG)
    if hold:
        log.hold()
    first = _log_from_here(log.get("tether.test"))
    log.release()
    where = [(r.pathname, r.lineno, r.funcName, r.getMessage()) for r in caplog.records]
    assert where == [(__file__, first, "_log_from_here", "i"), (__file__, first + 1, "_log_from_here", "w"),
                     (__file__, first + 2, "_log_from_here", "l")]
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.WARNING, logging.ERROR]


TERM = r"""
import logging, os, signal, sys
from tether import log
log.hold()
def setup():
    h = logging.FileHandler(sys.argv[1])
    h.setFormatter(logging.Formatter("%(name)s %(message)s"))
    logging.getLogger().addHandler(h)
    logging.getLogger().setLevel(logging.DEBUG)
log.setup(setup)
log.get("tether.test").info("held before the stop")
os.kill(os.getpid(), signal.SIGTERM)
log.get("tether.test").info("never reached")
"""


def test_sigterm_while_held_writes_the_records_and_still_ends_the_process(tmp_path: Path) -> None:
    out = tmp_path / "out.log"
    proc = subprocess.run([sys.executable, "-c", TERM, str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -15, proc.stderr                # ended by SIGTERM, as without the hold
    assert out.read_text().splitlines() == ["tether.test held before the stop"]


WATCH = r"""
import os, sys
root = sys.argv[1]
import tether.bootserver as bs
seen = []
def notify(msg):  # what the process has loaded at the moment it tells systemd it is ready
    seen.append("logging" in sys.modules)
bs.notify = notify
bs.Server.serve = lambda self, fd: None   # no later stages in this test
os.environ["NOTIFY_SOCKET"] = "/nonexistent"
sys.argv = ["tether", "--root", root, "init", "--local", "--serve"]
from tether.cli import main
rc = main()
print("READY-SAW-LOGGING", seen)
sys.exit(rc)
"""


def test_later_boot_local_stage_is_ready_before_logging_loads_and_its_lines_follow(tmp_path: Path) -> None:
    root = seed_root(tmp_path)
    boot(root)
    shutil.rmtree(root / "run")
    logfile = root / "var/log/tether.log"
    before = len(logfile.read_text().splitlines())
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    proc = subprocess.run([sys.executable, "-c", WATCH, str(root)], capture_output=True, text=True, timeout=120,
                          env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "READY-SAW-LOGGING [False]" in proc.stdout, proc.stdout + proc.stderr
    new = logfile.read_text().splitlines()[before:]
    assert any("stage init-local done" in line for line in new), new
    assert any("stage init-local: pid" in line for line in new), new
    status = json.loads((root / "run/tether/status.json").read_text())
    assert status["v1"]["init-local"]["finished"] is not None and status["v1"]["init-local"]["errors"] == []
