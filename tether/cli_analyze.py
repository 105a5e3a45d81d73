"""``tether analyze show|blame``: where the time went, from status.json and the module event log."""

from __future__ import annotations

import argparse
import json

from tether.status import STAGE_KEYS, read_status
from tether.target import Target

EVENTS = "/var/log/tether-events.jsonl"


def _events(target: Target) -> list[dict[str, object]]:
    out = []
    for line in target.read_text(EVENTS, default="").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _last_boot(events: list[dict[str, object]]) -> list[dict[str, object]]:
    # the last boot starts at the last event of the "init" stage that followed an earlier "modules-final"
    start = 0
    for i, ev in enumerate(events):
        if ev.get("stage") == "init" and i and events[i - 1].get("stage") == "modules-final":
            start = i
    return events[start:]


def main(args: argparse.Namespace) -> int:
    target = Target.at(args.root)
    events = _last_boot(_events(target))
    if args.what == "show":
        v1 = read_status(target)["v1"]
        total = 0.0
        for k in STAGE_KEYS:
            blk = v1.get(k) or {}
            s, f = blk.get("start"), blk.get("finished")
            if s is None or f is None:
                print(f"{k:<16} not run")
                continue
            total += f - s
            print(f"{k:<16} {f - s:8.3f}s  (started at {s:.3f}s uptime)")
            for ev in events:
                if ev.get("stage") == k:
                    for m in ev.get("modules", []):  # type: ignore[attr-defined]
                        print(f"  {m['name']:<32} {m['result']:<12} {m['seconds']:.3f}s")
        print(f"total            {total:8.3f}s")
    else:
        rows = [m for ev in events for m in ev.get("modules", [])]  # type: ignore[attr-defined]
        for m in sorted(rows, key=lambda m: -float(m["seconds"])):
            print(f"{m['seconds']:8.3f}s  {m['stage']}/{m['name']} ({m['result']})")
    return 0
