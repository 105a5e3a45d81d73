"""Adaptive vs full download of an A/B update on loopback (issue 19 point 2).

A 1 GiB image (random data with a 256 MiB empty region) and its next version with 1% of its 4 KiB blocks changed
in scattered places, published with ``tether image index`` on a loopback Range server running in its own process.
Each staging runs in a child process (``images.deploy`` into an empty 1 GiB file standing in for the inactive
slot): the full download with the pinned hash, then the adaptive one seeded with the active slot. Printed side by
side: bytes the server sent, seconds, and the child's peak resident memory (VmHWM). Budget: adaptive bytes at most
5% of the image, and no slower than the full download.

    .venv/bin/python benchmarks/adaptive_bench.py [--size-mib 1024] [--runs 1] [--work DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BLOCK = 4096


def make_versions(work: Path, size: int, seed: int = 19) -> tuple[Path, Path, int]:
    rnd = random.Random(seed)
    old, new = work / "active.img", work / "pub" / "v2.img"
    new.parent.mkdir(exist_ok=True)
    with open(old, "wb") as f:
        for off in range(0, size, 64 << 20):
            n = min(64 << 20, size - off)
            f.write(bytes(n) if size // 2 <= off < size // 2 + size // 4 else os.urandom(n))
    shutil.copyfile(old, new)
    picks = rnd.sample(range(size // BLOCK), size // BLOCK // 100)
    fd = os.open(new, os.O_WRONLY)
    try:
        for b in picks:
            os.pwrite(fd, os.urandom(BLOCK), b * BLOCK)
    finally:
        os.close(fd)
    return old, new, len(picks)


def child(mode: str, url: str, digest: str, target: str, active: str, cache: str) -> None:
    """One staging; prints a JSON line: seconds and VmHWM."""
    import logging

    from tether.engine import images
    from tether.engine.hostconfig import OsImage

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")

    image = OsImage(url=url, sha256=digest)
    start = time.monotonic()
    if mode == "full":
        images.deploy(image, {"/": target}, discard=True)
    else:
        images.deploy_seeded(image, {"/": target}, [active], cache)
    took = time.monotonic() - start
    hwm = next(int(x.split()[1]) for x in Path("/proc/self/status").read_text().splitlines()
               if x.startswith("VmHWM:"))
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": took, "vmhwm_kib": hwm, "cpu": ru.ru_utime + ru.ru_stime}))


def stats(base: str, reset: bool = False) -> dict[str, int]:
    with urllib.request.urlopen(f"{base}/{'_reset' if reset else '_stats'}", timeout=10) as r:
        out: dict[str, int] = json.load(r)
    return out


def run(mode: str, base: str, digest: str, work: Path, old: Path, size: int) -> dict[str, float]:
    target = work / f"slot-b-{mode}.img"
    target.unlink(missing_ok=True)
    with open(target, "wb") as f:
        f.truncate(size)
    cache = work / f"cache-{mode}"
    shutil.rmtree(cache, ignore_errors=True)
    stats(base, reset=True)
    out = subprocess.run([sys.executable, __file__, "--child", mode, f"{base}/v2.img", digest, str(target),
                          str(old), str(cache)], capture_output=True, text=True, check=False, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"{mode} staging failed:\n{out.stderr}")
    res: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    for line in out.stderr.splitlines():
        if " chunks: " in line:
            print(f"  {mode}: {line.split(': ', 1)[1]}")
    res["bytes"] = stats(base)["bytes"]
    with open(target, "rb") as f:
        h = hashlib.sha256()
        while b := f.read(8 << 20):
            h.update(b)
    if h.hexdigest() != digest:
        raise SystemExit(f"{mode}: the slot does not hold the new image")
    target.unlink()
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--work", default=None, help="a directory with room for 4 images (default: a temporary one)")
    ap.add_argument("--child", nargs=6, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    size = args.size_mib << 20
    work = Path(tempfile.mkdtemp(prefix="adaptive-bench-", dir=args.work or "/var/tmp"))
    try:
        t = time.monotonic()
        old, new, changed = make_versions(work, size)
        digest = hashlib.sha256(new.read_bytes()).hexdigest()
        prep = time.monotonic() - t
        t = time.monotonic()
        subprocess.run([sys.executable, "-m", "tether", "image", "index", str(new)], check=True, cwd=ROOT,
                       capture_output=True)
        indexing = time.monotonic() - t
        server = subprocess.Popen([sys.executable, "-m", "tests.engine.rangeserver", str(new),
                                   f"{new}.chunks"], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        assert server.stdout is not None and server.stdin is not None
        base = f"http://127.0.0.1:{server.stdout.readline().strip()}"
        try:
            results: dict[str, list[dict[str, float]]] = {"full": [], "adaptive": []}
            for _ in range(args.runs):
                for mode in ("full", "adaptive"):
                    results[mode].append(run(mode, base, digest, work, old, size))
        finally:
            server.stdin.close()
            server.wait(timeout=30)
        index_size = Path(f"{new}.chunks").stat().st_size
        print(f"image {size >> 20} MiB, {changed} of {size // BLOCK} 4 KiB blocks changed (1%), index "
              f"{index_size} bytes; made in {prep:.1f}s, indexed in {indexing:.1f}s (tether image index)")
        print(f"{'':22}{'full':>16}{'adaptive':>16}")
        best = {m: min(r, key=lambda x: x["seconds"]) for m, r in results.items()}
        print(f"{'bytes served':22}{best['full']['bytes']:>16,.0f}{best['adaptive']['bytes']:>16,.0f}")
        print(f"{'  % of the image':22}{100 * best['full']['bytes'] / size:>15.1f}%"
              f"{100 * best['adaptive']['bytes'] / size:>15.2f}%")
        for m in ("full", "adaptive"):
            results[m].sort(key=lambda x: x["seconds"])
        secs = {m: [f"{r['seconds']:.2f}" for r in results[m]] for m in results}
        print(f"{'seconds (each run)':22}{' '.join(secs['full']):>16}{' '.join(secs['adaptive']):>16}")
        cpu = {m: [f"{r['cpu']:.2f}" for r in results[m]] for m in results}
        print(f"{'CPU seconds (each run)':22}{' '.join(cpu['full']):>16}{' '.join(cpu['adaptive']):>16}")
        print(f"{'peak memory (VmHWM)':22}{best['full']['vmhwm_kib'] / 1024:>13.0f}MiB"
              f"{best['adaptive']['vmhwm_kib'] / 1024:>13.0f}MiB")
        ok_bytes = best["adaptive"]["bytes"] <= size * 0.05
        ok_time = best["adaptive"]["seconds"] <= best["full"]["seconds"]
        print(f"budget: bytes <= 5% of the image: {'met' if ok_bytes else 'NOT met'}; "
              f"time no worse than a full download: {'met' if ok_time else 'NOT met'} (best of {args.runs})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
