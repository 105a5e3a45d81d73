"""What each A/B slot holds: its record in the servicing datastore and the marker written inside the slot.

The record (``slots[volume]`` in the host status) moves through the phases of a write, each recorded durably
as the last step of the phase::

    writing -> written (image hash verified) -> staged (configured, marker written) -> committed
         \\-> bad (hash mismatch, failed configuration, failed boot or health checks)

``writing`` and ``bad`` slots are untrusted: nothing may boot them until they are staged again. The marker
(``/etc/tether/slot.json`` inside the slot's root filesystem) is written at the end of configuration and names
the volume, the configuration digest and the generation; finalize, commit and rollback compare it with the
record, so a slot whose content is not what the record claims (an interrupted re-stage, a record that
outlived its slot) is refused whatever the overall servicing state says.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from tether.errors import TetherError
from tether.target import Target

MARKER = "/etc/tether/slot.json"

WRITING = "writing"
WRITTEN = "written"
STAGED = "staged"
COMMITTED = "committed"
BAD = "bad"
CANCELLED = "cancelled"
TRUSTED = (STAGED, COMMITTED)


class SlotError(TetherError):
    pass


def spec_digest(spec: dict[str, Any] | None) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def image_digest(spec: dict[str, Any] | None) -> str | None:
    image = (spec or {}).get("image") or {}
    for alg in ("sha384", "sha256"):
        value = image.get(alg)
        if isinstance(value, str) and value != "ignored":
            return f"{alg}:{value}"
    return None


def record(phase: str, spec: dict[str, Any] | None, generation: int, **extra: Any) -> dict[str, Any]:
    from tether.engine.state import now

    return {"state": phase, "specDigest": spec_digest(spec), "imageDigest": image_digest(spec),
            "generation": generation, "at": now(), **extra}


def write_marker(root: Target, volume: str, spec: dict[str, Any] | None, generation: int) -> None:
    """Written into the slot as the last step of its configuration (the root is then unmounted, which
    flushes it, before the datastore records the slot as staged)."""
    doc = {"volume": volume, "specDigest": spec_digest(spec), "generation": generation}
    root.write(MARKER, json.dumps(doc, indent=1, sort_keys=True) + "\n", mode=0o644)


def read_marker(root: Target) -> dict[str, Any] | None:
    try:
        data = json.loads(root.read_text(MARKER))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_record(doc: dict[str, Any], volume: str, spec: dict[str, Any] | None, want: tuple[str, ...]) -> None:
    """The datastore's record of ``volume`` is in one of the ``want`` states and holds ``spec``."""
    slot = (doc.get("slots") or {}).get(volume) or {}
    st = slot.get("state") or "never written"
    if st not in want:
        why = f": {slot['reason']}" if slot.get("reason") else ""
        raise SlotError(f"{volume} is {st}{why}, not {' or '.join(want)}; " + next_step(doc, volume))
    recorded = slot.get("specDigest")
    if recorded is not None and recorded != spec_digest(spec):
        raise SlotError(f"{volume} holds another configuration ({str(recorded)[:12]}) than the one asked for "
                        f"({spec_digest(spec)[:12]}); " + next_step(doc, volume))


def check_marker(slot_root: Target, doc: dict[str, Any], volume: str, spec: dict[str, Any] | None) -> None:
    """The marker inside the mounted slot agrees with the record: same volume, same configuration."""
    marker = read_marker(slot_root)
    if marker is None:
        raise SlotError(f"{volume} has no slot marker ({MARKER}): its content was not written by a completed "
                        "staging; " + next_step(doc, volume))
    if marker.get("volume") != volume or marker.get("specDigest") != spec_digest(spec):
        raise SlotError(f"{volume}'s marker ({MARKER}) says it holds {marker.get('volume')} configuration "
                        f"{str(marker.get('specDigest'))[:12]}, not the recorded {spec_digest(spec)[:12]}; "
                        + next_step(doc, volume))


def next_step(doc: dict[str, Any], volume: str) -> str:
    active = doc.get("abActiveVolume")
    if volume == active:
        return "the running slot is unaffected"
    return ("stage an update again (tether update FILE --allowed-operations stage) to rewrite it; the running "
            f"slot {active} is unaffected")


def current_boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def explain(doc: dict[str, Any], boot_id: str | None = None) -> dict[str, Any] | None:
    """What an interrupted or running operation left behind, for ``tether get status``: what was in progress,
    which slot is untrusted, and the commands that resume or abandon it. None when nothing is pending."""
    staging = doc.get("staging")
    untrusted = sorted(v for v, s in (doc.get("slots") or {}).items()
                       if isinstance(s, dict) and s.get("state") in (WRITING, WRITTEN, BAD))
    if not staging and not untrusted:
        return None
    out: dict[str, Any] = {"untrustedSlots": untrusted}
    if staging:
        running = _alive(staging.get("pid")) and (boot_id is None or staging.get("bootId") in (None, boot_id))
        out.update(operation=staging.get("operation"), step=staging.get("step"),
                   targetVolume=staging.get("targetVolume"), imageUrl=staging.get("imageUrl"),
                   startedAt=staging.get("startedAt"), state="running" if running else "interrupted")
        if not running:
            out["resume"] = "tether update FILE --allowed-operations stage (FILE: the configuration to stage)"
            out["abandon"] = ("nothing to do: the running slot is unaffected and nothing boots the untrusted "
                              "slot; the next staging rewrites it")
    else:
        out["state"] = "untrusted slot"
        out["resume"] = "tether update FILE --allowed-operations stage rewrites it"
    return out
