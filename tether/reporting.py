"""cloud-init's ``reporting:`` configuration: events for stages, modules and servicing, to ``log`` and ``webhook``
handlers.

The configuration is cloud-init's: a mapping of handler names to ``{type: log, level: ...}`` or ``{type: webhook,
endpoint: URL, timeout: S, retries: N}``; a later source replaces a handler of the same name, and a name set to
null removes it. Events have cloud-init's shape: ``name`` (``init-network``, ``modules-config/config-runcmd``),
``description``, ``event_type`` (``start``/``finish``), ``origin``, ``timestamp`` (seconds since the epoch) and,
on finish, ``result`` (``SUCCESS``, ``WARN``, ``FAIL``). Servicing events (``servicing/staged`` ...) have origin
``tether`` and a ``servicing`` object (state, slot, image, configuration digest).

Bounded: a webhook POST goes through tether's HTTP client with the handler's timeout and retries, and all of a
handler's posts in one process share a budget (``BUDGET`` seconds). A handler whose post failed is not tried again
in that process, so a dead endpoint costs one failed post, never one per event. Events carry no user-data values;
URLs in descriptions lose their credentials and query strings, and registered secrets are replaced.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from tether import log
from tether.errors import TetherError
from tether.target import Target

LOG = log.get(__name__)

ORIGIN = "cloudinit"            # what cloud-init sends for its stages and modules
SERVICING_ORIGIN = "tether"
START, FINISH = "start", "finish"
SUCCESS, WARN, FAIL = "SUCCESS", "WARN", "FAIL"
DEFAULT_TIMEOUT = 5.0
DEFAULT_RETRIES = 2
BUDGET = 10.0                   # seconds one webhook handler may spend posting, per process
MAX_TIMEOUT = 30.0

# tether's stage keys -> cloud-init's event names and descriptions
STAGES = {
    "init-local": ("init-local", "searching for local datasources"),
    "init": ("init-network", "searching for network datasources"),
    "modules-config": ("modules-config", "running modules for config"),
    "modules-final": ("modules-final", "running modules for final"),
}
MODULE_STAGE = {"init": "init-network", "config": "modules-config", "final": "modules-final"}

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


class ReportingConfigError(TetherError):
    pass


def redact(text: str) -> str:
    """URLs without credentials or query strings; registered secrets replaced (tether.logs' filter)."""
    from tether.http.urls import redact_url
    from tether.logs import RedactFilter

    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    rec = logging.LogRecord("reporting", logging.INFO, "", 0, text, None, None)
    RedactFilter().filter(rec)
    return rec.getMessage()


def event(event_type: str, name: str, description: str, result: str | None = None, *, origin: str = ORIGIN,
          timestamp: float | None = None, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": name, "description": redact(description), "event_type": event_type,
                           "origin": origin, "timestamp": time.time() if timestamp is None else timestamp}
    if event_type == FINISH:
        doc["result"] = result or SUCCESS
    doc.update(extra)
    return doc


class LogHandler:
    def __init__(self, name: str, cfg: Mapping[str, Any]) -> None:
        level = cfg.get("level", "DEBUG")
        lv = logging.getLevelName(str(level).upper()) if not isinstance(level, int) else level
        if not isinstance(lv, int):
            raise ReportingConfigError(f"reporting.{name}.level: unknown log level {level!r}")
        self.level = lv

    def publish(self, ev: dict[str, Any]) -> None:
        text = f"{ev['event_type']}: {ev['name']}: "
        text += f"{ev['result']}: {ev['description']}" if ev["event_type"] == FINISH else ev["description"]
        log.get(f"tether.reporting.{ev['event_type']}.{ev['name']}").log(self.level, "%s", text)


class WebhookHandler:
    def __init__(self, name: str, cfg: Mapping[str, Any]) -> None:
        self.name = name
        endpoint = cfg.get("endpoint")
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise ReportingConfigError(f"reporting.{name}.endpoint: expected an http:// or https:// URL")
        self.endpoint = endpoint
        self.timeout = _number(cfg, name, "timeout", DEFAULT_TIMEOUT, MAX_TIMEOUT)
        self.retries = int(_number(cfg, name, "retries", DEFAULT_RETRIES, 10))
        self.spent = 0.0
        self.dead = False

    def publish(self, ev: dict[str, Any]) -> None:
        from tether.http import HttpError, redact_url, request

        if self.dead:
            return
        left = BUDGET - self.spent
        t0 = time.monotonic()
        try:
            request(self.endpoint, method="POST", data=json.dumps(ev).encode(),
                    headers={"Content-Type": "application/json"}, timeout=min(self.timeout, left),
                    retries=self.retries, deadline=t0 + left, max_body=64 << 10)
        except (HttpError, TetherError, OSError) as e:
            self.dead = True
            LOG.warning("reporting.%s: %s: %s; no more events are sent to it by this process", self.name,
                        redact_url(self.endpoint), redact(str(e)))
        finally:
            self.spent += time.monotonic() - t0
            if self.spent >= BUDGET and not self.dead:
                self.dead = True
                LOG.warning("reporting.%s: spent its %gs budget; no more events are sent by this process",
                            self.name, BUDGET)


def _number(cfg: Mapping[str, Any], name: str, key: str, default: float, cap: float) -> float:
    v = cfg.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise ReportingConfigError(f"reporting.{name}.{key}: expected a non-negative number, got {v!r}")
    return min(float(v), cap)


Handler = LogHandler | WebhookHandler

# one WebhookHandler per configuration and process: the stages served by one process (the boot server) share its
# budget and its verdict on a dead endpoint
_WEBHOOKS: dict[str, WebhookHandler] = {}


def _webhook(name: str, cfg: Mapping[str, Any]) -> WebhookHandler:
    key = json.dumps([name, cfg], sort_keys=True, default=str)
    if key not in _WEBHOOKS:
        _WEBHOOKS[key] = WebhookHandler(name, cfg)
    return _WEBHOOKS[key]
OAUTH_KEYS = ("consumer_key", "consumer_secret", "token_key", "token_secret")


def merged_config(*sources: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``reporting`` mappings of ``sources`` (system configuration first), merged by handler name."""
    out: dict[str, Any] = {}
    for src in sources:
        rep = (src or {}).get("reporting")
        if rep is None:
            continue
        if not isinstance(rep, dict):
            LOG.warning("reporting: expected a mapping of handler names, got %s; ignored", type(rep).__name__)
            continue
        for name, cfg in rep.items():
            if cfg is None or cfg is False:
                out.pop(str(name), None)
            else:
                out[str(name)] = cfg
    return out


def build(config: Mapping[str, Any]) -> list[Handler]:
    """Handlers from a merged ``reporting`` mapping; a bad entry is logged and skipped (cloud-config is lenient)."""
    from tether.logs import add_secret

    out: list[Handler] = []
    for name, cfg in config.items():
        if not isinstance(cfg, dict):
            LOG.warning("reporting.%s: expected a mapping with 'type'; ignored", name)
            continue
        for k in ("consumer_secret", "token_secret"):
            add_secret(cfg.get(k) if isinstance(cfg.get(k), str) else None)
        kind = cfg.get("type")
        try:
            if kind == "log":
                out.append(LogHandler(name, cfg))
            elif kind == "webhook":
                if any(cfg.get(k) for k in OAUTH_KEYS):
                    raise ReportingConfigError(f"reporting.{name}: OAuth-signed webhooks ({', '.join(OAUTH_KEYS)}) "
                                               "are not supported by tether")
                out.append(_webhook(name, cfg))
            else:
                raise ReportingConfigError(f"reporting.{name}.type: {kind!r} is not supported by tether "
                                           "(log, webhook)")
        except ReportingConfigError as e:
            LOG.warning("%s; handler ignored", e)
    return out


class Reporter:
    def __init__(self, handlers: list[Handler]) -> None:
        self.handlers = handlers

    def send(self, ev: dict[str, Any]) -> None:
        for h in self.handlers:
            try:
                h.publish(ev)
            except Exception as e:  # reporting must never break a boot or a servicing step
                LOG.warning("reporting: %s failed: %s", type(h).__name__, e)

    # -- stages and modules (tether/stages.py, tether/modrunner.py) --

    def stage_start(self, stage: str, timestamp: float | None = None) -> None:
        name, desc = STAGES[stage]
        self.send(event(START, name, desc, timestamp=timestamp))

    def stage_finish(self, stage: str, errors: bool, warnings: bool, timestamp: float | None = None) -> None:
        name, desc = STAGES[stage]
        self.send(event(FINISH, name, desc, FAIL if errors else WARN if warnings else SUCCESS, timestamp=timestamp))

    def module_start(self, stage: str, module: str, frequency: str) -> None:
        self.send(event(START, f"{MODULE_STAGE.get(stage, stage)}/config-{module}",
                        f"running config-{module} with frequency {frequency}"))

    def module_finish(self, stage: str, module: str, result: str) -> None:
        desc = f"running config-{module} failed" if result == FAIL else f"config-{module} ran successfully"
        self.send(event(FINISH, f"{MODULE_STAGE.get(stage, stage)}/config-{module}", desc, result))


def configured(*sources: Mapping[str, Any] | None) -> Reporter | None:
    handlers = build(merged_config(*sources))
    return Reporter(handlers) if handlers else None


def for_stage(target: Target, system_config: Mapping[str, Any], cloud_config: Mapping[str, Any],
              stage: str) -> Reporter | None:
    """The stage's reporter, its start event sent. The network stage also sends the local stage's events, from
    status.json with their times: the local stage runs before READY=1 and sends nothing itself."""
    rep = configured(system_config, cloud_config)
    if rep is None:
        return None
    if stage == "init":
        from tether.status import read_status, uptime

        local = read_status(target)["v1"].get("init-local") or {}
        if isinstance(local.get("start"), (int, float)) and isinstance(local.get("finished"), (int, float)):
            boot = time.time() - uptime(target)
            rep.stage_start("init-local", boot + local["start"])
            rep.stage_finish("init-local", bool(local.get("errors")), bool(local.get("recoverable_errors")),
                             boot + local["finished"])
    rep.stage_start(stage)
    return rep


# -- servicing (engine/cli.py) --

def servicing_config(root: Target) -> list[Mapping[str, Any] | None]:
    """Where the engine's reporting configuration comes from: the system configuration (/etc/cloud/cloud.cfg,
    cloud.cfg.d, /etc/tether/tether.cfg.d), then the current instance's cloud-config."""
    from tether import sysconfig
    from tether.instancestore import InstanceStore

    errors: list[str] = []
    system = sysconfig.load(root, errors)
    store = InstanceStore(root)
    iid = store.current_id() or store.previous_id()
    return [system, store.load_config(iid) if iid else None]


# "rebooting" is announced by the metadata check itself, before the reboot; the check's record then says "check"
CHECK_ACTIONS = {"none": "check", "staged": "staged", "finalized": "finalized", "rebooting": "check",
                 "error": "failed"}


def servicing_event(root: Target, what: str, description: str = "", ok: bool = True) -> None:
    """One servicing event (check, staged, finalized, rebooting, committed, rolled-back, failed) with the servicing
    state, slot and image. ``check`` takes what and why from the metadata check's record; ``commit`` is named by
    its outcome (and a commit with nothing to do sends nothing). Never raises: reporting must not change what
    servicing did."""
    try:
        rep = configured(*servicing_config(root))
        if rep is None:
            return
        if what == "check":
            what, description, ok = _from_check(root)
        elif what == "commit":
            what = _commit_outcome(description, ok)
        if not what:
            return
        rep.send(event(FINISH, f"servicing/{what}", description, SUCCESS if ok else FAIL, origin=SERVICING_ORIGIN,
                       servicing=_servicing_facts(root)))
    except Exception as e:
        LOG.warning("reporting: cannot send the servicing event %s: %s", what, e)


def _from_check(root: Target) -> tuple[str, str, bool]:
    from tether.engine import state
    from tether.engine.metadata_update import read_check

    rec = read_check(state.datastore_location(root)) or {}
    action = str(rec.get("action", "none"))
    return CHECK_ACTIONS.get(action, action), str(rec.get("reason", "")), action != "error"


def _commit_outcome(message: str, ok: bool) -> str:
    if message.startswith(("rolled back", "back on")):
        return "rolled-back"
    if not ok:
        return "failed"
    return "committed" if message.startswith("committed") else ""


def _servicing_facts(root: Target) -> dict[str, Any]:
    from tether.engine import state
    from tether.engine.commit import spec_digest
    from tether.http.urls import redact_url

    path = state.datastore_location(root)
    if not path.exists():
        return {}
    with state.StateStore(path) as store:
        doc = store.current()
    facts: dict[str, Any] = {"state": doc.get("servicingState"), "activeSlot": doc.get("abActiveVolume")}
    for key, spec in (("to", doc.get("spec")), ("from", doc.get("specOld"))):
        if isinstance(spec, dict):
            image = spec.get("image") if isinstance(spec.get("image"), dict) else {}
            url = image.get("url") if isinstance(image, dict) else None
            facts[key] = {"image": redact_url(url) if isinstance(url, str) else None,
                          "configuration": spec_digest(spec)[:16]}
    staging = doc.get("staging")
    if isinstance(staging, dict) and staging.get("targetVolume"):
        facts["targetSlot"] = staging["targetVolume"]
    return facts
