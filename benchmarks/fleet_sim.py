"""What a fleet's update costs the image server (issue 19 point 6): 500 simulated hosts fetch a new image in which
1% of the 4 KiB blocks changed, from one loopback image server (``tests/engine/rangeserver.py`` in a process of
its own, counting what it sends and how many requests it answers at once), with and without adaptive downloads
and with and without the update timer's jitter (``RandomizedDelaySec``).

The hosts are threads, not VMs. Each has its own active slot: the old image with 0.1% of its blocks different
(what a running system writes: logs, keys, machine-id), so each asks for a different set of chunks. A host's
download is tether's own client code: a full download reads the image through ``engine/sources.py`` (the stream a
staging writes); an adaptive one fetches the signed-size index, works out the chunks it lacks, and fetches them
with ``engine/chunkfetch.py`` (several ranges per request) in the spans ``engine/assembly.py`` makes, checking
each chunk's SHA-256. Not simulated: reading and writing the slots (local disk work, no server load).

Scaled down to run in a few minutes on 2 cores: the image is 64 MiB (``--image-mib``) and the timer's jitter
window 60 s (``RandomizedDelaySec=1min``, ``--jitter``). Printed: bytes served, requests, peak concurrent
requests, and the time until every host has its image.

    .venv/bin/python benchmarks/fleet_sim.py [--hosts 500] [--image-mib 64] [--jitter 60]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tether.engine import chunks  # noqa: E402
from tether.engine.assembly import check_chunk, spans_of  # noqa: E402
from tether.engine.chunkfetch import HttpRanges  # noqa: E402
from tether.engine.sources import open_source  # noqa: E402

BLOCK = 4096
NET = {"timeout": 120.0, "retries": 5.0}


@dataclass
class Scenario:
    adaptive: bool
    jitter: float


def publish(work: Path, size: int) -> tuple[Path, set[int]]:
    rnd = random.Random(6)
    new = work / "v2.img"
    old = bytearray(os.urandom(size))
    old[size // 2:size // 2 + size // 4] = bytes(size // 4)      # an empty region, as in a filesystem
    changed = set(rnd.sample(range(size // BLOCK), size // BLOCK // 100))
    for b in changed:
        old[b * BLOCK:(b + 1) * BLOCK] = os.urandom(BLOCK)         # the old version: new with 1% different
    new.write_bytes(old)  # published: the new version (old bytes outside `changed` are the active slots')
    subprocess.run([sys.executable, "-m", "tether", "image", "index", str(new)], check=True, cwd=ROOT,
                   capture_output=True)
    return new, changed


def full_host(url: str) -> int:
    src = open_source(url, timeout=NET["timeout"], retries=int(NET["retries"]))
    buf = bytearray(256 << 10)
    got = 0
    try:
        while n := src.readinto(memoryview(buf)):
            got += n
    finally:
        src.close()
    return got


def adaptive_host(base: str, changed: set[int], rnd: random.Random) -> int:
    raw = bytearray()
    src = open_source(f"{base}/v2.img.chunks", timeout=NET["timeout"], retries=int(NET["retries"]))
    buf = bytearray(1 << 20)
    try:
        while n := src.readinto(memoryview(buf)):
            raw += buf[:n]
    finally:
        src.close()
    idx = chunks.parse(bytes(raw), "v2.img.chunks")
    own = set(rnd.sample(range(idx.count), idx.count // 1000))      # this host's own writes
    want = sorted(i for i in changed | own if idx.digest(i) != idx.zero_digest(i))
    ranges = HttpRanges(f"{base}/{idx.data}", idx.size, NET)
    got = 0
    try:
        for (start, _end), body in ranges.read_many(spans_of(idx, want)):
            for off in range(0, len(body), idx.chunk_size):
                i = (start + off) // idx.chunk_size
                check_chunk(idx, i, memoryview(body)[off:off + idx.chunk_size], "v2.img")
            got += len(body)
    finally:
        ranges.close()
    return got


def stats(base: str, reset: bool = False) -> dict[str, int]:
    with urllib.request.urlopen(f"{base}/{'_reset' if reset else '_stats'}", timeout=30) as r:
        out: dict[str, int] = json.load(r)
    return out


def run(sc: Scenario, base: str, hosts: int, changed: set[int]) -> dict[str, float]:
    stats(base, reset=True)
    done: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = time.monotonic()
    gate = threading.Barrier(hosts + 1)

    def host(n: int) -> None:
        rnd = random.Random(n)
        delay = rnd.uniform(0, sc.jitter)
        gate.wait()
        time.sleep(delay)
        try:
            if sc.adaptive:
                adaptive_host(base, changed, rnd)
            else:
                full_host(f"{base}/v2.img")
        except Exception as e:  # counted and reported: a host that failed is not staged
            with lock:
                errors.append(f"host {n}: {e}")
            return
        with lock:
            done.append(time.monotonic() - start)

    threads = [threading.Thread(target=host, args=(n,), daemon=True) for n in range(hosts)]
    for t in threads:
        t.start()
    gate.wait()
    start = time.monotonic()
    for t in threads:
        t.join(timeout=900)
    s = stats(base)
    if errors:
        print(f"  {len(errors)} hosts failed, e.g. {errors[0]}")
    return {"bytes": s["bytes"], "requests": s["requests"], "peak": s["peak"], "hosts": len(done),
            "last": max(done) if done else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=500)
    ap.add_argument("--image-mib", type=int, default=64)
    ap.add_argument("--jitter", type=float, default=60.0, help="RandomizedDelaySec, seconds (default 60)")
    args = ap.parse_args()
    size = args.image_mib << 20
    work = Path(tempfile.mkdtemp(prefix="fleet-sim-", dir="/var/tmp"))
    server = None
    try:
        new, changed = publish(work, size)
        server = subprocess.Popen([sys.executable, "-m", "tests.engine.rangeserver", str(new), f"{new}.chunks"],
                                  cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None
        base = f"http://127.0.0.1:{server.stdout.readline().strip()}"
        # what tether's format probe and size check cost before either kind of download: GETs closed early
        stats(base, reset=True)
        for _ in range(2):
            src = open_source(f"{base}/v2.img", timeout=30.0)
            src.readinto(memoryview(bytearray(512)))
            src.close()
        time.sleep(0.5)
        probe = stats(base)["bytes"]
        index = Path(f"{new}.chunks").stat().st_size
        print(f"{args.hosts} hosts, image {args.image_mib} MiB ({len(changed)} of {size // BLOCK} blocks changed, "
              f"1%; each host 0.1% of its own), index {index} bytes, jitter window {args.jitter:g}s")
        rows = []
        for sc in (Scenario(False, 0.0), Scenario(True, 0.0), Scenario(False, args.jitter),
                   Scenario(True, args.jitter)):
            t = time.monotonic()
            r = run(sc, base, args.hosts, changed)
            when = f"jitter {sc.jitter:g}s" if sc.jitter else "no jitter"
            name = f"{'adaptive' if sc.adaptive else 'full'}, {when}"
            rows.append((name, r))
            print(f"  {name}: done in {time.monotonic() - t:.1f}s", flush=True)
        print(f"{'':24}{'bytes served':>16}{'per host':>12}{'requests':>10}{'peak conc.':>11}{'all staged':>12}")
        for name, r in rows:
            print(f"{name:24}{r['bytes']:>16,.0f}{r['bytes'] / args.hosts / size * 100:>11.2f}%"
                  f"{r['requests']:>10,.0f}{r['peak']:>11.0f}{r['last']:>11.1f}s"
                  + (f"  ({r['hosts']:.0f} of {args.hosts} hosts)" if r["hosts"] != args.hosts else ""))
        print(f"tether's format probe and size check (2 GETs closed after the headers) cost {probe:,} bytes per "
              "host on loopback, not included above")
    finally:
        if server is not None and server.stdin is not None:
            server.stdin.close()
            server.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
