"""``tether schema``: validate a cloud-config against the modules' typed configs, annotate errors by line."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

import yaml

from tether import sysconfig, yamlsafe
from tether.convert import _fields, convert, json_schema
from tether.errors import ConfigError, ConfigErrors, TetherError
from tether.target import Target
from tether.unsupported import UNSUPPORTED

# keys that belong to the system configuration or the pipeline, not to one module
OTHER_KEYS = set(sysconfig.DEFAULTS) | {"merge_how", "merge_type", "host_configuration", "network",
                                        "_doc", "output", "log_cfgs", "reporting", "launch-index",
                                        "cloud_init_modules", "cloud_config_modules", "cloud_final_modules"}


def all_modules() -> list[Any]:
    from tether.modules import REGISTERED, load
    return [load(n) for n in REGISTERED]


def validate(data: Any) -> tuple[list[ConfigError], list[str]]:
    """Errors (path, message) and warnings for one cloud-config mapping."""
    if data is None:
        return [], []
    if not isinstance(data, dict):
        return [ConfigError("", f"expected a mapping at the top level, got {type(data).__name__}")], []
    errors: list[ConfigError] = []
    warnings: list[str] = []
    claimed: set[str] = set()
    for mod in all_modules():
        keys = [key for _a, key, _t, _f in _fields(mod.Config)]
        claimed.update(keys)
        sub = {k: data[k] for k in keys if k in data}
        if not sub:
            continue
        try:
            convert(mod.Config, sub, strict=True, warnings=warnings)
        except ConfigErrors as e:
            errors.extend(x for x in e.errors if not any(str(x) == str(y) for y in errors))
    unsupported = {k for keys in UNSUPPORTED.values() for k in keys}
    for k in data:
        if k in claimed or k in OTHER_KEYS:
            continue
        if k in unsupported:
            warnings.append(f"{k}: used by a cloud-init module that tether does not support")
        else:
            warnings.append(f"{k}: not a known cloud-config key")
    return errors, warnings


def line_map(text: str) -> dict[str, int]:
    """path (``users[2].name``) -> 1-based line of its value in the YAML text."""
    out: dict[str, int] = {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return out

    def walk(n: Any, path: str, depth: int) -> None:
        if n is None or depth > 60:
            return
        out.setdefault(path or "(top)", n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = f"{path}.{k.value}" if path else str(k.value)
                out[key] = k.start_mark.line + 1
                walk(v, key, depth + 1)
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                walk(v, f"{path}[{i}]", depth + 1)

    walk(node, "", 0)
    return out


def _line_for(path: str, lines: dict[str, int]) -> int:
    while path:
        if path in lines:
            return lines[path]
        path = re.sub(r"(\.[^.\[\]]+|\[\d+\])$", "", path)
    return 1


def annotate(text: str, errors: list[ConfigError]) -> str:
    lines = line_map(text)
    errors = sorted(errors, key=lambda e: _line_for(e.path, lines))
    by_line: dict[int, list[str]] = {}
    for i, e in enumerate(errors, 1):
        by_line.setdefault(_line_for(e.path, lines), []).append(f"E{i}")
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        out.append(line + (f"\t\t# {','.join(by_line[n])}" if n in by_line else ""))
    if errors:
        out.append("")
        out.append("# Errors: -------------")
        out.extend(f"# E{i}: {e.path}: {e.message}" for i, e in enumerate(errors, 1))
    return "\n".join(out) + "\n"


def check_text(text: str, source: str) -> tuple[list[ConfigError], list[str]]:
    first = text.lstrip().split("\n", 1)[0].strip() if text.strip() else ""
    warnings = []
    if not first.startswith("#cloud-config"):
        warnings.append(f"{source}: does not start with '#cloud-config'; at boot it would not be read as "
                        "cloud-config")
    try:
        data = yamlsafe.load(text, source=source)
    except ConfigError as e:
        return [e], warnings
    errs, w = validate(data)
    return errs, warnings + w


def main(args: argparse.Namespace) -> int:
    if args.docs:
        props: dict[str, Any] = {}
        defs: dict[str, Any] = {}
        for mod in all_modules():
            s = json_schema(mod.Config, defs)
            ref = s["$ref"].split("/")[-1]
            props.update(defs[ref]["properties"])
        print(json.dumps({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                          "properties": props, "$defs": defs}, indent=1, sort_keys=True))
        return 0
    if args.system:
        return _system(args)
    if not args.config_file:
        raise TetherError("schema: give -c FILE, --system or --docs")
    try:
        with open(args.config_file, "rb") as f:
            raw = f.read(yamlsafe.MAX_YAML_BYTES + 1)
    except OSError as e:
        raise TetherError(f"{args.config_file}: {e.strerror}")
    text = raw.decode("utf-8", "replace")
    errors, warnings = check_text(text, args.config_file)
    return _report(args.config_file, text, errors, warnings, args.annotate)


def _report(source: str, text: str, errors: list[ConfigError], warnings: list[str], ann: bool) -> int:
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if ann:
        sys.stdout.write(annotate(text, errors))
    if errors:
        if not ann:
            print(f"Invalid cloud-config {source}")
            for e in errors:
                print(f"Error: {e.path}: {e.message}" if e.path else f"Error: {e.message}")
        return 1
    print(f"Valid schema {source}")
    return 0


def _system(args: argparse.Namespace) -> int:
    from tether.instancestore import InstanceStore
    from tether.paths import PATHS
    target = Target.at(args.root)
    rc = 0
    for path in sysconfig.config_files(target):
        text = target.read_text(path)
        try:
            yamlsafe.load(text, source=path)
            print(f"Valid system config {path}")
        except ConfigError as e:
            print(f"Invalid system config {path}: {e}")
            rc = 1
    store = InstanceStore(target)
    iid = store.current_id() or store.previous_id()
    if iid:
        ud = f"{PATHS.instance_dir(iid)}/user-data.txt"
        if target.exists(ud):
            text = target.read_text(ud)
            if text.lstrip().startswith("#cloud-config"):
                errors, warnings = check_text(text, ud)
                rc = max(rc, _report(ud, text, errors, warnings, args.annotate))
            else:
                print(f"{ud}: not a plain #cloud-config (multipart or script); checked at boot")
    return rc
