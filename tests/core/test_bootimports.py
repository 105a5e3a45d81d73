"""The boot server's record of what the network stage ran, and importing it ahead on the next boot."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.core.test_bootserver import STAGES, Notify, client, fallback_bin, seeded_root
from tether import bootimports


def served_boot(root: Path, tmp: Path, name: str, settle: bool = False) -> None:
    """One boot as the units run it: the server under a notify socket, then the three clients (with ``settle``,
    once the server has finished importing ahead, as when networkd takes its time)."""
    logfile = root / "var/log/tether.log"
    seen = logfile.read_text().count("modules ahead for stage init") if logfile.exists() else 0
    notify = Notify(tmp / f"{name}.sock")
    proc = subprocess.Popen([sys.executable, "-m", "tether", "--root", str(root), "init", "--local", "--serve"],
                            env={**os.environ, "NOTIFY_SOCKET": str(notify.path)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp)
    try:
        notify.wait_ready(proc)
        deadline = time.monotonic() + 60
        while settle and logfile.read_text().count("modules ahead for stage init") == seen:
            assert time.monotonic() < deadline, "the server never finished importing ahead"
            time.sleep(0.05)
        exe, log = fallback_bin(tmp)
        for stage in STAGES:
            res = client(root / "run/tether", stage, exe)
            errors = json.loads((root / "run/tether/status.json").read_text())["v1"].get(stage, {}).get("errors")
            assert res.returncode == 0, (stage, errors)
        assert proc.wait(timeout=60) == 0
        assert not log.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
        notify.sock.close()


def test_record_follows_what_ran_and_next_boot_imports_it_ahead(tmp_path: Path) -> None:
    root = seeded_root(tmp_path / "root")
    served_boot(root, tmp_path, "boot1")
    record = json.loads((root / "var/lib/tether/data/boot-imports.json").read_text())
    events = [json.loads(x) for x in (root / "var/log/tether-events.jsonl").read_text().splitlines()]
    ran = [m["name"] for e in events if e["stage"] == "init" for m in e["modules"] if m["result"] == "ran"]
    assert record == {"init": ran}          # exactly the modules the network stage ran on this (first) boot
    assert "users_groups" in ran and "bootcmd" in ran

    served_boot(root, tmp_path, "boot2", settle=True)    # a later boot of the same instance
    log = (root / "var/log/tether.log").read_text().split("stage init-local: pid")[-1]
    found = re.search(r"imported \d+ modules ahead for stage init in [\d.]+s; loaded: (.*)", log)
    assert found, log[-3000:]
    ahead = set(found.group(1).split())
    # the machinery and the modules the first boot's network stage ran were imported before it was asked for
    assert {"tether.userdata_stage", "tether.modrunner"} <= ahead
    assert {f"tether.modules.{m}" for m in ran} <= ahead
    # the record now holds what this later boot ran: per-instance modules are gone, 'always' ones stay
    record2 = json.loads((root / "var/lib/tether/data/boot-imports.json").read_text())
    assert "users_groups" not in record2["init"] and "bootcmd" in record2["init"]
    assert oct(os.stat(root / "var/lib/tether/data/boot-imports.json").st_mode & 0o777) == "0o644"


def test_damaged_record_and_unknown_names_import_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "boot-imports.json"
    assert bootimports.load(str(path)) == []                        # missing
    for text in ("{not json", "[1, 2]", '{"init": "bootcmd"}', '{"other": ["bootcmd"]}'):
        path.write_text(text)
        assert bootimports.load(str(path)) == [], text
    path.write_text('{"init": ["bootcmd", 7, "os"]}')
    assert bootimports.load(str(path)) == ["bootcmd", "os"]
    names = bootimports.wanted(["os", "../../evil", "no_such_module", "bootcmd"])
    assert names == [*bootimports.MACHINERY, "tether.modules.bootcmd"]   # only registered tether modules
    bootimports.save(str(tmp_path / "sub/r.json"), ["bootcmd"])
    assert bootimports.load(str(tmp_path / "sub/r.json")) == ["bootcmd"]


def test_stops_when_the_stage_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    import tether.modules as mods
    picked = sorted(mods.REGISTERED)[:3]
    for m in picked:   # as on a boot where they are not imported yet (the originals come back after the test)
        monkeypatch.delitem(sys.modules, f"tether.modules.{m}", raising=False)
    assert bootimports.prewarm(picked, lambda: True) == []
    assert all(f"tether.modules.{m}" not in sys.modules for m in picked)
    calls: list[str] = []

    def asked_after_one() -> bool:   # the stage is asked for while the first module is being imported
        calls.append("x")
        return len(calls) > len(bootimports.MACHINERY) + 1

    done = bootimports.prewarm(picked, asked_after_one)
    assert done and done[-1] == f"tether.modules.{picked[0]}"
    assert f"tether.modules.{picked[1]}" not in sys.modules
