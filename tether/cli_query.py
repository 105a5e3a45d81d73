"""``tether query``: print instance data (the 0600 document as root, the redacted one otherwise)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from tether.errors import TetherError
from tether.paths import PATHS
from tether.target import Target


def load_doc(target: Target) -> dict[str, Any]:
    path = PATHS.instance_data_sensitive if os.geteuid() == 0 else PATHS.instance_data
    if not target.exists(path):
        path = PATHS.instance_data
    try:
        doc = json.loads(target.read_text(path))
    except FileNotFoundError:
        raise TetherError(f"no instance data at {target.path(path)}: has 'tether init' run?")
    except ValueError as e:
        raise TetherError(f"{target.path(path)}: invalid JSON: {e}")
    # v1 keys at top level too, as cloud-init's query and templates offer them
    for k, v in (doc.get("v1") or {}).items():
        doc.setdefault(k, v)
    return dict(doc)


def lookup(doc: Any, dotted: str) -> Any:
    cur = doc
    for part in dotted.split("."):
        if isinstance(cur, dict):
            if part in cur:
                cur = cur[part]
            elif part.replace("-", "_") in cur:
                cur = cur[part.replace("-", "_")]
            elif part.replace("_", "-") in cur:
                cur = cur[part.replace("_", "-")]
            else:
                raise TetherError(f"undefined key {dotted!r} in instance data")
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise TetherError(f"undefined key {dotted!r} in instance data")
    return cur


def main(args: argparse.Namespace) -> int:
    target = Target.at(args.root)
    if args.user_data or args.vendor_data:
        from tether.instancestore import InstanceStore
        store = InstanceStore(target)
        iid = store.current_id() or store.previous_id()
        name = "user-data.txt" if args.user_data else "vendor-data.txt"
        if not iid:
            raise TetherError("no instance yet")
        sys.stdout.write(target.read_text(f"{PATHS.instance_dir(iid)}/{name}", default=""))
        return 0
    doc = load_doc(target)
    if args.format:
        from jinja2 import Environment, StrictUndefined  # only when asked for a template
        print(Environment(undefined=StrictUndefined, autoescape=False).from_string(args.format).render(doc))
        return 0
    if args.all or not args.varname:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    value = lookup(doc, args.varname)
    print(value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True))
    return 0
