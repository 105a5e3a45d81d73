"""Power cuts in a real boot (issue 15, item 5; ``vmtests/powercut.py`` says what a cut is and how it is timed).

CI runs a few cuts with a fixed seed; ``scripts/powercut`` runs the long series. Environment:
``TETHER_POWERCUT_SEED`` (default ``powercut.DEFAULT_SEED``), ``TETHER_POWERCUT_CUTS`` (default 2),
``TETHER_POWERCUT_PHASES`` (comma-separated phases to aim at in turn, for a replay aimed at one phase),
``TETHER_POWERCUT_FINISH=1`` (after the last cut's recovery boot, let the update run to its end and boot once more:
scripts/powercut sets it; CI only looks and powers off, to stay within its time), ``TETHER_POWERCUT_REPORT`` (the
summary table, rewritten after every cut).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmtests import powercut
from vmtests.engine_images import EngineDisks, engine_disks
from vmtests.harness.imds import ImdsServer
from vmtests.harness.lab import Lab

pytestmark = [pytest.mark.vm, pytest.mark.vm_engine]


@pytest.fixture(scope="session")
def engine(tether_wheel: Path) -> EngineDisks:
    return engine_disks(tether_wheel)


def test_power_cuts(lab: Lab, engine: EngineDisks) -> None:
    seed = int(os.environ.get("TETHER_POWERCUT_SEED") or powercut.DEFAULT_SEED)
    cuts = int(os.environ.get("TETHER_POWERCUT_CUTS") or 2)
    phases = tuple(p for p in os.environ.get("TETHER_POWERCUT_PHASES", "").split(",") if p)
    finish = os.environ.get("TETHER_POWERCUT_FINISH", "0") == "1"
    report = Path(os.environ["TETHER_POWERCUT_REPORT"]) if os.environ.get("TETHER_POWERCUT_REPORT") else None
    aimed = ", ".join(p for p, _ in powercut.schedule(seed, cuts, phases))
    print(f"power cuts: seed {seed}, {cuts} cuts aimed at {aimed} "
          f"(replay: TETHER_POWERCUT_SEED={seed} TETHER_POWERCUT_CUTS={cuts})")
    with ImdsServer() as imds:
        lineage = powercut.run(lab, engine, imds, seed, cuts, phases, finish, report=report)
    table = lineage.table()
    print(table)
    assert lineage.initial is not None and lineage.initial.ok, "the first boot was not good:\n" + table
    missed = [c for c in lineage.records if c.delay is None and not c.skipped]
    assert not missed, "cuts that never came:\n" + table
    failed = [c for c in lineage.records if not c.ok]
    assert not failed, "boots after a cut that were not good:\n" + table
    if finish:
        assert lineage.final is not None and lineage.final.ok, "the update did not complete in the end:\n" + table
