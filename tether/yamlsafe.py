"""Safe YAML loading with limits: size, expanded nodes and text (alias bombs), depth, clear error positions.

PyYAML is imported only when a document has to be parsed: importing it costs ~0.7 s in a TCG guest. A stage can
keep a parse memo (``use_memo``): documents that parsed cleanly and survive a JSON round trip unchanged are
remembered by their exact text, so a later stage or boot reading the same seed or user-data needs no YAML parser.
"""

from __future__ import annotations

import json
from pathlib import Path

from tether.errors import ConfigError

TYPE_CHECKING = False  # the boot's first stage does not import typing; mypy reads the block below
if TYPE_CHECKING:
    from typing import Any

MAX_YAML_BYTES = 16 * 1024 * 1024
MAX_EXPANDED_NODES = 1_000_000
MAX_EXPANDED_BYTES = 64 * 1024 * 1024  # characters of text once aliases are expanded (a string alias bomb)
MAX_DEPTH = 200
MEMO_MAX_BYTES = 2 * 1024 * 1024   # the whole memo file; a document that alone is larger is not remembered


def _yaml() -> Any:
    import yaml
    return yaml


def _loader() -> Any:
    yaml = _yaml()
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader is ~10x faster when libyaml is there


class _Memo:
    """text -> JSON of the parsed document, loaded from and saved to one 0600 file."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.entries: dict[str, str] = {}
        self.used: set[str] = set()
        self.dirty = False

    def get(self, text: str) -> Any:
        js = self.entries.get(text)
        if js is None:
            return None, False
        self.used.add(text)
        return json.loads(js), True

    def put(self, text: str, data: Any) -> None:
        if self.path is None:
            return
        try:
            js = json.dumps(data, allow_nan=False)
        except (TypeError, ValueError):  # dates, binary, non-string keys...: YAML-only types
            return
        if len(js) + len(text) > MEMO_MAX_BYTES or json.loads(js) != data or not _same_types(json.loads(js), data):
            return
        self.entries[text] = js
        self.used.add(text)
        self.dirty = True


def _same_types(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return all(_same_types(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return all(_same_types(x, y) for x, y in zip(a, b, strict=True))
    return True


_MEMO = _Memo()


def use_memo(path: Path | None) -> None:
    """Remember parses in ``path`` (None: stop); unreadable or malformed memo files are ignored."""
    _MEMO.__init__()  # type: ignore[misc]
    _MEMO.path = path
    if path is None:
        return
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        entries = doc.get("entries") if isinstance(doc, dict) else None
        if isinstance(entries, list):
            for e in entries:
                if isinstance(e, list) and len(e) == 2 and all(isinstance(x, str) for x in e):
                    _MEMO.entries[e[0]] = e[1]
    except (OSError, ValueError):
        pass


def save_memo() -> None:
    """Write the memo back when this process added to it: what it used first, then older entries, to the cap."""
    path = _MEMO.path
    if path is None or not _MEMO.dirty:
        return
    order = [t for t in _MEMO.entries if t in _MEMO.used] + [t for t in _MEMO.entries if t not in _MEMO.used]
    keep, size = [], 0
    for t in order:
        size += len(t) + len(_MEMO.entries[t])
        if size > MEMO_MAX_BYTES:
            break
        keep.append([t, _MEMO.entries[t]])
    from tether.target import write_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a cache: no fsync, a torn file is ignored on the next read
        write_atomic(path, json.dumps({"entries": keep}).encode(), 0o600, fsync=False)
        _MEMO.dirty = False
    except OSError:
        pass


def expanded_size(obj: object, max_nodes: int = MAX_EXPANDED_NODES,
                  max_bytes: int = MAX_EXPANDED_BYTES) -> tuple[int, int]:
    """(nodes, characters of text) the document has once aliases are expanded: what a JSON dump, a merge or a
    template would see. Each reference to a shared string or collection counts in full; stops past a limit."""
    memo: dict[int, tuple[int, int]] = {}

    def size(o: object, depth: int) -> tuple[int, int]:
        if isinstance(o, str | bytes):
            return 1, len(o)
        if not isinstance(o, dict | list):
            return 1, 8
        if depth > MAX_DEPTH:
            raise ValueError(f"nesting deeper than {MAX_DEPTH} levels")
        key = id(o)
        if key in memo:
            return memo[key]
        n, b = 1, 0
        items = [x for kv in o.items() for x in kv] if isinstance(o, dict) else o
        for v in items:
            dn, db = size(v, depth + 1)
            n, b = n + dn, b + db
            if n > max_nodes or b > max_bytes:
                break
        memo[key] = (n, b)
        return n, b

    return size(obj, 0)


def load(text: str | bytes, source: str = "<yaml>") -> Any:
    """Load one YAML document; errors name the source, line and column."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError("", f"{len(text) / 1e6:.1f} MB of YAML is over the {MAX_YAML_BYTES >> 20} MiB limit",
                          source)
    key = None
    if _MEMO.path is not None:
        try:
            key = text if isinstance(text, str) else text.decode("utf-8")
        except UnicodeDecodeError:
            key = None
        if key is not None:
            data, hit = _MEMO.get(key)
            if hit:
                return data
    data, chars = _parse(text, source)
    if key is not None and chars + len(key) <= MEMO_MAX_BYTES:  # a document too big for the memo is not dumped
        _MEMO.put(key, data)
    return data


def _parse(text: str | bytes, source: str) -> tuple[Any, int]:
    """The document and the characters of text it expands to."""
    yaml = _yaml()
    try:
        data = yaml.load(text, Loader=_loader())
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError("", f"invalid YAML: {where}{e.problem or e}", source) from None
    except yaml.YAMLError as e:
        raise ConfigError("", f"invalid YAML: {e}", source) from None
    except RecursionError:
        raise ConfigError("", "invalid YAML: nested too deeply", source) from None
    try:
        nodes, chars = expanded_size(data)
    except (ValueError, RecursionError) as e:
        raise ConfigError("", f"refused YAML: {e}", source) from None
    if nodes > MAX_EXPANDED_NODES:
        raise ConfigError("", f"refused YAML: expands to more than {MAX_EXPANDED_NODES} nodes through aliases "
                              "(an alias bomb?)", source)
    if chars > MAX_EXPANDED_BYTES:
        raise ConfigError("", f"refused YAML: expands to more than {MAX_EXPANDED_BYTES >> 20} MiB of text through "
                              "aliases (an alias bomb?)", source)
    return data, chars


def dump(data: Any) -> str:
    return str(_yaml().safe_dump(data, default_flow_style=False, sort_keys=False))
