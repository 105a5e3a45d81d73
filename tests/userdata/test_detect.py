"""Start-line typing and the JSON patch operations."""

from __future__ import annotations

import pytest

from tether.userdata import detect, jsonpatch


@pytest.mark.parametrize("start,ctype", [
    (b"#cloud-config\n", detect.CLOUD_CONFIG),
    (b"#cloud-config-archive\n", detect.CLOUD_CONFIG_ARCHIVE),
    (b"#cloud-config-jsonp\n", detect.CLOUD_CONFIG_JSONP),
    (b"#include\n", detect.INCLUDE),
    (b"#include-once\n", detect.INCLUDE_ONCE),
    (b"#!/usr/bin/env python3\n", detect.SHELLSCRIPT),
    (b"#cloud-boothook\n", detect.BOOTHOOK),
    (b"## template: jinja\n", detect.JINJA),
    (b"##template:JINJA\r\n", detect.JINJA),
    (b"#part-handler\n", detect.PART_HANDLER),
    (b"#upstart-job\n", detect.UPSTART_JOB),
    (b"\xef\xbb\xbf#cloud-config\n", detect.CLOUD_CONFIG),
    (b"## template: basic\n", None),
    (b"cloud-config\n", None),
    (b"", None),
])
def test_sniff(start: bytes, ctype: str | None) -> None:
    assert detect.sniff(start + b"rest\n") == ctype


def test_looks_like_mime() -> None:
    assert detect.looks_like_mime(b"Content-Type: multipart/mixed; boundary=x\n\n")
    assert detect.looks_like_mime(b"From: a\nMIME-Version: 1.0\n")
    assert not detect.looks_like_mime(b"#cloud-config\nx: 'MIME-Version: 1.0'\n")
    assert not detect.looks_like_mime(b"hello\n")


def test_jsonpatch_operations() -> None:
    doc = {"a": [1, 2], "b": {"c": 1}}
    patch = ('[{"op": "replace", "path": "/a/0", "value": 9}, {"op": "copy", "from": "/b", "path": "/d"},'
             ' {"op": "move", "from": "/b/c", "path": "/e"}, {"op": "test", "path": "/e", "value": 1},'
             ' {"op": "add", "path": "/a/1", "value": 5}, {"op": "add", "path": "/x~1y", "value": 0}]')
    assert jsonpatch.apply(doc, patch) == {"a": [9, 5, 2], "b": {}, "d": {"c": 1}, "e": 1, "x/y": 0}
    assert doc == {"a": [1, 2], "b": {"c": 1}}
    for bad, msg in (('{"op": "add"}', "list of operations"), ('[{"op": "test", "path": "/a", "value": 0}]',
                                                               "test failed"),
                     ('[{"op": "add", "path": "/a/7", "value": 0}]', "out of range"),
                     ('[{"op": "frob", "path": "/a"}]', "unknown op"), ("[", "invalid JSON")):
        with pytest.raises(jsonpatch.PatchError, match=msg):
            jsonpatch.apply(doc, bad)
