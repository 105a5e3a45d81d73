"""``#cloud-config-jsonp``: an RFC 6902 JSON patch applied to the cloud-config merged so far."""

from __future__ import annotations

import copy
import json
from typing import Any

from tether.yamlsafe import MAX_EXPANDED_BYTES, MAX_EXPANDED_NODES, expanded_size


class PatchError(ValueError):
    pass


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"path {pointer!r} must start with '/'")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(container: list[Any], token: str, *, for_add: bool) -> int:
    if for_add and token == "-":
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"{token!r} is not a list index")
    i = int(token)
    if i > len(container) or (i == len(container) and not for_add):
        raise PatchError(f"index {i} is out of range")
    return i


def _parent(doc: Any, tokens: list[str]) -> Any:
    cur = doc
    for t in tokens[:-1]:
        if isinstance(cur, dict):
            if t not in cur:
                raise PatchError(f"no member {t!r}")
            cur = cur[t]
        elif isinstance(cur, list):
            cur = cur[_index(cur, t, for_add=False)]
        else:
            raise PatchError(f"cannot descend into a {type(cur).__name__} at {t!r}")
    return cur


def _get(doc: Any, pointer: str) -> Any:
    tokens = _tokens(pointer)
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"no member at {pointer!r}")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, for_add=False)]
    raise PatchError(f"nothing at {pointer!r}")


def _add(doc: Any, pointer: str, value: Any) -> Any:
    tokens = _tokens(pointer)
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, for_add=True), value)
    else:
        raise PatchError(f"cannot add into a {type(parent).__name__} at {pointer!r}")
    return doc


def _remove(doc: Any, pointer: str) -> Any:
    tokens = _tokens(pointer)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"no member at {pointer!r}")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(parent, last, for_add=False)]
    else:
        raise PatchError(f"nothing at {pointer!r}")
    return doc


def apply(doc: dict[str, Any], text: str) -> Any:
    """Apply the patch in ``text`` (a JSON list of operations) to a copy of ``doc``."""
    try:
        ops = json.loads(text)
    except ValueError as e:
        raise PatchError(f"invalid JSON: {e}") from None
    except RecursionError:
        raise PatchError("invalid JSON: nested too deeply") from None
    if not isinstance(ops, list):
        raise PatchError("a JSON patch is a list of operations")
    out: Any = copy.deepcopy(doc)
    # copies are counted as they are made, so a patch that copies a list into itself 40 times stops at the
    # bound YAML documents have, instead of doubling the document until memory runs out
    grown = [0, 0]
    for i, op in enumerate(ops):
        if not isinstance(op, dict) or not isinstance(op.get("op"), str) or not isinstance(op.get("path"), str):
            raise PatchError(f"operation {i}: needs string 'op' and 'path'")
        kind, path = op["op"], op["path"]
        try:
            if kind in ("add", "replace") and "value" in op:
                _count(grown, op["value"])
            if kind == "add":
                out = _add(out, path, copy.deepcopy(op["value"]))
            elif kind == "remove":
                out = _remove(out, path)
            elif kind == "replace":
                _get(out, path)
                out = _add(_remove(out, path), path, copy.deepcopy(op["value"])) if _tokens(path) \
                    else copy.deepcopy(op["value"])
            elif kind in ("move", "copy"):
                if not isinstance(op.get("from"), str):
                    raise PatchError("needs a string 'from'")
                value = _get(out, op["from"])
                _count(grown, value)
                value = copy.deepcopy(value)
                if kind == "move":
                    out = _remove(out, op["from"])
                out = _add(out, path, value)
            elif kind == "test":
                if _get(out, path) != op["value"]:
                    raise PatchError(f"test failed at {path!r}")
            else:
                raise PatchError(f"unknown op {kind!r}")
        except KeyError as e:
            raise PatchError(f"operation {i} ({kind}): missing {e}") from None
        except PatchError as e:
            raise PatchError(f"operation {i} ({kind}): {e}") from None
    return out


def _count(grown: list[int], value: Any) -> None:
    """Add an added or copied value's expanded size to the patch's running total; past the bounds (or nested
    deeper than YAML may be), refuse."""
    try:
        nodes, chars = expanded_size(value)
    except ValueError as e:  # nested too deeply
        raise PatchError(str(e)) from None
    grown[0] += nodes
    grown[1] += chars
    if grown[0] > MAX_EXPANDED_NODES or grown[1] > MAX_EXPANDED_BYTES:
        raise PatchError(f"the copies would grow the configuration past {MAX_EXPANDED_NODES} nodes or "
                         f"{MAX_EXPANDED_BYTES >> 20} MiB of text (a copy bomb?)")
