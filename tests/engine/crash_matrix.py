"""The crash matrix: every servicing operation, from every state it accepts, killed at every durable step.

Checkpoints are discovered, not listed: each operation runs once with a hook that records every
``checkpoints.reached(name)`` it passes (the state store, partitioning, slot writes, boot entries...), and each
occurrence becomes a kill point. Two kill modes:

- ``kill``: SIGKILL at the checkpoint; everything the process wrote before it is on the disk.
- ``power``: a power cut during the step that ends at the checkpoint. The disk is the one at the previous
  checkpoint plus a random subset (seeded) of the 4 KiB blocks the step changed: a disk may persist any subset of
  the writes issued since the last flush, in any order. Two stores are atomic by their own design and are taken
  whole, from before or after the step (seeded): the servicing datastore's partition (SQLite with a rollback
  journal and ``synchronous=EXTRA``) and the boot loader's store (the fake loader's file, written with
  temp + fsync + rename + directory fsync, like EFI variables and ESP entries).

After each case the host recovers the way a real one would — it boots what its boot loader picks and runs
``tether commit``, then the same command is run again, then a further update — and the invariants are checked
after every boot: the slot booted and the slot that boots next are slots whose records and markers verify, the
booted slot is configured, and ``tether get status`` agrees with the disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.engine.conftest import BuiltImage, mounts_under, sh
from tests.engine.servicing_rig import ROOT_A, ROOT_B, STATE, Rig, config
from tether.engine import checkpoints, slots, state
from tether.engine.commit import commit
from tether.engine.finalize import finalize, finalize_install, remove_slot_entries
from tether.engine.hostconfig import parse_host_config
from tether.engine.install import InstallOptions, install
from tether.engine.layout import other
from tether.engine.metadata_update import from_metadata
from tether.engine.rebootpolicy import parse_policy
from tether.engine.rollback import rollback
from tether.engine.update import UpdateOptions, stage
from tether.errors import TetherError
from tether.host import Host
from tether.instance import InstanceData
from tether.instancestore import InstanceStore
from tether.runner import Runner
from tether.target import Target

BLOCK = 4096
SLOT_PART = {"volume-a": ROOT_A, "volume-b": ROOT_B}
MODES = ("kill", "power")


class MatrixFailure(AssertionError):
    pass


# ---- disk snapshots -------------------------------------------------------------------------------------------

@dataclass
class Snapshot:
    disk: Path
    fake: bytes | None
    cmdline: str


def _release(rig: Rig) -> None:
    """Unmount everything on the rig's loop device (a killed run's leftovers, the running root)."""
    dev = rig.disk.device + "p"
    for _ in range(3):
        left = mounts_under(dev)
        for line in Path("/proc/self/mounts").read_text().splitlines():
            src, mp = line.split()[:2]
            if mp.startswith(str(rig.tmp)) and mp not in left:
                left.append(mp)
        if not left:
            return
        for mp in sorted(left, key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)


def _flush(rig: Rig) -> None:
    """Drop the loop device's block caches so reads see the backing file as it is now."""
    os.sync()
    devs = [rig.disk.device] + [p for p in (rig.disk.part(n) for n in range(1, 5)) if os.path.exists(p)]
    for d in devs:
        subprocess.run(["blockdev", "--flushbufs", d], capture_output=True)
    subprocess.run(["partx", "-u", rig.disk.device], capture_output=True)
    subprocess.run(["partx", "-a", rig.disk.device], capture_output=True)
    # partx may drop and re-add the partitions' nodes: wait until the table's partitions are there again
    want = [rig.disk.part(n) for n in _partition_ranges(rig.disk.backing)]
    deadline = time.monotonic() + 20
    while not all(os.path.exists(p) for p in want) and time.monotonic() < deadline:
        time.sleep(0.05)
    subprocess.run(["blockdev", "--flushbufs", *[p for p in want if os.path.exists(p)]], capture_output=True)


def take(rig: Rig, where: Path) -> Snapshot:
    _release(rig)
    os.sync()
    sh("cp", "--sparse=always", str(rig.disk.backing), str(where))
    fake = rig.fake.path.read_bytes() if rig.fake.path.exists() else None
    return Snapshot(where, fake, rig.machine.cmdline.read_text())


def restore(rig: Rig, snap: Snapshot) -> None:
    _release(rig)
    os.sync()
    sh("cp", "--sparse=always", str(snap.disk), str(rig.disk.backing))
    _flush(rig)
    if snap.fake is None:
        rig.fake.path.unlink(missing_ok=True)
    else:
        rig.fake.path.write_bytes(snap.fake)
    rig.machine.cmdline.write_text(snap.cmdline)
    rig.new_boot_id()


def _partition_ranges(disk: Path) -> dict[int, tuple[int, int]]:
    res = subprocess.run(["sfdisk", "-J", str(disk)], capture_output=True, text=True)
    if res.returncode != 0:
        return {}
    table = json.loads(res.stdout)["partitiontable"]
    out = {}
    for i, p in enumerate(table["partitions"]):
        out[i + 1] = (p["start"] * 512, (p["start"] + p["size"]) * 512)
    return out


def tear(rig: Rig, before: Snapshot, rng: random.Random) -> dict[str, int]:
    """The power-cut disk: ``before`` plus a random subset of the blocks changed since (see the module text).
    Works in place on the backing file; returns counts for the report."""
    cur = rig.disk.backing
    state_range = _partition_ranges(cur).get(STATE) or _partition_ranges(before.disk).get(STATE)
    state_after = rng.random() < 0.5  # the datastore: all of the step or none of it
    kept = reverted = 0
    with open(before.disk, "rb") as old, open(cur, "r+b") as new:
        off = 0
        while True:
            a = old.read(1 << 20)
            b = new.read(1 << 20)
            if not a and not b:
                break
            a = a.ljust(len(b), b"\0")
            for i in range(0, len(b), BLOCK):
                if a[i:i + BLOCK] == b[i:i + BLOCK]:
                    continue
                pos = off + i
                in_state = state_range is not None and state_range[0] <= pos < state_range[1]
                keep = state_after if in_state else rng.random() < 0.5
                if keep:
                    kept += 1
                else:
                    reverted += 1
                    new.seek(pos)
                    new.write(a[i:i + BLOCK])
                    new.seek(off + len(b))
            off += len(b)
    if rng.random() < 0.5:
        if before.fake is None:
            rig.fake.path.unlink(missing_ok=True)
        else:
            rig.fake.path.write_bytes(before.fake)
    _flush(rig)
    return {"kept": kept, "reverted": reverted}


# ---- the host's view ------------------------------------------------------------------------------------------

def _mount(args: list[str]) -> subprocess.CompletedProcess[str]:
    """mount, tried again for a few seconds while a partition node is being re-created (partx, udev)."""
    deadline = time.monotonic() + 10
    while True:
        res = subprocess.run(["mount", *args], capture_output=True, text=True)
        if res.returncode == 0 or time.monotonic() > deadline:
            return res
        time.sleep(0.2)


def status_of(rig: Rig) -> dict[str, Any]:
    where = rig.tmp / "status-ro"
    where.mkdir(exist_ok=True)
    res = _mount(["-o", "ro", rig.disk.part(STATE), str(where)])
    if res.returncode != 0:
        raise MatrixFailure(f"the servicing partition cannot be mounted: {res.stderr.strip()}")
    try:
        with state.StateStore(where / "datastore.sqlite") as store:
            return store.current()
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)


@contextlib.contextmanager
def slot_root(rig: Rig, volume: str) -> Iterator[Target]:
    where = rig.tmp / f"slot-{volume}"
    where.mkdir(exist_ok=True)
    res = _mount(["-o", "ro,noload", rig.disk.part(SLOT_PART[volume]), str(where)])
    if res.returncode != 0:
        raise MatrixFailure(f"{volume} cannot be mounted: {res.stderr.strip()}")
    try:
        yield Target.at(where)
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)


def verify_slot(rig: Rig, doc: dict[str, Any], volume: str, what: str) -> None:
    """``volume`` is a slot the boot configuration may name: its record trusted, its marker agreeing."""
    rec = (doc.get("slots") or {}).get(volume) or {}
    if rec.get("state") not in slots.TRUSTED:
        raise MatrixFailure(f"{what}: {volume} is named by the boot configuration but its record is {rec}")
    with slot_root(rig, volume) as root:
        marker = slots.read_marker(root)
        if marker is None or marker.get("volume") != volume:
            raise MatrixFailure(f"{what}: {volume} has no marker of its own ({marker})")
        if rec.get("specDigest") and marker.get("specDigest") != rec["specDigest"]:
            raise MatrixFailure(f"{what}: {volume}'s marker ({marker}) is not its record's ({rec})")
        if not root.path("/etc/fstab").exists():
            raise MatrixFailure(f"{what}: {volume} has no fstab: not configured")


def check_boot_configuration(rig: Rig, doc: dict[str, Any], what: str) -> None:
    """Every entry the loader may still pick (all but counted-out ones) names a slot that verifies."""
    st = rig.fake.load()
    for entry, e in st["entries"].items():
        if e["tries_left"] != 0:
            verify_slot(rig, doc, e["slot"], f"{what}: entry {entry}")


def check_status_matches(rig: Rig, doc: dict[str, Any], booted: str, live: Target, what: str) -> None:
    cur = doc["servicingState"]
    active = doc.get("abActiveVolume")
    marker = slots.read_marker(live)
    if cur == state.PROVISIONED:
        if active != booted:
            raise MatrixFailure(f"{what}: provisioned on {active}, but {booted} is running")
        if marker is None or marker.get("specDigest") != slots.spec_digest(doc["spec"]):
            raise MatrixFailure(f"{what}: the running slot's marker {marker} is not the provisioned configuration")
        host = (doc["spec"].get("os") or {}).get("hostname")
        if host and live.read_text("/etc/hostname").strip() != host:
            raise MatrixFailure(f"{what}: hostname {live.read_text('/etc/hostname').strip()!r}, configured {host!r}")
    elif cur == state.AB_UPDATE_STAGED:
        inactive = other(str(active))
        rec = doc["slots"].get(inactive) or {}
        if rec.get("state") != slots.STAGED or rec.get("specDigest") != slots.spec_digest(doc["spec"]):
            raise MatrixFailure(f"{what}: ab-update-staged, but {inactive}'s record is {rec}")
        verify_slot(rig, doc, inactive, f"{what}: staged slot")
    elif cur == state.AB_UPDATE_FINALIZED:
        target = (doc.get("boot") or {}).get("targetVolume")
        verify_slot(rig, doc, str(target), f"{what}: finalized slot")
    elif cur == state.NOT_PROVISIONED:
        raise MatrixFailure(f"{what}: a booted host says not-provisioned")


def boot_and_commit(rig: Rig, what: str, *, expect_entry: bool = True) -> dict[str, Any] | None:
    """One power-on: the loader picks, the host runs tether commit (as tether-commit.service does), and the
    invariants are checked on what runs."""
    entry = rig.boot()
    if entry is None:
        if expect_entry:
            raise MatrixFailure(f"{what}: nothing to boot")
        return None
    booted = rig.booted_slot()
    before = status_of(rig)
    verify_slot(rig, before, booted, f"{what}: booted")
    with rig.running() as live:
        res = commit(rig.env(live))
        doc = rig.status(live)
        if res.code != 0 and doc["servicingState"] != state.AB_UPDATE_HEALTH_CHECK_FAILED:
            raise MatrixFailure(f"{what}: commit failed: {res.message}")
        if doc["servicingState"] == state.AB_UPDATE_HEALTH_CHECK_FAILED:
            return doc  # it asked for the reboot into the previous slot; the next boot checks the rest
        check_status_matches(rig, doc, booted, live, what)
    check_boot_configuration(rig, doc, what)
    return doc


# ---- operations and the states they start from ----------------------------------------------------------------

@dataclass
class Images:
    v1: BuiltImage
    v2: BuiltImage
    v3: BuiltImage
    indexed: Path | None = None     # v2's raw image with a chunk index beside it (adaptive downloads)


def opts(rig: Rig, live: Target | None) -> UpdateOptions:
    """As the CLI stages: the slot's old boot entries go before it is rewritten."""
    assert live is not None
    return UpdateOptions(unboot=lambda volume: remove_slot_entries(rig.env(live), volume))


def spec(rig: Rig, img: BuiltImage, hostname: str, **kw: Any) -> Any:
    return parse_host_config(config(rig.disk.device, img, hostname, **kw))


def seed_metadata(live: Target, hc: dict[str, Any]) -> None:
    import yaml

    live.write("/var/lib/cloud/seed/nocloud/meta-data", yaml.safe_dump({"instance-id": "iid-1",
                                                                        "host-configuration": hc}))
    live.write("/var/lib/cloud/seed/nocloud/user-data", "#cloud-config\n{}\n")
    InstanceStore(live).activate(InstanceData(datasource="NoCloud", instance_id="iid-1"))


@dataclass
class Operation:
    name: str
    start: str                          # the starting state's name
    run: Callable[[Rig, Images, Target | None], Any]
    live: bool = True                   # runs on the running host (else from an installer)


def _install(rig: Rig, im: Images, _live: Target | None) -> Any:
    hc = spec(rig, im.v1, "node-1")
    install(hc, Runner(), InstallOptions())
    return finalize_install(hc, rig.env(Target.at("/")))


def _stage_adaptive(rig: Rig, im: Images, live: Target | None) -> Any:
    """Stage v2 from a raw image with a chunk index beside it: only the chunks the active slot lacks are read."""
    assert live is not None and im.indexed is not None
    cfg = config(rig.disk.device, im.v2, "node-2")
    cfg["image"] = {"url": f"file://{im.indexed}", "sha256": im.v2.sha256(im.indexed)}
    return stage(parse_host_config(cfg), Runner(), live, opts(rig, live))


def _metadata(rig: Rig, im: Images, live: Target | None) -> Any:
    assert live is not None
    seed_metadata(live, config(rig.disk.device, im.v2, "node-2"))
    out = from_metadata(rig.env(live), parse_policy("now"), host=Host(sysroot=rig.mroot, runner=rig.runner))
    if out.code != 0:
        raise TetherError(out.reason)
    return out


BAD_CHECK = {"name": "app-ready", "content": "echo 'app not listening' >&2; exit 3\n", "timeoutSeconds": 5}

OPERATIONS = [
    Operation("install", "blank", _install, live=False),
    Operation("commit-install", "booted-install", lambda r, im, live: commit(r.env(live))),
    Operation("stage", "provisioned-a", lambda r, im, live: stage(spec(r, im.v2, "node-2"), Runner(), live,
                                                                  opts(r, live))),
    Operation("stage-adaptive", "provisioned-a", _stage_adaptive),
    Operation("re-stage", "staged-b", lambda r, im, live: stage(spec(r, im.v3, "node-3"), Runner(), live,
                                                                opts(r, live))),
    Operation("stage-after-failed", "failed-b", lambda r, im, live: stage(spec(r, im.v2, "node-2"), Runner(), live,
                                                                          opts(r, live))),
    Operation("finalize", "staged-b", lambda r, im, live: finalize(r.env(live))),
    Operation("commit", "booted-b", lambda r, im, live: commit(r.env(live))),
    Operation("commit-after-failed-check", "failed-check-a", lambda r, im, live: commit(r.env(live))),
    Operation("rollback", "provisioned-b", lambda r, im, live: rollback(r.env(live))),
    Operation("metadata", "provisioned-a", _metadata),
    Operation("metadata-staged", "staged-b", _metadata),  # finds its configuration staged: finalize + reboot
]


def build_starts(rig: Rig, im: Images, work: Path) -> dict[str, Snapshot]:
    """Each starting state, made by the real operations, then snapshotted."""
    from tether.engine import chunks

    im.indexed = work / "v2-indexed.img"
    sh("cp", "--sparse=always", str(im.v2.raw), str(im.indexed))
    chunks.build(im.indexed)
    out = {"blank": take(rig, work / "blank.img")}
    _install(rig, im, None)
    rig.boot()
    out["booted-install"] = take(rig, work / "booted-install.img")
    with rig.running() as live:
        res = commit(rig.env(live))
        assert res.code == 0, res.message
    out["provisioned-a"] = take(rig, work / "provisioned-a.img")
    # an update that fails its health check: B is marked bad, the host reboots into A, where commit records it
    with rig.running() as live:
        stage(spec(rig, im.v3, "node-3", checks=[BAD_CHECK]), Runner(), live, UpdateOptions())
        finalize(rig.env(live))
    rig.boot()
    with rig.running() as live:
        assert commit(rig.env(live)).code == 1
    rig.boot()
    assert rig.booted_slot() == "volume-a"
    out["failed-check-a"] = take(rig, work / "failed-check-a.img")
    restore(rig, out["provisioned-a"])
    with rig.running() as live:
        bad = config(rig.disk.device, im.v2, "node-2")
        bad["image"]["sha256"] = "0" * 64
        with contextlib.suppress(TetherError):
            stage(parse_host_config(bad), Runner(), live, UpdateOptions())
    out["failed-b"] = take(rig, work / "failed-b.img")
    with rig.running() as live:
        stage(spec(rig, im.v2, "node-2"), Runner(), live, UpdateOptions())
    out["staged-b"] = take(rig, work / "staged-b.img")
    with rig.running() as live:
        finalize(rig.env(live))
    rig.boot()
    out["booted-b"] = take(rig, work / "booted-b.img")
    with rig.running() as live:
        res = commit(rig.env(live))
        assert res.code == 0, res.message
    out["provisioned-b"] = take(rig, work / "provisioned-b.img")
    return out


# ---- running a case ---------------------------------------------------------------------------------------------

@dataclass
class Result:
    op: str
    start: str
    point: str
    mode: str
    ok: bool
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Matrix:
    rig: Rig
    images: Images
    work: Path
    seed: int
    starts: dict[str, Snapshot] = field(default_factory=dict)
    results: list[Result] = field(default_factory=list)
    discovered: dict[str, list[str]] = field(default_factory=dict)
    retried: int = 0

    def _fork(self, op: Operation, hook: Callable[[str], None]) -> int:
        """Run ``op`` in a child with ``hook``; returns the child's exit code (77: killed at the point)."""
        live_ctx = self.rig.running() if op.live else contextlib.nullcontext()
        with live_ctx as live:
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    checkpoints.HOOK = hook
                    op.run(self.rig, self.images, live)
                except BaseException as e:  # noqa: BLE001 - the parent reads why from the file
                    code = 3
                    with contextlib.suppress(OSError):
                        (self.work / "child-error.txt").write_text(f"{type(e).__name__}: {e}")
                os._exit(code)
            _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    def child_error(self) -> str:
        p = self.work / "child-error.txt"
        return p.read_text() if p.exists() else ""

    def discover(self, op: Operation) -> list[str]:
        restore(self.rig, self.starts[op.start])
        trace = self.work / f"trace-{op.name}.txt"
        trace.write_text("")

        def record(name: str) -> None:
            with open(trace, "a") as f:
                f.write(name + "\n")

        code = self._fork(op, record)
        if code != 0:
            raise MatrixFailure(f"{op.name} from {op.start} does not complete without a kill (exit {code})")
        seen: dict[str, int] = {}
        points = []
        for name in trace.read_text().split():
            n = seen.get(name, 0)
            seen[name] = n + 1
            points.append(f"{name}#{n}")
        self.discovered[op.name] = points
        return points

    def run_case(self, op: Operation, point: str, previous: str | None, mode: str) -> Result:
        t0 = time.monotonic()
        (self.work / "child-error.txt").unlink(missing_ok=True)
        rng = random.Random(f"{self.seed}/{op.name}/{point}/{mode}")
        restore(self.rig, self.starts[op.start])
        before = self.work / "before.img"
        before_snap: list[Snapshot] = []
        if mode == "power" and previous is None:
            before_snap.append(self.starts[op.start])  # the step began with the operation
        counts: dict[str, int] = {}
        seen: dict[str, int] = {}
        rig = self.rig

        def hook(name: str) -> None:
            n = seen.get(name, 0)
            seen[name] = n + 1
            here = f"{name}#{n}"
            if mode == "power" and here == previous:
                os.sync()
                sh("cp", "--sparse=always", str(rig.disk.backing), str(before))
                (self.work / "before.fake").write_bytes(rig.fake.path.read_bytes() if rig.fake.path.exists()
                                                        else b"")
            if here == point:
                os.sync()
                os.kill(os.getpid(), signal.SIGKILL)

        try:
            code = self._fork(op, hook)
            if code != -signal.SIGKILL:
                raise MatrixFailure(f"the run did not reach {point} (exit {code}: {self.child_error()})")
            _release(rig)
            if mode == "power":
                if not before_snap:
                    fake = (self.work / "before.fake").read_bytes()
                    before_snap.append(Snapshot(before, fake or None, rig.machine.cmdline.read_text()))
                counts = tear(rig, before_snap[0], rng)
            self.recover(op)
            ok, detail = True, f"kept {counts.get('kept', '-')} / reverted {counts.get('reverted', '-')} blocks"
        except (MatrixFailure, TetherError, AssertionError, subprocess.CalledProcessError) as e:
            ok, detail = False, f"{type(e).__name__}: {e}"
        res = Result(op.name, op.start, point, mode, ok, detail, time.monotonic() - t0)
        self.results.append(res)
        return res

    def recover(self, op: Operation) -> None:
        rig, im = self.rig, self.images
        what = f"{op.name}"
        if op.name == "install":
            doc = boot_and_commit(rig, f"{what}: first boot", expect_entry=False)
            if doc is None or doc["servicingState"] != state.PROVISIONED:
                # the installer runs the same command again
                _release(rig)
                _install(rig, im, None)
                doc = boot_and_commit(rig, f"{what}: after the install was run again")
        else:
            doc = boot_and_commit(rig, f"{what}: boot after the cut")
            if doc is not None and doc["servicingState"] == state.AB_UPDATE_HEALTH_CHECK_FAILED:
                doc = boot_and_commit(rig, f"{what}: boot after the failed check")
            # the same command again: it completes, or refuses with a clear error
            with contextlib.suppress(TetherError):
                self._fork_plain(op)
        self.settle(what)
        self.further_update(what)

    def _fork_plain(self, op: Operation) -> None:
        code = self._fork(op, lambda _n: None)
        if code not in (0, 3):
            raise MatrixFailure(f"{op.name} run again died (exit {code})")

    def settle(self, what: str) -> None:
        """Bring the host to provisioned the way its units would: finalize what is staged, boot, commit."""
        for _ in range(4):
            doc = status_of(self.rig)
            cur = doc["servicingState"]
            if cur == state.PROVISIONED:
                return
            if cur == state.AB_UPDATE_STAGED:
                with self.rig.running() as live:
                    finalize(self.rig.env(live))
            boot_and_commit(self.rig, f"{what}: settling from {cur}")
        raise MatrixFailure(f"{what}: the host did not settle to provisioned ({status_of(self.rig)['servicingState']})")

    def further_update(self, what: str) -> None:
        doc = status_of(self.rig)
        target = other(str(doc["abActiveVolume"]))
        with self.rig.running() as live:
            hc = spec(self.rig, self.images.v3, "node-9")
            stage(hc, Runner(), live, opts(self.rig, live))
            finalize(self.rig.env(live))
        doc = boot_and_commit(self.rig, f"{what}: further update") or {}
        if doc.get("servicingState") != state.PROVISIONED or doc.get("abActiveVolume") != target:
            raise MatrixFailure(f"{what}: a further update did not commit on {target}: {doc.get('servicingState')}")


def run(rig: Rig, images: Images, work: Path, seed: int, ops: list[str] | None = None,
        modes: tuple[str, ...] = MODES, log: Callable[[str], None] = print) -> Matrix:
    m = Matrix(rig, images, work, seed)
    m.starts = build_starts(rig, images, work)
    for op in OPERATIONS:
        if ops and op.name not in ops:
            continue
        points = m.discover(op)
        log(f"crash matrix: {op.name} from {op.start}: {len(points)} checkpoints: {', '.join(points)}")
        for mode in modes:
            for i, point in enumerate(points):
                res = m.run_case(op, point, points[i - 1] if i else None, mode)
                if not res.ok and "did not reach" in res.detail:
                    # the operation itself failed before the kill point (the host was busy: a mount or a command
                    # timed out); that is not a recovery verdict, so the case runs once more and says so
                    log(f"  again {op.name} {point} {mode}: {res.detail}")
                    m.results.remove(res)
                    m.retried += 1
                    res = m.run_case(op, point, points[i - 1] if i else None, mode)
                if not res.ok:
                    log(f"  FAIL {op.name} {point} {mode}: {res.detail}")
    return m


def summary(m: Matrix) -> str:
    ops = sorted({r.op for r in m.results})
    starts = sorted({r.start for r in m.results})
    points = sum(len(v) for k, v in m.discovered.items() if k in ops)
    modes = sorted({r.mode for r in m.results})
    passed = sum(r.ok for r in m.results)
    worst = max((r.seconds for r in m.results), default=0.0)
    return (f"crash matrix: {len(ops)} operations from {len(starts)} starting states, {points} checkpoints, "
            f"{len(modes)} kill modes ({', '.join(modes)}) = {len(m.results)} cases; {passed} passed, "
            f"{len(m.results) - passed} failed ({m.retried} run again after the operation failed before its kill "
            f"point); seed {m.seed}; slowest case {worst:.1f} s")
