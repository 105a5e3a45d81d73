"""``tether status``: cloud-init's status command and exit codes."""

from __future__ import annotations

import argparse
import json
import sys
import time

from tether.status import exit_code, summarize
from tether.target import Target


def _done(summary: dict[str, object]) -> bool:
    return summary["status"] in ("done", "error", "disabled")


def main(args: argparse.Namespace) -> int:
    target = Target.at(args.root)
    summary = summarize(target)
    if args.wait:
        deadline = time.monotonic() + args.timeout
        while not _done(summary) and time.monotonic() < deadline:
            if args.format == "tabular":
                print(".", end="", flush=True)
            time.sleep(0.25)
            summary = summarize(target)
        if args.format == "tabular":
            print()
        if not _done(summary):
            print(f"tether: status --wait gave up after {args.timeout:g}s (status: {summary['status']})",
                  file=sys.stderr)
            return 1
    if args.format == "json":
        print(json.dumps(summary, indent=2, sort_keys=True))
    elif args.format == "yaml":
        from tether.yamlsafe import dump
        print(dump(summary), end="")
    else:
        print(f"status: {summary['extended_status'] if args.long else summary['status']}")
        if args.long:
            print(f"boot_status_code: {summary['boot_status_code']}")
            if summary.get("last_update") is not None:
                print(f"last_update: {summary['last_update']}")
            print(f"detail: {summary['detail']}")
            for e in summary["errors"]:
                print(f"error: {e}")
            for lvl, msgs in summary["recoverable_errors"].items():
                for m in msgs:
                    print(f"{lvl.lower()}: {m}")
    return exit_code(summary)
