"""The four boot stages: local (datasource, instance, network), network (user-data, init modules), config,
final. Each stage records itself in status.json and never lets one bad input stop the boot.

With a root other than ``/`` (``--root DIR``): files are written into that root; commands and scripts run
chrooted into it when it holds a usable system (``/bin/sh`` present and we are root), otherwise they are
written out but not run. The engine applies configuration into a freshly written slot the same way.
"""

from __future__ import annotations

import json
import os
import sys
import time

from tether import instance as instmod
from tether import log, sysconfig, yamlsafe
from tether.datasource import Datasource, DsContext
from tether.errors import ConfigError, TetherError
from tether.host import Host
from tether.instance import InstanceData
from tether.instancestore import InstanceStore
from tether.paths import PATHS, Paths
from tether.runner import Runner
from tether.status import StageStatus, write_result
from tether.target import Target

TYPE_CHECKING = False  # the boot's first stage does not import typing; mypy reads the block below
if TYPE_CHECKING:  # the module machinery loads only in stages that run modules
    from typing import Any

    from tether.modrunner import StageRun
    from tether.module import ModuleContext

LOG = log.get(__name__)
DEFAULT_NET_MAX_WAIT = 10.0


class Env:
    """What every stage works with: the target root, the host, the runner, the state paths, the system
    configuration (tether.cfg + drop-ins) and the errors found reading it."""

    def __init__(self, target: Target, host: Host, runner: Runner, paths: Paths = PATHS,
                 system_config: dict[str, Any] | None = None, config_errors: list[str] | None = None) -> None:
        self.target = target
        self.host = host
        self.runner = runner
        self.paths = paths
        self.system_config: dict[str, Any] = {} if system_config is None else system_config
        self.config_errors: list[str] = [] if config_errors is None else config_errors

    @classmethod
    def create(cls, target: Target, host: Host | None = None, runner: Runner | None = None) -> Env:
        runner = runner or Runner()
        errors: list[str] = []
        yamlsafe.use_memo(target.path(f"{PATHS.data}/yaml-memo.json"))
        cfg = sysconfig.load(target, errors)
        return cls(target, host or Host(runner=runner), runner, PATHS, cfg, errors)

    @property
    def live(self) -> bool:
        return self.target.live


# -- datasources ---------------------------------------------------------------------------------

def detection(env: Env, fresh: bool) -> Any:
    """The one detector's verdict (tether/detect.py), recorded in /run/tether/detect.json by the first
    stage of the boot and reused by the next."""
    from tether.detect import detect, read_detection, write_detection
    det = None if fresh else read_detection(env.target)
    if det is None:
        det = detect(env.host, env.system_config, env.target)
        write_detection(env.target, det)
        LOG.info("datasource detection: %s", det.reason)
        for name, why in det.refused.items():
            LOG.info("datasource %s not tried: %s", name, why)
    return det


def candidate_names(env: Env, network: bool, fresh: bool = False) -> list[str]:
    """The plugins the detector chose that run in this stage, in its order, without importing any of them."""
    from tether.detect import DECLARED, FALLBACK
    return [n for n in detection(env, fresh).candidates
            if n in DECLARED and n != FALLBACK and DECLARED[n]["network"] == network]


def _load_ds(name: str) -> type[Datasource] | None:
    from tether.datasources import load
    try:
        cls: type[Datasource] = load(name)
        return cls
    except (ImportError, KeyError, AttributeError) as e:
        LOG.warning("datasource %s unavailable: %s", name, e)
        return None


def find_datasource(env: Env, network: bool, status: StageStatus) -> tuple[Datasource, InstanceData] | None:
    deadline = None
    if network:
        waits = [float(v.get("max_wait", DEFAULT_NET_MAX_WAIT)) for v in
                 (env.system_config.get("datasource") or {}).values() if isinstance(v, dict)
                 and isinstance(v.get("max_wait"), int | float)]
        deadline = time.monotonic() + (max(waits) if waits else DEFAULT_NET_MAX_WAIT)
    for name in candidate_names(env, network, fresh=not network):
        cls = _load_ds(name)
        if cls is None:
            continue
        from tether.detect import settings_for
        ds = cls(DsContext(env.host, env.target, env.runner, settings_for(env.system_config, name), deadline))
        t0 = time.monotonic()
        try:
            # no second check here: the detector chose it (evidence, ds= or the only datasource_list entry)
            inst = ds.fetch()
        except TetherError as e:
            msg = f"datasource {name}: {e}"
            LOG.warning("%s", msg)
            status.recoverable_error(msg)
            continue
        except Exception as e:
            LOG.exception("datasource %s crashed", name)
            status.recoverable_error(f"datasource {name}: {type(e).__name__}: {e}")
            continue
        LOG.info("found datasource %s (instance %s) in %.3fs", name, inst.instance_id, time.monotonic() - t0)
        for w in inst.ds.get("warnings") or ():  # parts of its data it could not use (each one costs only itself)
            status.recoverable_error(f"datasource {name}: {w}")
        return ds, inst
    return None


def _none_instance(env: Env) -> tuple[Datasource, InstanceData]:
    from tether.datasources.none import NoneDatasource
    ds = NoneDatasource(DsContext(env.host, env.target, env.runner, {}))
    return ds, ds.fetch()


def _record_found(env: Env, ds: Datasource, inst: InstanceData, status: StageStatus) -> None:
    store = InstanceStore(env.target, env.paths)
    new = store.activate(inst)
    env.target.write(f"{env.paths.run}/datasource", ds.describe() + "\n")
    status.datasource = inst.datasource
    if new:
        prev = store.target.read_text(f"{env.paths.data}/previous-instance-id", default="").strip()
        LOG.info("new instance %s (previous: %s)", inst.instance_id, prev or "none")
        if prev and env.system_config.get("reset_machine_id_on_new_instance", True):
            store.reset_machine_id()
    write_instance_data(env, inst, None)


def write_instance_data(env: Env, inst: InstanceData, merged: dict[str, Any] | None) -> None:
    doc = instmod.instance_data_doc(inst, merged, system_cfg=env.system_config,
                                    os_release_text=instmod.read_os_release(env.target))
    env.target.write(env.paths.instance_data_sensitive, json.dumps(doc, indent=1, sort_keys=True, default=str),
                     mode=0o600)
    env.target.write(env.paths.instance_data, json.dumps(instmod.redact(doc), indent=1, sort_keys=True,
                                                         default=str), mode=0o644)


# -- stages --------------------------------------------------------------------------------------

def _begin(env: Env, stage: str) -> StageStatus:
    env.target.defer_sync()  # one flush at the end of the stage (_finish), not one per file written
    from tether import stagetime
    stagetime.mark(stage)
    LOG.info("stage %s: pid %d; after the process started: %s", stage, os.getpid(), stagetime.describe())
    status = StageStatus(env.target, stage, env.paths)
    status.start()
    for e in env.config_errors:
        status.recoverable_error(f"system config: {e}")
    return status


def _cached_if_manual(env: Env) -> tuple[Datasource, InstanceData] | None:
    """``manual_cache_clean: true``: keep using the cached instance, whatever the datasource says now,
    until an operator runs ``tether clean`` (cloud-init's meaning)."""
    if not env.system_config.get("manual_cache_clean"):
        return None
    store = InstanceStore(env.target, env.paths)
    iid = store.previous_id()
    inst = store.load_instance(iid) if iid else None
    if inst is None:
        return None
    LOG.info("manual_cache_clean: reusing cached instance %s without asking the datasource", iid)
    name = inst.datasource

    class Cached(Datasource):
        NAME = name

        def describe(self) -> str:
            return f"DataSource{name} (cached, manual_cache_clean)"

    return Cached(DsContext(env.host, env.target, env.runner, {})), inst


def _finish(env: Env, status: StageStatus) -> None:
    status.finish()
    yamlsafe.save_memo()
    t0 = time.monotonic()
    env.target.sync()  # the stage's files reach the disk together (see _begin)
    from tether import stagetime
    LOG.info("stage %s done: %s, of which %.2fs flushing to disk", status.stage, stagetime.since(status.stage),
             time.monotonic() - t0)


def _preparse_userdata(inst: InstanceData) -> None:
    """The local stage has PyYAML loaded already: parse plain ``#cloud-config`` user-data and vendor-data now, so
    the network stage finds them in the parse memo and starts no YAML parser. Errors are the network stage's to
    report."""
    for blob in (inst.userdata, inst.vendordata):
        if not blob or not blob.removeprefix(b"\xef\xbb\xbf").startswith(b"#cloud-config"):
            continue
        try:
            yamlsafe.load(blob.decode("utf-8").removeprefix("\ufeff"), "user-data")
        except (ConfigError, UnicodeDecodeError):
            pass


def _crashed(status: StageStatus, e: BaseException) -> None:
    LOG.exception("stage %s failed", status.stage)
    status.error(f"{status.stage}: {type(e).__name__}: {e}")


def run_local(env: Env) -> int:
    status = _begin(env, "init-local")
    try:
        env.target.remove(f"{env.paths.run}/.instance-id")
        found = _cached_if_manual(env)
        if found is None:
            found = find_datasource(env, network=False, status=status)
        inst = None
        if found is None:
            LOG.info("no local datasource; the network stage will look for one")
        else:
            ds, inst = found
            _record_found(env, ds, inst, status)
            if "yaml" in sys.modules:
                _preparse_userdata(inst)
        # always, so a host with no local datasource still gets fallback DHCP to reach a metadata service
        _apply_network(env, inst, status)
    except Exception as e:
        _crashed(status, e)
    finally:
        _finish(env, status)
    return 1 if status.errors else 0


def _network_key(env: Env, inst: InstanceData | None) -> str:
    """Everything the rendered network config depends on, hashed: same key, same files."""
    from tether.digest import sha256
    from tether.network.live import sysfs_interfaces
    ifaces = [(i.name, i.mac, i.carrier, i.physical, i.driver) for i in sysfs_interfaces(env.host.sysroot)]
    sysinfo = env.system_config.get("system_info")  # its network: renderers choice
    doc = [env.host.cmdline_value("network-config"), env.system_config.get("network"),
           inst.network_config if inst else None, ifaces, env.live,
           sysinfo.get("network") if isinstance(sysinfo, dict) else None]
    return str(sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest())


def _apply_network(env: Env, inst: InstanceData | None, status: StageStatus) -> None:
    """Render the network config; skipped (no parse, no imports) when nothing it depends on changed and the
    files it wrote last time are still there, which keeps later boots cheap."""
    memo = f"{env.paths.data}/network-applied.json"
    marker = f"{env.paths.run}/network-applied"
    try:
        key = _network_key(env, inst)
        prev = json.loads(env.target.read_text(memo, default="{}"))
        if prev.get("key") == key and all(env.target.exists(f) for f in prev.get("files", [])):
            env.target.write(marker, json.dumps({k: v for k, v in prev.items() if k != "key"}) + "\n")
            LOG.info("network config unchanged since the last boot (%s)", prev.get("source"))
            return
    except (OSError, ValueError) as e:
        LOG.debug("network memo unusable: %s", e)
        key = ""
    try:
        from tether.network import apply  # the parsers load only when something changed
        res = apply.apply_network(env.target, env.host, env.system_config,
                                  inst.network_config if inst else None, env.runner, env.live)
        LOG.info("network: %s", getattr(res, "summary", res))
        if key:
            applied = json.loads(env.target.read_text(marker, default="{}"))
            env.target.write(memo, json.dumps({**applied, "key": key}) + "\n")
    except TetherError as e:
        env.target.remove(memo)
        status.recoverable_error(f"network config: {e}")
    except Exception as e:
        env.target.remove(memo)
        LOG.exception("network config crashed")
        status.recoverable_error(f"network config: {type(e).__name__}: {e}")


def run_network(env: Env) -> int:
    from tether.userdata_stage import process_userdata
    status = _begin(env, "init")
    try:
        store = InstanceStore(env.target, env.paths)
        iid = store.current_id()
        inst = store.load_instance(iid) if iid else None
        ds_name = inst.datasource if inst else None
        if inst is None:
            found = find_datasource(env, network=True, status=status)
            if found is None:
                found = _none_instance(env)
                if _any_ds_expected(env):
                    status.recoverable_error("no datasource found; booting with no instance configuration")
            ds, inst = found
            ds_name = inst.datasource
            _record_found(env, ds, inst, status)
            if inst.network_config and _applied_fallback(env):
                _apply_network(env, inst, status)
                if env.live:  # the network service is already up with the fallback: make it read the new files
                    from tether.network import apply
                    apply.activate(env.target, env.runner)
        status.datasource = ds_name
        merged = process_userdata(env, inst, status)
        write_instance_data(env, inst, merged)
        _run_stage_modules(env, inst, merged, "init", status)
    except Exception as e:
        _crashed(status, e)
    finally:
        _finish(env, status)
    return 1 if status.errors else 0


def _applied_fallback(env: Env) -> bool:
    """True when the local stage rendered no config or only the fallback (no datasource had spoken yet)."""
    try:
        source = str(json.loads(env.target.read_text(f"{env.paths.run}/network-applied")).get("source", ""))
    except (OSError, ValueError, AttributeError):
        return True
    return source.startswith("fallback") or source == ""


def _any_ds_expected(env: Env) -> bool:
    names = [n for n in env.system_config.get("datasource_list") or [] if isinstance(n, str)]
    return any(n.lower() != "none" for n in names)


def _context(env: Env, inst: InstanceData, merged: dict[str, Any]) -> ModuleContext:
    from tether.module import ModuleContext
    return ModuleContext(target=env.target, runner=env.runner, instance=inst, cloud_config=merged,
                         system_config=env.system_config, paths=env.paths, live=env.live)


def _run_stage_modules(env: Env, inst: InstanceData, merged: dict[str, Any], stage: str,
                       status: StageStatus, only: list[str] | None = None, frequency: str | None = None,
                       force: bool = False) -> StageRun:
    from tether.modrunner import run_modules
    names = sysconfig.module_list(merged, stage)
    if only is not None:
        names = [(n, None) for n in only]
    ctx = _context(env, inst, merged)
    rep = None
    if "reporting" in merged or "reporting" in env.system_config:  # imported only when configured
        from tether import reporting
        rep = reporting.for_stage(env.target, env.system_config, merged, status.stage)
    from tether.output_cfg import routed
    with routed(env.target, env.runner, merged, stage) as output_problems:  # cloud-config ``output``
        run = run_modules(ctx, stage, names, status, only_frequency=frequency, force=force, report=rep)
    for problem in output_problems:
        LOG.warning("%s", problem)
        status.recoverable_error(problem)
    if rep is not None:
        rep.stage_finish(status.stage, bool(status.errors), bool(status.recoverable))
    _append_events(env, status.stage, run)
    return run


# stage -> the modules it ran (imported) this time, for the boot server's record (tether/bootimports.py)
MODULES_RAN: dict[str, list[str]] = {}


def _append_events(env: Env, stage: str, run: StageRun) -> None:
    from tether.modrunner import events_json
    MODULES_RAN[stage] = [e.name for e in run.events if e.result in ("ran", "failed", "invalid")]
    from tether.runner import CLOCK
    line = json.dumps({"stage": stage, "time": time.time(), "commands_seconds": round(CLOCK.commands, 4),
                       "modules": events_json(run)})
    env.target.write("/var/log/tether-events.jsonl", line + "\n", mode=0o640, append=True)


def _load_current(env: Env, status: StageStatus) -> tuple[InstanceData, dict[str, Any]] | None:
    store = InstanceStore(env.target, env.paths)
    iid = store.current_id() or store.previous_id()
    inst = store.load_instance(iid) if iid else None
    merged = store.load_config(iid) if iid else None
    if inst is None or merged is None:
        status.error("no instance data: run 'tether init' first")
        return None
    status.datasource = inst.datasource
    return inst, merged


def run_modules_stage(env: Env, mode: str) -> int:
    stage_key = {"config": "modules-config", "final": "modules-final"}[mode]
    status = _begin(env, stage_key)
    inst = None
    try:
        loaded = _load_current(env, status)
        if loaded:
            inst, merged = loaded
            _run_stage_modules(env, inst, merged, mode, status)
    except Exception as e:
        _crashed(status, e)
    finally:
        _finish(env, status)
        if mode == "final":
            _finish_boot(env, inst)
            env.target.sync()
    return 1 if status.errors else 0


def _finish_boot(env: Env, inst: InstanceData | None) -> None:
    from tether import __version__
    from tether.status import uptime
    write_result(env.target, f"DataSource{inst.datasource}" if inst else "none", env.paths)
    if inst is not None:
        env.target.write(env.paths.boot_finished,
                         f"{uptime(env.target):.2f} - {time.strftime('%a, %d %b %Y %H:%M:%S %z')} - "
                         f"v. {__version__}\n")


def run_single(env: Env, name: str, frequency: str | None) -> int:
    status = StageStatus(env.target, "modules-final", env.paths)
    loaded = _load_current(env, status)
    if loaded is None:
        for e in status.errors:
            LOG.error("%s", e)
        return 1
    inst, merged = loaded
    from tether.modules import REGISTERED, load
    if name not in REGISTERED:
        LOG.error("unknown module %r (tether has: %s)", name, ", ".join(REGISTERED))
        return 1
    from tether.modrunner import run_modules
    stage = load(name).STAGE
    run = run_modules(_context(env, inst, merged), stage, [(name, None)], status, only_frequency=frequency)
    for ev in run.events:
        print(f"{ev.name}: {ev.result} ({ev.seconds:.3f}s) {ev.detail}".rstrip())
    for e in status.errors:
        LOG.error("%s", e)
    for msgs in status.recoverable.values():
        for m in msgs:
            LOG.warning("%s", m)
    return 1 if status.errors else (2 if status.recoverable else 0)
