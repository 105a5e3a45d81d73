"""Hypothesis strategies shared by the fuzz tests: JSON/YAML-like data, with secrets only where a key says so."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tether.convert import SENSITIVE_KEYS

SECRET = "Hunter2-s3cr3t-XYZZY"
SECRET_NUMBER = 987654321987
TRICKY_TEXT = ["", " ", "~", "-", "0", "1", "yes", "null", "/", "..", "../../etc/passwd", "/etc/shadow", "0644",
               "0o777", "root", "root:root", "1000", "a" * 300, "\x00", "\u202e", "é", "{{ x }}", "$(reboot)",
               "true", "1.2.3.4/24", "::1", "eth0", "00:11:22:33:44:55", "ssh-rsa AAAA", "*", "\n", "--",
               "-1", "1e9", "nan", "inf"]

texts = st.one_of(st.sampled_from(TRICKY_TEXT), st.text(max_size=40))
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), texts)


def json_like(keys: st.SearchStrategy[str] = texts, max_leaves: int = 25) -> st.SearchStrategy[Any]:
    """Any YAML-loaded shape: scalars, lists and mappings nested a few levels, keys drawn from ``keys``."""
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=5)), max_leaves=max_leaves)


secret_leaves = st.sampled_from([SECRET, f"x{SECRET}y", SECRET_NUMBER, float(SECRET_NUMBER), f"$6$salt${SECRET}"])
secret_values = st.recursive(secret_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["name", "password", "list", "users", "x"]), inner,
                                                 max_size=3)), max_leaves=6)


def with_secrets(keys: list[str], max_leaves: int = 25) -> st.SearchStrategy[Any]:
    """Like ``json_like`` with keys from ``keys``, except that a sensitive key's value is made of secrets (any
    shape) and the secrets appear nowhere else: a message that quotes one leaks a secret."""
    pool = st.sampled_from(sorted(set(keys) | {"passwd", "password", "chpasswd", "hashed_passwd", "content"}))

    def mapping(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.dictionaries(pool, inner, max_size=5).flatmap(_secrets_under_sensitive_keys)

    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5), mapping(inner)),
                        max_leaves=max_leaves)


def _secrets_under_sensitive_keys(d: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    sensitive = [k for k in d if k.lower() in SENSITIVE_KEYS]
    if not sensitive:
        return st.just(d)
    return st.tuples(*(secret_values for _ in sensitive)).map(
        lambda vals: {**d, **dict(zip(sensitive, vals, strict=True))})


def leaks(text: str) -> bool:
    return SECRET in text or str(SECRET_NUMBER) in text


NET_TEXT = ["192.0.2.10/24", "192.0.2.1", "10.0.0.0/8", "0.0.0.0/0", "2001:db8::5/64", "2001:db8::1", "fe80::1",
            "::/0", "eth0", "eth1", "bond0", "br0", "vlan10", "en*", "52:54:00:12:34:56", "255.255.255.0", "default",
            "dhcp", "dhcp4", "dhcp6", "static", "static6", "ipv6_slaac", "manual", "1500", "auto"]
shaped_text = st.one_of(texts, st.sampled_from(NET_TEXT))


def _keys_of(tp: Any, seen: set[Any]) -> set[str]:
    import dataclasses
    import types
    from typing import Union, get_args, get_origin

    from tether.convert import _fields
    if tp in seen:
        return set()
    seen.add(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        out: set[str] = set()
        for _attr, key, hint, _f in _fields(tp):
            out |= {key} | _keys_of(hint, seen)
        return out
    if get_origin(tp) in (Union, types.UnionType, list, tuple, dict) and get_args(tp):
        return set().union(*(_keys_of(a, seen) for a in get_args(tp)))
    return set()


def keys_of(tp: Any) -> list[str]:
    """Every key a Config dataclass reads, at any depth (so random data reaches nested sections)."""
    return sorted(_keys_of(tp, set()))


def shaped(tp: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Data shaped like ``tp`` (a typed Config), with a random value here and there: reaches the checks that run
    after the shape is right, which fully random data rarely does."""
    import dataclasses
    import types
    from typing import Literal, Union, get_args, get_origin

    from tether.convert import _fields
    origin, args = get_origin(tp), get_args(tp)
    noise = json_like(max_leaves=4)
    if depth > 4:
        return scalars
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        fields = _fields(tp)
        entries = {key: shaped(hint, depth + 1) for _a, key, hint, _f in fields}
        return st.fixed_dictionaries({}, optional=entries).flatmap(
            lambda d: st.one_of(st.just(d), noise.map(lambda n: {**d, "x-extra": n})) if depth else st.just(d))
    if origin is Literal:
        base: st.SearchStrategy[Any] = st.sampled_from(args)
    elif origin in (Union, types.UnionType):
        base = st.one_of(*(shaped(a, depth) for a in args))
    elif origin in (list, tuple):
        inner = [a for a in args if a is not Ellipsis]
        base = st.lists(shaped(inner[0], depth + 1) if inner else noise, max_size=4)
    elif origin is dict or tp is dict:
        val = shaped(args[1], depth + 1) if len(args) == 2 else noise
        base = st.dictionaries(shaped_text, val, max_size=3)
    elif tp is bool:
        base = st.booleans()
    elif tp is int:
        base = st.one_of(st.integers(min_value=-5, max_value=70000), st.integers())
    elif tp is float:
        base = st.floats()
    elif tp is str:
        base = shaped_text
    elif tp is type(None):
        base = st.none()
    else:
        base = noise
    return st.one_of(base, base, base, noise) if depth else base
