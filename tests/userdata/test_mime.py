"""MIME multipart user-data: every supported part type, encodings, headers, unknown types."""

from __future__ import annotations

import gzip

from tests.userdata.helpers import mime, run


def test_multipart_with_every_handled_type() -> None:
    data = mime(
        ("text/cloud-config", "#cloud-config\nhostname: h\n"),
        ("text/x-shellscript", "#!/bin/sh\necho script\n"),
        ("text/cloud-boothook", "#!/bin/sh\necho hook\n"),
        ("text/jinja2", "## template: jinja\n#cloud-config\nfqdn: {{ v1.local_hostname }}.example\n"),
        ("text/cloud-config-archive", "- '#cloud-config\n\n  packages: [vim]'\n"),
    )
    r = run(data)
    assert r.cloud_config == {"hostname": "h", "fqdn": "web-1.example", "packages": ["vim"]}
    assert [(s.name, s.content) for s in r.scripts] == [("file2", b"#!/bin/sh\necho script\n")]
    assert [(s.name, s.content) for s in r.boothooks] == [("file3", b"#!/bin/sh\necho hook\n")]
    assert r.warnings == [] and r.errors == []


def test_base64_and_gzip_inside_mime() -> None:
    data = mime(("text/cloud-config", "#cloud-config\na: 1\n"), ("text/x-shellscript", "#!/bin/sh\nx\n"),
                gzip_parts=True)
    assert b"Content-Transfer-Encoding: base64" in data
    r = run(data)
    assert r.cloud_config == {"a": 1}
    assert r.scripts[0].content == b"#!/bin/sh\nx\n"


def test_gzipped_mime() -> None:
    r = run(gzip.compress(mime(("text/cloud-config", "#cloud-config\na: 1\n"))))
    assert r.cloud_config == {"a": 1}


def test_application_gzip_part_is_sniffed_after_inflating() -> None:
    data = mime(("application/x-gzip", gzip.compress(b"#!/bin/sh\necho z\n")))
    r = run(data)
    assert [s.content for s in r.scripts] == [b"#!/bin/sh\necho z\n"]


def test_text_plain_and_octet_stream_parts_are_typed_by_start_line() -> None:
    data = mime(("text/plain", "#cloud-config\na: 1\n"), ("application/octet-stream", b"#!/bin/sh\ny\n"),
                ("text/plain", "#cloud-boothook\necho b\n"))
    r = run(data)
    assert r.cloud_config == {"a": 1}
    assert [s.content for s in r.scripts] == [b"#!/bin/sh\ny\n"]
    assert [s.content for s in r.boothooks] == [b"echo b\n"]


def test_shellscript_part_that_is_really_cloud_config() -> None:
    # some tools label every part text/x-shellscript; cloud-init looks at the content (a script starts "#!")
    r = run(mime(("text/x-shellscript", "#cloud-config\na: 1\n")))
    assert r.cloud_config == {"a": 1} and r.scripts == []


def test_script_without_shebang_warns() -> None:
    r = run(mime(("text/x-shellscript", "echo no shebang\n")))
    assert len(r.scripts) == 1
    assert r.warnings == ["user-data part 1 (script): the script has no #! line; it is run with /bin/sh"]


def test_merge_type_header() -> None:
    data = mime(("text/cloud-config", "#cloud-config\nruncmd: [a]\n"),
                ("text/cloud-config", "#cloud-config\nruncmd: [b]\n",
                 {"Merge-Type": "list(append)+dict(recurse_array)+str()"}))
    assert run(data).cloud_config == {"runcmd": ["a", "b"]}
    data = mime(("text/cloud-config", "#cloud-config\nruncmd: [a]\n"),
                ("text/cloud-config", "#cloud-config\nruncmd: [b]\n",
                 {"X-Merge-Type": "list(prepend)+dict(recurse_array)+str()"}))
    assert run(data).cloud_config == {"runcmd": ["b", "a"]}


def test_default_merge_replaces_top_level_keys() -> None:
    data = mime(("text/cloud-config", "#cloud-config\nruncmd: [a]\napt: {x: 1}\n"),
                ("text/cloud-config", "#cloud-config\nruncmd: [b]\napt: {y: 2}\n"))
    assert run(data).cloud_config == {"runcmd": ["b"], "apt": {"y": 2}}


def test_bad_merge_type_header_is_an_error_and_default_applies() -> None:
    data = mime(("text/cloud-config", "#cloud-config\nruncmd: [a]\n"),
                ("text/cloud-config", "#cloud-config\nruncmd: [b]\n", {"Merge-Type": "list(append"}))
    r = run(data)
    assert r.cloud_config == {"runcmd": ["b"]}
    assert r.errors == ["user-data part 2 (cloud-config): Merge-Type header: 'list(append' is not of the form "
                        "name(option,...); ignored"]


def test_unknown_types_warn_and_the_rest_goes_on() -> None:
    data = mime(("text/cloud-config", "#cloud-config\na: 1\n"),
                ("text/x-my-path", "/var/tmp/x\n"),
                ("text/part-handler", "#part-handler\ndef list_types(): return []\n"),
                ("text/cloud-config", "#cloud-config\nb: 2\n"))
    r = run(data)
    assert r.cloud_config == {"a": 1, "b": 2}
    assert r.warnings == ["user-data part 2 (text/x-my-path): not supported by tether, skipped",
                          "user-data part 3 (text/part-handler): not supported by tether, skipped"]


def test_invalid_yaml_in_part_two_names_it() -> None:
    data = mime(("text/cloud-config", "#cloud-config\na: 1\n"), ("text/cloud-config", "#cloud-config\nb: [\n"))
    r = run(data)
    assert r.cloud_config == {"a": 1}
    assert len(r.errors) == 1 and r.errors[0].startswith("user-data part 2 (cloud-config): invalid YAML: line 3")


def test_plain_text_part_is_ignored_with_a_warning() -> None:
    r = run(mime(("text/plain", "hello there\n")))
    assert len(r.warnings) == 1 and r.warnings[0].startswith("user-data part 1 (text/plain): no known start line")


def test_nested_multipart() -> None:
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    outer = MIMEMultipart()
    inner = MIMEMultipart("alternative")
    inner.attach(MIMEText("#cloud-config\ninner: 1\n", "cloud-config"))
    outer.attach(inner)
    outer.attach(MIMEText("#cloud-config\nouter: 2\n", "cloud-config"))
    assert run(outer.as_bytes()).cloud_config == {"inner": 1, "outer": 2}


def test_handwritten_mime_without_mime_version() -> None:
    data = (b'Content-Type: multipart/mixed; boundary="XX"\n\n--XX\nContent-Type: text/cloud-config\n\n'
            b"#cloud-config\na: 1\n--XX\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho\n--XX--\n")
    r = run(data)
    assert r.cloud_config == {"a": 1} and len(r.scripts) == 1


def test_cloud_config_mentioning_mime_version_is_not_parsed_as_mime() -> None:
    r = run(b"#cloud-config\nwrite_files:\n - path: /x\n   content: 'MIME-Version: 1.0'\n")
    assert r.cloud_config["write_files"][0]["content"] == "MIME-Version: 1.0"


def test_broken_boundary_is_reported() -> None:
    data = b'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="AA"\n\n--BB\n\n#cloud-config\na: 1\n'
    r = run(data)
    assert r.cloud_config == {}
    assert r.errors == ["user-data part 1 (multipart/mixed): a multipart part without parts (is its boundary "
                        "right?); ignored"]


def test_per_boot_instance_once_script_parts_are_kept_by_directory() -> None:
    boot = b"#!/bin/sh\r\necho boot\r\n"
    r = run(mime(("text/x-shellscript-per-boot", boot),
                 ("text/x-shellscript-per-instance", "#!/bin/sh\necho inst\n"),
                 ("text/x-shellscript-per-once", "#!/bin/sh\necho once\n"),
                 ("text/x-shellscript", "#!/bin/sh\necho user\n")))
    assert r.errors == [] and r.warnings == []
    got = {kind: [(s.name, s.content) for s in scripts] for kind, scripts in r.dir_scripts.items()}
    assert got == {"per-boot": [("file1", b"#!/bin/sh\necho boot\n")],          # CRLF made LF, as cloud-init
                   "per-instance": [("file2", b"#!/bin/sh\necho inst\n")],
                   "per-once": [("file3", b"#!/bin/sh\necho once\n")]}
    assert [(s.name, s.content) for s in r.scripts] == [("file4", b"#!/bin/sh\necho user\n")]


def test_per_boot_script_without_shebang_warns_and_gets_sh() -> None:
    r = run(mime(("text/x-shellscript-per-boot", "echo hi\n")))
    assert r.warnings == ["user-data part 1 (per-boot script): the script has no #! line; it is run with /bin/sh"]
    assert r.dir_scripts["per-boot"][0].content == b"#!/bin/sh\necho hi\n"


def test_vendor_per_instance_script_with_the_users_name_does_not_replace_it() -> None:
    ud = mime(("text/x-shellscript-per-instance", "#!/bin/sh\necho user\n"))
    vd = mime(("text/x-shellscript-per-instance", "#!/bin/sh\necho vendor\n"))
    r = run(ud, vd)
    assert [(s.name, s.content) for s in r.dir_scripts["per-instance"]] == [
        ("file1", b"#!/bin/sh\necho user\n"), ("vendor-file1", b"#!/bin/sh\necho vendor\n")]


def test_per_once_script_in_an_archive() -> None:
    r = run(b"#cloud-config-archive\n- type: text/x-shellscript-per-once\n  filename: setup.sh\n"
            b"  content: \"#!/bin/sh\\necho once\\n\"\n")
    assert r.errors == [] and r.warnings == []
    assert [(s.name, s.content) for s in r.dir_scripts["per-once"]] == [("setup.sh", b"#!/bin/sh\necho once\n")]
