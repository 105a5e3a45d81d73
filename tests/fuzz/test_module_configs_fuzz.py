"""Every module's cloud-config section, from any YAML-shaped data: a valid Config or a clear typed error (never
another exception), in bounded time, and no message that quotes a secret-bearing key's value."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.fuzz.strategies import SECRET, SECRET_NUMBER, json_like, keys_of, leaks, shaped, with_secrets
from tests.fuzz.timing import scaled, timed
from tether.convert import SENSITIVE_KEYS, _fields
from tether.errors import TetherError
from tether.modrunner import module_config
from tether.modules import REGISTERED, load

MODULES = {name: load(name) for name in REGISTERED}
TOP = {name: [key for _a, key, _t, _f in _fields(mod.Config)] for name, mod in MODULES.items()}
DEEP = {name: keys_of(mod.Config) for name, mod in MODULES.items()}


def _check(mod: Any, cfg: dict[str, Any]) -> None:
    warnings: list[str] = []
    try:
        out = module_config(mod, cfg, warnings)
    except TetherError as e:
        assert str(e), "an error without a message"
        assert not leaks(str(e)), f"secret in the error: {e}"
    else:
        assert isinstance(out, mod.Config)
    for w in warnings:
        assert not leaks(w), f"secret in a warning: {w}"


@pytest.mark.parametrize("name", sorted(REGISTERED))
@settings(max_examples=scaled(0.4))
@given(data=st.data())
@timed
def test_module_config_from_random_data(name: str, data: st.DataObject) -> None:
    keys = TOP[name]
    if not keys:
        return
    values = json_like(st.sampled_from(DEEP[name] + ["x", "name"]))
    cfg = data.draw(st.dictionaries(st.sampled_from(keys), values, min_size=1, max_size=len(keys)))
    _check(MODULES[name], cfg)


@pytest.mark.parametrize("name", sorted(REGISTERED))
@settings(max_examples=scaled(0.3))
@given(data=st.data())
@example(data=None)
@timed
def test_module_config_never_quotes_a_secret(name: str, data: st.DataObject | None) -> None:
    keys = TOP[name]
    if not keys:
        return
    if data is None:   # the probes: a password as a number, chpasswd.users as a string
        cfg: dict[str, Any] = {k: SECRET_NUMBER if k in SENSITIVE_KEYS else
                               {"password": SECRET_NUMBER, "passwd": 1.5e300, "content": [SECRET],
                                "chpasswd": {"users": SECRET, "list": SECRET}} for k in keys}
    else:
        cfg = data.draw(st.dictionaries(st.sampled_from(keys), with_secrets(DEEP[name] + ["name"]), min_size=1,
                                        max_size=len(keys)))
    _check(MODULES[name], cfg)


@pytest.mark.parametrize("name", sorted(REGISTERED))
@settings(max_examples=scaled(0.4))
@given(data=st.data())
@timed
def test_module_config_from_data_shaped_like_it(name: str, data: st.DataObject) -> None:
    """Mostly the right shape, a wrong value here and there: reaches the checks behind the shape checks."""
    cfg = data.draw(shaped(MODULES[name].Config))
    _check(MODULES[name], cfg)


def test_regression_user_groups_as_a_mapping_of_nulls() -> None:
    """Found by the shaped fuzzer: ``groups: {admins: null}`` (cloud-init's mapping form, ``dict[str, None]``)
    crashed the converter with TypeError("unsupported type None") instead of converting."""
    mod = MODULES["users_groups"]
    assert module_config(mod, {"user": {"groups": {"admins": None}}}, []).user.groups == {"admins": None}
    with pytest.raises(TetherError, match=r"user\.groups\.admins: expected null"):
        module_config(mod, {"user": {"groups": {"admins": 5}}}, [])
