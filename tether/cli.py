"""tether's command line: cloud-init's verbs (so habits and scripts carry over) plus the engine's.

Each verb imports what it needs, so ``tether status`` at boot is cheap; the four stage command lines the units run
(``init [--local]``, ``modules --mode config|final``) are recognised without argparse or the engine's parsers
(imports cost ~12x under TCG and every stage is a new process).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from types import SimpleNamespace

from tether import __version__, log

TYPE_CHECKING = False  # the boot's first stage does not import typing; mypy reads the block below
if TYPE_CHECKING:
    import argparse
    from typing import Any


LOG = log.get("tether")


def _env(args: argparse.Namespace, to_file: bool = True) -> Any:
    from tether import stagetime
    from tether.host import Host
    from tether.runner import Runner
    from tether.stages import Env
    from tether.target import Target
    stagetime.mark("imports")
    target = Target.at(args.root)
    log.setup(lambda: _logs_setup(target, args.debug, to_file))
    runner = Runner()
    env = Env.create(target, Host(runner=runner), runner)
    stagetime.mark("config")
    return env


def _logs_setup(target: Any, debug: bool, to_file: bool) -> None:
    from tether import logs
    logs.setup(target, debug=debug, to_file=to_file)


def cmd_init(args: argparse.Namespace) -> int:
    from tether import stages
    serve = args.local and getattr(args, "serve", False)
    if serve:  # stdlib logging loads after READY=1 (tether/log.py); the stage's records wait in memory until then
        log.hold()
    env = _env(args)
    if _disabled(env):
        if serve:  # a Type=notify unit whose process ends without READY=1 counts as failed
            from tether.bootserver import notify
            notify("READY=1\nSTATUS=tether is disabled")
        return 0
    if serve:
        from tether.bootserver import serve_boot
        return serve_boot(env, lambda: _fresh_env(env))
    return stages.run_local(env) if args.local else stages.run_network(env)


def _fresh_env(env: Any) -> Any:
    """A fresh Env for a later stage in the same process: system config re-read, logging left as set up."""
    from tether.host import Host
    from tether.stages import Env
    return Env.create(env.target, Host(runner=env.runner), env.runner)


def cmd_modules(args: argparse.Namespace) -> int:
    from tether import stages
    env = _env(args)
    if _disabled(env):
        return 0
    return stages.run_modules_stage(env, args.mode)


def cmd_single(args: argparse.Namespace) -> int:
    from tether import stages
    return stages.run_single(_env(args), args.name, args.frequency)


def _disabled(env: Any) -> bool:
    """Honour the generator's verdict and the explicit switches even when a stage is run by hand."""
    from tether.detect import is_disabled
    reason = is_disabled(env.host, env.target)
    if reason:
        LOG.warning("tether is disabled: %s", reason)
        env.target.write(f"{env.paths.run}/disabled", reason + "\n")
        return True
    return False


def _lazy(module: str, func: str = "main") -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import importlib
        fn: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), func)
        return fn(args)
    return run


def build_parser() -> argparse.ArgumentParser:
    import argparse

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", default=argparse.SUPPRESS, help="target root to configure (default: /)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show debug logging and the commands run")
    p = argparse.ArgumentParser(prog="tether", parents=[common],
                                description="First-boot configuration and A/B servicing for Linux hosts.")
    p.add_argument("--version", action="version", version=f"tether {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB")

    def verb(name: str, helptext: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=helptext, description=helptext, parents=[common])
        sp.set_defaults(func=func)
        return sp

    sp = verb("init", "run the local (--local) or network stage", cmd_init)
    sp.add_argument("--local", "-l", action="store_true", help="the local stage (before networking)")
    sp.add_argument("--serve", action="store_true",
                    help="with --local under systemd (Type=notify): stay and run the later stages handed over by "
                         "tether-stage (see tether/bootserver.py)")
    sp = verb("modules", "run the config or final stage's modules", cmd_modules)
    sp.add_argument("--mode", "-m", choices=("config", "final"), default="config")
    sp = verb("single", "run one module now", cmd_single)
    sp.add_argument("--name", "-n", required=True)
    sp.add_argument("--frequency", choices=("always", "once-per-instance", "once"))
    sp = verb("status", "show whether first boot is done (exit 0 done, 1 error, 2 degraded)",
              _lazy("tether.cli_status"))
    sp.add_argument("--wait", "-w", action="store_true", help="block until done or failed")
    sp.add_argument("--timeout", type=float, default=900.0, help="longest --wait, in seconds (default 900)")
    sp.add_argument("--long", "-l", action="store_true")
    sp.add_argument("--format", choices=("json", "yaml", "tabular"), default="tabular")
    sp = verb("query", "print instance data", _lazy("tether.cli_query"))
    sp.add_argument("varname", nargs="?", help="a dotted key, e.g. v1.instance_id or ds.meta_data")
    sp.add_argument("--all", "-a", action="store_true")
    sp.add_argument("--format", "-f", help="a jinja template rendered with instance data")
    sp.add_argument("--user-data", "-u", action="store_true")
    sp.add_argument("--vendor-data", "-v", action="store_true")
    sp = verb("schema", "validate cloud-config (or show the schema)", _lazy("tether.cli_schema"))
    sp.add_argument("--config-file", "-c", help="a cloud-config file to check")
    sp.add_argument("--annotate", action="store_true", help="print the file with each error next to its line")
    sp.add_argument("--system", action="store_true", help="check this host's user-data and system config")
    sp.add_argument("--docs", action="store_true", help="print the JSON schema")
    sp.add_argument("--instance-data", help="instance data JSON for jinja templates (default: the last boot's)")
    sp = verb("clean", "remove tether's state so the next boot is a first boot", _lazy("tether.cli_clean"))
    sp.add_argument("--logs", action="store_true")
    sp.add_argument("--seed", action="store_true")
    sp.add_argument("--machine-id", action="store_true")
    sp.add_argument("--reboot", action="store_true")
    sp = verb("analyze", "show where boot time went", _lazy("tether.cli_analyze"))
    sp.add_argument("what", choices=("show", "blame"))
    sp = verb("install-units", "install tether's systemd units into a root", _lazy("tether.cli_units"))
    sp.add_argument("--no-enable", action="store_true", help="install but do not enable")
    sp.add_argument("--bin", help="absolute path of the tether command inside the root (default: found there)")
    try:
        from tether.engine.cli import add_parsers
    except ImportError:
        pass
    else:
        add_parsers(sub)
        for action in sub.choices.values():
            if not any(a.dest == "root" for a in action._actions):
                action.add_argument("--root", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return p


def stage_args(argv: Sequence[str]) -> Any:
    """The stage command lines the units run, parsed by hand; None for anything else (argparse handles it)."""
    args = SimpleNamespace(root="/", debug=False, verb=None, local=False, serve=False, mode=None)
    it = iter(argv)
    for tok in it:
        if tok == "--debug":
            args.debug = True
        elif tok == "--root" or tok.startswith("--root="):
            root = tok[7:] if tok.startswith("--root=") else next(it, None)
            if not root:
                return None
            args.root = root
        elif tok in ("init", "modules") and args.verb is None:
            args.verb = tok
        elif tok in ("--local", "-l") and args.verb == "init":
            args.local = True
        elif tok == "--serve" and args.verb == "init":
            args.serve = True
        elif tok in ("--mode", "-m") or tok.startswith("--mode="):
            mode = tok[7:] if tok.startswith("--mode=") else next(it, None)
            if args.verb != "modules" or mode not in ("config", "final"):
                return None
            args.mode = mode
        else:
            return None
    if args.verb == "init":
        args.func = cmd_init
    elif args.verb == "modules":
        args.mode = args.mode or "config"
        args.func = cmd_modules
    else:
        return None
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from tether import stagetime
    stagetime.mark("main")
    args = stage_args(sys.argv[1:] if argv is None else argv)
    if args is None:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not hasattr(args, "root"):
            args.root = "/"
        if not hasattr(args, "debug"):
            args.debug = False
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
    from tether.errors import TetherError
    try:
        rc: int = args.func(args)
        return rc
    except TetherError as e:
        print(f"tether: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    finally:
        log.release()  # records still held (tether/log.py) reach the log before the process ends


if __name__ == "__main__":
    sys.exit(main())
