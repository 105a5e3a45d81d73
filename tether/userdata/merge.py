"""cloud-config merging with cloud-init's ``merge_how`` / ``Merge-Type`` semantics.

A spec is ``dict(opts)+list(opts)+str(opts)`` (or the list form ``[{name: dict, settings: [...]}, ...]``).
Each type present in the spec gets a merger with those options; a type absent from the spec is not merged at
all (the earlier value stays), exactly as cloud-init behaves. Options:

- dict: ``replace`` (a later value wins) or ``no_replace`` (default: the earlier value stays, but nested
  dicts are always merged), ``recurse_array``/``recurse_list`` and ``recurse_str`` (with ``no_replace``,
  merge lists / strings instead of keeping the earlier one), ``allow_delete`` (a later ``null`` deletes).
- list: ``append``, ``prepend``, ``no_replace`` or ``replace`` (default: the later list overwrites the earlier
  one index by index, extra earlier items stay), ``recurse_array``/``recurse_list``, ``recurse_dict``,
  ``recurse_str`` (merge same-index items instead of replacing them).
- str: ``append`` (concatenate); otherwise the later string wins.

Merging dispatches on the type of the *earlier* value; an earlier int/bool/null is never changed by a merge
(again cloud-init's rule), only replaced by a dict ``replace``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# cloud-init's default for user-data parts: later top-level keys replace earlier ones (as if the YAML
# documents had been concatenated), lists and strings are replaced.
PART_DEFAULT = "dict(replace)+list()+str()"
# cloud-init's default when stacking whole configs (vendor-data under user-data): nested dicts are merged,
# earlier (higher priority) values are kept.
STACK_DEFAULT = "list()+dict()+str()"

_ITEM = re.compile(r"^([a-z_][a-z0-9_]*)\((.*?)\)$")
_KNOWN = ("dict", "list", "str")


class MergeSpecError(ValueError):
    pass


@dataclass(frozen=True)
class Policy:
    """Options per type; None means no merger for that type."""

    dict_opts: frozenset[str] | None
    list_opts: frozenset[str] | None
    str_opts: frozenset[str] | None

    def describe(self) -> str:
        out = []
        for name, opts in (("dict", self.dict_opts), ("list", self.list_opts), ("str", self.str_opts)):
            if opts is not None:
                out.append(f"{name}({','.join(sorted(opts))})")
        return "+".join(out)


def _canon(name: str) -> str:
    name = name.strip().lower().replace("-", "_")
    # cloud-init looks mergers up as modules named m_<name>, so "m_dict" works as well as "dict"
    return name[2:] if name.startswith("m_") else name


def parse_string(spec: str) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    for raw in spec.split("+"):
        item = raw.strip().lower().replace("-", "_")
        if not item:
            continue
        m = _ITEM.match(item)
        if not m:
            raise MergeSpecError(f"{raw.strip()!r} is not of the form name(option,...)")
        opts = [o.strip().lower() for o in m.group(2).split(",") if o.strip()]
        out.append((_canon(m.group(1)), opts))
    return out


def parse_spec(spec: Any) -> list[tuple[str, list[str]]]:
    """A merge_how / merge_type value (string or list form) -> [(name, options)]."""
    if spec is None:
        return []
    if isinstance(spec, str):
        return parse_string(spec)
    if not isinstance(spec, list):
        raise MergeSpecError(f"expected a string or a list, got {type(spec).__name__}")
    out: list[tuple[str, list[str]]] = []
    for i, item in enumerate(spec):
        if isinstance(item, dict):
            name = item.get("name")
            opts = item.get("settings", [])
        elif isinstance(item, list) and item:
            name, opts = item[0], item[1:]
        else:
            raise MergeSpecError(f"[{i}]: expected {{name: ..., settings: [...]}} or [name, option, ...]")
        if not isinstance(name, str):
            raise MergeSpecError(f"[{i}].name: expected a string")
        if isinstance(opts, str):
            opts = [opts]
        if not isinstance(opts, list) or not all(isinstance(o, str) for o in opts):
            raise MergeSpecError(f"[{i}].settings: expected a list of strings")
        if _canon(name):
            out.append((_canon(name), [o.strip().lower() for o in opts]))
    return out


def build(parsed: list[tuple[str, list[str]]]) -> Policy:
    """First entry per type wins (cloud-init asks its mergers in order)."""
    found: dict[str, frozenset[str]] = {}
    for name, opts in parsed:
        if name not in _KNOWN:
            raise MergeSpecError(f"unknown merger {name!r} (tether knows dict, list and str)")
        found.setdefault(name, frozenset(opts))
    return Policy(found.get("dict"), found.get("list"), found.get("str"))


def policy(spec: str) -> Policy:
    return build(parse_string(spec))


def merge(old: Any, new: Any, pol: Policy) -> Any:
    if isinstance(old, dict):
        return _merge_dict(old, new, pol) if pol.dict_opts is not None else old
    if isinstance(old, list | tuple):
        return _merge_list(list(old), new, pol) if pol.list_opts is not None else old
    if isinstance(old, str):
        return _merge_str(old, new, pol.str_opts) if pol.str_opts is not None else old
    return old


def _recurse_array(opts: frozenset[str]) -> bool:
    return "recurse_array" in opts or "recurse_list" in opts


def _merge_dict(old: dict[str, Any], new: Any, pol: Policy) -> dict[str, Any]:
    if not isinstance(new, dict):
        return old
    opts = pol.dict_opts or frozenset()
    replace = "replace" in opts
    out = dict(old)
    for k, v in new.items():
        if k not in out:
            out[k] = v
        elif v is None and "allow_delete" in opts:
            del out[k]
        elif replace:
            out[k] = v
        elif isinstance(v, dict) or (isinstance(v, list | tuple) and _recurse_array(opts)) or (
                isinstance(v, str) and "recurse_str" in opts):
            out[k] = merge(out[k], v, pol)
        # else: no_replace keeps the earlier value
    return out


def _merge_list(old: list[Any], new: Any, pol: Policy) -> Any:
    opts = pol.list_opts or frozenset()
    method = next((m for m in ("append", "prepend", "replace", "no_replace") if m in opts), "replace")
    if not isinstance(new, list | tuple):
        # cloud-init: replace takes the non-list value; the others would misbehave, so treat it as one item
        if method == "replace":
            return new
        new = [new]
    if method == "append":
        return old + list(new)
    if method == "prepend":
        return list(new) + old
    if method == "no_replace":
        return old
    for i in range(min(len(old), len(new))):
        v = new[i]
        if (isinstance(v, list | tuple) and _recurse_array(opts)) or (
                isinstance(v, str) and "recurse_str" in opts) or (isinstance(v, dict) and "recurse_dict" in opts):
            old[i] = merge(old[i], v, pol)
        else:
            old[i] = v
    return old


def _merge_str(old: str, new: Any, opts: frozenset[str]) -> Any:
    if "append" in opts and isinstance(new, str):
        return old + new
    return new
