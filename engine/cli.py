"""The engine's verbs: ``validate``, ``install``, ``update``, ``get``. ``add_parsers`` hangs them on tether's CLI."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

DEFAULT_CONFIG = "/etc/tether/host-configuration.yaml"
OPERATIONS = ("stage", "finalize")
GET_WHAT = ("status", "configuration", "last-error", "rollback-chain")
LOG = logging.getLogger("tether.engine")

EXIT_ERROR = 1
EXIT_NOT_IMPLEMENTED = 3


def add_parsers(subparsers: Any) -> None:
    p = subparsers.add_parser("validate", help="check a host configuration offline")
    p.add_argument("file", help="host configuration (YAML)")
    p.set_defaults(func=cmd_validate)

    for verb, helptext in (("install", "clean install onto the disks the host configuration names"),
                           ("update", "stage (and finalize) an A/B update of this host")):
        p = subparsers.add_parser(verb, help=helptext)
        p.add_argument("file", nargs="?", default=None,
                       help=f"host configuration (default: {DEFAULT_CONFIG} in the target root)")
        p.add_argument("--allowed-operations", default="stage,finalize", type=_operations,
                       help="comma-separated: stage, finalize (default: both)")
        p.add_argument("--no-reboot", action="store_true", help="leave the reboot after finalize to the caller")
        p.add_argument("--progress", choices=("auto", "bar", "json", "none"), default="auto",
                       help="progress display: a bar on a terminal (auto), JSON lines, or nothing")
        p.add_argument("--no-discard", action="store_true", help="do not discard the target before writing")
        if verb == "install":
            p.add_argument("--allow-running-root-disk", action="store_true",
                           help="(test harnesses only) allow the disk holding the running root")
        p.set_defaults(func=cmd_install if verb == "install" else cmd_update)

    p = subparsers.add_parser("get", help="print the servicing state")
    p.add_argument("what", nargs="?", default="status", choices=GET_WHAT)
    p.add_argument("--format", choices=("yaml", "json"), default="yaml")
    p.set_defaults(func=cmd_get)


def _operations(value: str) -> tuple[str, ...]:
    ops = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [o for o in ops if o not in OPERATIONS]
    if bad or not ops:
        raise argparse.ArgumentTypeError(f"unknown operation(s) {', '.join(bad) or '(none)'}; "
                                         f"use {', '.join(OPERATIONS)}")
    return ops


def _err(msg: str) -> None:
    sys.stderr.write(f"tether: {msg}\n")


def _load(path: str, args: argparse.Namespace) -> Any:
    """Read the host configuration; ``path`` is on the running system, like every CLI file argument."""
    from tether.engine.hostconfig import load_host_config

    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as e:
        from tether.errors import ConfigError
        raise ConfigError("", f"cannot read host configuration: {e.strerror}", path) from None
    return load_host_config(text, path)


def _report(e: Exception) -> int:
    from tether.errors import ConfigErrors

    if isinstance(e, ConfigErrors):
        for x in e.errors:
            _err(str(x))
    else:
        _err(str(e))
    return EXIT_ERROR


def cmd_validate(args: argparse.Namespace) -> int:
    from tether.errors import TetherError

    try:
        _load(args.file, args)
    except TetherError as e:
        return _report(e)
    print(f"{args.file}: valid")
    return 0


def _config_path(args: argparse.Namespace) -> str:
    if args.file:
        return str(args.file)
    from tether.target import Target
    return str(Target.at(args.root).path(DEFAULT_CONFIG))


def _finalize(args: argparse.Namespace) -> int:
    if "finalize" not in args.allowed_operations:
        return 0
    _err("finalize: not implemented until the bootloader step; the staged slot is left as it is")
    return EXIT_NOT_IMPLEMENTED


def cmd_install(args: argparse.Namespace) -> int:
    from tether.engine.install import InstallOptions, install
    from tether.engine.progress import make
    from tether.errors import TetherError
    from tether.runner import Runner

    try:
        hc = _load(_config_path(args), args)
        if "stage" in args.allowed_operations:
            install(hc, Runner(), InstallOptions(allow_root_disk=args.allow_running_root_disk,
                                                 progress=make(args.progress), discard=not args.no_discard))
            print("clean install staged (clean-install-staged)")
    except TetherError as e:
        return _report(e)
    return _finalize(args)


def cmd_update(args: argparse.Namespace) -> int:
    from tether.engine.progress import make
    from tether.engine.update import UpdateOptions, stage
    from tether.errors import TetherError
    from tether.runner import Runner
    from tether.target import Target

    try:
        hc = _load(_config_path(args), args)
        if "stage" in args.allowed_operations:
            what, _status = stage(hc, Runner(), Target.at(args.root),
                                  UpdateOptions(progress=make(args.progress), discard=not args.no_discard))
            print(what)
    except TetherError as e:
        return _report(e)
    return _finalize(args)


def cmd_get(args: argparse.Namespace) -> int:
    from tether import yamlsafe
    from tether.engine import state
    from tether.target import Target

    target = Target.at(args.root)
    path = state.datastore_location(target)
    if path.exists():
        with state.StateStore(path) as store:
            doc = store.current()
            chain = store.rollback_chain() if args.what == "rollback-chain" else None
    else:
        doc, chain = state.empty_status(), []
    out: Any
    if args.what == "status":
        out = doc
    elif args.what == "configuration":
        out = doc.get("spec")
    elif args.what == "last-error":
        out = doc.get("lastError")
    else:
        out = chain
    if args.format == "json":
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        sys.stdout.write(yamlsafe.dump(out) if out is not None else "null\n")
    return 0
