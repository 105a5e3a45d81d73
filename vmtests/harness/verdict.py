"""Declarative guest checks and their results.

The host writes each boot's checks as ``boot-<N>.sh`` onto the VMPLAN disk; the guest agent
(``vmtests/guest/vmtest-verdict``) runs them after the first-boot agent finished and prints marker lines on ttyS0:
``VMCHECK <boot> <id> PASS|FAIL rc=N``, ``VMOUT <boot> <id> | <line>``, ``VMDATA <boot> <id> <base64>``,
``VMDATA-END <boot> <id> rc=N``, ``VMTEST-AGENT``, ``VMTEST-FAILED``, ``VMTEST-END``. This module writes the
plan and parses those lines back.
"""

from __future__ import annotations

import base64
import binascii
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vmtests.harness import seed
from vmtests.harness.qemu import RunResult

ID = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Check:
    """Passes when ``shell`` exits 0 inside the guest (run as root with bash, 60 s limit)."""

    id: str
    shell: str
    what: str = ""  # what a person would be checking, shown on failure


@dataclass(frozen=True)
class Capture:
    """Sends ``shell``'s output back to the host, for assertions made in Python."""

    id: str
    shell: str


Step = Check | Capture


def plan_disk(out: Path, boots: Sequence[Sequence[Step]], extra_files: dict[str, str | bytes] | None = None) -> Path:
    """The VMPLAN disk: ``boots[i]`` runs on boot i+1; the guest reboots while a next boot's plan exists."""
    files: dict[str, str | bytes] = dict(extra_files or {})
    for n, steps in enumerate(boots, start=1):
        lines = [f"# boot {n}: written by vmtests/harness/verdict.py"]
        for step in steps:
            if not ID.match(step.id):
                raise ValueError(f"check id {step.id!r}: use letters, digits, '_', '.', '-' only")
            kind = "check" if isinstance(step, Check) else "capture"
            lines.append(f"{kind} {step.id} {shlex.quote(step.shell)}")
        files[f"boot-{n}.sh"] = "\n".join(lines) + "\n"
    return seed.vfat_disk(out, files, label="VMPLAN")


@dataclass
class BootVerdict:
    index: int
    reached: bool = False  # the guest agent started (multi-user.target was reached)
    ended: bool = False  # the guest agent finished its plan
    agent: str = ""
    agent_rc: int | None = None
    state: str = ""
    failed_units: list[str] = field(default_factory=list)
    checks: dict[str, tuple[bool, int, list[str]]] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)
    milestones: dict[str, float] = field(default_factory=dict)

    @property
    def failures(self) -> dict[str, tuple[bool, int, list[str]]]:
        return {k: v for k, v in self.checks.items() if not v[0]}


MARKER = re.compile(r"(VMTEST-\w+|VMCHECK|VMOUT|VMDATA-END|VMDATA) (.*)$")


def parse(result: RunResult) -> list[BootVerdict]:
    verdicts: list[BootVerdict] = []
    for boot in result.boots:
        v = BootVerdict(boot.index, milestones=dict(boot.milestones))
        chunks: dict[str, list[str]] = {}
        for _, line in boot.lines:
            m = MARKER.search(line)
            if not m:
                continue
            kind, rest = m.group(1), m.group(2)
            kv = dict(item.split("=", 1) for item in rest.split() if "=" in item)
            if kind == "VMTEST-BOOT":
                v.reached = True
            elif kind == "VMTEST-AGENT":
                v.agent = kv.get("agent", "")
                v.agent_rc = int(kv["rc"]) if kv.get("rc", "").isdigit() else None
            elif kind == "VMTEST-RUNNING":
                v.state = kv.get("state", "")
            elif kind == "VMTEST-FAILED":
                v.failed_units.append(rest.split()[-1])
            elif kind == "VMTEST-END":
                v.ended = True
            elif kind == "VMCHECK":
                parts = rest.split()
                if len(parts) >= 3:
                    rc = int(kv.get("rc", "0")) if kv.get("rc", "0").isdigit() else -1
                    v.checks[parts[1]] = (parts[2] == "PASS", rc, [])
            elif kind == "VMOUT":
                parts = rest.split(" ", 3)
                if len(parts) >= 3 and parts[1] in v.checks:
                    v.checks[parts[1]][2].append(parts[3] if len(parts) > 3 else "")
            elif kind == "VMDATA":
                parts = rest.split()
                if len(parts) >= 3:
                    chunks.setdefault(parts[1], []).append(parts[2])
                elif len(parts) == 2:
                    chunks.setdefault(parts[1], [])
            elif kind == "VMDATA-END":
                parts = rest.split()
                if len(parts) >= 2:
                    key = parts[1]
                    try:
                        v.data[key] = base64.b64decode("".join(chunks.pop(key, []))).decode("utf-8", "replace")
                    except (binascii.Error, ValueError):
                        v.data[key] = "<garbled on the serial console>"
        verdicts.append(v)
    return verdicts


def describe_failures(verdicts: Sequence[BootVerdict], steps: Sequence[Sequence[Step]] = ()) -> str:
    """A readable account of every failed check, for assertion messages."""
    what = {s.id: s.what for boot in steps for s in boot if isinstance(s, Check) and s.what}
    out = []
    for v in verdicts:
        for cid, (_, rc, lines) in v.failures.items():
            out.append(f"boot {v.index}: {cid} failed (rc={rc})" + (f": {what[cid]}" if cid in what else ""))
            out.extend(f"    {line}" for line in lines[-15:])
        if "agent-log" in v.data:
            out.append(f"boot {v.index}: agent log tail:")
            out.extend(f"    {line}" for line in v.data["agent-log"].splitlines()[-40:])
    return "\n".join(out)
