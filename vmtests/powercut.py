"""Power cuts in a real boot (issue 15, item 5): one VM lineage on the adopted A/B disk, an update from the instance
metadata into the other slot, QEMU killed at a seeded random moment of stage, finalize, the reboot into the new
slot or its commit; the next boot must come up on a good slot, tell the truth in ``tether get status``, and the
interrupted update must be completed or cleanly abandoned (``powercut_judge.py``). That recovery boot then carries
on as a host would: the metadata still names the configuration until it is committed, so the same update runs
again (and completes, or is cut again), and once committed the host asks for the next one.

**What a cut is.** SIGKILL of the QEMU process group, with the boot disk (a qcow2 overlay of the cached engine
disk) attached ``cache=writeback``: the guest sees a volatile write cache and issues flushes, and every flush
reaches the image file (qcow2 metadata written, then ``fdatasync``), as a real disk must honour them. What the cut
loses: everything still in the guest's memory (page cache, dirty buffers, the write queue) and, in the image, the
writes since the last flush that needed a new overlay cluster whose qcow2 mapping was still in QEMU's metadata
cache (checked with ``qemu-io``: write, flush, write, ``sigraise 9`` -> the second write reads back as the backing
file). What it does not emulate: a write the guest completed into an already-mapped cluster is in the host's page
cache and survives, as it would on a disk without a volatile cache; torn sectors and a disk that reorders or
loses *flushed* data are not modelled (``blkdebug`` injects errors, not lost writes; snapshotting the overlay at
every flush would cost far more than a boot on this machine). For a QEMU kill ``cache=unsafe`` would in fact lose
the same data (QEMU still writes its metadata at a guest flush and only skips the ``fdatasync``, which matters for
a *host* crash), but it would let a host crash lose flushed data, so the scenario does not use it. The OVMF variable
store (pflash) is written synchronously by QEMU and survives, as NVRAM does.

**Timing.** The guest's update runs with ``-v debug --progress json`` and its log on the serial console
(``PCUT-LOG`` lines, ``powercut_plan.GO``); the host sees each phase's start marker (``MARKS``) and kills QEMU
``fraction`` x (the phase's duration) after it. The seed fixes the phases (shuffled cycles of ``PHASES``) and the
fractions; the duration is the one this lineage last measured for the phase (``TYPICAL`` before that), so a
replay with the same seed cuts the same phases at the same relative moments (seconds vary with the machine).
Which phase the cut actually hit is read from the markers seen at the kill, and recorded.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tether.engine.hostconfig import parse_host_config, to_data
from tether.engine.slots import spec_digest
from vmtests import powercut_plan
from vmtests.engine_images import INSTALLED, EngineDisks
from vmtests.harness import qemu, verdict
from vmtests.harness.imds import ImdsServer, ec2_tree
from vmtests.harness.lab import EC2_SMBIOS, Lab
from vmtests.powercut_judge import Judgement, judge

DEFAULT_SEED = 15002  # CI: a cut mid image write, then one in finalize (the long runs use other seeds)
PHASES = ("stage-write", "stage-configure", "finalize", "reboot", "commit")
# marker -> serial line; every marker but "go" counts only after this run's update started
MARKS: dict[str, re.Pattern[str]] = {
    "go": re.compile(r"PCUT-GO n=\d+"),
    "fsck": re.compile(r"PCUT-LOG .*\+ e2fsck"),
    "finalize": re.compile(r"PCUT-LOG .*\+ mount .*tether-engine/finalize-"),
    "rebooting": re.compile(r"PCUT-LOG .*rebooting: "),
    "commit": re.compile(r"Starting tether-commit"),
    "committed": re.compile(r"Finished tether-commit|Failed to start tether-commit"),
}
# phase -> (start marker, end marker). stage-write also holds the metadata fetch, the image probe, the
# staging-started record and the discard; reboot is the old slot's shutdown plus the new slot's boot up to commit
WINDOWS = {"stage-write": ("go", "fsck"), "stage-configure": ("fsck", "finalize"),
           "finalize": ("finalize", "rebooting"), "reboot": ("rebooting", "commit"), "commit": ("commit", "committed")}
# seconds per phase on the shared 2-core host under TCG, until the lineage has timed its own
# (measured: go -> e2fsck 58 s for the 547 MB image, configure 6.5 s, finalize 3 s, shutdown + boot to commit 81 s,
# commit 5 s)
TYPICAL = {"stage-write": 55.0, "stage-configure": 6.0, "finalize": 3.0, "reboot": 75.0, "commit": 5.0}
USER_DATA = "#cloud-config\nhostname: powercut-vm\n"
IID = "i-0powercut000001"
BOOT_TIMEOUT = 900.0  # a boot that stages ~500 MB under TCG beside other VMs
# QEMU launches per run: the update's own reboot needs 2; a loaded host sometimes panics a guest kernel before it
# mounts anything ("IO-APIC + timer doesn't work!": TCG too slow for the kernel's timer check), which costs a launch
LAUNCHES = 4
AGENT = re.compile(r"VMTEST-BOOT n=(\d+)")
AGENT_RC = re.compile(r"VMTEST-AGENT n=(\d+) agent=\S+ rc=(\d+)")
DATA = re.compile(r"VMDATA (\d+) facts (\S+)")
DATA_END = re.compile(r"VMDATA-END (\d+) facts ")


def schedule(seed: int, cuts: int, phases: tuple[str, ...] = ()) -> list[tuple[str, float]]:
    """(phase, fraction) per cut: shuffled cycles of every phase, so a run of 5k cuts hits each k times; or the
    given ``phases`` in turn (a replay aimed at one phase), with the seed's fractions."""
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise ValueError(f"unknown phase(s) {sorted(unknown)}; the phases are {', '.join(PHASES)}")
    rng = random.Random(seed)
    out: list[tuple[str, float]] = []
    while len(out) < cuts:
        cycle = list(PHASES)
        rng.shuffle(cycle)
        out += [(phase, round(rng.uniform(0.02, 0.98), 3)) for phase in cycle]
    if phases:
        out = [(phases[i % len(phases)], frac) for i, (_, frac) in enumerate(out)]
    return out[:cuts]


def configuration(engine: EngineDisks, rnd: int) -> dict[str, Any]:
    """Update number ``rnd``: the v2 image with its own hostname (an ``os`` change is an A/B update)."""
    return engine.v2(hostname=f"powercut-{rnd}")


@dataclass
class Cut:
    number: int
    phase: str  # the phase aimed at
    fraction: float
    planned: float = 0.0  # seconds after the phase's start marker
    delay: float | None = None  # when it came (None: it never came)
    hit: str = ""  # the phase the markers show at the kill
    want: str | None = None  # hostname of the configuration the update asked for
    before: str | None = None  # hostname of the one running before it
    want_digest: str | None = None
    staged: bool = False  # the console showed finalize begin before the cut (so the staged record was written)
    wall: float = 0.0
    log: Path | None = None
    judgement: Judgement | None = None

    @property
    def skipped(self) -> bool:
        return self.hit.startswith("skipped")

    @property
    def ok(self) -> bool:
        return (self.delay is not None or self.skipped) and self.judgement is not None and self.judgement.ok


class Cutter:
    """``qemu.VM.cut``: reads the serial lines as they come, hands each boot's ``facts`` to ``on_facts`` and
    decides when the power goes."""

    def __init__(self, on_facts: Callable[[int, dict[str, Any]], None]) -> None:
        self.on_facts = on_facts
        self.typical = dict(TYPICAL)
        self.cut: Cut | None = None
        self.seen: dict[str, float] = {}
        self.agent_boots: list[int] = []
        self.status_rc: dict[int, int] = {}  # the guest agent's `tether status --wait` per boot
        self._pos: dict[int, int] = {}
        self._chunks: dict[int, list[str]] = {}
        self._ended = False

    def arm(self, cut: Cut | None) -> None:
        self.cut = cut
        self.seen, self._pos, self._chunks, self._ended = {}, {}, {}, False
        if cut is not None:
            cut.planned = round(cut.fraction * self.typical[cut.phase], 1)

    def learn(self) -> None:
        """The durations this run measured become the next cuts' yardstick."""
        for phase, (start, end) in WINDOWS.items():
            if start in self.seen and end in self.seen:
                self.typical[phase] = round(self.seen[end] - self.seen[start], 1)

    def __call__(self, boot: qemu.Boot) -> bool:
        now = time.monotonic()
        start = self._pos.get(boot.index, 0)
        for _, line in boot.lines[start:]:
            self._line(line, now)
        self._pos[boot.index] = len(boot.lines)
        cut = self.cut
        if cut is None or cut.delay is not None or cut.hit:
            return False
        if self._ended:  # the guest agent finished a boot: the phase never came (or the update failed)
            seen = ", ".join(sorted(self.seen, key=self.seen.__getitem__)) or "no markers"
            later = PHASES[PHASES.index(cut.phase) + 1:]
            if any(WINDOWS[p][0] in self.seen for p in later):  # e.g. already staged: this update only finalized
                cut.hit = f"skipped: the update had no {cut.phase} ({seen})"
            else:
                cut.hit = f"missed: {seen}"
            return True
        first, last = WINDOWS[cut.phase]
        if first not in self.seen or (now - self.seen[first] < cut.planned and last not in self.seen):
            return False
        cut.delay = round(now - self.seen[first], 1)
        cut.hit = self.phase_now()
        cut.staged = "finalize" in self.seen
        return True

    def phase_now(self) -> str:
        hit = "before the update"
        for phase in PHASES:
            first, last = WINDOWS[phase]
            if first in self.seen and last not in self.seen:
                hit = phase
        if "committed" in self.seen:
            hit = "after commit"
        return hit

    def _line(self, line: str, now: float) -> None:
        if m := AGENT.search(line):
            self.agent_boots.append(int(m.group(1)))
        elif m := AGENT_RC.search(line):
            self.status_rc[int(m.group(1))] = int(m.group(2))
        elif m := DATA.search(line):
            self._chunks.setdefault(int(m.group(1)), []).append(m.group(2))
        elif m := DATA_END.search(line):
            n = int(m.group(1))
            try:
                facts = json.loads(base64.b64decode("".join(self._chunks.pop(n, []))))
            except (binascii.Error, ValueError):
                facts = {"status": None, "statusError": "facts garbled on the serial console"}
            facts["tetherStatusRc"] = self.status_rc.get(n)
            self.on_facts(n, facts)
        elif "VMTEST-END" in line:
            self._ended = True
        for name, rx in MARKS.items():
            if name not in self.seen and (name == "go" or "go" in self.seen) and rx.search(line):
                self.seen[name] = now


@dataclass
class Lineage:
    """One VM, its overlay and OVMF variables kept across every run: each run's first boot judges the previous
    cut and starts the next update."""

    lab: Lab
    engine: EngineDisks
    imds: ImdsServer
    seed: int
    cuts: int
    phases: tuple[str, ...] = ()
    log: Callable[[str], None] = print
    report: Path | None = None  # the summary table, rewritten after every cut (a long series can be stopped)
    records: list[Cut] = field(default_factory=list)
    final: Judgement | None = None
    initial: Judgement | None = None  # the lineage's first boot, before any update
    facts: dict[int, dict[str, Any]] = field(default_factory=dict)
    round: int = 1  # the update the metadata names
    installed: str | None = None  # hostname of the last configuration committed (None: the adopted one)
    panics: int = 0  # guest kernel panics on the way (each logged with its message)
    _go_boot: int = 0
    _last_run: str = ""  # "" while cutting; then "finish" or "look"
    _current: Cut | None = None

    def __post_init__(self) -> None:
        self.cutter = Cutter(self._on_facts)
        self.disk = qemu.overlay(self.engine.disk, self.lab.work / "lineage.qcow2")
        self.vars = self.lab.work / "lineage.vars.fd"
        self._metadata(INSTALLED, "")

    def hostname(self, rnd: int) -> str | None:
        return f"powercut-{rnd}" if rnd >= 1 else None

    def _metadata(self, cfg: dict[str, Any], go: str) -> None:
        tree = ec2_tree(IID, "powercut-vm", qemu.GUEST_MAC, user_data=USER_DATA)
        tree["meta-data"]["tags"] = {"instance": {"host-configuration": yaml.safe_dump(cfg, sort_keys=False),
                                                  "powercut-go": go}}
        self.imds.update(tree)

    def _on_facts(self, n: int, facts: dict[str, Any]) -> None:
        """A boot's facts: keep them and, on the run's first boot, decide the update and say go."""
        self.facts[n] = facts
        if n != self._go_boot:
            return
        st = facts.get("status") or {}
        done = st.get("servicingState") == "provisioned" and \
            ((st.get("spec") or {}).get("os") or {}).get("hostname") == self.hostname(self.round)
        if self._last_run == "look" or (done and self._last_run == "finish"):
            self._metadata(configuration(self.engine, self.round), f"{n} done")
            return
        if done:
            self.installed = self.hostname(self.round)
            self.round += 1
        elif self._digest(self.round) in (st.get("rejectedSpecs") or []):
            # the host will not stage it again (the judge fails the cut that led here); as an operator would,
            # the metadata moves on to a new configuration so the lineage keeps servicing
            self.log(f"powercut: {self.hostname(self.round)} is rejected by the host; the metadata moves on")
            self.round += 1
        cfg = configuration(self.engine, self.round)
        if self._current is not None:
            self._current.want, self._current.before = self.hostname(self.round), self.installed
            self._current.want_digest = self._digest(self.round)
        self._metadata(cfg, str(n))

    def _digest(self, rnd: int) -> str:
        return str(spec_digest(to_data(parse_host_config(configuration(self.engine, rnd), "powercut"))))

    def _boot(self, name: str, n: int, mode: str = "cut") -> qemu.RunResult:
        plan_disk = verdict.plan_disk(self.lab.work / f"{name}-plan.img", powercut_plan.plan(n, mode),
                                      powercut_plan.FILES)
        log = self.lab.work / f"{name}.serial.log"
        self.lab.logs.append(log)
        self._go_boot = n
        vm = qemu.VM(disk=self.disk, log=log, vars=self.vars, smp=self.lab.smp, mem=self.lab.mem,
                     drives=[qemu.Drive(plan_disk), qemu.Drive(self.engine.images, readonly=True)],
                     net=qemu.Network(meta_port=self.imds.port), smbios=list(EC2_SMBIOS),
                     boot_timeout=BOOT_TIMEOUT, max_boots=LAUNCHES, disk_cache="writeback", cut=self.cutter)
        result = vm.run()
        for b in result.boots:
            if b.end == "panic":
                self.panics += 1
                why = next((line for _, line in b.lines if "Kernel panic" in line), "?")
                self.log(f"powercut: {name}: QEMU launch {b.index} panicked: {why.strip()[:160]}")
        return result

    def _next_boot(self, n: int) -> int:
        return max([n - 1, *self.cutter.agent_boots]) + 1

    def _judge(self, cut: Cut, n: int) -> None:
        facts = self.facts.get(n)
        if facts is None:
            cut.judgement = Judgement(problems=[f"the boot after the cut (agent boot {n}) sent no facts"])
        else:
            cut.judgement = judge(facts, cut.want, cut.before, cut.want_digest, cut.staged)

    def run(self, finish: bool = True) -> None:
        n = 1
        previous: Cut | None = None
        for number, (phase, fraction) in enumerate(schedule(self.seed, self.cuts, self.phases), start=1):
            cut = Cut(number, phase, fraction)
            self.records.append(cut)
            self._current = cut
            self.cutter.arm(cut)
            t0 = time.monotonic()
            result = self._boot(f"cut-{number:02d}", n)
            cut.wall, cut.log = round(time.monotonic() - t0, 1), result.log
            if previous is not None:
                self._judge(previous, n)
            else:
                self.initial = judge(self.facts[n], None, None) if n in self.facts else \
                    Judgement(problems=["the first boot sent no facts"])
                if not self.initial.ok:  # e.g. a first boot that fell back to no datasource: nothing to update
                    self.log("powercut: the first boot is not good, stopping: " + "; ".join(self.initial.problems))
                    self._write_report()
                    return
            if result.status != "cut" and not cut.hit:
                cut.hit = f"missed: the run ended {result.status}"
            self.cutter.learn()
            self.log(f"powercut: cut {number}/{self.cuts} aimed at {phase} (x{fraction}, {cut.planned} s): "
                     f"{cut.hit} after {cut.delay} s; run {cut.wall} s")
            if previous is not None:
                self.log(f"powercut:   boot after cut {previous.number}: {_line(previous)}")
            self._write_report()
            previous = cut
            n = self._next_boot(n)
        # the last run: judge the last cut; with ``finish`` let the update run to its end uncut, reboot once more
        # and look again (a further update succeeds), else only look and power off
        self._current = None
        self._last_run = "finish" if finish else "look"
        self.cutter.arm(None)
        result = self._boot(self._last_run, n, self._last_run)
        if previous is not None:
            self._judge(previous, n)
            self.log(f"powercut:   boot after cut {previous.number}: {_line(previous)}")
        if not finish:
            self._write_report()
            return
        facts = self.facts.get(n + 1)
        want = self.hostname(self.round)
        self.final = judge(facts, want, self.installed) if facts else \
            Judgement(problems=[f"the last boot sent no facts (run ended {result.status})"])
        if self.final.outcome != "completed":
            self.final.problems.append(f"the last update ({want}) is not completed: {self.final.outcome}")
        self._write_report()

    def _write_report(self) -> None:
        if self.report is not None:
            self.report.write_text(self.table() + "\n")

    def table(self) -> str:
        done = sum(1 for c in self.records if c.judgement is not None)
        head = f"power cuts: seed {self.seed}, {done} of {self.cuts} cuts judged"
        rows = [head, f"{'cut':>3} | {'aimed at':<15} | {'hit':<15} | {'frac':>5} | {'delay s':>7} | "
                f"{'recovered':<9} | {'state after':<16} | {'outcome':<9} | verdict | notes"]
        if self.initial is not None:
            rows.append(f"  0 | first boot      | -               |     - |       - | {self.initial.booted:<9} | "
                        f"{self.initial.state:<16} | {self.initial.outcome:<9} | "
                        f"{'PASS' if self.initial.ok else 'FAIL':<7} | {'; '.join(self.initial.problems)}")
        for c in self.records:
            j = c.judgement or Judgement()
            verdict_ = "PASS" if c.ok else "FAIL" if c.judgement is not None or (c.delay is None and not c.skipped) \
                else "(next)"
            notes = "; ".join([*j.problems, *j.notes])
            rows.append(f"{c.number:>3} | {c.phase:<15} | {c.hit:<15} | {c.fraction:>5} | "
                        f"{'-' if c.delay is None else c.delay:>7} | {j.booted:<9} | {j.state:<16} | "
                        f"{j.outcome:<9} | {verdict_:<7} | {notes}")
        rows.append(f"guest kernel panics: {self.panics} (each logged with its message)")
        if self.final is not None:
            rows.append(f"last boot: {self.final.booted} {self.final.state} {self.final.outcome} "
                        f"{'PASS' if self.final.ok else 'FAIL'} {'; '.join(self.final.problems)}")
        return "\n".join(rows)


def _line(c: Cut) -> str:
    j = c.judgement or Judgement()
    return f"{j.booted} {j.state} {j.outcome} " + ("ok" if j.ok else "PROBLEMS: " + "; ".join(j.problems))


def run(lab: Lab, engine: EngineDisks, imds: ImdsServer, seed: int, cuts: int, phases: tuple[str, ...] = (),
        finish: bool = True, log: Callable[[str], None] = print, report: Path | None = None) -> Lineage:
    lineage = Lineage(lab, engine, imds, seed, cuts, phases, log, report)
    lineage.run(finish)
    return lineage
