"""## template: jinja parts, rendered with instance-data."""

from __future__ import annotations

import subprocess
import sys

from tests.userdata.helpers import mime, run
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
