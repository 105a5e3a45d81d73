"""Every part type on its own, through process()."""

from __future__ import annotations

import gzip

from tests.userdata.helpers import run


def test_empty_and_none_give_nothing() -> None:
    for data in (None, b"", b"  \n"):
        r = run(data)
        assert (r.cloud_config, r.scripts, r.boothooks, r.warnings, r.errors) == ({}, [], [], [], [])


def test_cloud_config() -> None:
    r = run(b"#cloud-config\nhostname: web-1\nruncmd:\n - [ls, -l]\n")
    assert r.cloud_config == {"hostname": "web-1", "runcmd": [["ls", "-l"]]}
    assert r.errors == [] and r.warnings == []


def test_cloud_config_start_line_is_case_insensitive_and_may_follow_whitespace() -> None:
    assert run(b"\n  #Cloud-Config\na: 1\n").cloud_config == {"a": 1}


def test_cloud_config_with_bom_and_crlf() -> None:
    assert run("\ufeff#cloud-config\r\na: 1\r\nb: [x]\r\n".encode()).cloud_config == {"a": 1, "b": ["x"]}


def test_empty_cloud_config_is_fine() -> None:
    r = run(b"#cloud-config\n# nothing yet\n")
    assert r.cloud_config == {} and r.errors == [] and r.warnings == []


def test_invalid_yaml_names_part_line_and_column() -> None:
    r = run(b"#cloud-config\nusers:\n  - name: a\n   bad: [\n")
    assert r.cloud_config == {}
    assert len(r.errors) == 1
    assert r.errors[0].startswith("user-data part 1 (cloud-config): invalid YAML: line ")
    assert "column" in r.errors[0]


def test_cloud_config_that_is_not_a_mapping_warns() -> None:
    r = run(b"#cloud-config\n- a\n- b\n")
    assert r.cloud_config == {}
    assert r.warnings == ["user-data part 1 (cloud-config): not a mapping of keys (it is a list); ignored"]


def test_non_utf8_cloud_config_is_an_error() -> None:
    r = run(b"#cloud-config\nname: \xff\xfe\n")
    assert r.errors and "not UTF-8" in r.errors[0]


def test_shell_script_is_kept_verbatim() -> None:
    body = b"#!/bin/bash\necho hi\n"
    r = run(body)
    assert [(s.name, s.content) for s in r.scripts] == [("part-001", body)]
    assert r.cloud_config == {} and r.boothooks == []


def test_boothook_loses_its_start_line() -> None:
    r = run(b"#cloud-boothook\n#!/bin/sh\necho $INSTANCE_ID > /x\n")
    assert [(h.name, h.content) for h in r.boothooks] == [("part-001", b"#!/bin/sh\necho $INSTANCE_ID > /x\n")]
    assert r.scripts == []


def test_whole_document_gzip() -> None:
    r = run(gzip.compress(b"#cloud-config\npackages: [vim]\n"))
    assert r.cloud_config == {"packages": ["vim"]}


def test_gzip_script() -> None:
    r = run(gzip.compress(b"#!/bin/sh\ntrue\n"))
    assert r.scripts[0].content == b"#!/bin/sh\ntrue\n"


def test_cloud_config_archive() -> None:
    archive = b"""#cloud-config-archive
- type: text/cloud-config
  content: |
    #cloud-config
    a: 1
- content: |
    #!/bin/sh
    echo from-archive
  filename: hello.sh
- |
  #cloud-config
  b: 2
- type: text/x-shellscript
  content: "#!/bin/sh\\necho two\\n"
"""
    r = run(archive)
    assert r.cloud_config == {"a": 1, "b": 2}
    assert [s.name for s in r.scripts] == ["hello.sh", "part-005"]
    assert r.scripts[0].content == b"#!/bin/sh\necho from-archive\n"
    assert r.errors == [] and r.warnings == []


def test_archive_merge_type_entry_header() -> None:
    archive = b"""#cloud-config-archive
- "#cloud-config\\nruncmd: [a]\\n"
- content: "#cloud-config\\nruncmd: [b]\\n"
  Merge-Type: "list(append)+dict(recurse_array)+str()"
"""
    assert run(archive).cloud_config == {"runcmd": ["a", "b"]}


def test_archive_that_is_not_a_list_is_an_error() -> None:
    r = run(b"#cloud-config-archive\na: 1\n")
    assert r.errors == ["user-data part 1 (cloud-config-archive): expected a list of parts, got dict; ignored"]


def test_archive_bad_entries_warn_and_rest_goes_on() -> None:
    r = run(b"#cloud-config-archive\n- 3\n- content: {a: 1}\n- '#cloud-config\n\n  c: 3'\n")
    assert r.cloud_config == {"c": 3}
    assert len(r.warnings) == 2
    assert "entry 1: expected a string or a mapping, got int" in r.warnings[0]
    assert "entry 2: content must be a string" in r.warnings[1]


def test_headerless_text_is_ignored_with_a_warning() -> None:
    r = run(b"just some words\nmore words\n")
    assert r.cloud_config == {} and r.errors == []
    assert len(r.warnings) == 1 and "no known start line" in r.warnings[0]
    assert r.warnings[0].startswith("user-data part 1 (text)")


def test_part_handler_and_upstart_are_named_in_a_warning() -> None:
    for start, ctype in ((b"#part-handler\ndef list_types(): pass\n", "text/part-handler"),
                         (b"#upstart-job\nstart on x\n", "text/upstart-job")):
        r = run(start)
        assert r.warnings == [f"user-data part 1 ({ctype}): not supported by tether, skipped"]


def test_binary_garbage_is_a_clear_error() -> None:
    import random
    rng = random.Random(4)
    garbage = bytes(rng.randrange(256) for _ in range(4096))
    r = run(garbage)
    assert r.cloud_config == {}
    assert r.errors == ["user-data part 1 (text): 4096 bytes of binary data that is neither gzip, MIME nor text; "
                        "ignored"]


def test_corrupt_gzip_is_a_clear_error() -> None:
    data = gzip.compress(b"#cloud-config\na: 1\n" * 100)
    r = run(data[: len(data) // 2])
    assert r.errors == ["user-data: truncated gzip data; ignored"]
    r = run(data[:10] + b"\x00" * 40)
    assert len(r.errors) == 1 and r.errors[0].startswith("user-data: corrupt gzip data")


def test_jsonp_patches_what_came_before() -> None:
    from tests.userdata.helpers import mime
    data = mime(("text/cloud-config", "#cloud-config\nruncmd: [a]\nname: x\n"),
                ("text/cloud-config-jsonp", '#cloud-config-jsonp\n[{"op": "add", "path": "/runcmd/-", "value": "b"},'
                                            ' {"op": "remove", "path": "/name"}]'))
    r = run(data)
    assert r.cloud_config == {"runcmd": ["a", "b"]} and r.errors == []


def test_bad_jsonp_is_an_error() -> None:
    r = run(b'#cloud-config-jsonp\n[{"op": "remove", "path": "/nope"}]')
    assert r.errors == ["user-data part 1 (cloud-config-jsonp): operation 0 (remove): no member at '/nope'; ignored"]


def test_script_names_are_unique_and_safe() -> None:
    from tests.userdata.helpers import mime
    data = mime(("text/x-shellscript", "#!/bin/sh\n1\n"), ("text/x-shellscript", "#!/bin/sh\n2\n"))
    data = data.replace(b'filename="file2"', b'filename="file1"')
    data = data.replace(b'filename="file1"', b'filename="../../etc/evil"', 1)
    names = [s.name for s in run(data).scripts]
    assert names == ["evil", "file1"]
    data = mime(("text/x-shellscript", "#!/bin/sh\n1\n"), ("text/x-shellscript", "#!/bin/sh\n2\n"))
    names = [s.name for s in run(data.replace(b'filename="file2"', b'filename="file1"')).scripts]
    assert names == ["file1", "file1-2"]


def test_str_input_is_accepted() -> None:
    assert run("#cloud-config\na: ü\n").cloud_config == {"a": "ü"}


def test_launch_index_filter() -> None:
    archive = b"""#cloud-config-archive
- content: "#cloud-config\\na: 0\\n"
  launch-index: 0
- content: "#cloud-config\\nb: 1\\n"
  launch-index: 1
- "#cloud-config\\nc: all\\n"
"""
    assert run(archive).cloud_config == {"a": 0, "b": 1, "c": "all"}
    assert run(archive, launch_index=1).cloud_config == {"b": 1, "c": "all"}
    assert run(b"#cloud-config\nlaunch-index: 5\nx: 1\n", launch_index=2).cloud_config == {}
