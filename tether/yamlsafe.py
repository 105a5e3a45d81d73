"""Safe YAML loading with limits: size, expanded node count (alias bombs), clear error positions."""

from __future__ import annotations

from typing import Any

import yaml

from tether.errors import ConfigError

MAX_YAML_BYTES = 16 * 1024 * 1024
MAX_EXPANDED_NODES = 1_000_000

try:  # the C loader is ~10x faster; fall back when libyaml is absent
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader


def expanded_size(obj: object, limit: int = MAX_EXPANDED_NODES) -> int:
    """Number of nodes the document has once aliases are expanded, stopping past ``limit``."""
    memo: dict[int, int] = {}

    def size(o: object, depth: int) -> int:
        if depth > 200:
            raise ValueError("nesting deeper than 200 levels")
        key = id(o)
        if key in memo:
            return memo[key]
        n = 1
        if isinstance(o, dict):
            for k, v in o.items():
                n += size(k, depth + 1) + size(v, depth + 1)
                if n > limit:
                    break
        elif isinstance(o, list):
            for v in o:
                n += size(v, depth + 1)
                if n > limit:
                    break
        if isinstance(o, dict | list):
            memo[key] = n
        return n

    return size(obj, 0)


def load(text: str | bytes, source: str = "<yaml>") -> Any:
    """Load one YAML document; errors name the source, line and column."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError("", f"{len(text) / 1e6:.1f} MB of YAML is over the {MAX_YAML_BYTES >> 20} MiB limit",
                          source)
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError("", f"invalid YAML: {where}{e.problem or e}", source) from None
    except yaml.YAMLError as e:
        raise ConfigError("", f"invalid YAML: {e}", source) from None
    except RecursionError:
        raise ConfigError("", "invalid YAML: nested too deeply", source) from None
    try:
        n = expanded_size(data)
    except (ValueError, RecursionError) as e:
        raise ConfigError("", f"refused YAML: {e}", source) from None
    if n > MAX_EXPANDED_NODES:
        raise ConfigError("", f"refused YAML: expands to more than {MAX_EXPANDED_NODES} nodes "
                              "(an alias bomb?)", source)
    return data


def dump(data: Any) -> str:
    return str(yaml.safe_dump(data, default_flow_style=False, sort_keys=False))
