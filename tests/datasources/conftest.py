"""Fixtures for datasource tests: a context on a fake sysroot, settings pointing at loopback servers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeRunner
from tether.datasource import DsContext
from tether.host import Host
from tether.target import Target


def write_tree(base: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return base


@pytest.fixture
def sysroot(tmp_path: Path) -> Path:
    root = tmp_path / "sysroot"
    root.mkdir()
    return root


@pytest.fixture
def make_ds_ctx(sysroot: Path) -> Callable[..., DsContext]:
    def make(settings: dict[str, Any] | None = None, files: dict[str, str] | None = None,
             deadline: float | None = None) -> DsContext:
        write_tree(sysroot, files or {})
        return DsContext(Host(sysroot=sysroot, runner=FakeRunner()), Target.at(sysroot), FakeRunner(),
                         settings or {}, deadline)
    return make
