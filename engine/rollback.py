"""Manual rollback (``tether rollback [--check]``): boot the other slot again when it still holds the image it
was committed with (one A/B level), through the same finalize/commit cycle as an update: the old slot's entry
is installed again as a counted trial, commit runs its health checks, and a failure comes back here.

Automatic rollback needs no command: the boot counter does it (see ``engine.commit``).
"""

from __future__ import annotations

from typing import Any

from tether.engine import state, transitions
from tether.engine.finalize import ServicingEnv, switch_to
from tether.engine.layout import other
from tether.errors import TetherError


class RollbackError(TetherError):
    pass


def rollback_target(store: state.StateStore, doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(volume, its committed configuration), or RollbackError saying why there is none."""
    try:
        transitions.require("rollback", doc["servicingState"])
    except transitions.TransitionError as e:
        raise RollbackError(str(e)) from None
    active = doc.get("abActiveVolume")
    if active not in ("volume-a", "volume-b"):
        raise RollbackError("this host has no A/B volumes to roll back between")
    vol = other(active)
    slot = (doc.get("slots") or {}).get(vol) or {}
    if slot.get("state") != "committed":
        what = slot.get("state") or "never committed"
        raise RollbackError(f"{vol} holds no committed image to roll back to (it is {what})")
    for entry in store.rollback_chain():
        if entry["abActiveVolume"] == vol and entry["spec"]:
            return vol, entry["spec"]
    raise RollbackError(f"no provisioned configuration of {vol} in the servicing history")


def check(env: ServicingEnv) -> tuple[bool, str]:
    ds = state.datastore_location(env.root)
    if not ds.exists():
        return False, "cannot roll back: this host was never serviced by tether"
    with state.StateStore(ds) as store:
        doc = store.current()
        try:
            vol, spec = rollback_target(store, doc)
        except RollbackError as e:
            return False, str(e)
    image = (spec.get("image") or {}).get("url", "no image")
    return True, f"can roll back to {vol} (image {image})"


def rollback(env: ServicingEnv) -> tuple[str, dict[str, Any]]:
    ds = state.datastore_location(env.root)
    if not ds.exists():
        raise RollbackError("cannot roll back: this host was never serviced by tether")
    with state.StateStore(ds) as store:
        doc = store.current()
        vol, spec = rollback_target(store, doc)
        doc = switch_to(env, store, doc, vol, operation="rollback", new_spec=spec, old_spec=doc["spec"])
    return f"rollback finalized: {doc['boot']['entryId']} ({vol}) boots next, with {env.tries} tries", doc
