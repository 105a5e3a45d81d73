"""The user-data pipeline (tether/userdata/): any user-data and vendor-data (raw bytes, gzip, MIME multipart,
``#include`` lists served without a network, jinja templates, cloud-config with ``merge_how``, archives, JSON
patches) is processed without an exception (problems are warnings and errors, by part), in bounded time, with a
dict as the merged cloud-config, and no message quoting a part's content."""

from __future__ import annotations

import base64
import gzip
import json
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from typing import Any

import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.fuzz.strategies import SECRET, json_like, leaks
from tests.fuzz.timing import scaled, timed
from tether.errors import TetherError
from tether.userdata import merge, process

INSTANCE = {"ds": {"meta_data": {"instance-id": "iid-1", "local-hostname": "h1"}}, "merged_cfg": {},
            "v1": {"instance_id": "iid-1", "local_hostname": "h1", "platform": "nocloud", "region": None}}
URLS = [f"http://198.51.100.7/part{i}" for i in range(4)]
CFG_KEYS = ["runcmd", "packages", "users", "write_files", "hostname", "bootcmd", "ssh_authorized_keys", "chpasswd",
            "password", "merge_how", "merge_type", "ntp", "apt", "x"]
MERGE_NAMES = ["list", "dict", "str", "bogus", ""]
MERGE_OPTS = ["append", "prepend", "replace", "no_replace", "recurse_dict", "recurse_list", "recurse_array",
              "recurse_str", "allow_delete", "x", ""]
merge_specs = st.one_of(
    st.lists(st.tuples(st.sampled_from(MERGE_NAMES), st.lists(st.sampled_from(MERGE_OPTS), max_size=3)),
             max_size=4).map(lambda items: "+".join(f"{n}({','.join(o)})" for n, o in items)),
    st.lists(st.fixed_dictionaries({"name": st.sampled_from(MERGE_NAMES),
                                    "settings": st.lists(st.sampled_from(MERGE_OPTS), max_size=3)}), max_size=3),
    json_like(max_leaves=5))
JINJA = ["{{ v1.local_hostname }}", "{{ ds.meta_data['instance-id'] }}", "{{ nothing.here }}", "{{ 2 ** 64 }}",
         "{% for i in range(3) %}{{ i }}{% endfor %}", "{{ '%s-%s' % (1, 2) }}", "{{", "{% if %}", "{{ v1 | tojson }}",
         "{{ 'x' * 1000 }}", "{% set a = 1 %}{{ a + 1 }}", "{{ ''.__class__ }}", "{{ range(10) | list }}", "}}"]


def cloud_config() -> st.SearchStrategy[str]:
    body = st.dictionaries(st.sampled_from(CFG_KEYS), json_like(max_leaves=8), max_size=5)
    return st.tuples(body, st.one_of(st.none(), merge_specs)).map(
        lambda t: "#cloud-config\n" + yaml.safe_dump({**t[0], **({"merge_how": t[1]} if t[1] is not None else {})}))


parts = st.one_of(
    cloud_config(),
    st.just(f"#cloud-config\nchpasswd:\n  users: {SECRET}\npassword: {SECRET}\n"),
    st.just("#!/bin/sh\necho hi\n"),
    st.just("#cloud-boothook\n#!/bin/sh\necho boot\n"),
    st.lists(st.sampled_from([*URLS, "http://192.0.2.1/missing", "file:///etc/shadow", "not a url", ""]),
             max_size=4).map(lambda urls: "#include\n" + "\n".join(urls) + "\n"),
    st.lists(st.sampled_from(JINJA), min_size=1, max_size=3).map(
        lambda snips: "## template: jinja\n#cloud-config\nhostname: " + "".join(snips) + "\n"),
    json_like(max_leaves=6).map(lambda v: "#cloud-config-jsonp\n" + json.dumps(v)),
    json_like(max_leaves=8).map(lambda v: "#cloud-config-archive\n" + yaml.safe_dump(v)),
    st.text(max_size=200),
    st.binary(max_size=200),
)
CTYPES = ["text/cloud-config", "text/x-shellscript", "text/x-include-url", "text/jinja2", "text/cloud-boothook",
          "text/plain", "application/octet-stream", "text/x-shellscript-per-boot", "multipart/mixed", "text/bogus",
          "text/cloud-config-archive", "text/part-handler"]


def as_bytes(part: str | bytes) -> bytes:
    return part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part


@st.composite
def mime(draw: st.DrawFn) -> bytes:
    msg = MIMEMultipart(boundary="==tether-fuzz-boundary==")  # the default boundary comes from random
    for part in draw(st.lists(parts, max_size=4)):
        maintype, subtype = draw(st.sampled_from(CTYPES)).split("/", 1)
        p = MIMEBase(maintype, subtype)
        data = as_bytes(part)
        if draw(st.booleans()):
            data = gzip.compress(data)
        if not data.isascii() or draw(st.booleans()):
            p.set_payload(base64.b64encode(data).decode())
            p["Content-Transfer-Encoding"] = "base64"
        else:
            p.set_payload(data.decode())
        if draw(st.booleans()):
            p["Merge-Type"] = draw(st.sampled_from(["list(append)+dict(recurse_array)+str()", "bogus", "dict()"]))
        if draw(st.booleans()):
            p.add_header("Content-Disposition", "attachment", filename=draw(st.sampled_from(
                ["a.sh", "../../x", "", "n" * 300, "é.cfg"])))
        msg.attach(p)
    return msg.as_bytes()


documents = st.one_of(parts.map(as_bytes), mime(), st.one_of(parts.map(as_bytes), mime()).map(gzip.compress),
                      st.binary(max_size=300))


def fetcher(served: dict[str, bytes]) -> Any:
    def fetch(url: str) -> bytes:
        if url in served:
            return served[url]
        raise TetherError(f"{url}: not found (no network in the fuzz tests)")
    return fetch


def _check(user: bytes, vendor: bytes | None, served: dict[str, bytes]) -> None:
    out = process(user, vendor, instance_data=INSTANCE, fetch=fetcher(served))
    assert isinstance(out.cloud_config, dict)
    for msg in out.warnings + out.errors:
        assert isinstance(msg, str) and not leaks(msg), msg


@settings(max_examples=scaled(1.5))
@given(user=documents, vendor=st.one_of(st.none(), documents),
       served=st.dictionaries(st.sampled_from(URLS), documents, max_size=3))
@example(user=b"#include\nhttp://198.51.100.7/part0\n", vendor=None,
         served={URLS[0]: b"#include\nhttp://198.51.100.7/part0\n"})
@example(user=gzip.compress(gzip.compress(b"#cloud-config\na: 1\n")), vendor=None, served={})
@timed
def test_any_user_and_vendor_data(user: bytes, vendor: bytes | None, served: dict[str, bytes]) -> None:
    _check(user, vendor, served)


@given(old=json_like(max_leaves=10), new=json_like(max_leaves=10), spec=merge_specs)
@timed
def test_merge_how_specs(old: Any, new: Any, spec: Any) -> None:
    try:
        pol = merge.build(merge.parse_spec(spec))
    except merge.MergeSpecError as e:
        assert str(e)
        return
    merge.merge(old, new, pol)


def test_regression_an_include_list_of_non_urls_is_not_quoted() -> None:
    """Found by the fuzzer (long profile): a cloud-config sent as text/x-include-url made each of its lines a
    "URL", and the fetch error quoted them, ``password: ...`` lines included, into status.json."""
    user = (b'Content-Type: multipart/mixed; boundary="b"\nMIME-Version: 1.0\n\n--b\n'
            b"Content-Type: text/x-include-url\n\n#cloud-config\npassword: " + SECRET.encode()
            + b"\nhttp://198.51.100.7/part0\n--b--\n")
    out = process(user, None, instance_data=INSTANCE, fetch=fetcher({URLS[0]: b"#cloud-config\nhostname: a\n"}))
    assert out.cloud_config.get("hostname") == "a"                       # the real URL still works
    assert any("<not a URL>" in e for e in out.errors), out.errors
    assert not any(leaks(m) for m in out.errors + out.warnings), out.errors
