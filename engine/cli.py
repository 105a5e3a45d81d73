"""The engine's verbs: ``validate``, ``install``, ``update``, ``commit``, ``rollback``, ``get``. ``add_parsers``
hangs them on tether's CLI. Trident's options carry over: ``-s/--status FILE`` and ``-e/--error FILE`` (the host
status, and a fatal error, as YAML), ``-v/--verbosity LEVEL``, ``get -o FILE``, ``rollback --ab/--runtime``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from tether import log

DEFAULT_CONFIG = "/etc/tether/host-configuration.yaml"
TRIDENT_CONFIG = "/etc/trident/config.yaml"  # Trident's default, used when tether's own is absent
OPERATIONS = ("stage", "finalize")
GET_WHAT = ("status", "configuration", "last-error", "rollback-chain", "rollback-target", "update-check")
# Trident's level names (Rust's log::LevelFilter); "trace" is below debug
VERBOSITY = {"off": logging.CRITICAL + 10, "error": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO,
             "debug": logging.DEBUG, "trace": 5}
BOOT_LOADERS = ("auto", "systemd-boot", "grub", "uefi", "fake")
LOG = log.get("tether.engine")

EXIT_ERROR = 1
EXIT_NOT_IMPLEMENTED = 3


def _boot_args(p: Any, reboot: bool = True) -> None:
    p.add_argument("--boot-loader", choices=BOOT_LOADERS, default="auto",
                   help="boot loader to use (default: the one recorded at finalize, else detected)")
    if reboot:
        p.add_argument("--no-reboot", action="store_true", help="leave the reboot to the caller")
    # where /proc and /sys facts of the running boot are read (tests point this at a fake tree)
    p.add_argument("--machine-root", default="/", help=argparse.SUPPRESS)


def _verbosity(value: str) -> str:
    if value.lower() not in VERBOSITY:
        raise argparse.ArgumentTypeError(f"unknown level {value!r}; use one of {', '.join(VERBOSITY)}")
    return value.lower()


def _common(p: Any, func: Callable[[argparse.Namespace], int], outputs: bool = True) -> None:
    """-v on every engine verb; -s/-e on the servicing verbs (as Trident has them)."""
    p.add_argument("-v", "--verbosity", type=_verbosity, default=None, metavar="LEVEL",
                   help="log level on stderr: off, error, warn, info, debug, trace (default: warn; debug with "
                        "--debug)")
    if outputs:
        p.add_argument("-s", "--status", metavar="FILE", default=None,
                       help="write the resulting host status to FILE (YAML), also when the command fails")
        p.add_argument("-e", "--error", metavar="FILE", default=None,
                       help="write a fatal error to FILE (YAML); nothing is written when the command succeeds")
    p.set_defaults(func=_run(func, outputs))


def add_parsers(subparsers: Any) -> None:
    p = subparsers.add_parser("validate", help="check a host configuration offline")
    p.add_argument("file", nargs="?", default=None,
                   help=f"host configuration (default: {DEFAULT_CONFIG}, else Trident's {TRIDENT_CONFIG}, in the "
                        "target root)")
    _common(p, cmd_validate, outputs=False)

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
        _common(p, cmd_install if verb == "install" else cmd_update)

    p = subparsers.add_parser("commit", help="commit a finalized update after its reboot (run at every boot)")
    _boot_args(p)
    _common(p, cmd_commit)

    p = subparsers.add_parser("rollback", help="boot the other A/B slot again (its committed image)")
    _boot_args(p)
    p.add_argument("--check", action="store_true", help="only say whether a rollback is possible (exit 0/1)")
    p.add_argument("--tries", type=int, default=3, help="boot tries for the rolled-back slot (default 3)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--ab", action="store_true", help="the A/B rollback (tether's only kind; the default)")
    kind.add_argument("--runtime", action="store_true",
                      help="a runtime rollback: refused, tether makes no runtime updates to roll back")
    _common(p, cmd_rollback)

    p = subparsers.add_parser("image", help="publisher tools: index an image for adaptive downloads")
    sub = p.add_subparsers(dest="image_verb", metavar="VERB", required=True)
    q = sub.add_parser("index", help="write IMAGE.chunks (and IMAGE.data for a compressed image) next to IMAGE")
    q.add_argument("image", help="a raw or compressed (zstd, xz, gzip) filesystem image")
    q.add_argument("--chunk-size", type=int, default=4096, help="bytes per chunk, a multiple of 4096 (default "
                   "4096, a filesystem block)")
    _common(q, cmd_image_index, outputs=False)

    p = subparsers.add_parser("get", help="print the servicing state")
    p.add_argument("what", nargs="?", default="status", choices=GET_WHAT)
    p.add_argument("--format", choices=("yaml", "json"), default="yaml")
    p.add_argument("-o", "--outfile", metavar="FILE", default=None, help="write to FILE instead of stdout")
    _common(p, cmd_get, outputs=False)


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


def _report(e: Exception, args: argparse.Namespace | None = None) -> int:
    """Print the error (one line per configuration problem), and write it to ``--error FILE`` when given."""
    from tether.errors import ConfigError, ConfigErrors

    if isinstance(e, ConfigErrors):
        for x in e.errors:
            _err(str(x))
    else:
        _err(str(e))
    if args is not None and getattr(args, "error", None):
        from tether.engine import state

        invalid = isinstance(e, ConfigError | ConfigErrors)
        record: dict[str, Any] = state.error_record("invalid-host-configuration" if invalid else args.verb, str(e))
        if isinstance(e, ConfigErrors):
            record["errors"] = [{"path": x.path, "message": x.message} for x in e.errors]
        elif isinstance(e, ConfigError):
            record["errors"] = [{"path": e.path, "message": e.message}]
        _write_yaml(args.error, {"command": args.verb, **record}, "--error")
    return EXIT_ERROR


def _write_yaml(path: str, data: Any, option: str) -> None:
    """A file the caller named on the command line (the running system's path), replaced atomically."""
    from tether import yamlsafe
    from tether.target import write_atomic

    try:
        write_atomic(path, (yamlsafe.dump(data) if data is not None else "null\n").encode())
    except OSError as e:
        _err(f"{option} {path}: cannot write: {e.strerror or e}")


def _run(cmd: Callable[[argparse.Namespace], int], outputs: bool) -> Callable[[argparse.Namespace], int]:
    """Run a verb with the stderr log level of ``-v``, then write ``--status`` (after success or failure)."""
    def run(args: argparse.Namespace) -> int:
        level = args.verbosity or ("debug" if getattr(args, "debug", False) else None)
        from tether.logs import stderr_at

        with stderr_at(VERBOSITY[level] if level is not None else None):
            rc = cmd(args)
            if outputs and args.status:
                _write_yaml(args.status, _status_after(args), "--status")
            return rc
    return run


def _status_after(args: argparse.Namespace) -> Any:
    """The host status after the verb: what a clean install recorded on the new disk, else the running host's
    datastore (``get status``)."""
    doc = getattr(args, "status_doc", None)
    if doc is not None:
        return doc
    from tether.engine import state
    from tether.target import Target

    path = state.datastore_location(Target.at(args.root))
    if not path.exists():
        return state.empty_status()
    with state.StateStore(path) as store:
        return store.current()


def cmd_validate(args: argparse.Namespace) -> int:
    from tether.engine.hostcheck import config_notes
    from tether.errors import TetherError

    try:
        path = _config_path(args)
        hc = _load(path, args)
    except TetherError as e:
        return _report(e)
    for note in config_notes(hc):
        _err(f"{path}: note: {note}")
    print(f"{path}: valid")
    return 0


def cmd_image_index(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tether.engine import chunks
    from tether.errors import TetherError

    try:
        index, data = chunks.build(Path(args.image), args.chunk_size)
    except TetherError as e:
        return _report(e)
    print(f"{index}: chunk index of {data.name}")
    if data.name != Path(args.image).name:
        print(f"{data}: the uncompressed image, fetched by range (publish it next to {Path(args.image).name})")
    print(f"to sign: sha384sum {Path(args.image).name} {index.name} > {Path(args.image).name}.sha384, then "
          f"ssh-keygen -Y sign -n tether-image on that file")
    return 0


def _config_path(args: argparse.Namespace) -> str:
    """FILE, else tether's default in the target root, else Trident's default there."""
    if args.file:
        return str(args.file)
    from tether.errors import ConfigError
    from tether.target import Target

    target = Target.at(args.root)
    for candidate in (DEFAULT_CONFIG, TRIDENT_CONFIG):
        if target.path(candidate).is_file():
            LOG.info("no host configuration given: reading %s", target.path(candidate))
            return str(target.path(candidate))
    raise ConfigError("", f"no host configuration given, and neither {DEFAULT_CONFIG} nor {TRIDENT_CONFIG} exists"
                      + ("" if target.live else f" in {target.root}"))


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
            msg, args.status_doc = fin.finalize_install(hc, env)
        elif not decision.finalize:
            print(f"staged; not finalizing now: {decision.reason}")
            return 0
        else:
            msg, _doc = fin.finalize(env)
        print(msg)
        _notify(args, "finalized", msg)
        if decision.sentinel:
            print(rp.request_reboot(env.root))
            return 0
        if env.reboot and (held := rp.wait_for_blockers(env.runner, policy.inhibitor_wait)):
            print(f"finalized; {rp.deferred_reason(held, policy.inhibitor_wait)}")
            return 0
        if env.reboot:
            _notify(args, "rebooting", "the new slot boots")
        fin.reboot(env, "the new slot boots" + ("" if decision.reboot else f" ({decision.reason})"))
    except TetherError as e:
        return _report(e, args)
    return 0


def _notify(args: argparse.Namespace, what: str, message: str = "", ok: bool = True) -> None:
    """A servicing event to the reporting: handlers (tether/reporting.py); never fails the command."""
    from tether import reporting
    from tether.target import Target
    reporting.servicing_event(Target.at(args.root), what, message, ok)


def _trust_keys(args: argparse.Namespace) -> None:
    """Images are checked against the trusted keys of the servicing root (``--root``); its registry settings
    (``oci://`` credentials and mirrors) are read from it too."""
    from tether.engine import oci_config, signatures
    from tether.runner import Runner
    from tether.target import Target
    signatures.use(Target.at(args.root), Runner())
    oci_config.use(Target.at(args.root))


def cmd_install(args: argparse.Namespace) -> int:
    from tether.engine.install import InstallOptions, install
    from tether.engine.progress import make
    from tether.errors import TetherError
    from tether.runner import Runner

    _trust_keys(args)
    try:
        hc = _load(_config_path(args), args)
        if "stage" in args.allowed_operations:
            args.status_doc = install(hc, Runner(), InstallOptions(
                allow_root_disk=args.allow_running_root_disk, progress=make(args.progress),
                discard=not args.no_discard))
            print("clean install staged (clean-install-staged)")
    except TetherError as e:
        return _report(e, args)
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
        code = int(cmd_from_metadata(args, _servicing_env))
        _notify(args, "check")  # the event is the check's record (update-check.json)
        return code
    try:
        if "stage" in args.allowed_operations:  # finalize alone acts on what is staged; it needs no file
            hc = _load(_config_path(args), args)
            what, _status = stage(hc, Runner(), Target.at(args.root),
                                  UpdateOptions(progress=make(args.progress), discard=not args.no_discard,
                                                unboot=_unboot(args)))
            print(what)
            _notify(args, "staged", what)
    except TetherError as e:
        _notify(args, "failed", str(e), ok=False)
        return _report(e, args)
    return _finalize(args)


def cmd_commit(args: argparse.Namespace) -> int:
    from tether.engine.commit import commit
    from tether.errors import TetherError

    try:
        res = commit(_servicing_env(args))
        _notify(args, "commit", res.message, res.code == 0)
    except TetherError as e:
        return _report(e, args)
    if res.code != 0:  # a failed health check or boot is an error, for --error too
        _report(TetherError(res.message), args)
        return int(res.code)
    print(res.message)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from tether.engine import finalize as fin
    from tether.engine import rollback as rb
    from tether.errors import TetherError

    if args.runtime:
        return _report(rb.RollbackError("no runtime rollback: tether makes no runtime updates (every update is an "
                                        "A/B update); use 'tether rollback' (--ab) to boot the other slot"), args)
    env = _servicing_env(args)
    if args.check:
        ok, msg = rb.check(env)
        (print if ok else _err)(msg)
        return 0 if ok else EXIT_ERROR
    try:
        msg, _doc = rb.rollback(env)
        print(msg)
        _notify(args, "rolled-back", msg)
        fin.reboot(env, "the rolled-back slot boots")
    except TetherError as e:
        return _report(e, args)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    from tether.engine import state
    from tether.target import Target

    target = Target.at(args.root)
    path = state.datastore_location(target)
    if args.what == "update-check":
        from tether.engine.metadata_update import read_check
        return _emit(args, read_check(path))
    rollback_to: Any = None
    if path.exists():
        with state.StateStore(path) as store:
            doc = store.current()
            chain = store.rollback_chain() if args.what == "rollback-chain" else None
            if args.what == "rollback-target":
                rollback_to = _rollback_target(store, doc)
    else:
        doc, chain = state.empty_status(), []
        if args.what == "rollback-target":
            _err("no rollback target: this host was never serviced by tether")
    out: Any
    if args.what == "status":
        from tether.engine.slots import current_boot_id, explain

        # what an interrupted (or running) operation left, the slot not to trust, and what to run about it
        out = {**doc, "pending": explain(doc, current_boot_id())}
    elif args.what == "configuration":
        out = doc.get("spec")
    elif args.what == "last-error":
        out = doc.get("lastError")
    elif args.what == "rollback-target":
        out = rollback_to
    else:
        out = chain
    return _emit(args, out)


def _rollback_target(store: Any, doc: dict[str, Any]) -> Any:
    """What ``tether rollback`` would boot (its volume and configuration), or None with the reason on stderr."""
    from tether.engine.rollback import RollbackError, rollback_target

    try:
        volume, spec = rollback_target(store, doc)
    except RollbackError as e:
        _err(f"no rollback target: {e}")
        return None
    return {"abActiveVolume": volume, "spec": spec}


def _emit(args: argparse.Namespace, out: Any) -> int:
    """``get``'s answer as YAML or JSON, on stdout or into ``-o FILE``."""
    from tether import yamlsafe

    if args.format == "json":
        text = json.dumps(out, indent=2, sort_keys=True) + "\n"
    else:
        text = yamlsafe.dump(out) if out is not None else "null\n"
    if not args.outfile:
        sys.stdout.write(text)
        return 0
    try:
        with open(args.outfile, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        _err(f"--outfile {args.outfile}: cannot write: {e.strerror or e}")
        return EXIT_ERROR
    return 0


def _unboot(args: argparse.Namespace) -> Any:
    """What makes the slot being rewritten unbootable (engine.finalize.remove_slot_entries) for this command."""
    from tether.engine.finalize import remove_slot_entries

    env = _servicing_env(args, reboot=False)
    return lambda volume: remove_slot_entries(env, volume)
