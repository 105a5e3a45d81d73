"""Turn YAML data into frozen dataclasses, with path-qualified errors, and JSON Schema from the same types.

Conventions a dataclass can use:
- ``field(metadata=meta(key="volumePairs", doc="...", deprecated="use X"))``
- class attribute ``CASE = "camel"``: every field's key is its name in camelCase unless ``key`` says otherwise.
- classmethod ``normalize(value)`` runs before conversion (e.g. a user given as a string).
- ``__post_init__`` raising ``ValueError`` becomes an error at that object's path.
  ``FieldError(key, message)`` (a ``ValueError``) puts it at that field's path instead.
- class attribute ``OPEN = True``: unknown keys are kept in ``extra`` (a ``dict`` field) instead of rejected.
- ``meta(skip_invalid=True)`` on a list field: in lenient conversion an invalid item is dropped with a warning
  naming its index, and the valid items are kept (``write_files[1]``, not the whole list).

Secrets: a field marked ``meta(sensitive=True)``, or any key named in ``SENSITIVE_KEYS``, makes its whole value
secret: messages about it say what type it is, never what it holds (the messages land in status.json and
result.json, which are world-readable, and in the log).
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
REDACTED = "<redacted>"
# Keys whose values are secret wherever they appear (cloud-config's password, key and token settings), on top of
# the fields marked sensitive; everything under one of them is secret too (all of ``chpasswd``).
SENSITIVE_KEYS = frozenset({
    "password", "passwd", "hashed_passwd", "hashed-passwd", "plain_text_passwd", "plain-text-passwd", "chpasswd",
    "ssh_keys", "token", "registration_key", "activation-key", "activation_key", "validation_key",
    "validation_cert", "encrypted_data_bag_secret", "http_proxy", "https_proxy", "ftp_proxy", "proxy",
    "content", "headers",
})


def meta(key: str | None = None, doc: str = "", deprecated: str = "", sensitive: bool = False,
         skip_invalid: bool = False) -> dict[str, Any]:
    return {"key": key, "doc": doc, "deprecated": deprecated, "sensitive": sensitive, "skip_invalid": skip_invalid}


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


def _describe(v: Any, secret: bool = False) -> str:
    """What ``v`` is, for an error message; a secret value is named by its type only."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number" if secret else f"a number ({v!r})"
    if isinstance(v, str):
        if secret:
            return "a string (value not shown: secret)"
        short = v if len(v) <= 30 else v[:27] + "..."
        return f"a string ({short!r})"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return type(v).__name__


def _is_sensitive_key(key: object) -> bool:
    return isinstance(key, str) and key.lower() in SENSITIVE_KEYS


def _leaves(value: Any, secret: bool, depth: int = 0) -> list[str]:
    """The text of every scalar in ``value`` that is secret (all of them when ``secret``)."""
    out: list[str] = []
    if depth > 50:
        return out
    if isinstance(value, dict):
        for k, v in value.items():
            out += _leaves(v, secret or _is_sensitive_key(k), depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            out += _leaves(v, secret, depth + 1)
    elif secret and value is not None and not isinstance(value, bool):
        out.append(str(value))
    return out


def scrub(message: str, secrets: list[str]) -> str:
    """``message`` without the secrets it may quote: a quoted one always, a bare one of 4 characters or more."""
    for s in sorted(set(secrets), key=len, reverse=True):
        message = message.replace(repr(s), REDACTED).replace(f'"{s}"', REDACTED)
        if len(s) >= 4:
            message = message.replace(s, REDACTED)
    return message


class FieldError(ValueError):
    """A ``normalize``/``__post_init__`` problem with one field: reported at ``<object's path>.<key>``."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class Converter:
    def __init__(self, strict: bool = True, secret: bool = False) -> None:
        self.strict = strict
        self.secret = secret  # converting a secret value: messages never show what it holds
        self.errors: list[ConfigError] = []
        self.warnings: list[str] = []

    def err(self, path: str, msg: str) -> None:
        self.errors.append(ConfigError(path or "(top)", msg))

    def _got(self, value: Any) -> str:
        return _describe(value, self.secret)

    def _secret_convert(self, secret: bool, tp: Any, value: Any, path: str) -> Any:
        """Convert ``value``, treating it as secret when ``secret`` (and always inside a secret)."""
        outer = self.secret
        self.secret = outer or secret
        try:
            return self.convert(tp, value, path)
        finally:
            self.secret = outer

    def _value_error(self, path: str, e: ValueError, cls: type, value: Any) -> None:
        """A ``normalize``/``__post_init__`` message, without the secrets of the value it was about."""
        hidden = _leaves(value, self.secret)
        if isinstance(value, dict):
            for _attr, key, _t, f in _fields(cls):
                if f.metadata.get("sensitive") and key in value:
                    hidden += _leaves(value[key], True)
        if isinstance(e, FieldError):
            path = f"{path}.{e.key}" if path else e.key
        self.err(path, scrub(str(e), hidden))

    def convert(self, tp: Any, value: Any, path: str) -> Any:
        if tp is None:  # ``None`` as a type argument (``dict[str, None]``) is NoneType
            tp = _NoneType
        origin = get_origin(tp)
        if tp is Any:
            return value
        if origin in (Union, types.UnionType):
            return self._union(tp, value, path)
        if origin is Literal:
            if value in get_args(tp) and not (isinstance(value, bool) and True not in get_args(tp)
                                               and False not in get_args(tp)):
                return value
            self.err(path, f"expected {_tname(tp)}, got {self._got(value)}")
            return None
        if tp is _NoneType:
            if value is None:
                return None
            self.err(path, f"expected null, got {self._got(value)}")
            return None
        if tp is bool:
            if isinstance(value, bool):
                return value
            self.err(path, f"expected a boolean, got {self._got(value)}")
            return None
        if tp is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            self.err(path, f"expected an integer, got {self._got(value)}")
            return None
        if tp is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            self.err(path, f"expected a number, got {self._got(value)}")
            return None
        if tp is str:
            if isinstance(value, str):
                return value
            self.err(path, f"expected a string, got {self._got(value)}")
            return None
        if tp is bytes:
            if isinstance(value, bytes):
                return value
            self.err(path, f"expected binary data, got {self._got(value)}")
            return None
        if origin in (list, tuple):
            args = [a for a in get_args(tp) if a is not Ellipsis]
            inner = args[0] if args else Any
            if not isinstance(value, list):
                self.err(path, f"expected {_tname(tp)}, got {self._got(value)}")
                return None
            return tuple(self.convert(inner, v, f"{path}[{i}]") for i, v in enumerate(value))
        if origin in (dict, Mapping) or tp is dict:
            kv = get_args(tp)
            vt = kv[1] if len(kv) == 2 else Any
            if not isinstance(value, dict):
                self.err(path, f"expected a mapping, got {self._got(value)}")
                return None
            return {str(k): self._secret_convert(_is_sensitive_key(k), vt, v, f"{path}.{k}" if path else str(k))
                    for k, v in value.items()}
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
            sub = Converter(self.strict, self.secret)
            out = sub.convert(a, value, path)
            if not sub.errors:
                self.warnings.extend(sub.warnings)
                return out
            if first_errors is None and _shape_matches(a, value):
                first_errors = sub.errors
        if first_errors:
            self.errors.extend(first_errors)
        else:
            self.err(path, f"expected {_tname(tp)}, got {self._got(value)}")
        return None

    def _dataclass(self, cls: type, value: Any, path: str) -> Any:
        norm = getattr(cls, "normalize", None)
        if norm is not None:
            try:
                value = norm(value)
            except ValueError as e:
                self._value_error(path, e, cls, value)
                return None
        if not isinstance(value, dict):
            self.err(path, f"expected a mapping, got {self._got(value)}")
            return None
        kwargs: dict[str, Any] = {}
        known = set()
        ok = True
        for attr, key, ftype, f in _fields(cls):
            known.add(key)
            sub = f"{path}.{key}" if path else key
            if key in value:
                before = len(self.errors)
                secret = bool(f.metadata.get("sensitive")) or _is_sensitive_key(key)
                if f.metadata.get("skip_invalid") and not self.strict and isinstance(value[key], list):
                    kwargs[attr] = self._valid_items(ftype, value[key], sub, secret)
                else:
                    kwargs[attr] = self._secret_convert(secret, ftype, value[key], sub)
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
            self._value_error(path, e, cls, value)
            return None

    def _valid_items(self, tp: Any, items: list[Any], path: str, secret: bool) -> Any:
        """The items of a list that convert; each one that does not is a warning naming its index."""
        args = [a for a in get_args(tp) if a is not Ellipsis]
        inner = args[0] if args else Any
        kept = []
        for i, item in enumerate(items):
            sub = Converter(self.strict, self.secret or secret)
            out = sub.convert(inner, item, f"{path}[{i}]")
            self.warnings.extend(sub.warnings)
            if sub.errors:
                self.warnings.extend(f"{e}; this entry is skipped, the others are applied" for e in sub.errors)
            else:
                kept.append(out)
        return tuple(kept) if get_origin(tp) is tuple else kept


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
