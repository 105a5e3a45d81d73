"""cloud-init's merge corpus: sourceN-1, sourceN-2, ... merged in order must give expectedN.

cloud-init's own test feeds each source, in file-name order, to its cloud-config part handler; here they go
through process() as the parts of one MIME message (and once more as a cloud-config-archive), which is how a
user would send them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import compat_dir
from tests.userdata.helpers import mime, run
from tether import yamlsafe

_SOURCE = re.compile(r"source(\d+)-(\d+)\.yaml$")


def groups() -> dict[int, list[Path]]:
    root = compat_dir("cloud-init", "tests", "data", "merge_sources")
    found: dict[int, list[Path]] = defaultdict(list)
    for p in root.iterdir():
        m = _SOURCE.match(p.name)
        if m:
            found[int(m.group(1))].append(p)
    return {k: sorted(v, key=lambda p: int(_SOURCE.match(p.name).group(2))) for k, v in sorted(found.items())}  # type: ignore[union-attr]


def _archive(texts: list[str]) -> bytes:
    from tether.yamlsafe import dump
    return ("#cloud-config-archive\n" + dump([{"type": "text/cloud-config", "content": t} for t in texts])).encode()


@pytest.mark.parametrize("transport", ["mime", "archive"])
def test_every_merge_pair_gives_the_expected_result(transport: str) -> None:
    gs = groups()
    root = compat_dir("cloud-init", "tests", "data", "merge_sources")
    failures = []
    for n, sources in gs.items():
        texts = [p.read_text() for p in sources]
        data = mime(*[("text/cloud-config", t) for t in texts]) if transport == "mime" else _archive(texts)
        r = run(data)
        expected = yamlsafe.load((root / f"expected{n}.yaml").read_text(), f"expected{n}.yaml")
        if r.cloud_config != expected or r.errors or r.warnings:
            failures.append(f"group {n}: got {r.cloud_config!r} errors={r.errors} warnings={r.warnings}, "
                            f"want {expected!r}")
    print(f"\nmerge_sources via {transport}: {len(gs)} groups, {sum(len(s) for s in gs.values())} sources, "
          f"{len(gs) - len(failures)} match")
    assert len(gs) >= 12
    assert not failures, "\n".join(failures)
