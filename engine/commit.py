"""Commit (``tether commit``, every boot, before ``boot-complete.target``): decide whether a finalized slot has
proven itself.

- Finalized, and still the boot that finalized: nothing yet (the reboot has not happened).
- Finalized, and the expected entry booted: run the health checks. Pass: mark the entry good, make it the
  default, flip the active volume, record ``provisioned``. Fail: mark the entry bad, record
  ``ab-update-health-check-failed``, reboot into the previous slot (exit 1, so ``boot-complete.target`` is not
  reached and systemd-bless-boot does not bless the entry).
- Finalized, but another entry booted (the counter ran out, the firmware fell back): the new slot never came
  up. Restore the previous configuration, record ``provisioned`` with the reason in ``lastError``.
- ``ab-update-health-check-failed`` and the previous slot booted: record ``provisioned``, keeping the failure in
  ``lastError``.
- Never serviced, provisioned, staged: nothing to do (exit 0).

A configuration that failed (health checks or boot) is remembered by its digest in ``rejectedSpecs``, so a
metadata watch that still asks for it does not stage it again and again.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from tether import log
from tether.engine import checkpoints, slots, state
from tether.engine.boot import BootBackend, BootError
from tether.engine.finalize import ServicingEnv, backend_for, reboot, root_device_id, settle_boot_writes
from tether.engine.healthchecks import run_checks
from tether.engine.hostconfig import parse_host_config
from tether.engine.layout import Layout
from tether.errors import TetherError

LOG = log.get(__name__)
MAX_FAILED_REBOOTS = 2  # reboots tried to leave a slot that failed its checks, before giving up and staying


@dataclass(frozen=True)
class CommitResult:
    message: str
    code: int = 0
    status: dict[str, Any] | None = None


spec_digest = slots.spec_digest


def _rejected(doc: dict[str, Any], spec: dict[str, Any] | None) -> list[str]:
    out = [d for d in (doc.get("rejectedSpecs") or []) if isinstance(d, str)]
    d = spec_digest(spec)
    if d not in out:
        out.append(d)
    return out[-20:]


def commit(env: ServicingEnv) -> CommitResult:
    ds = state.datastore_location(env.root)
    if not ds.exists():
        return CommitResult("nothing to commit: this host was never serviced by tether")
    with state.StateStore(ds) as store:
        doc = store.current()
        cur = doc["servicingState"]
        if cur == state.NOT_PROVISIONED:
            return CommitResult("nothing to commit: this host was never serviced by tether", 0, doc)
        if cur in (state.PROVISIONED, state.AB_UPDATE_STAGED):
            doc = _note_interruption(env, store, doc)
        if cur in (state.PROVISIONED, state.AB_UPDATE_STAGED, state.CLEAN_INSTALL_STAGED):
            recovered = _unrecorded_switch(env, store, doc)
            if isinstance(recovered, CommitResult):
                return recovered
            if recovered is None:
                if cur == state.PROVISIONED:
                    return CommitResult(f"nothing to commit: provisioned ({doc.get('abActiveVolume')} active)", 0,
                                        doc)
                return CommitResult(f"nothing to commit: {cur} (not finalized yet)", 0, doc)
            doc, cur = recovered, recovered["servicingState"]
        boot = doc.get("boot") or {}
        if not boot.get("entryId"):
            return CommitResult(f"cannot commit: servicing state {cur} has no boot record", 1, doc)
        if cur == state.AB_UPDATE_HEALTH_CHECK_FAILED:
            return _after_failure(env, store, doc, boot)
        now_id = env.machine.current_boot_id()
        if now_id is not None and now_id == boot.get("finalizedBootId"):
            return CommitResult(f"finalized; waiting for the reboot into {boot['entryId']}", 0, doc)
        hc = parse_host_config(doc["spec"], "host configuration")
        backend, _name, _esp = backend_for(env, hc, boot.get("backend"))
        which = _booted(env, backend, doc, boot)
        if which is None:
            return CommitResult("cannot commit: cannot tell which entry booted (the boot loader exports none and "
                                "the kernel command line has no root=PARTUUID=)", 1, doc)
        if which == "expected":
            return _check_and_commit(env, store, doc, boot, backend, hc)
        return _fell_back(store, doc, boot, backend, which)


def _note_interruption(env: ServicingEnv, store: state.StateStore, doc: dict[str, Any]) -> dict[str, Any]:
    """A staging that was running when the host went down (its record names an earlier boot) is recorded in
    ``lastError``, so ``tether get last-error`` says what was interrupted, which slot is untrusted and what to
    run; ``tether get status`` shows the same under ``pending``."""
    staging = doc.get("staging")
    now_id = env.machine.current_boot_id()
    if not staging or now_id is None or staging.get("bootId") in (None, now_id):
        return doc
    last = doc.get("lastError") or {}
    if last.get("category") == "interrupted" and last.get("startedAt") == staging.get("startedAt"):
        return doc
    info = slots.explain(doc, now_id) or {}
    msg = (f"{staging.get('operation')} into {staging.get('targetVolume')} (image {staging.get('imageUrl')}) was "
           f"interrupted at step {staging.get('step')} (started {staging.get('startedAt')}); untrusted: "
           f"{', '.join(info.get('untrustedSlots') or []) or 'none'}; to resume: {info.get('resume')}; to abandon: "
           f"{info.get('abandon')}")
    return store.update("interrupted", lastError={**state.error_record("interrupted", msg),
                                                  "startedAt": staging.get("startedAt")})


def _unrecorded_switch(env: ServicingEnv, store: state.StateStore,
                       doc: dict[str, Any]) -> dict[str, Any] | CommitResult | None:
    """A finalize (or rollback) killed after it wrote the boot entry and before it recorded
    ``*-finalized`` leaves the host booting a slot the state does not name. Derive the state from what booted:
    a trusted slot (its record staged, or committed for a rollback, and checked again by commit's marker check)
    is recorded as finalized, then committed as usual. Returns the new status, None when the booted slot is the
    one the state names (or nothing tells), or a CommitResult refusing an untrusted slot."""
    from tether.engine.boot import parse_entry_id
    from tether.engine.layout import VOLUME_A, other

    cur = doc["servicingState"]
    if not doc.get("spec"):
        return None
    hc = parse_host_config(doc["spec"], "host configuration")
    try:
        backend, name, esp_mp = backend_for(env, hc, (doc.get("boot") or {}).get("backend"))
        booted = backend.booted_entry()
    except TetherError as e:
        LOG.info("cannot tell which entry booted (%s); taking the recorded state", e)
        return None
    parsed = parse_entry_id(booted or "")
    if parsed is None:
        return None
    volume = parsed[1]
    active = doc.get("abActiveVolume")
    if cur == state.CLEAN_INSTALL_STAGED:
        event, operation, want, target = "clean-install-finalized", "clean-install", slots.STAGED, VOLUME_A
    elif active in ("volume-a", "volume-b") and volume == other(str(active)):
        if cur == state.AB_UPDATE_STAGED:
            event, operation, want, target = "ab-update-finalized", "ab-update", slots.STAGED, volume
        else:
            event, operation, want, target = "rollback-finalized", "rollback", slots.COMMITTED, volume
    else:
        return None
    if volume != target:
        return None
    spec, old = doc["spec"], doc.get("specOld")
    if operation == "rollback":
        chain = [c for c in store.rollback_chain() if c["abActiveVolume"] == volume and c["spec"]]
        if not chain:
            return CommitResult(f"booted {booted} ({volume}), which holds no committed configuration", 1, doc)
        spec, old = chain[0]["spec"], doc["spec"]
    try:
        if (doc.get("slots") or {}).get(volume) is not None or operation != "clean-install":
            slots.check_record(doc, volume, spec, (want,))
    except slots.SlotError as e:
        return CommitResult(f"booted {booted}, but {e}", 1, doc)
    LOG.warning("%s booted, but the servicing state is %s: the switch to %s was not recorded (interrupted); "
                "recording it now", booted, cur, volume)
    boot = {"backend": name, "espMount": esp_mp, "entryId": booted, "previousEntryId": None, "targetVolume": volume,
            "operation": operation, "tries": None, "finalizedBootId": None, "finalizedAt": state.now(),
            "recovered": True}
    new_state = state.CLEAN_INSTALL_FINALIZED if operation == "clean-install" else state.AB_UPDATE_FINALIZED
    doc = {**doc, "servicingState": new_state, "spec": spec, "boot": boot, "staging": None}
    if operation != "clean-install":
        doc["specOld"] = old
    store.record(doc, event)
    return doc


def _booted(env: ServicingEnv, backend: BootBackend, doc: dict[str, Any], boot: dict[str, Any]) -> str | None:
    """"expected", or a description of what booted instead, or None when nothing tells."""
    booted = backend.booted_entry()
    expected = boot["entryId"]
    if booted is not None:
        return "expected" if booted == expected else f"entry {booted}"
    root = env.machine.root_partuuid()
    if root is None:
        return None
    hc = parse_host_config(doc["spec"], "host configuration")
    pid = Layout(hc).partition_for(root_device_id(hc), boot["targetVolume"])
    want = str((doc.get("partitionUuids") or {}).get(pid, "")).lower()
    return "expected" if root == want else f"root PARTUUID={root}"


def _servicing_type(boot: dict[str, Any]) -> str:
    return "clean-install" if boot.get("operation") == "clean-install" else "ab-update"


def _check_and_commit(env: ServicingEnv, store: state.StateStore, doc: dict[str, Any], boot: dict[str, Any],
                      backend: BootBackend, hc: Any) -> CommitResult:
    entry = boot["entryId"]
    clean = boot.get("operation") == "clean-install"
    try:
        # the booted root must be the slot the record names, holding the configuration it was finalized with
        slots.check_marker(env.root, doc, boot["targetVolume"], doc["spec"])
        report = run_checks(hc.health.checks, env.runner, env.root, servicing_type=_servicing_type(boot))
        ok, summary, category = report.ok, report.summary(), "health-check-failed"
    except slots.SlotError as e:
        ok, summary, category = False, str(e), "slot-record"
    if not ok:
        err = state.error_record(category, f"{entry} ({boot['targetVolume']}): {summary}")
        if clean:  # nothing to go back to: stay, and try again on the next boot
            store.update("clean-install-health-check-failed", lastError=err)
            return CommitResult(f"clean install failed its health checks: {summary}", 1, store.current())
        try:
            backend.mark_bad(entry)
            settle_boot_writes()
        except BootError as e:
            LOG.warning("could not mark %s bad: %s (its boot counter still runs out)", entry, e)
        doc = store.current()
        vol = boot["targetVolume"]
        doc.update(servicingState=state.AB_UPDATE_HEALTH_CHECK_FAILED, lastError=err,
                   rejectedSpecs=_rejected(doc, doc["spec"]),
                   boot={**boot, "failedBootId": env.machine.current_boot_id(), "failedReboots": 1},
                   slots={**doc["slots"], vol: _bad(doc, vol, err["message"])})
        store.record(doc, "ab-update-health-check-failed")
        reboot(env, f"{entry} failed its health checks; the previous slot boots")
        return CommitResult(f"health checks failed: {summary}; rebooting into the previous slot", 1,
                            doc)
    try:
        backend.mark_good(entry)
        checkpoints.reached("boot:marked-good")
        backend.set_default(entry)
        checkpoints.reached("boot:default-set")
        settle_boot_writes()
    except BootError as e:
        store.update("commit-failed", lastError=state.error_record("boot-configuration", str(e)))
        return CommitResult(f"cannot commit {entry}: {e}", 1, store.current())
    doc = store.current()
    vol = boot["targetVolume"]
    doc.update(servicingState=state.PROVISIONED, abActiveVolume=vol if doc.get("abActiveVolume") else None,
               lastError=None, boot={**boot, "committedAt": state.now()},
               slots={**doc["slots"], vol: {**(doc["slots"].get(vol) or {}), "state": slots.COMMITTED,
                                            "entryId": entry, "committedAt": state.now(), "at": state.now()}})
    if clean:
        doc["abActiveVolume"] = vol if Layout(hc).pairs else None
    store.record(doc, "committed")
    return CommitResult(f"committed {entry}: {vol} is active ({report.summary()})", 0, doc)


def _fell_back(store: state.StateStore, doc: dict[str, Any], boot: dict[str, Any], backend: BootBackend,
               which: str) -> CommitResult:
    entry = boot["entryId"]
    if boot.get("operation") == "clean-install":
        msg = f"the clean install's entry {entry} did not boot ({which} did)"
        store.update("commit-failed", lastError=state.error_record("boot-fallback", msg))
        return CommitResult(f"cannot commit: {msg}", 1, store.current())
    tries = ""
    tried: int | None = None
    with contextlib.suppress(BootError):
        for e in backend.entries():
            if e.id == entry:
                # an uncounted entry cannot say; a counted one at 0 tries done was never started
                tried = 1 if e.tries_left is None else (e.tries_done or 0)
                if e.tries_left is not None:
                    tries = f"; tries left {e.tries_left}, done {e.tries_done}"
    doc = store.current()
    failed_spec = doc["spec"]
    if not tried:
        # the loader never tried it (its entry is gone or unreadable, e.g. lost to a power cut): nothing says the
        # configuration is bad, so it is not rejected; the next metadata check stages it again
        msg = (f"{entry} ({boot['targetVolume']}) was never tried: the boot loader started {which} and has "
               f"no usable entry {entry}{tries}; the update is abandoned, not rejected")
        doc.update(servicingState=state.PROVISIONED, spec=doc.get("specOld") or failed_spec, specOld=None,
                   lastError=state.error_record("boot-entry-lost", msg),
                   slots={**doc["slots"], boot["targetVolume"]: _bad(doc, boot["targetVolume"], msg)})
        store.record(doc, "boot-fallback")
        return CommitResult(f"update abandoned: {msg}; provisioned on {doc.get('abActiveVolume')}", 0, doc)
    msg = f"{entry} ({boot['targetVolume']}) did not come up: the boot loader started {which} instead{tries}"
    with contextlib.suppress(BootError):
        backend.mark_bad(entry)
        settle_boot_writes()
    doc.update(servicingState=state.PROVISIONED, spec=doc.get("specOld") or failed_spec, specOld=None,
               lastError=state.error_record("boot-fallback", msg), rejectedSpecs=_rejected(doc, failed_spec),
               slots={**doc["slots"], boot["targetVolume"]: _bad(doc, boot["targetVolume"], msg)})
    store.record(doc, "boot-fallback")
    return CommitResult(f"rolled back: {msg}; provisioned on {doc.get('abActiveVolume')}", 0, doc)


def _bad(doc: dict[str, Any], volume: str, reason: str) -> dict[str, Any]:
    return {**((doc.get("slots") or {}).get(volume) or {}), "state": slots.BAD, "reason": reason, "at": state.now()}


def _after_failure(env: ServicingEnv, store: state.StateStore, doc: dict[str, Any],
                   boot: dict[str, Any]) -> CommitResult:
    now_id = env.machine.current_boot_id()
    if now_id is not None and now_id == boot.get("failedBootId"):
        return CommitResult(f"{boot['entryId']} failed its health checks; waiting for the reboot into the "
                            "previous slot", 1, doc)
    hc = parse_host_config(doc["specOld"] or doc["spec"], "host configuration")
    backend, _n, _e = backend_for(env, hc, boot.get("backend"))
    which = _booted(env, backend, doc, boot)
    if which is None:
        return CommitResult("cannot tell which entry booted after the failed update", 1, doc)
    if which == "expected":  # still on the failed slot: the reboot did not leave it
        n = int(boot.get("failedReboots") or 1)
        if n >= MAX_FAILED_REBOOTS:
            return CommitResult(f"still on {boot['entryId']}, which failed its health checks, after {n} reboots; "
                                "staying (use tether rollback or fix the boot configuration)", 1, doc)
        with contextlib.suppress(BootError):
            backend.mark_bad(boot["entryId"])
        store.update("health-check-failed-reboot", boot={**boot, "failedBootId": now_id, "failedReboots": n + 1})
        reboot(env, f"{boot['entryId']} failed its health checks; the previous slot boots")
        return CommitResult(f"still on {boot['entryId']}; rebooting into the previous slot again", 1,
                            store.current())
    doc.update(servicingState=state.PROVISIONED, spec=doc.get("specOld") or doc["spec"], specOld=None)
    store.record(doc, "rolled-back-after-health-check")
    return CommitResult(f"back on {doc.get('abActiveVolume')} after the failed update: provisioned (last error: "
                        f"{(doc.get('lastError') or {}).get('message')})", 0, doc)

