"""The boot server's record of what the later stages ran, and importing it ahead on the next boot."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.core.test_bootserver import STAGES, Notify, client, fallback_bin, seeded_root
from tether import bootimports


def served_boot(root: Path, tmp: Path, name: str) -> None:
    """One boot as the units run it: the server with --debug under a notify socket, then the three clients."""
    notify = Notify(tmp / f"{name}.sock")
    proc = subprocess.Popen([sys.executable, "-m", "tether", "--debug", "--root", str(root), "init", "--local",
                             "--serve"], env={**os.environ, "NOTIFY_SOCKET": str(notify.path)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp)
    try:
        notify.wait_ready(proc)
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
    for stage in STAGES:   # exactly the modules each stage ran on this (first) boot
        ran = [m["name"] for m in events if m["stage"] == stage for m in m["modules"] if m["result"] == "ran"]
        assert record[stage] == ran, stage
    assert "users_groups" in record["init"] and "final_message" in record["modules-final"]

    served_boot(root, tmp_path, "boot2")   # a later boot of the same instance
    log = (root / "var/log/tether.log").read_text().split("stage init-local: pid")[-1]
    ahead = dict(re.findall(r"loaded ahead for stage (\S+): (.*)", log))
    # the modules the first boot's init stage ran were imported before the stage was asked for
    assert {f"tether.modules.{m}" for m in record["init"]} <= set(ahead["init"].split())
    assert "tether.userdata_stage" in ahead["init"]
    # and the record now holds what this later boot ran: per-instance modules are gone, 'always' ones stay
    record2 = json.loads((root / "var/lib/tether/data/boot-imports.json").read_text())
    assert "users_groups" not in record2["init"] and "final_message" in record2["modules-final"]


def test_damaged_record_and_unknown_names_import_nothing_more(tmp_path: Path) -> None:
    path = tmp_path / "boot-imports.json"
    assert bootimports.load(str(path)) == {}                       # missing
    for text in ("{not json", "[1, 2]", '{"init": "bootcmd"}', '{"other": ["bootcmd"]}'):
        path.write_text(text)
        assert bootimports.load(str(path)) == {}, text
    path.write_text('{"init": ["bootcmd", 7, "os"]}')
    assert bootimports.load(str(path)) == {"init": ["bootcmd", "os"]}
    before = set(sys.modules)
    done = bootimports.prewarm("modules-final", ["os", "../../evil", "no_such_module"])
    assert all(n.startswith("tether.") for n in done)              # only registered tether modules, never 'os'
    new = {n.split(".")[0] for n in set(sys.modules) - before}
    assert new <= {"tether", "yaml"} | sys.stdlib_module_names, new   # nothing but tether and what it imports
    bootimports.save(str(tmp_path / "sub/r.json"), {"init": ["bootcmd"]})
    assert json.loads((tmp_path / "sub/r.json").read_text()) == {"init": ["bootcmd"]}
    assert oct(os.stat(tmp_path / "sub/r.json").st_mode & 0o777) == "0o644"


def test_budget_stops_importing(tmp_path: Path) -> None:
    import tether.modules as mods
    fresh = [m for m in mods.REGISTERED if f"tether.modules.{m}" not in sys.modules][:3]
    assert bootimports.prewarm("modules-final", fresh, budget=-1.0) == []
