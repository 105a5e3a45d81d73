"""cloud-init's reporting: stage, module and servicing events reach a loopback webhook in cloud-init's shape; a dead
or slow endpoint costs at most its bound; no secret reaches an event."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.core.test_stages import seed_root, tether
from tether import reporting
from tether.engine import state
from tether.target import Target

SECRET = "hunter2-s3cr3t-Value"


class Hook:
    def __init__(self, delay: float = 0.0) -> None:
        self.events: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        hook = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.raw.append(body)
                hook.events.append(json.loads(body))
                time.sleep(delay)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def names(self, event_type: str | None = None) -> list[str]:
        return [e["name"] for e in self.events if event_type in (None, e["event_type"])]


@pytest.fixture(autouse=True)
def fresh_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reporting, "_WEBHOOKS", {})  # a test's dead endpoint is not another test's


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.server.shutdown()
    h.server.server_close()


@pytest.fixture
def dead() -> Iterator[str]:
    """An endpoint that accepts connections and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        s.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(s.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{s.getsockname()[1]}/events"
    stop.set()
    t.join()
    for c in held:
        c.close()
    s.close()


def user_data(endpoint: str, **opts: Any) -> str:
    extra = "".join(f"      {k}: {v}\n" for k, v in opts.items())
    return ("#cloud-config\n"
            "reporting:\n"
            "  hook:\n"
            "      type: webhook\n"
            f"      endpoint: {endpoint}\n" + extra +
            "  logging:\n"
            "      type: log\n"
            "write_files:\n"
            "  - path: /etc/app.conf\n"
            f"    content: 'password={SECRET}'\n"
            "runcmd:\n"
            f"  - [echo, {SECRET}]\n"
            "timezone: Not/AZone\n")  # fails in the config stage


def test_webhook_receives_stage_and_module_events(tmp_path: Path, hook: Hook) -> None:
    root = seed_root(tmp_path, user_data(hook.url, timeout=2, retries=1))
    t0 = time.time()
    for args in (["init", "--local"], ["init"], ["modules", "--mode", "config"], ["modules", "--mode", "final"]):
        tether(root, *args, check=False)
    ev = hook.events
    assert ev, "no events received"
    for e in ev:
        assert e["origin"] == "cloudinit" and isinstance(e["timestamp"], float)
        assert set(e) == {"name", "description", "event_type", "origin", "timestamp"} | (
            {"result"} if e["event_type"] == "finish" else set())
        assert t0 - 60 < e["timestamp"] < time.time() + 1
    starts, finishes = hook.names("start"), hook.names("finish")
    # the local stage's events come from the network stage (nothing is sent before READY=1), with their own times
    assert starts[:2] == ["init-local", "init-network"] and finishes[0] == "init-local"
    for stage in ("init-network", "modules-config", "modules-final"):
        assert stage in starts and stage in finishes
    assert starts.index("modules-config") < starts.index("modules-final")
    assert "init-network/config-write_files" in starts
    wf = next(e for e in ev if e["name"] == "init-network/config-write_files" and e["event_type"] == "finish")
    assert wf["result"] == "SUCCESS" and wf["description"] == "config-write_files ran successfully"
    start = next(e for e in ev if e["name"] == "init-network/config-write_files" and e["event_type"] == "start")
    assert start["description"] == "running config-write_files with frequency once-per-instance"
    tz = next(e for e in ev if e["name"] == "modules-config/config-timezone" and e["event_type"] == "finish")
    assert tz["result"] == "FAIL" and tz["description"] == "running config-timezone failed"
    cfg = next(e for e in ev if e["name"] == "modules-config" and e["event_type"] == "finish")
    assert cfg["result"] == "FAIL"  # a module failed in it
    net = next(e for e in ev if e["name"] == "init-network" and e["event_type"] == "finish")
    assert net["result"] in ("SUCCESS", "WARN")
    final = next(e for e in ev if e["name"] == "modules-final" and e["event_type"] == "finish")
    assert final["result"] in ("SUCCESS", "WARN")
    assert "modules-final/config-scripts_user" in starts  # runcmd's script runs in final
    for body in hook.raw:
        assert SECRET.encode() not in body
    # the log handler wrote cloud-init's lines to tether.log
    log = (root / "var/log/tether.log").read_text()
    assert "finish: init-network/config-write_files: SUCCESS: config-write_files ran successfully" in log


def stage_imports(root: Path, *args: str) -> bool:
    """Runs a stage in a fresh interpreter; whether it imported tether.reporting."""
    import subprocess
    import sys
    code = (f"import sys\nfrom tether.cli import main\nmain(['--root', {str(root)!r}, *{list(args)!r}])\n"
            "print('REPORTING-LOADED' if 'tether.reporting' in sys.modules else 'REPORTING-NOT-LOADED')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "REPORTING-" in out, out
    return "REPORTING-LOADED" in out


def test_reporting_is_imported_only_when_configured(tmp_path: Path, hook: Hook) -> None:
    plain = seed_root(tmp_path / "plain", "#cloud-config\nruncmd:\n  - [true]\n")
    assert not stage_imports(plain, "init", "--local")
    assert not stage_imports(plain, "init")
    configured = seed_root(tmp_path / "configured", user_data(hook.url))
    assert not stage_imports(configured, "init", "--local")  # the local stage never sends or imports it
    assert stage_imports(configured, "init")


def test_dead_endpoint_costs_at_most_its_bound(tmp_path: Path, dead: str) -> None:
    root = seed_root(tmp_path, user_data(dead, timeout=1, retries=1))
    tether(root, "init", "--local")
    t0 = time.monotonic()
    proc = tether(root, "init")
    took = time.monotonic() - t0
    # one failed post (2 tries of 1 s and a short backoff), then the handler is off for the process
    assert took < 1 * 2 + 0.5 + 4, took
    assert "no more events are sent to it by this process" in proc.stderr
    assert f"127.0.0.1:{dead.split(':')[2].split('/')[0]}" in proc.stderr
    assert (root / "etc/app.conf").exists()  # the stage itself went on


def test_a_dead_endpoint_is_tried_once_per_process(dead: str, caplog: pytest.LogCaptureFixture) -> None:
    cfg = {"reporting": {"hook": {"type": "webhook", "endpoint": dead, "timeout": 1, "retries": 0}}}
    t0 = time.monotonic()
    for stage in ("init", "modules-config", "modules-final"):  # each stage builds its reporter again
        rep = reporting.configured(cfg)
        assert rep is not None
        rep.stage_start(stage)
        rep.module_start(stage, "runcmd", "always")
        rep.stage_finish(stage, False, False)
    took = time.monotonic() - t0
    assert 0.9 < took < 2.0, took
    assert caplog.text.count("no more events are sent to it by this process") == 1


def test_slow_endpoint_is_cut_off_by_the_budget(monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    slow = Hook(delay=0.4)
    try:
        monkeypatch.setattr(reporting, "BUDGET", 1.5)
        rep = reporting.configured({"reporting": {"hook": {"type": "webhook", "endpoint": slow.url,
                                                           "timeout": 5, "retries": 0}}})
        assert rep is not None
        t0 = time.monotonic()
        for i in range(20):
            rep.stage_start("modules-config")
            rep.stage_finish("modules-config", False, i % 2 == 0)
        took = time.monotonic() - t0
        assert took < 1.5 + 0.5 + 0.5, took
        assert 2 <= len(slow.events) < 10
        assert "no more events are sent" in caplog.text  # budget spent, or the last try cut to what was left
    finally:
        slow.server.shutdown()
        slow.server.server_close()


def test_config_merging_and_bad_entries(caplog: pytest.LogCaptureFixture) -> None:
    system = {"reporting": {"logging": {"type": "log"}, "hook": {"type": "webhook", "endpoint": "http://127.0.0.1:9/"}}}
    user = {"reporting": {"hook": None, "bad": {"type": "hyperv"}, "maas": {
        "type": "webhook", "endpoint": "http://127.0.0.1:9/", "consumer_key": "k", "token_secret": SECRET},
        "nourl": {"type": "webhook", "endpoint": "ftp://x"}, "neg": {"type": "webhook",
                                                                     "endpoint": "http://127.0.0.1:9/", "timeout": -1}}}
    merged = reporting.merged_config(system, user)
    assert set(merged) == {"logging", "bad", "maas", "nourl", "neg"}
    handlers = reporting.build(merged)
    assert [type(h).__name__ for h in handlers] == ["LogHandler"]
    assert "reporting.bad.type: 'hyperv' is not supported by tether (log, webhook)" in caplog.text
    assert "reporting.maas: OAuth-signed webhooks" in caplog.text
    assert "reporting.nourl.endpoint: expected an http:// or https:// URL" in caplog.text
    assert "reporting.neg.timeout: expected a non-negative number, got -1" in caplog.text
    assert SECRET not in caplog.text
    assert reporting.redact(f"token {SECRET} in text") == "token <redacted> in text"


def servicing_root(tmp_path: Path, endpoint: str) -> Target:
    root = Target.at(tmp_path / "host")
    root.write("/etc/tether/tether.cfg.d/50-reporting.cfg",
               f"reporting:\n  fleet:\n    type: webhook\n    endpoint: {endpoint}\n    timeout: 2\n")
    ds = state.datastore_location(root)
    with state.StateStore(ds) as store:
        doc = state.empty_status()
        spec = {"image": {"url": f"https://ops:{SECRET}@images.example/v2.cosi?sig={SECRET}", "sha384": "ignored"}}
        old = {"image": {"url": "https://images.example/v1.cosi", "sha384": "ignored"}}
        store.record({**doc, "servicingState": "provisioned", "abActiveVolume": "volume-a", "spec": old}, "adopted")
        doc.update(servicingState="ab-update-staged", abActiveVolume="volume-a", spec=spec, specOld=old,
                   staging={"operation": "ab-update", "targetVolume": "volume-b"})
        store.record(doc, "ab-update-staged")
    return root


def test_servicing_events_with_versions_and_slot_and_no_secrets(tmp_path: Path, hook: Hook) -> None:
    root = servicing_root(tmp_path, hook.url)
    reporting.servicing_event(root, "staged", f"staged into volume-b from https://ops:{SECRET}@images.example/x")
    reporting.servicing_event(root, "commit", "committed tether-b: volume-b is active (2 checks passed)")
    reporting.servicing_event(root, "commit", "nothing to commit: provisioned (volume-a active)")
    reporting.servicing_event(root, "commit", "back on volume-a after the failed update: provisioned", True)
    reporting.servicing_event(root, "commit", "health checks failed: x; rebooting into the previous slot", False)
    (state.datastore_location(root).parent / "update-check.json").write_text(json.dumps(
        {"action": "rebooting", "reason": "staged into volume-b; finalized; rebooting (reboot policy 'now')"}))
    reporting.servicing_event(root, "check")
    # a check that rebooted announced "rebooting" before the reboot (engine/metadata_update.py); its record is a check
    assert hook.names() == ["servicing/staged", "servicing/committed", "servicing/rolled-back", "servicing/failed",
                            "servicing/check"]
    first = hook.events[0]
    assert first["origin"] == "tether" and first["event_type"] == "finish" and first["result"] == "SUCCESS"
    assert first["description"] == "staged into volume-b from https://images.example/x"
    assert first["servicing"] == {
        "state": "ab-update-staged", "activeSlot": "volume-a", "targetSlot": "volume-b",
        "to": {"image": "https://images.example/v2.cosi?…", "configuration": first["servicing"]["to"]["configuration"]},
        "from": {"image": "https://images.example/v1.cosi",
                 "configuration": first["servicing"]["from"]["configuration"]}}
    assert hook.events[3]["result"] == "FAIL"
    assert hook.events[4]["description"].startswith("staged into volume-b; finalized; rebooting")
    for body in hook.raw:
        assert SECRET.encode() not in body


def test_engine_cli_sends_servicing_events(tmp_path: Path, hook: Hook) -> None:
    root = servicing_root(tmp_path, hook.url)
    bad = tmp_path / "host-configuration.yaml"
    bad.write_text(f"image: {{url: 'https://ops:{SECRET}@images.example/v3.cosi', sha384: nothex}}\n")
    proc = tether(root.root, "update", str(bad), "--allowed-operations", "stage", check=False)
    assert proc.returncode == 1, proc.stderr
    assert hook.names() == ["servicing/failed"]
    ev = hook.events[0]
    assert ev["result"] == "FAIL" and "sha384" in ev["description"]
    assert ev["servicing"]["state"] == "ab-update-staged" and ev["servicing"]["activeSlot"] == "volume-a"
    assert SECRET.encode() not in hook.raw[0]
