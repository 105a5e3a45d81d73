"""Ec2 crawl of a typical instance against the loopback IMDS, measured after the token (budget: 100 ms).

The fake IMDS (tests/datasources/fakeserver.py) runs in a child process so it does not share the GIL with the
crawler, as the real service would not. Usage: ``.venv/bin/python benchmarks/ec2_crawl_bench.py [runs]``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUDGET_MS = 100.0
SERVER = """
import sys, time
from tests.datasources.fakeserver import Ec2Server
with Ec2Server() as srv:
    print(srv.url, flush=True)
    sys.stdin.read()
"""


def main() -> int:
    from tether.datasource import DsContext
    from tether.datasources.ec2 import Ec2Datasource
    from tether.host import Host
    from tether.target import Target

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=env, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://"):
            print("fake IMDS did not start", file=sys.stderr)
            return 2
        times, nreq = [], 0
        for _ in range(runs + 1):
            ctx = DsContext(Host(sysroot=Path("/nonexistent")), Target.at("/nonexistent"), None,  # type: ignore[arg-type]
                            {"metadata_urls": [url], "max_wait": 10})
            ds = Ec2Datasource(ctx)
            ds._connect()                       # the token PUT is not part of the budget
            t0 = time.perf_counter()
            inst = ds.fetch()
            times.append((time.perf_counter() - t0) * 1000)
            assert inst.instance_id == "i-0123456789abcdef0"
            assert ds.client is not None
            nreq = ds.client.requests
        times = times[1:]                       # the first run warms imports
        best, med = min(times), statistics.median(times)
        ok = med <= BUDGET_MS
        print(f"ec2 crawl after token: {nreq} requests, min {best:.1f} ms, median {med:.1f} ms, "
              f"max {max(times):.1f} ms over {runs} runs (budget {BUDGET_MS:.0f} ms: {'ok' if ok else 'OVER'})")
        return 0 if ok else 1
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())
