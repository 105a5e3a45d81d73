"""Datasource plugins, one file each, registered explicitly below (a test checks every file is listed)."""

from __future__ import annotations

import importlib

from tether.datasource import Datasource

# cloud-init name -> module file
REGISTERED: dict[str, str] = {
    "NoCloud": "nocloud",
    "NoCloudNet": "nocloud_net",
    "ConfigDrive": "configdrive",
    "OpenStack": "openstack",
    "Ec2": "ec2",
    "GCE": "gce",
    "Azure": "azure",
    "None": "none",
}


# Which of them run in the network stage (kept here so choosing candidates imports none of them).
NEEDS_NETWORK: frozenset[str] = frozenset({"NoCloudNet", "OpenStack", "Ec2", "GCE", "Azure"})

# A datasource_list entry that stands for several plugins (cloud-init's NoCloud covers both halves).
EXPANDS: dict[str, tuple[str, ...]] = {"NoCloud": ("NoCloud", "NoCloudNet")}


def load(name: str) -> type[Datasource]:
    mod = importlib.import_module(f"tether.datasources.{REGISTERED[name]}")
    cls: type[Datasource] = mod.DATASOURCE
    return cls
