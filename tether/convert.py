"""Turn YAML data into frozen dataclasses, with path-qualified errors, and JSON Schema from the same types.

Conventions a dataclass can use:
- ``field(metadata=meta(key="volumePairs", doc="...", deprecated="use X"))``
- class attribute ``CASE = "camel"``: every field's key is its name in camelCase unless ``key`` says otherwise.
- classmethod ``normalize(value)`` runs before conversion (e.g. a user given as a string).
- ``__post_init__`` raising ``ValueError`` becomes an error at that object's path.
- class attribute ``OPEN = True``: unknown keys are kept in ``extra`` (a ``dict`` field) instead of rejected.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from tether.errors import ConfigError, ConfigErrors

T = TypeVar("T")
_NoneType = type(None)


def meta(key: str | None = None, doc: str = "", deprecated: str = "", sensitive: bool = False) -> dict[str, Any]:
    return {"key": key, "doc": doc, "deprecated": deprecated, "sensitive": sensitive}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, str, Any, dataclasses.Field[Any]], ...]:
    """(attribute, key, type, field) for each init field of a dataclass."""
    hints = get_type_hints(cls)
    camel = getattr(cls, "CASE", "") == "camel"
    out = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name == "extra" and getattr(cls, "OPEN", False):
            continue
        key = f.metadata.get("key") or (_camel(f.name) if camel else f.name)
        out.append((f.name, key, hints[f.name], f))
    return tuple(out)


def _tname(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is Any:
        return "anything"
    if tp is _NoneType:
        return "null"
    if tp is str:
        return "a string"
    if tp is bytes:
        return "binary data"
    if tp is bool:
        return "a boolean"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_tname(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        if not args:
            return "a list"
        inner = args[0]
        if get_origin(inner) in (Union, types.UnionType):
            names = [_plural(_tname(a)) for a in get_args(inner)]
            return "a list of " + (", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0])
        return f"a list of {_plural(_tname(inner))}"
    if origin in (dict, Mapping) or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _plural(s: str) -> str:
    if s == "null":
        return "nulls"
    for art in ("a ", "an "):
        if s.startswith(art):
            s = s[len(art):]
            if s.startswith("list of "):
                return "lists of " + s[len("list of "):]
            return s if s.endswith("s") else s + "s"
    return s


def _describe(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return f"a number ({v!r})"
    if isinstance(v, str):
        short = v if len(v) <= 30 else v[:27] + "..."
        return f"a string ({short!r})"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return type(v).__name__


class Converter:
    def __init__(self, strict: bool = True) -> None:
        self.strict = strict
        self.errors: list[ConfigError] = []
        self.warnings: list[str] = []

    def err(self, path: str, msg: str) -> None:
        self.errors.append(ConfigError(path or "(top)", msg))

    def convert(self, tp: Any, value: Any, path: str) -> Any:
        origin = get_origin(tp)
        if tp is Any:
            return value
        if origin in (Union, types.UnionType):
            return self._union(tp, value, path)
        if origin is Literal:
            if value in get_args(tp) and not (isinstance(value, bool) and True not in get_args(tp)
                                               and False not in get_args(tp)):
                return value
            self.err(path, f"expected {_tname(tp)}, got {_describe(value)}")
            return None
        if tp is _NoneType:
            if value is None:
                return None
            self.err(path, f"expected null, got {_describe(value)}")
            return None
        if tp is bool:
            if isinstance(value, bool):
                return value
            self.err(path, f"expected a boolean, got {_describe(value)}")
            return None
        if tp is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            self.err(path, f"expected an integer, got {_describe(value)}")
            return None
        if tp is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            self.err(path, f"expected a number, got {_describe(value)}")
            return None
        if tp is str:
            if isinstance(value, str):
                return value
            self.err(path, f"expected a string, got {_describe(value)}")
            return None
        if tp is bytes:
            if isinstance(value, bytes):
                return value
            self.err(path, f"expected binary data, got {_describe(value)}")
            return None
        if origin in (list, tuple):
            args = [a for a in get_args(tp) if a is not Ellipsis]
            inner = args[0] if args else Any
            if not isinstance(value, list):
                self.err(path, f"expected {_tname(tp)}, got {_describe(value)}")
                return None
            return tuple(self.convert(inner, v, f"{path}[{i}]") for i, v in enumerate(value))
        if origin in (dict, Mapping) or tp is dict:
            kv = get_args(tp)
            vt = kv[1] if len(kv) == 2 else Any
            if not isinstance(value, dict):
                self.err(path, f"expected a mapping, got {_describe(value)}")
                return None
            return {str(k): self.convert(vt, v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return self._dataclass(tp, value, path)
        raise TypeError(f"convert: unsupported type {tp!r}")

    def _union(self, tp: Any, value: Any, path: str) -> Any:
        args = get_args(tp)
        if value is None and _NoneType in args:
            return None
        # Try the member whose shape matches first, so errors point inside the right alternative.
        ranked = sorted(args, key=lambda a: 0 if _shape_matches(a, value) else 1)
        first_errors: list[ConfigError] | None = None
        for a in ranked:
            sub = Converter(self.strict)
            out = sub.convert(a, value, path)
            if not sub.errors:
                self.warnings.extend(sub.warnings)
                return out
            if first_errors is None and _shape_matches(a, value):
                first_errors = sub.errors
        if first_errors:
            self.errors.extend(first_errors)
        else:
            self.err(path, f"expected {_tname(tp)}, got {_describe(value)}")
        return None

    def _dataclass(self, cls: type, value: Any, path: str) -> Any:
        norm = getattr(cls, "normalize", None)
        if norm is not None:
            try:
                value = norm(value)
            except ValueError as e:
                self.err(path, str(e))
                return None
        if not isinstance(value, dict):
            self.err(path, f"expected a mapping, got {_describe(value)}")
            return None
        kwargs: dict[str, Any] = {}
        known = set()
        ok = True
        for attr, key, ftype, f in _fields(cls):
            known.add(key)
            sub = f"{path}.{key}" if path else key
            if key in value:
                before = len(self.errors)
                kwargs[attr] = self.convert(ftype, value[key], sub)
                if len(self.errors) > before:
                    ok = False
                if f.metadata.get("deprecated"):
                    self.warnings.append(f"{sub}: deprecated, {f.metadata['deprecated']}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                self.err(sub, "missing required key")
                ok = False
        extra = {k: v for k, v in value.items() if str(k) not in known}
        if extra:
            if getattr(cls, "OPEN", False):
                kwargs["extra"] = extra
            else:
                for k in extra:
                    sub = f"{path}.{k}" if path else str(k)
                    if self.strict:
                        self.err(sub, "unknown key")
                    else:
                        self.warnings.append(f"{sub}: unknown key, ignored")
        if not ok:
            return None
        try:
            return cls(**kwargs)
        except ValueError as e:
            self.err(path, str(e))
            return None


def _shape_matches(tp: Any, value: Any) -> bool:
    origin = get_origin(tp)
    if tp is Any:
        return True
    if origin is Literal:
        return value in get_args(tp)
    if origin in (list, tuple):
        return isinstance(value, list)
    if origin in (dict, Mapping) or tp is dict or dataclasses.is_dataclass(tp):
        return isinstance(value, dict)
    if tp is bool:
        return isinstance(value, bool)
    if tp in (int, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp is bytes:
        return isinstance(value, bytes)
    if tp is _NoneType:
        return value is None
    if origin in (Union, types.UnionType):
        return any(_shape_matches(a, value) for a in get_args(tp))
    return False


def convert(tp: type[T], value: Any, path: str = "", strict: bool = True,
            warnings: list[str] | None = None) -> T:
    """Convert ``value`` to ``tp`` or raise ``ConfigErrors`` listing every problem with its path."""
    c = Converter(strict)
    out = c.convert(tp, value, path)
    if warnings is not None:
        warnings.extend(c.warnings)
    if c.errors:
        raise ConfigErrors(c.errors)
    return typing.cast(T, out)


def json_schema(tp: Any, defs: dict[str, Any] | None = None) -> dict[str, Any]:
    """JSON Schema (draft 2020-12 subset) for a type, sharing nested dataclasses under ``$defs``."""
    top = defs is None
    defs = {} if defs is None else defs
    origin = get_origin(tp)
    out: dict[str, Any]
    if tp is Any:
        out = {}
    elif tp is _NoneType:
        out = {"type": "null"}
    elif tp is bool:
        out = {"type": "boolean"}
    elif tp is int:
        out = {"type": "integer"}
    elif tp is float:
        out = {"type": "number"}
    elif tp is str:
        out = {"type": "string"}
    elif tp is bytes:
        out = {"type": "string", "contentEncoding": "base64"}
    elif origin is Literal:
        out = {"enum": list(get_args(tp))}
    elif origin in (Union, types.UnionType):
        out = {"anyOf": [json_schema(a, defs) for a in get_args(tp)]}
    elif origin in (list, tuple):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        out = {"type": "array", "items": json_schema(args[0], defs) if args else {}}
    elif origin in (dict, Mapping) or tp is dict:
        kv = get_args(tp)
        out = {"type": "object", "additionalProperties": json_schema(kv[1], defs) if len(kv) == 2 else {}}
    elif isinstance(tp, type) and dataclasses.is_dataclass(tp):
        name = f"{tp.__module__.rsplit('.', 1)[-1]}.{tp.__qualname__}".replace(".", "_")
        if name not in defs:
            defs[name] = {}
            props: dict[str, Any] = {}
            required = []
            for _attr, key, ftype, f in _fields(tp):
                s = json_schema(ftype, defs)
                if f.metadata.get("doc"):
                    s = {**s, "description": f.metadata["doc"]}
                if f.metadata.get("deprecated"):
                    s = {**s, "deprecated": True}
                props[key] = s
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    required.append(key)
            d: dict[str, Any] = {"type": "object", "properties": props,
                                 "additionalProperties": bool(getattr(tp, "OPEN", False))}
            if required:
                d["required"] = required
            if tp.__doc__ and not tp.__doc__.startswith(tp.__name__ + "("):
                d["description"] = tp.__doc__.strip()
            defs[name] = d
        out = {"$ref": f"#/$defs/{name}"}
    else:
        out = {}
    if top and defs:
        out = {**out, "$defs": defs}
    return out
