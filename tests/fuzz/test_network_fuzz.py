"""Network config v1 and v2 (tether/network/): any document parses to a model or fails with ConfigErrors (never
another exception), and a parsed model renders to systemd-networkd files."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz.strategies import json_like, keys_of, shaped, shaped_text
from tests.fuzz.timing import timed
from tether.errors import TetherError
from tether.network.networkd import link_files, networkd_files
from tether.network.parse import parse_config
from tether.network.v1 import V1Bond, V1Bridge, V1Nameserver, V1Physical, V1Route, V1Vlan
from tether.network.v2 import V2Network

V1_TYPES = (V1Physical, V1Bond, V1Bridge, V1Vlan, V1Route, V1Nameserver)
V1_KEYS = sorted(set().union(*(keys_of(t) for t in V1_TYPES)))
V2_KEYS = keys_of(V2Network)


def _check(doc: Any) -> None:
    try:
        model = parse_config(doc, "network-config")
    except TetherError as e:
        assert str(e)
        return
    files = networkd_files(model)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
    link_files(model)


@given(doc=json_like(st.sampled_from([*V1_KEYS, *V2_KEYS, "network", "version", "config", "ethernets"])))
@example(doc={"network": {"version": 2, "ethernets": None}})
@timed
def test_any_document(doc: Any) -> None:
    _check(doc)


@given(version=st.sampled_from([1, 2]), body=json_like(st.sampled_from([*V1_KEYS, *V2_KEYS])))
@timed
def test_any_body_under_a_version(version: int, body: Any) -> None:
    _check({**body, "version": version} if isinstance(body, dict) else {"version": version, "config": body})


@given(config=st.lists(st.one_of(*(shaped(t) for t in V1_TYPES)), max_size=5))
@timed
def test_v1_shaped(config: list[Any]) -> None:
    _check({"version": 1, "config": config})


@given(doc=shaped(V2Network), names=st.lists(shaped_text, max_size=3))
@timed
def test_v2_shaped(doc: dict[str, Any], names: list[str]) -> None:
    _check({**doc, "version": 2})
