"""The crash matrix in CI (see tests/engine/crash_matrix.py): every operation, from every state it accepts,
killed at every checkpoint (SIGKILL and a simulated power cut), then recovered as a host would; the size and the
pass count are printed. ``TETHER_CRASH_SEED`` replays a run; ``TETHER_CRASH_OPS`` narrows it (comma-separated).
(root only: loop disks)"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.engine import crash_matrix
from tests.engine.conftest import BuiltImage, LoopDisk
from tests.engine.servicing_rig import (
    Rig,
    kimages_fixture,  # noqa: F401  (the "kimages" fixture)
)

ENGINE = Path(__file__).parents[2] / "engine"


def _call_sites() -> set[str]:
    names = set()
    for p in ENGINE.glob("*.py"):
        names |= set(re.findall(r'checkpoints\.reached\((f?"[^"]+")\)', p.read_text()))
    return names


def test_crash_matrix(loopdisk: LoopDisk, kimages: dict[str, BuiltImage], tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    seed = int(os.environ.get("TETHER_CRASH_SEED") or 20261202)
    ops = [o for o in os.environ.get("TETHER_CRASH_OPS", "").split(",") if o] or None
    rig = Rig(loopdisk, tmp_path / "rig")
    work = tmp_path / "work"
    work.mkdir()
    images = crash_matrix.Images(kimages["v1"], kimages["v2"], kimages["v3"])
    lines: list[str] = []
    m = crash_matrix.run(rig, images, work, seed, ops=ops, log=lines.append)
    report = crash_matrix.summary(m)
    with capsys.disabled():
        print("\n" + "\n".join(lines) + "\n" + report)
    failed = [r for r in m.results if not r.ok]
    assert not failed, "\n".join(f"{r.op} {r.point} {r.mode}: {r.detail}" for r in failed)
    assert m.results and all(m.discovered.values())
    if ops is None:
        # every checkpoint written in the engine is one some operation reaches (none is dead or untested)
        seen = {p.rsplit("#", 1)[0] for pts in m.discovered.values() for p in pts}
        for site in _call_sites():
            literal = site.strip('f"')
            prefix = literal.split("{", 1)[0]
            assert any(s == literal or (site.startswith("f") and s.startswith(prefix)) for s in seen), site
