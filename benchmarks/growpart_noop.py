"""How long growpart takes on a boot where nothing changed (the partition already fills its disk).

Run as root: ``.venv/bin/python benchmarks/growpart_noop.py [runs]``. Builds a GPT loop disk, grows it once,
then times the module on the unchanged disk. Budget: 50 ms, no process spawned, no table write.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tether.convert import convert
from tether.instance import InstanceData
from tether.module import ModuleContext
from tether.modules import growpart
from tether.runner import Runner
from tether.target import Target


def sh(*argv: str, data: str | None = None) -> str:
    return subprocess.run(argv, input=data, capture_output=True, text=True, check=True, timeout=60).stdout


def main(runs: int = 50) -> int:
    if os.geteuid() != 0:
        print("needs root (loop devices)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        img = Path(tmp) / "disk.img"
        img.write_bytes(b"")
        os.truncate(img, 64 << 20)
        sh("sfdisk", "--quiet", str(img), data="label: gpt\nsize=16MiB\n")
        dev = sh("losetup", "--find", "--show", "--partscan", str(img)).strip()
        root = Path(tmp) / "root"
        root.mkdir()
        try:
            sh("partx", "--add", dev) if not Path(dev + "p1").exists() else None
            os.truncate(img, 128 << 20)
            sh("losetup", "--set-capacity", dev)
            runner = Runner()
            ctx = ModuleContext(target=Target.at(root), runner=runner, instance=InstanceData("NoCloud", "bench"),
                                cloud_config={}, system_config={})
            cfg = convert(growpart.Config, {"growpart": {"mode": "tether", "devices": [dev + "p1"]}})
            growpart.handle(ctx, cfg)            # the first boot: grows
            assert runner.history, "the first run should have grown the partition"
            runner.history.clear()
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                growpart.handle(ctx, cfg)
                times.append((time.perf_counter() - t0) * 1000)
            assert runner.history == [], runner.history
            print(f"growpart no-op: median {statistics.median(times):.2f} ms, max {max(times):.2f} ms "
                  f"over {runs} runs, 0 processes, 0 table writes (budget 50 ms)")
            return 0 if max(times) <= 50 else 1
        finally:
            subprocess.run(["losetup", "-d", dev], check=False)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50))
