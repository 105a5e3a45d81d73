"""Glue between the network stage and the user-data pipeline: run it once per boot, keep what it produced in
the instance directory (0600/0700), run boothooks, and report problems in status."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from tether import instance as instmod
from tether import log, sysconfig
from tether.instance import InstanceData
from tether.instancestore import InstanceStore
from tether.status import StageStatus
from tether.unsupported import unsupported_in

if TYPE_CHECKING:
    from tether.stages import Env

LOG = log.get(__name__)


def process_userdata(env: Env, inst: InstanceData, status: StageStatus) -> dict[str, Any]:
    """Return the merged configuration (system config under vendor-data under user-data)."""
    iid = inst.instance_id
    idir = env.paths.instance_dir(iid)
    store = InstanceStore(env.target, env.paths)
    key = _inputs_key(env, inst)
    cached = store.load_config(iid)
    if cached is not None and key and env.target.read_text(f"{idir}/inputs.sha256", default="") == key:
        # same user-data, vendor-data and system config as last boot: nothing to parse again
        LOG.info("user-data unchanged since the last boot; using the processed configuration")
        return cached
    from tether.userdata import process
    vendor_enabled = bool((env.system_config.get("vendor_data") or {}).get("enabled", True))
    doc = instmod.instance_data_doc(inst, None, system_cfg=env.system_config,
                                    os_release_text=instmod.read_os_release(env.target))
    env.target.makedirs(f"{idir}/urlcache", mode=0o700)
    from tether.userdata.include import Fetcher
    fetch = Fetcher(env.system_config.get("include"))
    for p in fetch.problems:
        LOG.warning("%s", p)
        status.recoverable_error(p)
    processed = None
    try:
        processed = process(inst.userdata, inst.vendordata, instance_data=doc, fetch=fetch,
                            vendor_enabled=vendor_enabled, include_once_cache=env.target.path(f"{idir}/urlcache"))
    except MemoryError:  # each part answers for itself; this is the last line, so the stage goes on
        pass
    if processed is None:
        from tether.userdata import Processed
        processed = Processed(errors=["ran out of memory while processing the user-data and vendor-data; both "
                                      "ignored (the system config still applies)"])
    for w in processed.warnings:
        LOG.warning("user-data: %s", w)
        status.recoverable_error(f"user-data: {w}")
    for e in processed.errors:
        LOG.error("user-data: %s", e)
        status.recoverable_error(f"user-data: {e}", level="ERROR")
    merged = sysconfig.merge(env.system_config, processed.cloud_config)
    implemented = set(_registered())
    first_time = store.load_config(iid) is None
    if first_time:
        for w in unsupported_in(processed.cloud_config, implemented):
            LOG.warning("%s", w)
            status.recoverable_error(w)
    if inst.userdata is not None:
        env.target.write(f"{idir}/user-data.txt", inst.userdata, mode=0o600)
    if inst.vendordata is not None:
        env.target.write(f"{idir}/vendor-data.txt", inst.vendordata, mode=0o600)
    store.save_config(iid, merged)
    env.target.write(f"{idir}/inputs.sha256", key)
    _write_scripts(env, f"{idir}/scripts", processed.scripts)
    _write_scripts(env, env.paths.scripts("vendor"), processed.vendor_scripts)
    for kind, scripts in processed.dir_scripts.items():  # text/x-shellscript-per-{boot,instance,once}
        _write_scripts(env, env.paths.scripts(kind), scripts)
    if processed.boothooks:
        _run_boothooks(env, inst, processed.boothooks, status)
    return merged


def _inputs_key(env: Env, inst: InstanceData) -> str:
    """Hash of everything the processed configuration depends on; empty when it may depend on more
    (includes and templates can change without the user-data changing)."""
    import json

    from tether.digest import sha256
    for raw in (inst.userdata, inst.vendordata):
        if raw and (b"#include" in raw[:4096] or b"## template" in raw[:4096] or b"x-include" in raw[:65536]):
            return ""
    h = sha256()
    for part in (inst.userdata or b"", inst.vendordata or b"",
                 json.dumps(env.system_config, sort_keys=True, default=str).encode()):
        h.update(sha256(part).digest())
    return str(h.hexdigest())


def _registered() -> tuple[str, ...]:
    from tether.modules import REGISTERED
    return tuple(REGISTERED)


def _write_scripts(env: Env, directory: str, scripts: list[Any]) -> None:
    if not scripts:
        return
    env.target.makedirs(directory, mode=0o700)
    for s in scripts:
        name = os.path.basename(s.name) or "part"
        env.target.write(f"{directory}/{name}", s.content, mode=0o700)


def _run_boothooks(env: Env, inst: InstanceData, hooks: list[Any], status: StageStatus) -> None:
    from tether.scripts import run_script
    sem = f"{env.paths.instance_sem(inst.instance_id)}/boothooks"
    if env.target.exists(sem):
        return
    bdir = f"{env.paths.instance_dir(inst.instance_id)}/boothooks"
    env.target.makedirs(bdir, mode=0o700)
    for hook in hooks:
        name = os.path.basename(hook.name) or "boothook"
        path = f"{bdir}/{name}"
        body = hook.content if hook.content.startswith(b"#!") else b"#!/bin/sh\n" + hook.content
        env.target.write(path, body, mode=0o700)
        err = run_script(env.target, env.runner, path, env.paths.output_log,
                         extra_env={"INSTANCE_ID": inst.instance_id})
        if err:
            status.error(f"boothook {name}: {err}")
    env.target.write(sem, "done\n")
