"""``tether schema``: validate a cloud-config against the modules' typed configs, annotate errors by line."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
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
                                        "cloud_init_modules", "cloud_config_modules", "cloud_final_modules",
                                        "version", "migrate"}


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
    errors.extend(_output_errors(data.get("output")))
    unsupported = {k for keys in UNSUPPORTED.values() for k in keys}
    for k in data:
        if k in claimed or k in OTHER_KEYS:
            continue
        if k in unsupported:
            warnings.append(f"{k}: used by a cloud-init module that tether does not support")
        else:
            # an error, as in cloud-init's schema (no other top-level key): a typo must not pass as valid
            errors.append(ConfigError(str(k), "not a known cloud-config key"))
    return errors, warnings


def _output_errors(output: Any) -> list[ConfigError]:
    """``output`` checked by the same reader the stages use (tether.output_cfg)."""
    from tether import output_cfg
    if output is None:
        return []
    out = [ConfigError(f"output.{k}", "not a stage (expected all, init, config or final)")
           for k in output_cfg.unknown_keys(output)]
    seen: set[str] = set()
    for stage in ("init", "config", "final"):
        try:
            output_cfg.for_stage(output, stage)
        except output_cfg.OutputSpecError as e:
            path, _, message = str(e).partition(": ")
            if path not in seen:
                seen.add(path)
                out.append(ConfigError(path, message))
    return out


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


def annotate(text: str, errors: list[ConfigError], deprecations: Sequence[tuple[str, str]] = ()) -> str:
    """The text with ``# E1``/``# D1`` marks on the lines of errors and deprecated values, and the list of
    both at the end (as cloud-init's ``--annotate``)."""
    lines = line_map(text)
    errors = sorted(errors, key=lambda e: _line_for(e.path, lines))
    # deprecation paths are cloud-init's ("users.0.sudo"); line_map's are "users[0].sudo"
    deps = [(re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", p), p, m) for p, m in deprecations]
    by_line: dict[int, list[str]] = {}
    for i, e in enumerate(errors, 1):
        by_line.setdefault(_line_for(e.path, lines), []).append(f"E{i}")
    for i, (path, _p, _m) in enumerate(deps, 1):
        by_line.setdefault(_line_for(path, lines), []).append(f"D{i}")
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        out.append(line + (f"\t\t# {','.join(by_line[n])}" if n in by_line else ""))
    if errors:
        out.append("")
        out.append("# Errors: -------------")
        out.extend(f"# E{i}: {e.path}: {e.message}" for i, e in enumerate(errors, 1))
    if deps:
        out.append("")
        out.append("# Deprecations: -------------")
        out.extend(f"# D{i}: {p}: {m}" for i, (_path, p, m) in enumerate(deps, 1))
    return "\n".join(out) + "\n"


def check_text(text: str, source: str) -> tuple[list[ConfigError], list[str]]:
    """A #cloud-config text: YAML errors, schema errors and warnings (no start-line check)."""
    try:
        data = yamlsafe.load(text, source=source)
    except ConfigError as e:
        return [e], []
    if data is not None and not isinstance(data, dict):
        return [ConfigError("", f"{source} is not a YAML mapping (it is a {type(data).__name__})")], []
    return validate(data)


class Verdict:
    """What ``schema`` says about one user-data document, as cloud-init's ``schema`` would.

    ``kind``: valid | invalid | not-evaluated | error (unrecognized start line, template that cannot render).
    ``notice`` is the one line printed for not-evaluated and error documents."""

    def __init__(self, kind: str, text: str = "", errors: list[ConfigError] | None = None,
                 warnings: list[str] | None = None, deprecations: list[tuple[str, str]] | None = None,
                 notice: str = "") -> None:
        self.kind = kind
        self.text = text
        self.errors = errors or []
        self.warnings = warnings or []
        self.deprecations = deprecations or []
        self.notice = notice

    @property
    def exit_code(self) -> int:
        return 1 if self.kind in ("invalid", "error") else 0


InstanceDoc = Callable[[], dict[str, Any]]


def check_user_data(raw: bytes, source: str, instance_doc: InstanceDoc) -> Verdict:
    """Judge one user-data document the way cloud-init's ``schema -c`` does: only #cloud-config is checked
    (after rendering a jinja template with the instance data); other known types are not evaluated (exit 0);
    a document whose first line tether does not know is an error (exit 1)."""
    from tether.userdata import detect

    text = raw.decode("utf-8", "replace").removeprefix("\ufeff")
    if not text.strip():
        return Verdict("not-evaluated", notice=f"{source}: empty; nothing to validate")
    ctype = detect.sniff(raw)
    line = 1
    if ctype == detect.JINJA:
        from tether.userdata import template
        try:
            doc = instance_doc()
        except TetherError as e:
            return Verdict("error", notice=f"{source}: a jinja template, rendered with the instance data before "
                                           f"it is checked, and there is none: {e} (or pass --instance-data FILE)")
        try:
            rendered = template.render(text, doc)
        except template.TemplateError as e:
            return Verdict("error", notice=f"{source}: the jinja template does not render: {e}")
        text = rendered.text
        ctype = detect.sniff(text.encode())
        line = 2
        if ctype == detect.JINJA:
            return Verdict("error", notice=f"{source}: a template that renders to another template")
    if ctype is None:
        first = text.lstrip().split("\n", 1)[0][:80]
        hint = (" (MIME multipart: check it after boot with 'tether schema --system', which checks the "
                "processed parts)") if detect.looks_like_mime(text.encode()) else ""
        return Verdict("error", notice=f"{source} line {line}: unrecognized user-data start line {first!r}; "
                                       f"expected one of {', '.join(START_LINES)}{hint}")
    if ctype != detect.CLOUD_CONFIG:
        return Verdict("not-evaluated", notice=f"{source}: user-data type {ctype!r} is not evaluated by "
                                               "tether schema (only #cloud-config is)")
    errors, warnings = check_text(text, source)
    return Verdict("invalid" if errors else "valid", text, errors, warnings, _deprecations(text, source))


START_LINES = ("#!", "#cloud-boothook", "#cloud-config", "#cloud-config-archive", "#cloud-config-jsonp",
               "#include", "#include-once", "#part-handler", "## template: jinja")


def _deprecations(text: str, source: str) -> list[tuple[str, str]]:
    from tether import schema_deprecations
    try:
        return schema_deprecations.find(yamlsafe.load(text, source=source))
    except ConfigError:
        return []


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
    instance_doc = _instance_doc_loader(Target.at(args.root), getattr(args, "instance_data", None))
    if args.system:
        return _system(args, instance_doc)
    if not args.config_file:
        raise TetherError("schema: give -c FILE, --system or --docs")
    try:
        with open(args.config_file, "rb") as f:
            raw = f.read(yamlsafe.MAX_YAML_BYTES + 1)
    except OSError as e:
        raise TetherError(f"{args.config_file}: {e.strerror}")
    return _report(args.config_file, check_user_data(raw, args.config_file, instance_doc), args.annotate)


def _instance_doc_loader(target: Target, path: str | None) -> InstanceDoc:
    """Instance data for templates, read only when a template needs it: --instance-data FILE, else the one
    the last boot wrote (the 0600 document as root)."""
    def load() -> dict[str, Any]:
        if path is None:
            from tether.cli_query import load_doc
            return load_doc(target)
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except OSError as e:
            raise TetherError(f"--instance-data {path}: {e.strerror}") from None
        except ValueError as e:
            raise TetherError(f"--instance-data {path}: invalid JSON: {e}") from None
        if not isinstance(doc, dict):
            raise TetherError(f"--instance-data {path}: not a JSON object")
        return doc
    return load


def _report(source: str, v: Verdict, ann: bool) -> int:
    for w in v.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if v.kind in ("not-evaluated", "error"):
        print(v.notice, file=sys.stderr if v.kind == "error" else sys.stdout)
        return v.exit_code
    if v.deprecations and not ann:
        print("Cloud config schema deprecations: " + ", ".join(f"{p}: {m}" for p, m in v.deprecations))
    if ann:
        sys.stdout.write(annotate(v.text, v.errors, v.deprecations))
    if v.errors:
        if not ann:
            print(f"Invalid cloud-config {source}")
            for e in v.errors:
                print(f"Error: {e.path}: {e.message}" if e.path else f"Error: {e.message}")
        return 1
    print(f"Valid schema {source}")
    return 0


def _system(args: argparse.Namespace, instance_doc: InstanceDoc) -> int:
    """System config files, then the instance's user-data and vendor-data *as processed at boot* (parts
    merged, archives unpacked, templates rendered), as cloud-init's ``schema --system`` checks its processed
    cloud-config rather than the raw user-data."""
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
    if not iid:
        print("no instance found: no user-data to check")
        return rc
    for name in ("user-data", "vendor-data"):
        path = f"{PATHS.instance_dir(iid)}/{name}.txt"
        if target.exists(path):
            rc = max(rc, _report(path, check_processed(target.read_bytes(path), path, instance_doc),
                                 args.annotate))
    return rc


def check_processed(raw: bytes, source: str, instance_doc: InstanceDoc) -> Verdict:
    """User-data as the boot's pipeline turns it into cloud-config (includes not fetched here), then checked.
    Parts the pipeline drops (invalid YAML in one MIME part ...) are warnings: the boot skipped them."""
    from tether.userdata import process
    try:
        doc = instance_doc()
    except TetherError:
        doc = {}
    p = process(raw, None, instance_data=doc, fetch=None)
    text = yaml.safe_dump(p.cloud_config, sort_keys=False) if p.cloud_config else ""
    errors, warnings = validate(p.cloud_config)
    dropped = [f"{source}: {m} (skipped at boot)" for m in p.errors + p.warnings]
    kind = "invalid" if errors else "valid"
    from tether import schema_deprecations
    return Verdict(kind, text, errors, dropped + warnings, schema_deprecations.find(p.cloud_config))
