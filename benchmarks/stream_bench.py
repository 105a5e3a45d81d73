"""Image streaming throughput on a loop-backed target against ``dd bs=4M oflag=direct``.

Runs as root. Builds (in --work, default a temp dir) a >= 1 GiB raw ext4 image filled with incompressible
files, its zstd version, and a half-empty ext4 image of the same size; then, on one loop device partition:

  dd         dd if=raw of=target bs=4M oflag=direct
  raw+sha256 tether's writer, hashing the raw file as it streams (no discard: every byte written, like dd)
  zstd       the zstd image, decompressed and hashed while streaming
  half-empty the half-empty image with discard + zero-run skipping

tether fsyncs once at the end (the issue asks for it); plain ``dd oflag=direct`` to a loop device returns when
the loop driver has the data in the backing file's page cache, so ``dd ... conv=fsync`` is also shown as the
like-for-like reference. Each tether run happens in a child process so its peak RSS (VmHWM) is its own.
Prints MB/s, the ratio to dd, and peak RSS.
Budget (issue 5): raw+hash >= 0.9x dd, half-empty faster than dd, RSS <= 64 MB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MiB = 1 << 20


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def build_images(work: Path, size_mib: int) -> dict[str, Path]:
    raw = work / "full.img"
    half = work / "half.img"
    zst = work / "full.img.zst"
    if raw.exists() and half.exists() and zst.exists():
        return {"raw": raw, "half": half, "zst": zst}
    for img, fill in ((raw, 0.92), (half, 0.45)):
        tree = work / (img.stem + "-tree")
        tree.mkdir(exist_ok=True)
        remaining = int(size_mib * fill)
        i = 0
        while remaining > 0:
            chunk = min(64, remaining)
            (tree / f"blob{i}.bin").write_bytes(os.urandom(chunk * MiB))
            remaining -= chunk
            i += 1
        with open(img, "wb") as f:
            f.truncate(size_mib * MiB)
        sh("mkfs.ext4", "-q", "-F", "-d", str(tree), str(img))
        sh("rm", "-rf", str(tree))
    sh("zstd", "-q", "-f", "-1", "-T2", str(raw), "-o", str(zst))
    return {"raw": raw, "half": half, "zst": zst}


def child(kind: str, image: str, target: str, discard: bool, digest: str) -> None:
    """One staging write through the engine's own path (images.deploy: read, sha256, decompress, write, verify,
    fsync); prints a JSON line with bytes, seconds and peak RSS (VmHWM: ru_maxrss survives exec)."""
    from tether.engine import images
    from tether.engine.hostconfig import OsImage

    start = time.monotonic()
    [res] = images.deploy(OsImage(url=f"file://{image}", sha256=digest), {"/": target}, discard=discard)
    seconds = time.monotonic() - start
    hwm = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("VmHWM:"))
    print(json.dumps({"kind": kind, "bytes": res.written, "skipped": res.skipped, "seconds": seconds,
                      "rss_kib": hwm}))


def file_sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


def run_child(kind: str, image: Path, target: str, discard: bool) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(image), target, str(int(discard)),
                          file_sha256(image)],
                         check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--work", type=Path, default=None, help="directory for images (kept between runs)")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, image, target, discard, digest = args.child
        child(kind, image, target, discard == "1", digest)
        return 0
    if os.geteuid() != 0:
        print("stream_bench: needs root (loop devices)", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="stream-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.monotonic()
    imgs = build_images(work, args.size_mib)
    print(f"images ready in {time.monotonic() - t:.0f}s: raw {imgs['raw'].stat().st_size / MiB:.0f} MiB, "
          f"zstd {imgs['zst'].stat().st_size / MiB:.0f} MiB")
    backing = work / "target.img"
    with open(backing, "wb") as f:
        f.truncate((args.size_mib + 64) * MiB)
    # --direct-io: the loop device writes through to the disk as a real block device would, instead of parking
    # everything in the backing file's page cache until an fsync
    loop = sh("losetup", "-f", "--show", "--direct-io=on", str(backing)).strip()
    try:
        size = imgs["raw"].stat().st_size
        dd_rates = []
        for extra in ((), ("conv=fsync",)):
            drop_caches()
            t = time.monotonic()
            sh("dd", f"if={imgs['raw']}", f"of={loop}", "bs=4M", "oflag=direct", "status=none", *extra)
            dd_rates.append(size / MiB / (time.monotonic() - t))
        dd_rate, dd_sync_rate = dd_rates
        rows = [("dd bs=4M oflag=direct", dd_rate, 1.0, None, ""),
                ("dd ... conv=fsync", dd_sync_rate, dd_sync_rate / dd_rate, None, "")]
        for kind, img, discard in (("raw+sha256", imgs["raw"], False), ("zstd+sha256", imgs["zst"], False),
                                   ("half-empty+discard", imgs["half"], True)):
            drop_caches()
            r = run_child(kind, img, loop, discard)
            rate = r["bytes"] / MiB / r["seconds"]
            note = f"{rate / dd_sync_rate:.2f}x dd+fsync"
            if r["skipped"]:
                note += f"; skipped {r['skipped'] / MiB:.0f} MiB of zeros"
            rows.append((kind, rate, rate / dd_rate, r["rss_kib"] / 1024, note))
        want = hashlib.sha256()
        with open(imgs["half"], "rb") as f:
            while chunk := f.read(4 * MiB):
                want.update(chunk)
        got = hashlib.sha256()
        with open(loop, "rb") as f:
            left = size
            while left > 0 and (chunk := f.read(min(4 * MiB, left))):
                got.update(chunk)
                left -= len(chunk)
        print(f"{'run':<24}{'MB/s':>9}{'x dd':>8}{'peak RSS MB':>13}  notes")
        for name, rate, ratio, rss, note in rows:
            rss_s = f"{rss:.1f}" if rss is not None else "-"
            print(f"{name:<24}{rate * MiB / 1e6:>9.0f}{ratio:>8.2f}{rss_s:>13}  {note}")
        print("half-empty target bytes match the image:", got.hexdigest() == want.hexdigest())
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)
        backing.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
