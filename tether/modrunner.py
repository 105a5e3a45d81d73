"""Runs a stage's module list: frequencies and semaphores, typed config, errors kept per module."""

from __future__ import annotations

import dataclasses
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from tether import log
from tether.convert import _fields, convert
from tether.errors import CommandError, ConfigErrors, TetherError
from tether.module import FREQUENCIES, ModuleContext, ModuleError
from tether.status import StageStatus

LOG = log.get(__name__)


@dataclass
class ModuleEvent:
    name: str
    stage: str
    result: str            # ran | skipped | failed | invalid | unsupported | already-ran
    seconds: float
    detail: str = ""


@dataclass
class StageRun:
    events: list[ModuleEvent] = field(default_factory=list)


def sem_path(ctx: ModuleContext, name: str, freq: str) -> str | None:
    if freq == "once-per-instance":
        return f"{ctx.paths.instance_sem(ctx.instance_id)}/config_{name}"
    if freq == "once":
        return f"{ctx.paths.once_sem}/config_{name}.once"
    return None


def _sem_done(ctx: ModuleContext, name: str, freq_override: str | None) -> bool:
    """A semaphore exists only for a module that ran with that frequency, so its presence is enough."""
    if freq_override in (None, "once-per-instance") and ctx.target.exists(
            f"{ctx.paths.instance_sem(ctx.instance_id)}/config_{name}"):
        return True
    return freq_override in (None, "once") and ctx.target.exists(f"{ctx.paths.once_sem}/config_{name}.once")


def module_config(mod: Any, cloud_config: dict[str, Any], warnings: list[str]) -> Any:
    """Convert the keys this module's Config declares, leniently (unknown nested keys only warn)."""
    cfg_cls = mod.Config
    keys = [key for _a, key, _t, _f in _fields(cfg_cls)]
    sub = {k: cloud_config[k] for k in keys if k in cloud_config}
    return convert(cfg_cls, sub, strict=False, warnings=warnings)


def is_active(mod: Any, cloud_config: dict[str, Any]) -> bool:
    if getattr(mod, "RUN_WITHOUT_KEYS", False):
        return True
    return any(k in cloud_config for k in getattr(mod, "KEYS", ()))


def run_modules(ctx: ModuleContext, stage: str, names: list[tuple[str, str | None]], status: StageStatus,
                only_frequency: str | None = None, force: bool = False, report: Any = None) -> StageRun:
    from tether.modules import ACTIVATED_BY, REGISTERED, load  # modules are imported only as a stage needs them

    run = StageRun()
    for name, freq_override in names:
        t0 = time.monotonic()
        if name not in REGISTERED:
            LOG.debug("module %s: not implemented by tether", name)
            continue
        if not force and only_frequency is None and _sem_done(ctx, name, freq_override):
            # decided without importing the module: later boots pay nothing for modules that already ran
            run.events.append(ModuleEvent(name, stage, "already-ran", 0.0, freq_override or "semaphore"))
            continue
        keys = ACTIVATED_BY.get(name, ())
        if (keys is not None and not any(k in ctx.cloud_config for k in keys)
                and (freq_override is None or freq_override in FREQUENCIES)):
            # no key for it: skipped without importing the module (a bad frequency is still reported below)
            run.events.append(ModuleEvent(name, stage, "skipped", 0.0, "no configuration"))
            _run_deferred(ctx, name, status)
            continue
        mod = load(name)
        freq = only_frequency or freq_override or mod.FREQUENCY
        if freq not in FREQUENCIES:
            status.recoverable_error(f"module {name}: unknown frequency {freq!r}, using {mod.FREQUENCY}")
            freq = mod.FREQUENCY
        if not is_active(mod, ctx.cloud_config):
            run.events.append(ModuleEvent(name, stage, "skipped", 0.0, "no configuration"))
            _run_deferred(ctx, name, status)
            continue
        sem = sem_path(ctx, name, freq)
        if sem and not force and ctx.target.exists(sem):
            run.events.append(ModuleEvent(name, stage, "already-ran", 0.0, freq))
            continue
        warnings: list[str] = []
        why = ""
        try:
            cfg = module_config(mod, ctx.cloud_config, warnings)
        except ConfigErrors as e:
            why = str(e)
        except (MemoryError, RecursionError) as e:  # costs this module only
            why = f"{type(e).__name__} while reading it"  # reported after this block, once its frames are freed
        if why:
            msg = f"module {name}: invalid configuration, skipped: {why}"
            LOG.warning("%s", msg)
            status.recoverable_error(msg)
            run.events.append(ModuleEvent(name, stage, "invalid", time.monotonic() - t0, why))
            continue
        for w in warnings:
            status.recoverable_error(f"module {name}: {w}")
            LOG.warning("module %s: %s", name, w)
        before = len(ctx.warnings)
        LOG.info("running module %s (%s)", name, freq)
        if report is not None:  # tether.reporting.Reporter, when reporting: is configured
            report.module_start(stage, name, freq)
        if sem:
            # written before the run and kept if it fails, as cloud-init does: a module that failed (or was cut
            # off by a reboot) part-way through is not run again on the next boot, so a runcmd never runs twice
            ctx.target.write(sem, f"{time.time():.3f}\n", mode=0o644)
        oom = False
        try:
            mod.handle(ctx, cfg)
        except MemoryError:  # reported below, once this block ends and the module's frames are freed
            oom = True
        except (ModuleError, CommandError, TetherError, OSError) as e:
            msg = f"module {name} failed: {e}"
            LOG.error("%s", msg)
            status.error(msg)
            run.events.append(ModuleEvent(name, stage, "failed", time.monotonic() - t0, str(e)))
            _collect(ctx, status, before, name)
            if report is not None:
                report.module_finish(stage, name, "FAIL")
            continue
        except Exception as e:  # a bug in a module must not stop the boot
            LOG.error("module %s crashed: %s\n%s", name, e, traceback.format_exc())
            status.error(f"module {name} failed: {type(e).__name__}: {e}")
            run.events.append(ModuleEvent(name, stage, "failed", time.monotonic() - t0, repr(e)))
            _collect(ctx, status, before, name)
            if report is not None:
                report.module_finish(stage, name, "FAIL")
            continue
        if oom:
            LOG.error("module %s failed: ran out of memory", name)
            status.error(f"module {name} failed: ran out of memory")
            run.events.append(ModuleEvent(name, stage, "failed", time.monotonic() - t0, "MemoryError"))
            _collect(ctx, status, before, name)
            if report is not None:
                report.module_finish(stage, name, "FAIL")
            continue
        _collect(ctx, status, before, name)
        if report is not None:
            report.module_finish(stage, name, "WARN" if len(ctx.warnings) > before else "SUCCESS")
        run.events.append(ModuleEvent(name, stage, "ran", time.monotonic() - t0, freq))
        _run_deferred(ctx, name, status)
    _run_deferred(ctx, None, status)
    return run


def _collect(ctx: ModuleContext, status: StageStatus, before: int, name: str) -> None:
    for w in ctx.warnings[before:]:
        status.recoverable_error(f"module {name}: {w}")


def _run_deferred(ctx: ModuleContext, after: str | None, status: StageStatus) -> None:
    """Run work deferred until ``after`` ran (all of it at the stage's end); its warnings reach status."""
    before = len(ctx.warnings)
    keep = []
    for mod_name, fn in ctx.deferred:
        if after is None or mod_name == after:
            try:
                fn()
            except Exception as e:  # reported like the module that deferred it
                ctx.warn(f"deferred work after {mod_name} failed: {e}")
        else:
            keep.append((mod_name, fn))
    ctx.deferred[:] = keep
    _collect(ctx, status, before, "deferred")


def events_json(run: StageRun) -> list[dict[str, Any]]:
    return [dataclasses.asdict(e) for e in run.events]
