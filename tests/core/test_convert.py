from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from tether.convert import FieldError, convert, json_schema, meta
from tether.errors import ConfigErrors


@dataclass(frozen=True)
class User:
    name: str
    groups: str | tuple[str, ...] = ()
    sudo: str | tuple[str, ...] | bool | None = None
    uid: int | None = None


@dataclass(frozen=True)
class Cfg:
    users: tuple[User | str, ...] = ()
    mode: Literal["auto", "off"] = "auto"


@dataclass(frozen=True)
class Camel:
    CASE = "camel"
    volume_pairs: tuple[str, ...] = ()
    device_id: str = field(default="", metadata=meta(key="deviceId", doc="the device"))


def test_converts_nested_unions() -> None:
    cfg = convert(Cfg, {"users": ["default", {"name": "a", "groups": ["x", "y"], "sudo": False}]})
    assert cfg.users[0] == "default"
    assert cfg.users[1] == User(name="a", groups=("x", "y"), sudo=False)


def test_errors_name_every_path() -> None:
    with pytest.raises(ConfigErrors) as ei:
        convert(Cfg, {"users": [{"name": "a", "uid": "x"}, {"groups": 1}], "mode": "on", "extra": 1})
    msgs = [str(e) for e in ei.value.errors]
    assert "users[0].uid: expected an integer or null, got a string ('x')" in msgs[0] or \
        msgs[0].startswith("users[0].uid: expected an integer")
    assert any(m.startswith("users[1].name: missing required key") for m in msgs)
    assert any(m.startswith("mode: expected one of 'auto', 'off'") for m in msgs)
    assert "extra: unknown key" in msgs


def test_lenient_mode_warns_on_unknown_keys() -> None:
    warnings: list[str] = []
    cfg = convert(Cfg, {"users": [{"name": "a", "colour": "blue"}]}, strict=False, warnings=warnings)
    assert cfg.users[0] == User(name="a")
    assert warnings == ["users[0].colour: unknown key, ignored"]


def test_bool_is_not_an_int() -> None:
    with pytest.raises(ConfigErrors, match="uid"):
        convert(User, {"name": "a", "uid": True})


def test_camel_case_keys_and_schema() -> None:
    assert convert(Camel, {"volumePairs": ["a"], "deviceId": "d"}) == Camel(("a",), "d")
    with pytest.raises(ConfigErrors, match="volume_pairs: unknown key"):
        convert(Camel, {"volume_pairs": []})
    schema = json_schema(Camel)
    (name,) = schema["$defs"]
    props = schema["$defs"][name]["properties"]
    assert set(props) == {"volumePairs", "deviceId"}
    assert props["deviceId"]["description"] == "the device"
    assert schema["$defs"][name]["additionalProperties"] is False


@dataclass(frozen=True)
class Region:
    CASE = "camel"
    start_lba: int
    end_lba: int

    def __post_init__(self) -> None:
        if self.end_lba < self.start_lba:
            raise FieldError("endLba", "before startLba")


def test_a_field_error_names_the_field() -> None:
    with pytest.raises(ConfigErrors) as e:
        convert(tuple[Region, ...], [{"startLba": 1, "endLba": 2}, {"startLba": 9, "endLba": 3}], "regions")
    assert [str(x) for x in e.value.errors] == ["regions[1].endLba: before startLba"]
