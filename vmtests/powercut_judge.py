"""What a boot after a power cut must show (``vmtests/powercut.py``), judged from the guest's ``facts`` capture
(``powercut_plan.FACTS``): the host came up on a good slot, ``tether get status`` tells the truth about it, and
the interrupted update is either completed or cleanly abandoned (or staged, its finalize resumable).

The same rules as the crash matrix (``tests/engine/crash_matrix.py``), checked on a real boot: the booted slot's
record is committed and its marker (``/etc/tether/slot.json``) agrees with it; when provisioned, the active volume
is the booted one and its configuration (digest, hostname) is the recorded one; an untrusted slot is explained by
``pending``; what the loader boots by default is the booted slot or a slot whose record and marker verify.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tether.engine.slots import TRUSTED, spec_digest

UNTRUSTED = ("writing", "written", "configured", "bad")
VOLUME = re.compile(r"volume-[ab]")


@dataclass
class Judgement:
    booted: str = "?"
    state: str = "?"
    outcome: str = "?"  # completed | abandoned | staged | initial | ?
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def hostname_of(spec: dict[str, Any] | None) -> str | None:
    return ((spec or {}).get("os") or {}).get("hostname")


def default_entry(bootctl: str) -> str | None:
    """The entry id ``bootctl list`` marks ``(default)``: what the loader boots next without a one-shot."""
    return next((b["id"] for b in entry_blocks(bootctl) if b.get("default")), None)


def entry_blocks(bootctl: str) -> list[dict[str, Any]]:
    """``bootctl list``'s entries: id, whether it is the default, and its linux line (an entry without one, e.g.
    a file whose content was lost, is skipped by systemd-boot)."""
    blocks: list[dict[str, Any]] = []
    for line in bootctl.splitlines():
        key, _, value = line.strip().partition(": ")
        if key == "type":
            blocks.append({})
        elif blocks and key == "title":
            blocks[-1]["default"] = "(default)" in value
        elif blocks and key in ("id", "linux"):
            blocks[-1][key] = value.strip()
    return [b for b in blocks if "id" in b]


def judge(facts: dict[str, Any], want: str | None, before: str | None, want_digest: str | None = None,
          staged_before_cut: bool = False) -> Judgement:
    """``want``: the hostname of the configuration the interrupted update asked for (None: no update yet),
    ``want_digest`` its spec digest; ``before``: the hostname running before it (None for the adopted one);
    ``staged_before_cut``: the console showed finalize begin, so ``ab-update-staged`` had been recorded."""
    j = Judgement()
    st = facts.get("status")
    if not isinstance(st, dict):
        j.problems.append(f"tether get status failed: {facts.get('statusError')}")
        return j
    state = str(st.get("servicingState"))
    slots = st.get("slots") or {}
    devices = facts.get("devices") or {}
    booted = next((v for v, d in devices.items() if d == facts.get("root")), None)
    if booted is None:
        j.problems.append(f"the root {facts.get('root')} is neither slot's partition {devices}")
        return j
    other = "volume-b" if booted == "volume-a" else "volume-a"
    j.booted, j.state = booted, state
    rec = slots.get(booted) or {}
    orec = slots.get(other) or {}
    marker = facts.get("marker") or {}
    active = st.get("abActiveVolume")
    host = hostname_of(st.get("spec"))

    if facts.get("tetherStatusRc") != 0:
        j.problems.append(f"tether status exits {facts.get('tetherStatusRc')} (first boot not fine)")
    if "Result=success" not in str(facts.get("commitUnit")):
        j.problems.append(f"tether-commit.service: {facts.get('commitUnit')!r}")
    # the booted slot is good: committed, its own marker, configured
    if rec.get("state") != "committed":
        j.problems.append(f"booted {booted}, whose record is {rec.get('state')!r}, not committed")
    if marker.get("volume") != booted or marker.get("specDigest") != rec.get("specDigest"):
        j.problems.append(f"booted {booted}: its marker {marker} does not match its record "
                          f"({str(rec.get('specDigest'))[:12]})")
    if not facts.get("fstab"):
        j.problems.append(f"booted {booted} has no /etc/fstab: not configured")
    # the status tells the truth about what runs
    if state == "provisioned":
        if active != booted:
            j.problems.append(f"provisioned on {active}, but {booted} booted")
        if marker.get("specDigest") != spec_digest(st.get("spec")):
            j.problems.append("the running slot's marker is not the provisioned configuration")
        if host and facts.get("hostname") != host:
            j.problems.append(f"hostname {facts.get('hostname')!r}, configured {host!r}")
    elif state == "ab-update-staged":
        if active != booted:
            j.problems.append(f"ab-update-staged with {active} active, but {booted} booted")
        if orec.get("state") != "staged" or orec.get("specDigest") != spec_digest(st.get("spec")):
            j.problems.append(f"ab-update-staged, but {other}'s record is {orec}")
        omarker = (facts.get("other") or {}).get("marker") or {}
        if omarker.get("volume") != other or omarker.get("specDigest") != orec.get("specDigest"):
            j.problems.append(f"the staged slot {other}'s marker {omarker} does not match its record")
    else:
        j.problems.append(f"servicing state {state} after the boot's commit (expected provisioned or "
                          "ab-update-staged)")
    # an untrusted slot is explained
    pending = st.get("pending")
    if orec.get("state") in UNTRUSTED:
        if not isinstance(pending, dict) or other not in (pending.get("untrustedSlots") or []):
            j.problems.append(f"{other} is {orec.get('state')} but pending does not name it: {pending}")
        elif pending.get("operation") and (pending.get("state") != "interrupted" or not pending.get("resume")):
            j.problems.append(f"pending does not explain the interruption: {pending}")
    elif isinstance(pending, dict) and pending.get("operation"):
        j.problems.append(f"pending names an operation although no slot is untrusted: {pending}")
    if want_digest and want_digest in (st.get("rejectedSpecs") or []):
        j.problems.append(f"the interrupted configuration ({want}) is now rejected: the metadata watch will not "
                          "stage it again")
    # what boots next by default verifies
    default = default_entry(str(facts.get("bootctl", "")))
    m = VOLUME.search(default or "")
    if m is None:
        j.problems.append(f"cannot tell the loader's default entry from bootctl list ({default})")
    elif m.group(0) != booted:
        vol = m.group(0)
        omarker = (facts.get("other") or {}).get("marker") or {}
        if orec.get("state") not in TRUSTED or omarker.get("specDigest") != orec.get("specDigest"):
            empty = any(b["id"] == default and "linux" not in b for b in entry_blocks(str(facts.get("bootctl", ""))))
            j.problems.append(f"the default entry {default} names {vol}, whose record is {orec.get('state')} "
                              f"(marker {omarker})" + (" - and the entry file has no linux line (its content was "
                                                       "lost), so systemd-boot skips it" if empty else ""))
    for entry in facts.get("entries") or []:
        m = VOLUME.search(entry)
        if m and (slots.get(m.group(0)) or {}).get("state") in UNTRUSTED and "+0-" not in entry:
            j.notes.append(f"entry {entry} names untrusted {m.group(0)}")
    if staged_before_cut and orec.get("state") in ("writing", "written", "configured") \
            and orec.get("specDigest") == want_digest:
        # not a boot of a bad slot (the slot is only distrusted), but a record the engine acted on was undone
        j.notes.append(f"LOST RECORD: ab-update-staged was recorded before the cut (finalize had begun), the next "
                       f"boot's datastore says {other} is {orec.get('state')}")
    if st.get("lastError"):
        j.notes.append(f"lastError {st['lastError'].get('category')}")
    if isinstance(pending, dict):
        j.notes.append(f"pending {pending.get('state')}" + (f" {pending.get('step')}" if pending.get("step") else ""))
    j.outcome = _outcome(state, host, want, before)
    if j.outcome == "?":
        j.problems.append(f"{state} with configuration {host!r}: neither the update ({want!r}) completed nor "
                          f"the previous one ({before!r}) kept")
    return j


def _outcome(state: str, host: str | None, want: str | None, before: str | None) -> str:
    if want is None:
        return "initial"
    if state == "provisioned" and host == want:
        return "completed"
    if state == "provisioned" and host == before:
        return "abandoned"
    if state == "ab-update-staged" and host == want:
        return "staged"
    return "?"
