"""Helpers for the system-module tests: config errors by path, apply-twice idempotency, a chroot-able root."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.modules.treesnap import diff, snapshot
from tether.convert import convert
from tether.errors import ConfigErrors


def config_errors(cls: type, data: dict[str, Any]) -> list[str]:
    """The path-qualified errors ``convert`` reports for ``data`` (empty when it is valid)."""
    try:
        convert(cls, data, strict=False)
    except ConfigErrors as e:
        return [str(x) for x in e.errors]
    return []


def config_warnings(cls: type, data: dict[str, Any]) -> list[str]:
    out: list[str] = []
    convert(cls, data, strict=False, warnings=out)
    return out


def parse(mod: Any, data: dict[str, Any]) -> Any:
    return convert(mod.Config, data, strict=False)


def apply(mod: Any, ctx: Any, data: dict[str, Any], root: Path) -> dict[str, str]:
    """Run ``handle`` once; return the tree diff it made."""
    before = snapshot(root)
    mod.handle(ctx, parse(mod, data))
    return diff(before, snapshot(root))


def apply_twice(mod: Any, ctx: Any, data: dict[str, Any], root: Path) -> dict[str, str]:
    """Run ``handle`` twice; assert the second run changed nothing; return the first run's diff."""
    first = apply(mod, ctx, data, root)
    second = apply(mod, ctx, data, root)
    assert second == {}, f"second run changed {second}"
    return first


def fake_system(root: Path) -> None:
    """Make the root look runnable (``/bin/sh`` present) so run_in_target chroots; tests must be root."""
    if os.geteuid() != 0:
        pytest.skip("run_in_target chroots only as root")
    sh = root / "bin/sh"
    sh.parent.mkdir(parents=True, exist_ok=True)
    sh.write_text("#!/bin/false\n")
    sh.chmod(0o755)


def real_chroot_root(root: Path) -> None:
    """Copy the host's /bin/sh and the libraries it needs into ``root`` so a real chroot can run scripts."""
    if os.geteuid() != 0:
        pytest.skip("needs root for chroot")
    sh = shutil.which("sh")
    if sh is None or shutil.which("ldd") is None:
        pytest.skip("needs sh and ldd")
    real = os.path.realpath(sh)
    out = subprocess.run(["ldd", real], capture_output=True, text=True, check=False).stdout
    files = [real] + [tok for line in out.splitlines() for tok in line.split() if tok.startswith("/")]
    for f in files:
        dest = root / f.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)
    (root / "bin").mkdir(exist_ok=True)
    if not (root / "bin/sh").exists():
        shutil.copy2(real, root / "bin/sh")
