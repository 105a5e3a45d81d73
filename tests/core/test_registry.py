"""Every plugin file is registered, and every registered module follows the interface."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any

from tether import sysconfig
from tether.datasource import Datasource
from tether.datasources import MODULES as DATASOURCE_MODULES
from tether.datasources import NEEDS_NETWORK, render_table
from tether.datasources import REGISTERED as DATASOURCES
from tether.datasources import load as load_ds
from tether.detect import ALIASES, DECLARED, DEFAULT_LIST, FALLBACK, PARTS
from tether.module import Frequency, Stage
from tether.modules import ACTIVATED_BY, REGISTERED, load

ROOT = Path(__file__).resolve().parents[2]
HELPER_FILES = {"__init__", "seedfiles", "openstack_format", "mdfetch"}


def test_every_module_file_is_registered() -> None:
    files = {p.stem for p in (ROOT / "modules").glob("*.py")} - {"__init__"}
    assert files == set(REGISTERED)
    assert list(REGISTERED) == sorted(REGISTERED)


def test_modules_follow_the_interface() -> None:
    """The types are mypy's job (tether.module.Module, through modules/__init__.py's _CHECKED); what it cannot see
    is checked here."""
    for name in REGISTERED:
        mod = load(name)
        assert mod.NAME == name
        assert isinstance(mod.STAGE, Stage) and isinstance(mod.FREQUENCY, Frequency), name
        assert dataclasses.is_dataclass(mod.Config) and mod.Config.__dataclass_params__.frozen, name


def test_type_checker_sees_every_registered_module() -> None:
    tree = ast.parse((ROOT / "modules" / "__init__.py").read_text())
    checked = next(node for node in ast.walk(tree)
                   if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "_CHECKED")
    assert isinstance(checked.value, ast.Tuple)
    assert [getattr(e, "attr", None) for e in checked.value.elts] == list(REGISTERED)


def test_activation_table_matches_the_modules() -> None:
    """The runner skips unconfigured modules from this table without importing them."""
    assert set(ACTIVATED_BY) == set(REGISTERED)
    for name in REGISTERED:
        mod = load(name)
        expected = None if getattr(mod, "RUN_WITHOUT_KEYS", False) else tuple(mod.KEYS)
        assert ACTIVATED_BY[name] == expected, name


def test_every_datasource_file_is_registered() -> None:
    files = {p.stem for p in (ROOT / "datasources").glob("*.py")} - HELPER_FILES
    assert files == set(DATASOURCE_MODULES) == set(DATASOURCES.values())
    for name in DATASOURCES:
        cls = load_ds(name)
        assert (cls.DECLARED_AS or cls.NAME) == name
        assert cls.NEEDS_NETWORK == (name in NEEDS_NETWORK) == DECLARED[name]["network"], name


def test_detect_table_is_compiled_from_the_declarations() -> None:
    """tether/detect_table.py (read by the generator) is exactly what the plugin files declare: run
    scripts/detect-table after changing an EVIDENCE or datasources.MODULES."""
    assert (ROOT / "tether/detect_table.py").read_text() == render_table()


def test_no_plugin_detects_by_a_rule_of_its_own() -> None:
    """Detection is the declarations' alone: no plugin overrides detect()."""
    for name in DATASOURCES:
        assert load_ds(name).detect is Datasource.detect, name


def test_lists_derive_from_the_declarations() -> None:
    assert list(DEFAULT_LIST) == [m for m in DECLARED if "part_of" not in DECLARED[m]]
    assert DEFAULT_LIST[-1] == FALLBACK == "None"
    assert sysconfig.DEFAULTS["datasource_list"] == list(DEFAULT_LIST)
    assert PARTS["NoCloud"] == ("NoCloud", "NoCloudNet")
    # every alias is unique to one datasource, and each name answers to its own lower-case spelling
    for name in DEFAULT_LIST:
        assert ALIASES[name.lower()] == name
        for alias in DECLARED[name].get("aliases", ()):
            assert alias == alias.lower() and ALIASES[alias] == name


def test_unconfigured_module_is_skipped_without_importing_it(make_ctx: Any, target: Any) -> None:
    import sys

    from tether.modrunner import run_modules
    from tether.status import StageStatus

    sys.modules.pop("tether.modules.keyboard", None)
    run = run_modules(make_ctx({"runcmd": []}), "config", [("keyboard", None)], StageStatus(target, "modules-config"))
    assert [(e.name, e.result) for e in run.events] == [("keyboard", "skipped")]
    assert "tether.modules.keyboard" not in sys.modules
