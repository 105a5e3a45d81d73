"""status.json / result.json in cloud-init's v1 shapes, and the summary ``tether status`` prints."""

from __future__ import annotations

import json
import time

from tether.paths import PATHS, Paths
from tether.redact import clean
from tether.target import Target

TYPE_CHECKING = False  # the boot's first stage does not import typing; mypy reads the block below
if TYPE_CHECKING:
    from typing import Any

STAGE_KEYS = ("init-local", "init", "modules-config", "modules-final")


def uptime(target: Target) -> float:
    try:
        with open("/proc/uptime") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError):
        return time.monotonic()


def _empty_stage() -> dict[str, Any]:
    return {"errors": [], "finished": None, "recoverable_errors": {}, "start": None}


def read_status(target: Target, paths: Paths = PATHS) -> dict[str, Any]:
    try:
        doc = json.loads(target.read_text(paths.status_json))
        if isinstance(doc, dict) and isinstance(doc.get("v1"), dict):
            return doc
    except (OSError, ValueError):
        pass
    v1: dict[str, Any] = {k: _empty_stage() for k in STAGE_KEYS}
    v1.update({"datasource": None, "stage": None})
    return {"v1": v1}


def write_status(target: Target, doc: dict[str, Any], paths: Paths = PATHS) -> None:
    target.write(paths.status_json, json.dumps(doc, indent=1, sort_keys=True) + "\n", mode=0o644)


class StageStatus:
    """Records one stage's start, errors, recoverable errors and finish in status.json."""

    def __init__(self, target: Target, stage: str, paths: Paths = PATHS) -> None:
        self.target, self.stage, self.paths = target, stage, paths
        self.errors: list[str] = []
        self.recoverable: dict[str, list[str]] = {}
        self.datasource: str | None = None

    def start(self) -> None:
        doc = read_status(self.target, self.paths)
        block = _empty_stage()
        block["start"] = uptime(self.target)
        doc["v1"][self.stage] = block
        doc["v1"]["stage"] = self.stage
        write_status(self.target, doc, self.paths)

    # status.json and result.json are world-readable and ``tether status`` prints them: every message is one
    # line with no secret and no raw control character, whoever built it
    def error(self, msg: str) -> None:
        self.errors.append(clean(msg))

    def recoverable_error(self, msg: str, level: str = "WARNING") -> None:
        self.recoverable.setdefault(level, []).append(clean(msg))

    def finish(self) -> None:
        doc = read_status(self.target, self.paths)
        block = doc["v1"].get(self.stage) or _empty_stage()
        block["errors"] = self.errors
        block["recoverable_errors"] = self.recoverable
        block["finished"] = uptime(self.target)
        if block.get("start") is None:
            block["start"] = block["finished"]
        doc["v1"][self.stage] = block
        doc["v1"]["stage"] = None
        if self.datasource is not None:
            doc["v1"]["datasource"] = self.datasource
        write_status(self.target, doc, self.paths)


def write_result(target: Target, datasource: str, paths: Paths = PATHS) -> dict[str, Any]:
    doc = read_status(target, paths)
    errors: list[str] = []
    recoverable: dict[str, list[str]] = {}
    for k in STAGE_KEYS:
        blk = doc["v1"].get(k) or {}
        errors += blk.get("errors") or []
        for lvl, msgs in (blk.get("recoverable_errors") or {}).items():
            recoverable.setdefault(lvl, []).extend(msgs)
    res = {"v1": {"datasource": datasource, "errors": errors, "recoverable_errors": recoverable}}
    target.write(paths.result_json, json.dumps(res, indent=1, sort_keys=True) + "\n", mode=0o644)
    return res


def summarize(target: Target, paths: Paths = PATHS) -> dict[str, Any]:
    """The document ``tether status --format json`` prints (cloud-init >= 23.4 keys)."""
    disabled_reason = target.read_text(f"{paths.run}/disabled", default="").strip()
    doc = read_status(target, paths)
    v1 = doc["v1"]
    errors: list[str] = []
    recoverable: dict[str, list[str]] = {}
    for k in STAGE_KEYS:
        blk = v1.get(k) or {}
        errors += blk.get("errors") or []
        for lvl, msgs in (blk.get("recoverable_errors") or {}).items():
            recoverable.setdefault(lvl, []).extend(msgs)
    finished = target.exists(paths.result_json) and (v1.get("modules-final") or {}).get("finished") is not None
    started = any((v1.get(k) or {}).get("start") is not None for k in STAGE_KEYS)
    if disabled_reason:
        status, detail = "disabled", disabled_reason
    elif errors:
        status = "error"
        detail = errors[0]
    elif finished:
        status = "done"
        detail = v1.get("datasource") or ""
    elif started or v1.get("stage"):
        status, detail = "running", f"running {v1.get('stage') or 'between stages'}"
    else:
        status, detail = "not started", ""
    extended = status
    if status in ("done", "error", "running") and recoverable:
        extended = f"degraded {status}"
    out: dict[str, Any] = {
        "boot_status_code": "disabled-by-marker-file" if disabled_reason else "enabled-by-generator",
        "datasource": (v1.get("datasource") or "").lower() or None,
        "detail": detail,
        "errors": errors,
        "extended_status": extended,
        "last_update": _last_update(v1),
        "recoverable_errors": recoverable,
        "status": status,
    }
    for k in STAGE_KEYS:
        out[k] = v1.get(k) or _empty_stage()
    out["stage"] = v1.get("stage")
    return out


def _last_update(v1: dict[str, Any]) -> float | None:
    times = [t for k in STAGE_KEYS for t in ((v1.get(k) or {}).get("finished"), (v1.get(k) or {}).get("start"))
             if isinstance(t, int | float)]
    return max(times) if times else None


def exit_code(summary: dict[str, Any]) -> int:
    """cloud-init >= 23.4: 0 done (or disabled / running), 1 error, 2 done with recoverable errors."""
    if summary["status"] == "error":
        return 1
    if summary["recoverable_errors"]:
        return 2
    return 0
