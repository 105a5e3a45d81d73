"""The engine's verbs: ``validate``, ``install``, ``update``, ``commit``, ``rollback``, ``get``. ``add_parsers``
hangs them on tether's CLI."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

DEFAULT_CONFIG = "/etc/tether/host-configuration.yaml"
OPERATIONS = ("stage", "finalize")
GET_WHAT = ("status", "configuration", "last-error", "rollback-chain", "update-check")
BOOT_LOADERS = ("auto", "systemd-boot", "grub", "uefi", "fake")
LOG = logging.getLogger("tether.engine")

EXIT_ERROR = 1
EXIT_NOT_IMPLEMENTED = 3


def _boot_args(p: Any, reboot: bool = True) -> None:
    p.add_argument("--boot-loader", choices=BOOT_LOADERS, default="auto",
                   help="boot loader to use (default: the one recorded at finalize, else detected)")
    if reboot:
        p.add_argument("--no-reboot", action="store_true", help="leave the reboot to the caller")
    # where /proc and /sys facts of the running boot are read (tests point this at a fake tree)
    p.add_argument("--machine-root", default="/", help=argparse.SUPPRESS)


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
        _boot_args(p)
        p.add_argument("--tries", type=int, default=3, help="boot tries the new slot gets before the boot loader "
                       "falls back (default 3; 0: no boot counting)")
        p.add_argument("--progress", choices=("auto", "bar", "json", "none"), default="auto",
                       help="progress display: a bar on a terminal (auto), JSON lines, or nothing")
        p.add_argument("--no-discard", action="store_true", help="do not discard the target before writing")
        if verb == "update":
            p.add_argument("--from-metadata", action="store_true",
                           help="take the desired host configuration from the instance metadata")
            p.add_argument("--reboot", nargs="+", metavar="POLICY", default=None,
                           help="after finalize: now (default), never, sentinel (/run/reboot-required), or window "
                                "HH:MM-HH:MM (local time)")
            p.add_argument("--metadata-timeout", type=float, default=30.0,
                           help="longest wait for the metadata service, in seconds (default 30)")
        if verb == "install":
            p.add_argument("--allow-running-root-disk", action="store_true",
                           help="(test harnesses only) allow the disk holding the running root")
            p.add_argument("--no-firmware-entry", action="store_true",
                           help="do not register the new disk's boot loader in the firmware's boot entries "
                                "(preparing a disk for another machine)")
        p.set_defaults(func=cmd_install if verb == "install" else cmd_update)

    p = subparsers.add_parser("commit", help="commit a finalized update after its reboot (run at every boot)")
    _boot_args(p)
    p.set_defaults(func=cmd_commit)

    p = subparsers.add_parser("rollback", help="boot the other A/B slot again (its committed image)")
    _boot_args(p)
    p.add_argument("--check", action="store_true", help="only say whether a rollback is possible (exit 0/1)")
    p.add_argument("--tries", type=int, default=3, help="boot tries for the rolled-back slot (default 3)")
    p.set_defaults(func=cmd_rollback)

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


def _servicing_env(args: argparse.Namespace, reboot: bool = True) -> Any:
    from pathlib import Path

    from tether.engine.bootsetup import Machine
    from tether.engine.finalize import ServicingEnv
    from tether.runner import Runner
    from tether.target import Target

    m = Path(getattr(args, "machine_root", "/"))
    machine = Machine(cmdline=m / "proc/cmdline", boot_id=m / "proc/sys/kernel/random/boot_id",
                      efivars=m / "sys/firmware/efi/efivars")
    return ServicingEnv(root=Target.at(args.root), runner=Runner(), machine=machine,
                        backend_name=getattr(args, "boot_loader", "auto"), tries=getattr(args, "tries", 3),
                        reboot=reboot and not getattr(args, "no_reboot", False))


def _finalize(args: argparse.Namespace, hc: Any = None) -> int:
    if "finalize" not in args.allowed_operations:
        return 0
    from tether.engine import finalize as fin
    from tether.engine import rebootpolicy as rp
    from tether.errors import TetherError

    try:
        policy = rp.parse_policy(getattr(args, "reboot", None))
        decision = policy.decide()
        env = _servicing_env(args, reboot=decision.reboot)
        if args.verb == "install":
            env.firmware_entry = not args.no_firmware_entry
            msg, _doc = fin.finalize_install(hc, env)
        elif not decision.finalize:
            print(f"staged; not finalizing now: {decision.reason}")
            return 0
        else:
            msg, _doc = fin.finalize(env)
        print(msg)
        if decision.sentinel:
            print(rp.request_reboot(env.root))
            return 0
        if env.reboot and (held := rp.wait_for_blockers(env.runner, policy.inhibitor_wait)):
            print(f"finalized; {rp.deferred_reason(held, policy.inhibitor_wait)}")
            return 0
        fin.reboot(env, "the new slot boots" + ("" if decision.reboot else f" ({decision.reason})"))
    except TetherError as e:
        return _report(e)
    return 0


def _trust_keys(args: argparse.Namespace) -> None:
    """Images are checked against the trusted keys of the servicing root (``--root``)."""
    from tether.engine import signatures
    from tether.runner import Runner
    from tether.target import Target
    signatures.use(Target.at(args.root), Runner())


def cmd_install(args: argparse.Namespace) -> int:
    from tether.engine.install import InstallOptions, install
    from tether.engine.progress import make
    from tether.errors import TetherError
    from tether.runner import Runner

    _trust_keys(args)
    try:
        hc = _load(_config_path(args), args)
        if "stage" in args.allowed_operations:
            install(hc, Runner(), InstallOptions(allow_root_disk=args.allow_running_root_disk,
                                                 progress=make(args.progress), discard=not args.no_discard))
            print("clean install staged (clean-install-staged)")
    except TetherError as e:
        return _report(e)
    return _finalize(args, hc)


def cmd_update(args: argparse.Namespace) -> int:
    from tether.engine.progress import make
    from tether.engine.update import UpdateOptions, stage
    from tether.errors import TetherError
    from tether.runner import Runner
    from tether.target import Target

    _trust_keys(args)
    if args.from_metadata:
        from tether.engine.metadata_update import cmd_from_metadata
        return int(cmd_from_metadata(args, _servicing_env))
    try:
        if "stage" in args.allowed_operations:  # finalize alone acts on what is staged; it needs no file
            hc = _load(_config_path(args), args)
            what, _status = stage(hc, Runner(), Target.at(args.root),
                                  UpdateOptions(progress=make(args.progress), discard=not args.no_discard))
            print(what)
    except TetherError as e:
        return _report(e)
    return _finalize(args)


def cmd_commit(args: argparse.Namespace) -> int:
    from tether.engine.commit import commit
    from tether.errors import TetherError

    try:
        res = commit(_servicing_env(args))
    except TetherError as e:
        return _report(e)
    (print if res.code == 0 else _err)(res.message)
    return int(res.code)


def cmd_rollback(args: argparse.Namespace) -> int:
    from tether.engine import finalize as fin
    from tether.engine import rollback as rb
    from tether.errors import TetherError

    env = _servicing_env(args)
    if args.check:
        ok, msg = rb.check(env)
        (print if ok else _err)(msg)
        return 0 if ok else EXIT_ERROR
    try:
        msg, _doc = rb.rollback(env)
        print(msg)
        fin.reboot(env, "the rolled-back slot boots")
    except TetherError as e:
        return _report(e)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    from tether import yamlsafe
    from tether.engine import state
    from tether.target import Target

    target = Target.at(args.root)
    path = state.datastore_location(target)
    if args.what == "update-check":
        from tether.engine.metadata_update import read_check
        out_check = read_check(path)
        if args.format == "json":
            print(json.dumps(out_check, indent=2, sort_keys=True))
        else:
            sys.stdout.write(yamlsafe.dump(out_check) if out_check is not None else "null\n")
        return 0
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
