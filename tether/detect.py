"""Which datasources could be present on this boot, decided from local evidence only.

This is the one detector: the systemd generator calls ``detect()`` to decide whether tether runs at all, the
stages read the same answer (``/run/tether/detect.json``) or call it again and try exactly the plugins it chose,
and each datasource's ``detect()`` and seed lookups ask it too, so the three can never disagree. It has no rule
about any datasource: each one declares its evidence (``EVIDENCE`` in its own file), compiled into
tether/detect_table.py.

It must stay cheap: the generator imports it before anything else runs, so only ``os`` and the table are imported
(no YAML, no HTTP, no plugin) and nothing here touches the network. Inputs, in order of authority:

1. ``tether=disabled|enabled`` (or cloud-init's ``cloud-init=...``) on the kernel command line, then the file
   ``/etc/tether/disabled`` in the root;
2. ``ds=NAME`` / ``ci.ds=NAME`` / ``ci.datasource=NAME`` on the kernel command line (the operator's choice);
3. ``datasource_list`` from the system configuration (a single entry is used without checks, as cloud-init);
4. each listed datasource's declared evidence: platform facts (DMI values, sysfs files) and seed evidence
   (filesystem labels, seed directories, ``seedfrom``, system-config settings).
"""

from __future__ import annotations

import os

from tether.detect_table import TABLE

TYPE_CHECKING = False  # typing itself costs the generator ~10 ms; mypy still reads the block below

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from tether.datasource import Evidence
    from tether.host import Host
    from tether.target import Target

DETECT_JSON = "/run/tether/detect.json"
DISABLED_FILE = "/etc/tether/disabled"
DS_KEYS = ("ds=", "ci.ds=", "ci.datasource=")      # kernel arguments that name the datasource
DS_ARG_KEYS = {"s": "seedfrom", "i": "instance-id", "h": "local-hostname"}  # ds=NAME;s=...;i=...;h=...

# Everything about each datasource comes from its own declaration (``EVIDENCE`` in datasources/<name>.py),
# compiled into tether/detect_table.py so that reading it costs one small import here.
DECLARED: dict[str, Evidence] = {d["name"]: d for d in TABLE}
# datasource_list names, in the built-in order (a part such as NoCloudNet runs under its entry's name)
DEFAULT_LIST = tuple(d["name"] for d in TABLE if "part_of" not in d)
PARTS = {e: tuple(d["name"] for d in TABLE if d.get("part_of", d["name"]) == e) for e in DEFAULT_LIST}
FALLBACK = next(d["name"] for d in TABLE if d.get("fallback"))
# Lower-case spellings accepted in ds= and datasource_list -> cloud-init's datasource name.
ALIASES = {a: e for e in DEFAULT_LIST for a in (e.lower(), *DECLARED[e].get("aliases", ()))}


class Detection:
    """The verdict (a plain class: dataclasses would cost the generator ~15 ms of imports)."""

    FIELDS = ("enabled", "reason", "candidates", "evidence", "kernel_ds", "refused")

    def __init__(self, enabled: bool, reason: str, candidates: list[str] | None = None,
                 evidence: dict[str, str] | None = None, kernel_ds: str | None = None,
                 refused: dict[str, str] | None = None) -> None:
        self.enabled = enabled
        self.reason = reason
        self.candidates = list(candidates or [])      # ordered plugin names (cloud-init's), None last
        self.evidence = dict(evidence or {})          # plugin -> why it is tried
        self.kernel_ds = kernel_ds                    # the ds= value, when given
        self.refused = dict(refused or {})            # plugin of the list -> why it is not tried

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Detection) and other.as_dict() == self.as_dict()

    def __repr__(self) -> str:
        return f"Detection({self.as_dict()!r})"

    def to_json(self) -> str:
        """The verdict as JSON (sorted keys), encoded here: the json module pulls in ``re`` and ``enum``, about
        20 ms of the generator's 50 ms budget, for five fields of strings, lists, a dict and a bool."""
        return _encode(self.as_dict(), "") + "\n"


def _encode_str(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _encode(value: object, indent: str) -> str:
    """JSON for None, bools, strings, lists and str-keyed dicts (what Detection holds), one item per line."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        return _encode_str(value)
    inner = indent + " "
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{_encode_str(str(k))}: {_encode(value[k], inner)}" for k in sorted(value)]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(inner + _encode(v, inner) for v in value) + f"\n{indent}]"
    raise TypeError(f"detect.json cannot hold {type(value).__name__}")


def canonical(name: str) -> str | None:
    """cloud-init's spelling of a datasource name given in any case or alias, or None if unknown."""
    return ALIASES.get(name.strip().lower())


def entry_of(plugin: str) -> str:
    """The datasource_list name a plugin runs under (NoCloudNet -> NoCloud)."""
    return DECLARED[plugin].get("part_of", plugin)


def kernel_datasource(host: Host) -> tuple[str | None, str | None]:
    """(canonical name, raw value) of ``ds=`` / ``ci.ds=`` / ``ci.datasource=``; last one wins.

    ``ds=nocloud;s=http://10.0.0.1/`` names NoCloud; the part after ``;`` is read by ``ds_args``.
    """
    raw = None
    for arg in host.cmdline_args():
        for key in DS_KEYS:
            if arg.startswith(key):
                raw = arg[len(key):]
    if not raw:
        return None, raw
    return canonical(raw.split(";", 1)[0]), raw


def parse_ds_arg(value: str) -> tuple[str, dict[str, str]]:
    """``nocloud;s=http://x/;i=abc;h=host`` -> ("nocloud", {"seedfrom": ..., "instance-id": ..., ...})."""
    name, *rest = value.split(";")
    out: dict[str, str] = {}
    for item in rest:
        if "=" in item:
            k, v = item.split("=", 1)
            if "%" in v:
                from urllib.parse import unquote  # only for a quoted value: the generator never pays for it
                v = unquote(v)
            out[DS_ARG_KEYS.get(k.strip(), k.strip())] = v.strip()
    return name.strip().lower(), out


def ds_args(host: Host, entry: str) -> tuple[dict[str, str], str]:
    """The ``key=value`` settings given with ``ds=<entry>;...`` on the kernel command line, else in the SMBIOS
    serial (``ds=nocloud;s=...``, how hypervisors pass it), and where they were found."""
    _, raw = kernel_datasource(host)
    serial = host.dmi("product_serial") or ""
    for source, where in ((raw, "kernel command line"), (serial[3:] if serial.startswith("ds=") else None,
                                                          "DMI product_serial")):
        if source:
            name, args = parse_ds_arg(source)
            if canonical(name) == entry:
                return args, where
    return {}, ""


def settings_for(system_config: dict[str, Any], plugin: str) -> dict[str, Any]:
    """``datasource.<plugin>`` from the system configuration, else its entry's (NoCloudNet reads NoCloud's)."""
    all_ds = system_config.get("datasource")
    if not isinstance(all_ds, dict):
        return {}
    got = all_ds.get(plugin) or all_ds.get(entry_of(plugin))
    return got if isinstance(got, dict) else {}


def _shown(url: str) -> str:
    """A URL for messages and detect.json: no ``user:password@``, no query string."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host.rpartition('@')[2]}{slash}{path.split('?', 1)[0]}"


def _root_of(host: Host, target: Target | str | None) -> _Root:
    if target is None:
        return _Root(host.root, None)
    if isinstance(target, str):
        return _Root(target, None)
    return _Root(str(target.root), target)


class _Root:
    """The root holding seed directories and the disabled file: a Target (links resolved inside it) when the
    caller has one, else a plain directory (the generator: no Target, no pathlib)."""

    def __init__(self, root: str, target: Target | None) -> None:
        self.root = root
        self.target = target

    def where(self, rel: str) -> str:
        if self.target is not None:
            return str(self.target.path(rel))
        return os.path.join(self.root, rel.lstrip("/"))


def seed_dirs(plugin: str, target: Target | str) -> list[str]:
    """The plugin's declared seed directories that hold any of its seed files, in declared order, as paths
    under ``target``. The detector and the plugin's fetch both read seeds from this list."""
    root = _Root(target, None) if isinstance(target, str) else _Root(str(target.root), target)
    return [path for _, path in _seed_dirs(plugin, root)]


def _seed_dirs(plugin: str, root: _Root) -> list[tuple[str, str]]:
    decl = DECLARED[plugin]
    out = []
    for d in decl.get("seed_dirs", ()):
        p = root.where(d)
        if any(os.path.exists(os.path.join(p, f)) for f in decl.get("seed_files", ())):
            out.append((d, p))
    return out


def labels(plugin: str, settings: dict[str, Any]) -> tuple[str, ...]:
    """The filesystem labels that carry the plugin's seed: declared, or the one its settings name."""
    decl = DECLARED[plugin]
    key = decl.get("label_setting")
    custom = settings.get(key) if key else None
    return (custom,) if isinstance(custom, str) and custom else decl.get("labels", ())


def _match(value: str, pattern: str) -> bool:
    """Case-insensitive equality, or a prefix when the pattern ends with ``*``."""
    if pattern.endswith("*"):
        return value.lower().startswith(pattern[:-1].lower())
    return value.lower() == pattern.lower()


class _Facts:
    """What the declarations ask about this host, each fact read at most once per detection."""

    def __init__(self, host: Host, root: _Root, system_config: dict[str, Any]) -> None:
        self.host = host
        self.root = root
        self.system_config = system_config
        self._read: dict[str, str] = {}
        self._labels: dict[str, list[str]] | None = None

    def read(self, key: str) -> str:
        """A DMI key (``sys_vendor``) or a host file (``sys/hypervisor/uuid``), stripped; "" when absent."""
        if key not in self._read:
            path = key if "/" in key else f"sys/class/dmi/id/{key}"
            self._read[key] = (self.host.read(path) or "").strip()
        return self._read[key]

    def shown(self, key: str) -> str:
        """A fact for detect.json and the log; a ``ds=...;s=URL`` serial only up to its first ``;`` (the rest
        can hold credentials, and only root may read the serial)."""
        value = self.read(key).split(";", 1)[0] or "(none)"
        return f"{'' if '/' in key else 'DMI '}{key}={value}"

    def label(self, name: str, wanted: list[str]) -> list[str]:
        if self._labels is None:
            # One lookup for every label the candidates declare (on a host without udev links each block
            # device's superblock is read: once); only when something matched is it split per label.
            self._labels = {n.lower(): [] for n in wanted}
            if self.host.devices_by_label(*wanted):
                self._labels = {n.lower(): self.host.devices_by_label(n) for n in wanted}
        if name.lower() in self._labels:
            return self._labels[name.lower()]
        return self.host.devices_by_label(name)

    def host_fact(self, plugin: str) -> str | None:
        """Host facts (DMI values, sysfs files): the datasource's platform is this machine."""
        decl = DECLARED[plugin]
        if decl.get("fallback"):
            return "the fallback: system configuration only"
        rules: tuple[str | tuple[str, ...], ...] = (*decl.get("dmi", ()), *decl.get("files", ()))
        for rule in rules:
            conds = (rule,) if isinstance(rule, str) else rule
            pairs = [c.split("=", 1) for c in conds]
            if all(_match(self.read(k), v) for k, v in pairs):
                return ", ".join(self.shown(k) for k, _ in pairs)
        return None

    def seed(self, plugin: str, wanted_labels: list[str]) -> str | None:
        """Seed evidence (labels, seed directories, seedfrom, settings): where the plugin's data is."""
        decl = DECLARED[plugin]
        settings = settings_for(self.system_config, plugin)
        for lab in labels(plugin, settings):
            devs = self.label(lab, wanted_labels or [lab])
            if devs:
                return f"filesystem label {lab} on {devs[0]}"
        dirs = _seed_dirs(plugin, self.root)
        if dirs:
            return f"seed directory {dirs[0][0]}"
        prefixes = decl.get("seedfrom", ())
        if prefixes:
            url, where = seedfrom(self.host, plugin, settings)
            if url and url.startswith(prefixes):
                return f"seedfrom {_shown(url)} ({where})"
        for key in decl.get("settings", ()):
            if key in settings:
                return f"datasource.{entry_of(plugin)}.{key} in the system configuration"
        return None

    def refusal(self, plugin: str, settings: dict[str, Any]) -> str:
        """Why the plugin is not tried, from what it declares and what the host has."""
        decl = DECLARED[plugin]
        missing = []
        facts: list[str] = []
        for rule in (*decl.get("dmi", ()), *decl.get("files", ())):
            for cond in (rule,) if isinstance(rule, str) else rule:
                key = cond.split("=", 1)[0]
                shown = self.shown(key)
                if shown not in facts:
                    facts.append(shown)
        if facts and self.host_fact(plugin) is None:   # a platform that matched is not why
            missing.append(f"not its platform ({', '.join(facts)})")
        labs = labels(plugin, settings)
        if labs:
            missing.append(f"no filesystem labelled {' or '.join(labs)}")
        if decl.get("seed_dirs"):
            missing.append(f"no seed in {', '.join(decl['seed_dirs'])}")
        if decl.get("seedfrom"):
            missing.append(f"no seedfrom starting {' or '.join(decl['seedfrom'])}")
        if decl.get("settings"):
            missing.append(f"no datasource.{entry_of(plugin)}.{' or .'.join(decl['settings'])} in the system "
                           "configuration")
        return "; ".join(missing) or "nothing declared to look for"


def seedfrom(host: Host, plugin: str, settings: dict[str, Any]) -> tuple[str | None, str]:
    """The ``seedfrom`` location and where it was given: ``ds=<entry>;s=...`` (kernel command line, then the
    SMBIOS serial), else ``datasource.<entry>.seedfrom`` in the system configuration."""
    args, where = ds_args(host, entry_of(plugin))
    if args.get("seedfrom"):
        return args["seedfrom"], where
    value = settings.get("seedfrom")
    if isinstance(value, str) and value:
        return value, f"datasource.{entry_of(plugin)}.seedfrom"
    return None, ""


def _choose(entry: str, facts: _Facts, named: str | None, wanted_labels: list[str],
            found: dict[str, str], refused: dict[str, str]) -> None:
    """Which parts of ``entry`` to try, and why (into ``found``), or why not (into ``refused``).

    ``named`` is the operator's explicit choice (``ds=`` or the only entry of datasource_list): tried without
    checks, except that an entry with several parts (NoCloud: local seed, seedfrom URL) runs the parts whose
    seed evidence is there, or else its first part, whose fetch then says what it did not find.
    """
    parts = PARTS[entry]
    if named is not None and len(parts) == 1:
        found[parts[0]] = named
        return
    seeds = {p: facts.seed(p, wanted_labels) for p in parts}
    platform = named or facts.host_fact(parts[0])
    chosen = [p for p in parts if seeds[p]] or ([parts[0]] if platform else [])
    for p in parts:
        if p in chosen:
            found[p] = seeds[p] or platform or ""
        else:
            refused[p] = facts.refusal(p, settings_for(facts.system_config, p))


def evidence(name: str, host: Host, target: Target | str | None = None,
             settings: dict[str, Any] | None = None) -> str | None:
    """Why plugin ``name`` could be present (kernel ``ds=`` or local evidence), or None: what
    ``Datasource.detect()`` answers, by the same rules as ``detect()``."""
    entry = entry_of(name)
    kname, raw = kernel_datasource(host)
    cfg = {"datasource": {name: settings}} if settings else {}
    facts = _Facts(host, _root_of(host, target), cfg)
    found: dict[str, str] = {}
    _choose(entry, facts, f"kernel command line ds={raw}" if kname == entry else None,
            _declared_labels([entry], cfg), found, {})
    return found.get(name)


def looked_for(plugin: str, host: Host, target: Target | str | None = None,
               settings: dict[str, Any] | None = None) -> str:
    """What the plugin's declaration looks for, with the host's values: why a fetch found nothing."""
    cfg = {"datasource": {plugin: settings}} if settings else {}
    return _Facts(host, _root_of(host, target), cfg).refusal(plugin, settings or {})


def _declared_labels(entries: list[str], system_config: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for e in entries:
        for p in PARTS[e]:
            for lab in labels(p, settings_for(system_config, p)):
                if lab not in out:
                    out.append(lab)
    return out


def datasource_list(system_config: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(known names in order, names tether does not know) from ``datasource_list``."""
    given = system_config.get("datasource_list")
    if not isinstance(given, list) or not given:
        given = list(DEFAULT_LIST)
    names: list[str] = []
    unknown: list[str] = []
    for n in given:
        canon = canonical(n) if isinstance(n, str) else None
        if canon is None:
            unknown.append(str(n))
        elif canon not in names:
            names.append(canon)
    return names, unknown


def is_disabled(host: Host, target: Target | str | None = None) -> str | None:
    """Why tether is off for this boot, or None. The kernel command line beats the file."""
    for key in ("tether", "cloud-init"):
        val = host.cmdline_value(key)
        if val == "disabled":
            return f"kernel command line {key}=disabled"
        if val == "enabled":
            return None
    root = _root_of(host, target)
    if os.path.exists(root.where(DISABLED_FILE)):
        return f"{DISABLED_FILE} exists"
    return None


def detect(host: Host, system_config: dict[str, Any], target: Target | str | None = None) -> Detection:
    """Enable or disable tether for this boot and order the plugins to try. Never touches the network.

    ``target`` is the root holding ``/etc/tether/disabled`` and the seed directories (default: the host's
    sysroot, i.e. ``/`` live). ``candidates`` are plugin names (``NoCloudNet`` is NoCloud's seedfrom-URL part);
    ``refused`` says for each plugin of the list that will not be tried why not.
    """
    root = _root_of(host, target)
    off = is_disabled(host, target)
    if off:
        return Detection(False, off, [])
    names, unknown = datasource_list(system_config)
    note = f" (ignored unknown datasource_list entries: {', '.join(unknown)})" if unknown else ""
    real = [n for n in names if n != FALLBACK]
    kname, raw = kernel_datasource(host)
    named: str | None = None
    if raw is not None and kname is None:
        note += f" (ignored unknown kernel ds={raw})"
    elif raw is not None and kname is not None:
        real, named = ([kname] if kname != FALLBACK else []), f"kernel command line ds={raw}"
    elif len(real) == 1:
        # The image builder named exactly one datasource: trust it, as cloud-init does.
        named = "only entry of datasource_list"
    facts = _Facts(host, root, system_config)
    wanted = _declared_labels(real, system_config)
    found: dict[str, str] = {}
    refused: dict[str, str] = {}
    for entry in real:
        _choose(entry, facts, named, wanted, found, refused)
    cands = list(found) + [FALLBACK]
    if named is not None and raw is not None and kname is not None:
        reason = named
    elif named is not None:
        reason = f"datasource_list names only {real[0]}"
    elif found:
        reason = "found " + "; ".join(f"{n}: {w}" for n, w in found.items())
    else:
        reason = "no datasource found locally; booting with None (system configuration only)"
    return Detection(True, reason + note, cands, found, raw if kname is not None else None, refused)


def write_detection(target: Target, det: Detection) -> Path:
    """Record the decision in ``/run/tether/detect.json`` for the stages and for people debugging a boot."""
    return target.write(DETECT_JSON, det.to_json(), mode=0o644)


def write_detection_at(root: str, det: Detection) -> str:
    """``write_detection`` for the generator, which has a plain directory and no Target: same file, same
    atomic replace, no fsync (``/run`` is a tmpfs)."""
    from tether.atomicfile import write_atomic

    path = os.path.join(root, DETECT_JSON.lstrip("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomic(path, det.to_json().encode(), 0o644, fsync=False)
    return path


def read_detection(target: Target) -> Detection | None:
    try:
        import json
        data = json.loads(target.read_text(DETECT_JSON))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    known = set(Detection.FIELDS)
    try:
        return Detection(**{k: v for k, v in data.items() if k in known})
    except TypeError:
        return None


def main(argv: list[str] | None = None) -> int:
    """``python -m tether.detect [ROOT]``: detect, write detect.json, print it (the generator's core)."""
    import sys

    from tether.host import Host
    args = sys.argv[1:] if argv is None else argv
    root = os.path.abspath(args[0]) if args else "/"
    det = detect(Host(sysroot=root), {}, root)
    try:
        write_detection_at(root, det)
    except OSError as e:
        print(f"tether detect: cannot write {DETECT_JSON}: {e}", file=sys.stderr)
    sys.stdout.write(det.to_json())
    return 0 if det.enabled else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
