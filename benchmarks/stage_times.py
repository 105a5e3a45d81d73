#!/usr/bin/env python3
"""Stage timings on the bundled example seed, against temporary roots, as whole processes.

Prints, per stage, the median wall time of ``tether <stage>`` (process start to exit) and the same with the
time spent in child commands (useradd, ssh-keygen...) taken out, against the issue's budgets:
``init --local`` <= 150 ms; the four stages together, commands excluded, <= 400 ms.
Then checks with ``-X importtime`` that the local stage imports no jinja2, network or D-Bus library.

Bytecode is compiled first into a private cache (PYTHONPYCACHEPREFIX), as an installed wheel would have it.
With ``--installed`` the stages run from a wheel installed into a fresh venv made with Debian's
/usr/bin/python3 (system site-packages for python3-yaml), as on a host: no editable-install import hook.
Run: .venv/bin/python benchmarks/stage_times.py [--runs N] [--installed]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))
from tests.conftest import make_root  # noqa: E402

STAGES = [["init", "--local"], ["init"], ["modules", "--mode", "config"], ["modules", "--mode", "final"]]
FORBIDDEN = ("jinja2", "urllib.request", "http.client", "ssl", "requests", "dbus", "pyroute2", "email")


def fresh_root(base: Path) -> Path:
    root = make_root(base)
    seed = root / "var/lib/cloud/seed/nocloud"
    seed.mkdir(parents=True)
    for n in ("meta-data", "user-data", "network-config"):
        shutil.copy(HERE / "tether/examples/nocloud" / n, seed / n)
    return root


def _child_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _installed_python(work: Path, env: dict[str, str]) -> str:
    wheels = work / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(wheels), str(HERE)], check=True, env=env)
    venv = work / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], check=True, env=env)
    subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--no-deps",
                    *map(str, wheels.glob("*.whl"))], check=True, env=env)
    return str(venv / "bin/python")


def make_launcher(python: str, env: dict[str, str], work: Path) -> str:
    """The units' launcher (/usr/lib/tether/tether: python -S + baked import path) as install-units writes it for
    this interpreter, written into ``work``."""
    code = ("import sys; from tether.cli_units import launcher; from tether.target import Target; "
            "sys.stdout.buffer.write(launcher(Target.at('/')))")
    text = subprocess.run([python, "-c", code], env=env, check=True, capture_output=True, cwd=work).stdout
    path = work / "tether-launcher"
    path.write_bytes(text)
    path.chmod(0o755)
    return str(path)


def served_stages(launcher: str, env: dict[str, str], root: Path, work: Path) -> dict[str, tuple[float, float]]:
    """The boot as the units run it: the launcher's ``init --local --serve`` under a notify socket, then
    ``units/tether-stage`` for each later stage. Per stage: (wall seconds, commands seconds). The local stage's
    wall is process start to READY=1; a later stage's is its client's start to exit."""
    import socket
    sock_path = work / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(60)
    out: dict[str, tuple[float, float]] = {}
    t0 = time.perf_counter()
    proc = subprocess.Popen([launcher, "--root", str(root), "init", "--local", "--serve"],
                            env={**env, "NOTIFY_SOCKET": str(sock_path)}, cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while b"READY=1" not in sock.recv(4096):
            pass
        walls = {"init --local": time.perf_counter() - t0}
        cenv = {**env, "TETHER_RUN_DIR": str(root / "run/tether"), "TETHER_BIN": "/bin/false"}
        for key, stage in (("init", "init"), ("modules --mode config", "modules-config"),
                           ("modules --mode final", "modules-final")):
            t1 = time.perf_counter()
            subprocess.run(["bash", str(HERE / "units/tether-stage"), stage], env=cenv, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
            walls[key] = time.perf_counter() - t1
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    events = [json.loads(line) for line in (root / "var/log/tether-events.jsonl").read_text().splitlines()]
    cmds = {e["stage"]: float(e.get("commands_seconds", 0.0)) for e in events}
    names = {"init --local": "init-local", "init": "init", "modules --mode config": "modules-config",
             "modules --mode final": "modules-final"}
    for key, wall in walls.items():
        out[key] = (wall, cmds.get(names[key], 0.0))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--installed", action="store_true", help="run from a wheel in a fresh Debian-python venv")
    args = ap.parse_args()
    cache = tempfile.mkdtemp(prefix="tether-pyc-")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    python = sys.executable
    if args.installed:
        python = _installed_python(Path(cache), env)
    else:
        env["PYTHONPYCACHEPREFIX"] = cache
        subprocess.run([sys.executable, "-m", "compileall", "-q", "tether", "modules", "datasources", "engine"],
                       cwd=HERE, env=env, check=True)
    print(f"python: {python}")
    walls: dict[str, list[float]] = {" ".join(s): [] for s in STAGES}
    nocmd: dict[str, list[float]] = {" ".join(s): [] for s in STAGES}
    cpus: dict[str, list[float]] = {" ".join(s): [] for s in STAGES}
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as d:
            root = fresh_root(Path(d) / "root")
            for stage in STAGES:
                key = " ".join(stage)
                events = root / "var/log/tether-events.jsonl"
                n_before = len(events.read_text().splitlines()) if events.exists() else 0
                t0 = time.perf_counter()
                c0 = _child_cpu()
                subprocess.run([python, "-m", "tether", "--root", str(root), *stage], env=env, cwd=d,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
                wall = time.perf_counter() - t0
                walls[key].append(wall)
                cpus[key].append(_child_cpu() - c0)
                lines = events.read_text().splitlines() if events.exists() else []
                cmd = float(json.loads(lines[-1]).get("commands_seconds", 0.0)) if len(lines) > n_before else 0.0
                nocmd[key].append(wall - cmd)
    print(f"load average before/after: {os.getloadavg()[0]:.2f} (figures are noisy on a busy machine)")
    print(f"{'stage':<28}{'wall ms':>10}{'no-cmd ms':>12}{'cpu ms':>10}")
    total = 0.0
    for key in walls:
        w, n = statistics.median(walls[key]) * 1000, statistics.median(nocmd[key]) * 1000
        c = statistics.median(cpus[key]) * 1000
        total += n
        print(f"tether {key:<21}{w:10.1f}{n:12.1f}{c:10.1f}")
    local = statistics.median(walls["init --local"]) * 1000
    print(f"\ninit --local whole process: {local:.1f} ms (budget 150 ms) -> {'OK' if local <= 150 else 'OVER'}")
    print(f"four stages, commands excluded: {total:.1f} ms (budget 400 ms) -> {'OK' if total <= 400 else 'OVER'}")
    served: dict[str, list[tuple[float, float]]] = {}
    launcher = make_launcher(python, env, Path(cache))
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as d:
            root = fresh_root(Path(d) / "root")
            for key, fig in served_stages(launcher, env, root, Path(d)).items():
                served.setdefault(key, []).append(fig)
    print("\nas the units run them (the -S launcher's init --local --serve, then tether-stage clients)")
    print(f"{'stage':<28}{'wall ms':>10}{'no-cmd ms':>12}")
    s_total = 0.0
    for key, figs in served.items():
        w = statistics.median(f[0] for f in figs) * 1000
        n = statistics.median(f[0] - f[1] for f in figs) * 1000
        s_total += n
        print(f"tether {key:<21}{w:10.1f}{n:12.1f}")
    s_local = statistics.median(f[0] for f in served["init --local"]) * 1000
    print(f"init --local as booted (launcher start to READY=1): {s_local:.1f} ms (budget 150 ms) -> "
          f"{'OK' if s_local <= 150 else 'OVER'}")
    print(f"four stages, commands excluded (as booted): {s_total:.1f} ms (budget 400 ms) -> "
          f"{'OK' if s_total <= 400 else 'OVER'}")
    with tempfile.TemporaryDirectory() as d:
        root = fresh_root(Path(d) / "root")
        proc = subprocess.run([python, "-X", "importtime", "-m", "tether", "--root", str(root), "init",
                               "--local"], env=env, capture_output=True, text=True, check=False, cwd=d)
        mods = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
        bad = sorted({m for m in mods if m.split(".")[0] in FORBIDDEN or m in FORBIDDEN})
        print(f"init --local imports {len(mods)} modules; heavy ones present: {', '.join(bad) or 'none'}")
    shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
