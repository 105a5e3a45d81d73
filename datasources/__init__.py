"""Datasource plugins, one file each, registered explicitly below (a test checks every file is listed)."""

from __future__ import annotations

import importlib

from tether.datasource import Datasource

# cloud-init name -> module file
REGISTERED: dict[str, str] = {
    "NoCloud": "nocloud",
    "ConfigDrive": "configdrive",
    "None": "none",
}


def load(name: str) -> type[Datasource]:
    mod = importlib.import_module(f"tether.datasources.{REGISTERED[name]}")
    cls: type[Datasource] = mod.DATASOURCE
    return cls
