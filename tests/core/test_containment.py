"""MemoryError never escapes a stage: on a host with little memory, a module whose configuration is too big to
read, or whose work needs more memory than there is, costs only that module (the next one still runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

_LOW_MEMORY_MODULES = """
import json, os, resource, sys
from pathlib import Path
from tests.fakes import FakeRunner
from tether.instance import InstanceData
from tether.module import ModuleContext
from tether.modrunner import run_modules
from tether.status import StageStatus
from tether.target import Target
import tether.modules.timezone, tether.modules.write_files

root = Path(sys.argv[1])
zone = root / "usr/share/zoneinfo/Europe/Berlin"
zone.parent.mkdir(parents=True)
zone.write_bytes(b"TZif2")
# as the network stage reads it from the instance cache (JSON, no YAML bound on the way): 300,000 files
if sys.argv[2] == "config":
    cfg = {"write_files": [{"path": f"/srv/f{i}", "content": "x"} for i in range(300_000)]}
else:  # 100 MiB of zeros once inflated: under write_files' 128 MiB cap, over this host's memory
    import base64, gzip
    cfg = {"write_files": [{"path": "/srv/big", "encoding": "gz+b64", "owner": "0:0",
                            "content": base64.b64encode(gzip.compress(bytes(100 << 20))).decode()}]}
cfg["timezone"] = "Europe/Berlin"
target = Target.at(root)
ctx = ModuleContext(target=target, runner=FakeRunner(), cloud_config=cfg, system_config={},
                    instance=InstanceData(datasource="NoCloud", instance_id="iid-1"))
status = StageStatus(target, "init")
with open("/proc/self/statm") as f:
    vsize = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
resource.setrlimit(resource.RLIMIT_AS, (vsize + 40 * 1024 * 1024, resource.RLIM_INFINITY))
events = run_modules(ctx, "init", [("write_files", None), ("timezone", None)], status, force=True).events
print(json.dumps({"events": [[e.name, e.result] for e in events], "recoverable": status.recoverable,
                  "errors": status.errors, "localtime": (root / "etc/localtime").exists()}))
"""


def _run(root: Path, case: str) -> dict[str, Any]:
    top = Path(__file__).parents[2]
    proc = subprocess.run([sys.executable, "-c", _LOW_MEMORY_MODULES, str(root), case], capture_output=True,
                          text=True, timeout=180, cwd=top, env={"PYTHONPATH": str(top), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def test_memory_error_reading_a_module_config_costs_only_that_module(tmp_path: Path) -> None:
    out = _run(tmp_path / "root", "config")
    assert out["events"] == [["write_files", "invalid"], ["timezone", "ran"]]
    assert out["recoverable"] == {"WARNING": ["module write_files: invalid configuration, skipped: MemoryError while "
                                              "reading it"]}
    assert out["errors"] == [] and out["localtime"] is True


def test_memory_error_in_a_module_run_costs_only_that_module(tmp_path: Path) -> None:
    out = _run(tmp_path / "root", "run")
    assert out["events"] == [["write_files", "failed"], ["timezone", "ran"]]
    assert out["errors"] == ["module write_files failed: ran out of memory"]
    assert out["localtime"] is True
    assert not (tmp_path / "root/srv/big").exists()
