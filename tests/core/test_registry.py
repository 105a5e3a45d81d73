"""Every plugin file is registered, and every registered module follows the interface."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tether.datasources import NEEDS_NETWORK
from tether.datasources import REGISTERED as DATASOURCES
from tether.datasources import load as load_ds
from tether.module import FREQUENCIES, STAGES
from tether.modules import REGISTERED, load

ROOT = Path(__file__).resolve().parents[2]
HELPER_FILES = {"__init__", "seedfiles", "openstack_format"}


def test_every_module_file_is_registered() -> None:
    files = {p.stem for p in (ROOT / "modules").glob("*.py")} - {"__init__"}
    assert files == set(REGISTERED)
    assert list(REGISTERED) == sorted(REGISTERED)


def test_modules_follow_the_interface() -> None:
    for name in REGISTERED:
        mod = load(name)
        assert mod.NAME == name
        assert mod.STAGE in STAGES, name
        assert mod.FREQUENCY in FREQUENCIES, name
        assert isinstance(mod.KEYS, tuple), name
        assert dataclasses.is_dataclass(mod.Config) and mod.Config.__dataclass_params__.frozen, name
        assert callable(mod.handle), name


def test_every_datasource_file_is_registered() -> None:
    files = {p.stem for p in (ROOT / "datasources").glob("*.py")} - HELPER_FILES
    assert files == set(DATASOURCES.values())
    for name in DATASOURCES:
        cls = load_ds(name)
        assert cls.NAME == name or (name, cls.NAME) == ("NoCloudNet", "NoCloud")
        assert cls.NEEDS_NETWORK == (name in NEEDS_NETWORK), name
