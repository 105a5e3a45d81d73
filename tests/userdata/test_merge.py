"""merge_how / merge_type semantics, one option at a time."""

from __future__ import annotations

from typing import Any

import pytest

from tether.userdata import merge


def m(old: Any, new: Any, spec: str) -> Any:
    return merge.merge(old, new, merge.policy(spec))


def test_dict_replace_and_no_replace() -> None:
    assert m({"a": 1, "b": {"x": 1}}, {"a": 2, "b": {"y": 2}}, "dict(replace)") == {"a": 2, "b": {"y": 2}}
    # no_replace keeps earlier scalars but always merges nested dicts
    assert m({"a": 1, "b": {"x": 1}}, {"a": 2, "b": {"y": 2}, "c": 3}, "dict(no_replace)") == \
        {"a": 1, "b": {"x": 1, "y": 2}, "c": 3}
    assert m({"a": 1}, {"a": 2}, "dict()") == {"a": 1}


def test_dict_recurse_array_and_recurse_list_alias() -> None:
    for opt in ("recurse_array", "recurse_list"):
        assert m({"r": ["a"]}, {"r": ["b"]}, f"dict({opt})+list(append)") == {"r": ["a", "b"]}
    assert m({"r": ["a"]}, {"r": ["b"]}, "dict()+list(append)") == {"r": ["a"]}


def test_dict_recurse_str() -> None:
    assert m({"s": "ab"}, {"s": "cd"}, "dict(recurse_str)+str(append)") == {"s": "abcd"}
    assert m({"s": "ab"}, {"s": "cd"}, "dict(recurse_str)+str()") == {"s": "cd"}


def test_dict_allow_delete() -> None:
    assert m({"a": 1, "b": 2}, {"a": None}, "dict(allow_delete,no_replace)") == {"b": 2}
    assert m({"a": 1, "b": 2}, {"a": None}, "dict(replace)") == {"a": None, "b": 2}


def test_list_methods() -> None:
    assert m(["a", "b"], ["c"], "list(append)") == ["a", "b", "c"]
    assert m(["a", "b"], ["c"], "list(prepend)") == ["c", "a", "b"]
    assert m(["a", "b"], ["c"], "list(no_replace)") == ["a", "b"]
    # replace (the default) overwrites index by index and keeps the earlier tail
    assert m(["a", "b"], ["c"], "list()") == ["c", "b"]
    assert m(["a"], ["c", "d"], "list(replace)") == ["c"]
    assert m(["a"], "x", "list()") == "x"


def test_list_recursion_into_items() -> None:
    assert m([["a"], "s", {"k": 1}], [["b"], "t", {"j": 2}], "list(recurse_array,recurse_str,recurse_dict)+"
             "dict(no_replace)+str(append)") == [["ab"], "st", {"k": 1, "j": 2}]


def test_types_without_merger_keep_the_earlier_value() -> None:
    assert m({"a": 1}, {"b": 2}, "list(append)") == {"a": 1}
    assert m(1, 2, "dict()+list()+str()") == 1
    assert m({"a": 1}, "not a dict", "dict(replace)") == {"a": 1}


def test_spec_parsing() -> None:
    assert merge.parse_string(" Dict(Replace, recurse-list) + LIST() ") == [("dict", ["replace", "recurse_list"]),
                                                                           ("list", [])]
    assert merge.parse_spec([{"name": "list", "settings": ["append"]}, ["dict", "no_replace"]]) == \
        [("list", ["append"]), ("dict", ["no_replace"])]
    assert merge.parse_spec("m_dict(replace)") == [("dict", ["replace"])]
    for bad in ("dict(", "1x()", "dict"):
        with pytest.raises(merge.MergeSpecError):
            merge.parse_string(bad)
    with pytest.raises(merge.MergeSpecError, match="unknown merger 'tuple'"):
        merge.build(merge.parse_string("tuple()"))
    with pytest.raises(merge.MergeSpecError):
        merge.parse_spec(42)


def test_first_spec_per_type_wins() -> None:
    pol = merge.build(merge.parse_string("list(append)+list(prepend)"))
    assert pol.list_opts == frozenset({"append"})


def test_merge_does_not_change_its_inputs() -> None:
    old = {"a": {"x": [1]}}
    new = {"a": {"x": [2]}}
    out = m(old, new, "dict(recurse_array)+list(append)")
    assert out == {"a": {"x": [1, 2]}} and old == {"a": {"x": [1]}} and new == {"a": {"x": [2]}}


def test_merge_how_in_the_part_is_removed_and_applied() -> None:
    from tests.userdata.helpers import mime, run
    data = mime(("text/cloud-config", "#cloud-config\nruncmd: [a]\n"),
                ("text/cloud-config", "#cloud-config\nruncmd: [b]\nmerge_how:\n - name: list\n   settings: [append]\n"
                                      " - name: dict\n   settings: [no_replace, recurse_list]\n"))
    r = run(data)
    assert r.cloud_config == {"runcmd": ["a", "b"]} and r.errors == []


def test_bad_merge_how_is_an_error_and_the_part_still_merges() -> None:
    from tests.userdata.helpers import run
    r = run(b"#cloud-config\nmerge_how: 'dict(replace'\na: 1\n")
    assert r.cloud_config == {"a": 1}
    assert r.errors == ["user-data part 1 (cloud-config): merge_how: 'dict(replace' is not of the form "
                        "name(option,...); ignored"]


def test_merge_how_without_dict_merger_warns() -> None:
    from tests.userdata.helpers import run
    r = run(b"#cloud-config\nmerge_how: 'list(append)'\na: 1\n")
    assert r.cloud_config == {}
    assert len(r.warnings) == 1 and "has no dict() merger" in r.warnings[0]
