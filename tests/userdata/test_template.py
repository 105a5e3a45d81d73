"""## template: jinja parts, rendered with instance-data."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.userdata.helpers import mime, run
from tether.userdata import template
from tether.userdata.template import variables


def test_variables_follow_cloud_init() -> None:
    v = variables({"v1": {"instance_id": "i", "local-hostname": "h"}, "ds": {"meta_data": {"a.b": 1}},
                   "base64_encoded_keys": ["ds/meta_data/enc"]})
    assert v["instance_id"] == "i" and v["v1"]["instance_id"] == "i"
    assert v["local_hostname"] == "h" and v["v1"]["local_hostname"] == "h"
    assert v["ds"]["meta_data"]["a_b"] == 1
    v = variables({"base64_encoded_keys": ["ds/meta_data/enc"], "ds": {"meta_data": {"enc": "aGk="}}})
    assert v["ds"]["meta_data"]["enc"] == "hi"


def test_cloud_config_template() -> None:
    r = run(b"## template: jinja\n#cloud-config\nhostname: {{ v1.local_hostname }}\n"
            b"fqdn: {{ local_hostname }}.{{ ds.meta_data.instance_id }}\n"
            b"{% if v1.platform == 'nocloud' %}runcmd: [nocloud]{% endif %}\n")
    assert r.cloud_config == {"hostname": "web-1", "fqdn": "web-1.iid-abc", "runcmd": ["nocloud"]}
    assert r.warnings == [] and r.errors == []


def test_script_template() -> None:
    r = run(b"## template: jinja\n#!/bin/sh\necho {{ v1.instance_id }}\n")
    assert [s.content for s in r.scripts] == [b"#!/bin/sh\necho iid-abc\n"]


def test_boothook_template() -> None:
    r = run(b"## template: jinja\n#cloud-boothook\necho {{ instance_id }}\n")
    assert [s.content for s in r.boothooks] == [b"echo iid-abc\n"]


def test_jinja_mime_part_and_shellscript_part_with_template_header() -> None:
    r = run(mime(("text/jinja2", "## template: jinja\n#cloud-config\na: '{{ v1.instance_id }}'\n"),
                 ("text/x-shellscript", "## template: jinja\n#!/bin/sh\necho {{ v1.local_hostname }}\n")))
    assert r.cloud_config == {"a": "iid-abc"}
    assert [s.content for s in r.scripts] == [b"#!/bin/sh\necho web-1\n"]


def test_missing_variable_renders_marker_and_warns() -> None:
    r = run(b"## template: jinja\n#cloud-config\na: {{ v1.nope }}\n")
    assert r.cloud_config == {"a": "CI_MISSING_JINJA_VAR/nope"}
    assert r.warnings == ["user-data part 1 (jinja template): undefined template variables rendered as "
                          "CI_MISSING_JINJA_VAR/<name>: 'nope'"]


def test_syntax_error_names_the_line() -> None:
    r = run(b"## template: jinja\n#cloud-config\na: 1\nb: {{ oops }\n")
    assert r.cloud_config == {}
    assert len(r.errors) == 1
    assert r.errors[0].startswith("user-data part 1 (jinja template): template syntax error: line 4:")


def test_yaml_error_after_rendering_says_so() -> None:
    r = run(b"## template: jinja\n#cloud-config\na: [{{ v1.instance_id }}\n")
    assert len(r.errors) == 1
    assert r.errors[0].startswith("user-data part 1 (cloud-config from jinja template): invalid YAML")


def test_rendered_to_nothing_known_warns() -> None:
    r = run(b"## template: jinja\nhello {{ instance_id }}\n")
    assert r.warnings == ["user-data part 1 (jinja template): the rendered template does not start with a known "
                          "line (#cloud-config, #!, ...); ignored"]


def test_sandbox_refuses_attribute_tricks() -> None:
    r = run(b"## template: jinja\n#cloud-config\na: {{ ''.__class__.__mro__[1].__subclasses__() }}\n")
    assert r.cloud_config == {}
    assert r.errors == ["user-data part 1 (jinja template): template error: access to attribute '__class__' of "
                        "'str' object is unsafe.; ignored"]


def test_runaway_template_is_stopped() -> None:
    r = run(b"## template: jinja\n#cloud-config\na: {% for i in range(10**8) %}x{% endfor %}\n")
    assert len(r.errors) == 1 and "Range too big" in r.errors[0]
    r = run(b"## template: jinja\n#cloud-config\n{% for i in range(99999) %}{% for j in range(99) %}"
            b"{{ 'x' * 9999 }}{% endfor %}{% endfor %}\n")
    assert r.errors == ["user-data part 1 (jinja template): the rendered template is larger than 16 MiB; ignored"]


def test_plain_cloud_config_imports_no_jinja_email_or_yaml_extras() -> None:
    code = ("import sys\nimport tether.userdata\n"
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('yaml', 'jinja2', 'email', 'hashlib', 'tether.yamlsafe'))))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == ""
    code = ("import sys\nfrom tether.userdata import process\n"
            "r = process(b'#cloud-config\\na: 1\\n', b'#!/bin/sh\\n', instance_data={})\n"
            "assert r.cloud_config == {'a': 1}, r\n"
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('jinja2', 'email', 'markupsafe', 'http', 'urllib3', 'requests'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
    code = ("import sys\nfrom tether.userdata import process\n"
            "process(b'## template: jinja\\n#cloud-config\\na: 1\\n', None, instance_data={})\n"
            "print('jinja2' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "True"


def test_with_the_instance_data_document_tether_writes() -> None:
    from tether.instance import InstanceData, instance_data_doc
    from tether.userdata import process

    inst = InstanceData(datasource="NoCloud", instance_id="iid-42", platform="nocloud", local_hostname="db-1",
                        metadata={"local-hostname": "db-1", "instance-id": "iid-42"})
    doc = instance_data_doc(inst, None)
    r = process(b"## template: jinja\n#cloud-config\nhostname: {{ v1.local_hostname }}\n"
                b"fqdn: {{ local_hostname }}.{{ ds.meta_data.instance_id }}\nplatform: {{ platform }}\n",
                None, instance_data=doc)
    assert r.cloud_config == {"hostname": "db-1", "fqdn": "db-1.iid-42", "platform": "nocloud"}
    assert r.warnings == [] and r.errors == []


def _jinja(body: str) -> bytes:
    return f"## template: jinja\n#cloud-config\n{body}\n".encode()


def _only_error(body: str) -> str:
    r = run(_jinja(body))
    assert r.cloud_config == {}
    assert len(r.errors) == 1, r.errors
    return r.errors[0]


def test_huge_power_and_repetition_are_refused_before_they_are_computed() -> None:
    t = time.monotonic()
    assert _only_error("a: {{ 2 ** (10 ** 10) }}") == (
        "user-data part 1 (jinja template): template error: 2 ** 10000000000 is larger than the 100000-bit limit "
        "on integers; ignored")
    assert _only_error("a: {{ 'x' * 10 ** 11 }}") == (
        "user-data part 1 (jinja template): template error: repeating 1 items 100000000000 times is over the "
        "16 MiB limit on a template's output; ignored")
    assert _only_error("a: {{ [1, 2] * 10 ** 11 }}").startswith(
        "user-data part 1 (jinja template): template error: repeating 2 items")
    assert _only_error("{% set n = 10 ** 20000 %}a: {{ n * n * n * n * n * n }}").endswith(
        "a product larger than the 100000-bit limit on integers; ignored")
    assert time.monotonic() - t < 5
    r = run(_jinja("a: {{ 2 ** 64 }}\nb: {{ 'ab' * 3 }}\nc: {{ [0] * 2 }}"))  # ordinary sizes still work
    assert r.cloud_config == {"a": 2 ** 64, "b": "ababab", "c": [0, 0]}


def test_filter_that_builds_a_huge_string_costs_only_its_part() -> None:
    r = run(mime(("text/jinja2", "## template: jinja\n#cloud-config\na: {{ 'x' | center(10 ** 11) }}\n"),
                 ("text/cloud-config", "#cloud-config\nb: 2\n")))
    assert r.cloud_config == {"b": 2}
    assert r.errors == ["user-data part 1 (jinja template): rendering needs more than 512 MiB of memory; "
                        "stopped; ignored"]


def test_a_python_level_loop_is_stopped_by_the_cpu_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(template, "MAX_CPU_SECONDS", 1)
    t = time.monotonic()
    err = _only_error("a: {% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}1")
    assert err == "user-data part 1 (jinja template): rendering used more than 1 s of CPU time; stopped; ignored"
    assert time.monotonic() - t < 10


def test_one_long_c_level_operation_is_stopped_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # with the operator check out of the way, 7 ** (7 ** 9) is one C call of about 45 s: no signal handler or trace
    # hook could run during it; the child's RLIMIT_CPU stops it
    monkeypatch.setattr(template, "MAX_CPU_SECONDS", 1)
    monkeypatch.setattr(template, "MAX_INT_BITS", 10 ** 12)
    t = time.monotonic()
    err = _only_error("a: {{ (7 ** (7 ** 9)) % 10 }}")
    assert err == "user-data part 1 (jinja template): rendering used more than 1 s of CPU time; stopped; ignored"
    assert time.monotonic() - t < 10


def test_wall_clock_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(template, "MAX_CPU_SECONDS", 100)
    monkeypatch.setattr(template, "MAX_WALL_SECONDS", 0.5)
    t = time.monotonic()
    err = _only_error("a: {% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}1")
    assert err == "user-data part 1 (jinja template): rendering took more than 0.5 s; stopped; ignored"
    assert time.monotonic() - t < 5


def test_the_render_leaves_no_child_and_keeps_the_caller_running() -> None:
    before = _children()
    for _ in range(3):
        run(_jinja("a: {{ 'x' | center(10 ** 11) }}"))
        assert run(_jinja("a: {{ v1.instance_id }}")).cloud_config == {"a": "iid-abc"}
    assert _children() == before


def _children() -> set[str]:
    import os
    path = f"/proc/{os.getpid()}/task/{os.getpid()}/children"
    return set(open(path).read().split())
