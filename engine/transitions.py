"""The servicing state machine, in one place: which operation may start in which state, where it leads, and
which recorded events move the host status from one state to another.

``StateStore.record`` refuses any event that is not an edge of ``EVENTS`` from the current state, so no code
path can write a transition this table does not have. ``require`` gives an illegal request its error, naming
the current state and what to run instead. ``docs/engine.md`` shows ``markdown()``'s output (a test keeps the
two the same).
"""

from __future__ import annotations

from tether.errors import TetherError

NOT_PROVISIONED = "not-provisioned"
CLEAN_INSTALL_STAGED = "clean-install-staged"
CLEAN_INSTALL_FINALIZED = "clean-install-finalized"
AB_UPDATE_STAGED = "ab-update-staged"
AB_UPDATE_FINALIZED = "ab-update-finalized"
AB_UPDATE_HEALTH_CHECK_FAILED = "ab-update-health-check-failed"
PROVISIONED = "provisioned"
STATES = (NOT_PROVISIONED, CLEAN_INSTALL_STAGED, CLEAN_INSTALL_FINALIZED, AB_UPDATE_STAGED, AB_UPDATE_FINALIZED,
          AB_UPDATE_HEALTH_CHECK_FAILED, PROVISIONED)

NP, CIS, CIF = NOT_PROVISIONED, CLEAN_INSTALL_STAGED, CLEAN_INSTALL_FINALIZED
ABS, ABF, HCF, P = AB_UPDATE_STAGED, AB_UPDATE_FINALIZED, AB_UPDATE_HEALTH_CHECK_FAILED, PROVISIONED

# Operations a user (or a unit) asks for: {state it may start in: state it leads to when it succeeds}.
# "same" states are no-ops that succeed (already done, nothing to do).
OPERATIONS: dict[str, dict[str, str]] = {
    "install": {NP: CIS},  # a new disk: its datastore starts empty
    "install-finalize": {CIS: CIF, CIF: CIF},
    "stage": {P: ABS, ABS: ABS},  # over a staged update: re-stage (the slot is rewritten)
    "finalize": {ABS: ABF, ABF: ABF},
    "commit": {NP: NP, P: P, CIS: CIS, ABS: ABS, CIF: P, ABF: P, HCF: P},
    "rollback": {P: ABF},
    "cancel": {ABS: P},  # stage the running configuration again
    "metadata-update": {P: ABF, ABS: ABF, ABF: ABF},  # stage + finalize (+ reboot) as the policy says
}

# What a user sees when an operation is asked for in a state that does not allow it.
HINTS: dict[tuple[str, str], str] = {
    ("stage", NP): "this host was not installed by tether",
    ("stage", CIS): "finalize and boot the clean install first",
    ("stage", CIF): "the clean install has not committed yet (reboot into it)",
    ("stage", ABF): "an update is finalized and waits for its reboot and commit",
    ("stage", HCF): "the last update failed its health checks; reboot into the previous slot first",
    ("finalize", NP): "stage an update first (tether update FILE --allowed-operations stage)",
    ("finalize", P): "stage an update first (tether update FILE --allowed-operations stage)",
    ("finalize", CIS): "this is a clean install: run tether install FILE --allowed-operations finalize",
    ("finalize", CIF): "the clean install is finalized: reboot into it",
    ("finalize", HCF): "the last update failed its health checks; reboot into the previous slot first",
    ("rollback", ABS): "an update is staged: cancel it (tether update with the running configuration) or "
                       "finalize it first",
    ("rollback", ABF): "an update is finalized and waits for its reboot and commit",
    ("rollback", HCF): "the last update failed its health checks; reboot into the previous slot first",
    ("rollback", CIS): "finish the clean install first",
    ("rollback", CIF): "finish the clean install first (reboot into it)",
    ("rollback", NP): "this host was never serviced by tether",
}

# Recorded events: the (from, to) edges each may write. Events that only add facts keep the state.
EVENTS: dict[str, tuple[tuple[str, str], ...]] = {
    "adopted": ((NP, P),),  # a host laid out by other means whose slot A is taken as committed
    "clean-install-staged": ((NP, CIS),),
    "clean-install-finalize-failed": ((CIS, CIS),),
    "clean-install-finalized": ((CIS, CIF),),
    "clean-install-health-check-failed": ((CIF, CIF),),
    "commit-failed": ((CIF, CIF), (ABF, ABF)),
    "committed": ((CIF, P), (ABF, P)),
    "boot-fallback": ((ABF, P),),
    "ab-update-health-check-failed": ((ABF, HCF),),
    "health-check-failed-reboot": ((HCF, HCF),),
    "rolled-back-after-health-check": ((HCF, P),),
    "image-check-failed": ((P, P), (ABS, ABS)),
    "interrupted": ((P, P), (ABS, ABS)),  # noted at the next boot: an operation that did not finish
    "pre-servicing-failed": ((P, P), (ABS, ABS)),
    # staging over a staged update starts by giving it up: its slot is about to be rewritten
    "staging-started": ((P, P), (ABS, P)),
    "staging-written": ((P, P),),
    "staging-configured": ((P, P),),
    "staging-failed": ((P, P),),
    "staging-cancelled": ((ABS, P),),
    "ab-update-staged": ((P, ABS),),
    "ab-update-finalize-failed": ((ABS, ABS),),
    "ab-update-finalized": ((ABS, ABF),),
    "rollback-finalize-failed": ((P, P),),
    "rollback-finalized": ((P, ABF),),
    "metadata-config-rejected": ((P, P), (ABS, ABS)),
}


PHRASES = {"install": "install", "install-finalize": "finalize the clean install", "stage": "stage an update",
           "finalize": "finalize an update", "commit": "commit", "rollback": "roll back", "cancel": "cancel",
           "metadata-update": "update from the metadata"}


class TransitionError(TetherError):
    pass


def hint(operation: str, current: str) -> str:
    return HINTS.get((operation, current)) or f"it needs one of: {', '.join(OPERATIONS[operation])}"


def require(operation: str, current: str) -> str:
    """The state ``operation`` leads to from ``current``, or TransitionError naming the state and what to run."""
    allowed = OPERATIONS[operation]
    if current in allowed:
        return allowed[current]
    raise TransitionError(f"cannot {PHRASES[operation]} in servicing state {current}: {hint(operation, current)}")


def check_event(event: str, current: str, new: str) -> None:
    """Refuse a recorded event that the table does not allow from ``current`` to ``new``."""
    edges = EVENTS.get(event)
    if edges is None:
        raise TransitionError(f"unknown servicing event {event!r}")
    if (current, new) not in edges:
        legal = "; ".join(f"{a} -> {b}" for a, b in edges)
        raise TransitionError(f"servicing event {event!r} cannot move the host from {current} to {new} "
                              f"(it allows {legal})")


def markdown() -> str:
    """The two tables as they stand in docs/engine.md."""
    lines = ["| operation | accepted in | leads to |", "|---|---|---|"]
    for op, edges in OPERATIONS.items():
        for a, b in edges.items():
            lines.append(f"| `{op}` | `{a}` | {'(no change)' if a == b else f'`{b}`'} |")
    lines += ["", "| recorded event | from | to |", "|---|---|---|"]
    for ev, pairs in EVENTS.items():
        for a, b in pairs:
            lines.append(f"| `{ev}` | `{a}` | {'(same)' if a == b else f'`{b}`'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
