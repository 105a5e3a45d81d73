"""Updates triggered by instance metadata: ``tether update --from-metadata`` (``tether-update.timer``).

Each check: ask the instance's datasource for the desired host configuration (``desired_host_config()``, read
fresh, bounded by ``--metadata-timeout``), else take the cloud-config key ``host_configuration`` given at first
boot; compare with the installed configuration; stage, finalize and reboot as the reboot policy allows
(``engine.rebootpolicy``). What was seen, what was done and why goes to ``update-check.json`` beside the
servicing datastore (``tether get update-check``).

A metadata service that does not answer only delays: the check records why and exits 0, nothing changes. A
configuration that failed before (health checks, boot, a wrong hash) is not staged again until the metadata
asks for something else.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether import log
from tether.engine import state
from tether.engine.commit import spec_digest
from tether.engine.finalize import ServicingEnv, finalize, reboot, remove_slot_entries
from tether.engine.hostconfig import parse_host_config, to_data
from tether.engine.rebootpolicy import RebootPolicy, deferred_reason, parse_policy, request_reboot, wait_for_blockers
from tether.engine.update import AB_UPDATE, UpdateOptions, servicing_type, stage
from tether.errors import TetherError
from tether.host import Host

LOG = log.get(__name__)
CHECK_FILE = "update-check.json"
CLOUD_CONFIG_KEY = "host_configuration"


class MetadataUnavailable(TetherError):
    pass


@dataclass(frozen=True)
class Desired:
    source: str
    data: dict[str, Any] | None


@dataclass(frozen=True)
class Outcome:
    code: int
    action: str      # none, staged, finalized, rebooting, error
    reason: str
    record: dict[str, Any]


# ---- what the metadata asks for -------------------------------------------------------------------------------

def fetch_desired(env: ServicingEnv, host: Host, timeout: float) -> Desired:
    """The desired host configuration from the instance's datasource, else from the first boot's cloud-config.
    MetadataUnavailable when the datasource cannot be read now."""
    from tether import sysconfig
    from tether.instancestore import InstanceStore

    store = InstanceStore(env.root)
    iid = store.current_id() or store.previous_id()
    inst = store.load_instance(iid) if iid else None
    if inst is not None and inst.datasource and inst.datasource != "None":
        errors: list[str] = []
        cfg = sysconfig.load(env.root, errors)
        data = _from_datasource(env, host, inst.datasource, cfg, timeout)
        if data is not None:
            return data
    if iid:
        merged = store.load_config(iid) or {}
        hc = merged.get(CLOUD_CONFIG_KEY)
        if hc is not None:
            if not isinstance(hc, dict):
                raise MetadataUnavailable(f"cloud-config {CLOUD_CONFIG_KEY}: expected a mapping, got "
                                          f"{type(hc).__name__}")
            return Desired(f"cloud-config {CLOUD_CONFIG_KEY} (instance {iid})", hc)
    return Desired(f"datasource {inst.datasource if inst else 'none'}", None)


def _from_datasource(env: ServicingEnv, host: Host, name: str, cfg: dict[str, Any],
                     timeout: float) -> Desired | None:
    from tether.datasource import DsContext
    from tether.datasources import EXPANDS, REGISTERED, load

    deadline = time.monotonic() + timeout
    settings_all = cfg.get("datasource") or {}
    for cand in EXPANDS.get(name, (name,)):
        if cand not in REGISTERED:
            continue
        settings = settings_all.get(cand) or settings_all.get(name) or {}
        ds = load(cand)(DsContext(host, env.root, env.runner, settings if isinstance(settings, dict) else {},
                                  deadline))
        try:
            if not ds.detect():
                continue
            raw = ds.desired_host_config()
        except TetherError as e:
            raise MetadataUnavailable(f"datasource {cand}: {e}") from None
        except OSError as e:
            raise MetadataUnavailable(f"datasource {cand}: {e}") from None
        where = f"datasource {cand} host-configuration"
        if raw is None:
            return None
        return Desired(where, _materialize(raw, where, deadline))
    raise MetadataUnavailable(f"datasource {name} is not present now")


def _materialize(raw: Any, where: str, deadline: float) -> dict[str, Any]:
    """A mapping as is; a URL fetched (bounded); YAML text parsed."""
    from tether import yamlsafe

    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith(("http://", "https://")) and "\n" not in text:
            from tether.http import request

            try:
                body = request(text, timeout=max(1.0, min(10.0, deadline - time.monotonic())), retries=2,
                               deadline=deadline).body
            except TetherError as e:
                raise MetadataUnavailable(f"{where}: {text}: {e}") from None
            text = body.decode("utf-8", errors="replace")
            where = f"{where} ({raw.strip()})"
        data = yamlsafe.load(text, where)
        if isinstance(data, dict):
            return data
    raise TetherError(f"{where}: the host configuration must be a mapping, a URL or YAML text")


# ---- the check ------------------------------------------------------------------------------------------------

def check_path(datastore: Path) -> Path:
    return datastore.parent / CHECK_FILE


def read_check(datastore: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(check_path(datastore).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_check(datastore: Path, record: dict[str, Any]) -> None:
    from tether.engine.boot import write_file_atomic

    try:
        # image URLs may carry tokens: readable by root only, like the datastore beside it
        write_file_atomic(check_path(datastore), (json.dumps(record, indent=1, sort_keys=True) + "\n").encode(),
                          mode=0o600)
    except OSError as e:
        LOG.warning("cannot record the update check in %s: %s", check_path(datastore), e)


def _seen(data: dict[str, Any] | None) -> dict[str, Any] | None:
    if data is None:
        return None
    image = data.get("image")
    return {"imageUrl": image.get("url") if isinstance(image, dict) else None, "specDigest": spec_digest(data)}


def from_metadata(env: ServicingEnv, policy: RebootPolicy, *, host: Host | None = None, timeout: float = 30.0,
                  stage_opts: UpdateOptions | None = None,
                  now: Callable[[], Any] | None = None) -> Outcome:
    ds = state.datastore_location(env.root)
    if not ds.exists():
        return Outcome(0, "none", "this host was not installed by tether: nothing to update", {})
    record: dict[str, Any] = {"checkedAt": state.now(), "policy": policy.describe()}

    def done(code: int, action: str, reason: str, **extra: Any) -> Outcome:
        record.update(action=action, reason=reason, **extra)
        with state.StateStore(ds) as store:
            record["servicingState"] = store.current()["servicingState"]
        _write_check(ds, record)
        return Outcome(code, action, reason, record)

    try:
        desired = fetch_desired(env, host or Host(runner=env.runner), timeout)
    except MetadataUnavailable as e:
        return done(0, "none", f"metadata unavailable, nothing changed; the next check tries again: {e}")
    if desired.data is None:
        record.update(source=desired.source, seen=None)
        return done(0, "none", "the metadata asks for no host configuration")
    record.update(source=desired.source, seen=_seen(desired.data))
    try:
        hc = parse_host_config(desired.data, desired.source)
    except TetherError as e:
        return done(1, "error", f"the host configuration in the metadata is not valid: {e}")
    new_spec = to_data(hc)
    digest = spec_digest(new_spec)
    record.update(source=desired.source, seen={**(_seen(desired.data) or {}), "specDigest": digest})
    with state.StateStore(ds) as store:
        doc = store.current()
    cur = doc["servicingState"]
    if digest in (doc.get("rejectedSpecs") or []):
        last = (doc.get("lastError") or {}).get("message", "")
        return done(0, "none", f"this configuration failed before ({last}); change the metadata to try again")
    decision = policy.decide(now() if now else None)
    env.reboot = env.reboot and decision.reboot
    if cur == state.AB_UPDATE_FINALIZED:
        if doc["spec"] != new_spec:
            return done(0, "none", "an update is finalized and waits for its reboot and commit; the new "
                                   "configuration is looked at after that")
        if decision.sentinel:
            return done(0, "finalized", f"finalized earlier; {request_reboot(env.root)}")
        if decision.reboot and env.reboot:
            if held := wait_for_blockers(env.runner, policy.inhibitor_wait):
                return done(0, "finalized", f"finalized earlier; {deferred_reason(held, policy.inhibitor_wait)}")
            out = done(0, "rebooting", f"finalized earlier; rebooting now ({decision.reason})")
            _announce_reboot(env, out.reason)
            reboot(env, "the finalized slot boots")
            return out
        return done(0, "none", f"finalized; waiting for a reboot ({decision.reason})")
    if cur not in (state.PROVISIONED, state.AB_UPDATE_STAGED):
        return done(0, "none", f"servicing state {cur}: not updating now")
    installed = doc["specOld"] if cur == state.AB_UPDATE_STAGED else doc["spec"]
    try:
        kind = servicing_type(installed, new_spec)
    except TetherError as e:
        return done(1, "error", str(e))
    if kind != AB_UPDATE and cur == state.PROVISIONED:
        return done(0, "none", "up to date: the metadata asks for the installed configuration")
    try:
        opts = stage_opts or UpdateOptions()
        if opts.unboot is None:
            opts.unboot = lambda volume: remove_slot_entries(env, volume)
        what, doc = stage(hc, env.runner, env.root, opts)
    except TetherError as e:
        from tether.engine.images import ImageHashError

        if isinstance(e, ImageHashError):
            with state.StateStore(ds) as store:
                d = store.current()
                store.update("metadata-config-rejected", rejectedSpecs=[*(d.get("rejectedSpecs") or []), digest])
        return done(1, "error", f"staging failed, nothing changed on the running slot: {e}")
    if doc["servicingState"] != state.AB_UPDATE_STAGED:
        return done(0, "none", what)
    if not decision.finalize:
        return done(0, "staged", f"{what}; {decision.reason}")
    try:
        msg, _doc = finalize(env)
    except TetherError as e:
        return done(1, "error", f"{what}; finalize failed: {e}")
    if decision.sentinel:
        return done(0, "finalized", f"{what}; {msg}; {request_reboot(env.root)}")
    if env.reboot and (held := wait_for_blockers(env.runner, policy.inhibitor_wait)):
        return done(0, "finalized", f"{what}; {msg}; {deferred_reason(held, policy.inhibitor_wait)}")
    if env.reboot:
        out = done(0, "rebooting", f"{what}; {msg}; rebooting ({decision.reason})")
        _announce_reboot(env, out.reason)
        reboot(env, "the new slot boots")
        return out
    return done(0, "finalized", f"{what}; {msg}; not rebooting ({decision.reason})")


def _announce_reboot(env: ServicingEnv, reason: str) -> None:
    """The reporting handlers hear of the reboot before it happens (after it, the event may die with the host)."""
    if env.reboot:
        from tether import reporting

        reporting.servicing_event(env.root, "rebooting", reason)


def cmd_from_metadata(args: argparse.Namespace, make_env: Callable[..., ServicingEnv]) -> int:
    from tether.engine.progress import make

    try:
        policy = parse_policy(args.reboot)
    except TetherError as e:
        print(f"tether: {e}")
        return 1
    env = make_env(args)
    out = from_metadata(env, policy, timeout=args.metadata_timeout,
                        stage_opts=UpdateOptions(progress=make(args.progress), discard=not args.no_discard))
    print(f"update check: {out.action}: {out.reason}")
    return out.code
