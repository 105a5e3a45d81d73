"""``tether schema`` on each user-data type, as cloud-init's schema command judges them: only #cloud-config is
checked, templates are rendered with the instance data first, other known types are "not evaluated" (exit 0),
an unknown start line is an error (exit 1); ``--system`` checks user-data as the boot processed it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.core.test_stages import seed_root, tether
from tests.userdata.helpers import mime
from tether.cli import main

IDATA = {"v1": {"instance_id": "iid-1", "local_hostname": "web-1"}}




@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    def go(text: str | bytes, with_instance_data: bool = True, annotate: bool = False) -> tuple[int, str, str]:
        f = tmp_path / "ud"
        f.write_bytes(text if isinstance(text, bytes) else text.encode())
        args = ["--root", str(tmp_path / "emptyroot"), "schema", "-c", str(f)]
        if with_instance_data:
            (tmp_path / "idata.json").write_text(json.dumps(IDATA))
            args += ["--instance-data", str(tmp_path / "idata.json")]
        if annotate:
            args.append("--annotate")
        rc = main(args)
        out = capsys.readouterr()
        return rc, out.out, out.err
    return go


def test_jinja_cloud_config_is_rendered_before_it_is_checked(run) -> None:  # type: ignore[no-untyped-def]
    # unrendered, "hostname: {{ ... }}" is a YAML mapping used as a key: invalid; rendered it is fine
    rc, out, err = run("## template: jinja\n#cloud-config\nhostname: {{ v1.local_hostname }}\n"
                       "runcmd:\n  - echo {{ v1.instance_id }}\n")
    assert (rc, out.strip().splitlines()[-1][:12]) == (0, "Valid schema"), out + err


def test_jinja_rendering_to_an_invalid_config_is_invalid(run) -> None:  # type: ignore[no-untyped-def]
    rc, out, _err = run("## template: jinja\n#cloud-config\nruncmd: {{ v1.instance_id }}\n")
    assert rc == 1 and "runcmd: expected a list" in out


def test_jinja_without_instance_data_is_an_error_naming_it(run) -> None:  # type: ignore[no-untyped-def]
    rc, out, err = run("## template: jinja\n#cloud-config\nruncmd: [ls]\n", with_instance_data=False)
    assert rc == 1
    assert "no instance data" in err and "--instance-data" in err


def test_jinja_boothook_is_not_evaluated(run) -> None:  # type: ignore[no-untyped-def]
    rc, out, err = run("## template: jinja\n#cloud-boothook\necho {{ v1.instance_id }}: not: yaml: [\n")
    assert rc == 0
    assert "'text/cloud-boothook' is not evaluated" in out and "Valid" not in out


@pytest.mark.parametrize("text,ctype", [
    ("#cloud-config-archive\n- type: text/cloud-config\n  content: 'runcmd: 3'\n", "text/cloud-config-archive"),
    ("#!/bin/sh\necho hi\n", "text/x-shellscript"),
    ("#include\nhttp://example.invalid/x\n", "text/x-include-url"),
    ("#cloud-boothook\necho hi\n", "text/cloud-boothook"),
    ("#part-handler\ndef list_types(): return []\n", "text/part-handler"),
])
def test_other_types_are_not_evaluated_exit_0(run, text: str, ctype: str) -> None:  # type: ignore[no-untyped-def]
    rc, out, err = run(text)
    assert rc == 0 and f"{ctype!r} is not evaluated" in out and err == ""


def test_unknown_start_line_and_mime_are_errors(run) -> None:  # type: ignore[no-untyped-def]
    rc, _out, err = run("hostname: x\n")
    assert rc == 1 and "unrecognized user-data start line 'hostname: x'" in err
    rc, _out, err = run(mime(("text/cloud-config", "#cloud-config\nhostname: x\n")))
    assert rc == 1 and "MIME multipart" in err and "--system" in err


def test_deprecated_values_are_noticed_and_still_valid(run) -> None:  # type: ignore[no-untyped-def]
    rc, out, _err = run("#cloud-config\nusers:\n  - name: a\n    sudo: false\n    uid: '1001'\n"
                        "apt_update: true\n")
    assert rc == 0
    first, last = out.splitlines()[0], out.splitlines()[-1]
    assert first == ("Cloud config schema deprecations: apt_update: Deprecated in cloud-init 22.2: use "
                     "package_update instead., users.0.sudo: Changed in cloud-init 22.2: the value false is "
                     "deprecated, use null., users.0.uid: Changed in cloud-init 22.3: a string uid is deprecated, "
                     "use an integer.")
    assert last.startswith("Valid schema")


# -- --system: user-data as processed at boot -------------------------------------------------------------

def _booted(tmp_path: Path, ud: str | bytes) -> Path:
    root = seed_root(tmp_path, ud.decode() if isinstance(ud, bytes) else ud)
    tether(root, "init", "--local")
    tether(root, "init")
    return root


def test_system_multipart_with_an_unparsable_part_is_valid_with_a_warning(tmp_path: Path) -> None:
    ud = mime(("text/cloud-config", "#cloud-config\nruncmd: [ls]\n"),
              ("text/cloud-config", "#cloud-config\nusers: [\n"))
    proc = tether(_booted(tmp_path, ud), "schema", "--system", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Valid schema" in proc.stdout
    assert "part 2" in proc.stderr and "invalid YAML" in proc.stderr and "skipped at boot" in proc.stderr


def test_system_multipart_with_a_schema_invalid_part_is_invalid(tmp_path: Path) -> None:
    ud = mime(("text/cloud-config", "#cloud-config\nruncmd: [ls]\n"),
              ("text/cloud-config", "#cloud-config\nwrite_files: 3\n"))
    proc = tether(_booted(tmp_path, ud), "schema", "--system", check=False)
    assert proc.returncode == 1
    assert "Invalid cloud-config" in proc.stdout and "write_files" in proc.stdout


@pytest.mark.parametrize("content,rc", [("runcmd: [ls]", 0), ("runcmd: 3", 1)])
def test_system_archive_is_checked_as_processed(tmp_path: Path, content: str, rc: int) -> None:
    ud = f"#cloud-config-archive\n- type: text/cloud-config\n  content: '{content}'\n"
    proc = tether(_booted(tmp_path, ud), "schema", "--system", check=False)
    assert proc.returncode == rc, proc.stdout + proc.stderr


def test_output_is_checked(run) -> None:  # type: ignore[no-untyped-def]
    rc, out, _err = run("#cloud-config\noutput: {all: '>> /var/log/x', final: [a, b, c], later: '> /y'}\n")
    assert rc == 1
    assert "Error: output.final: expected [stdout, stderr], got a list of 3" in out
    assert "Error: output.later: not a stage" in out
    assert run("#cloud-config\noutput: {all: '| tee -a /var/log/x', final: {output: '> /o', error: '&1'}}\n")[0] == 0


def test_annotate_marks_deprecated_lines(run) -> None:  # type: ignore[no-untyped-def]
    rc, out, _err = run("#cloud-config\nusers:\n  - name: a\n    sudo: false\n", annotate=True)
    assert rc == 0
    assert "    sudo: false\t\t# D1" in out.splitlines()
    assert "# D1: users.0.sudo: Changed in cloud-init 22.2: the value false is deprecated, use null." in out
