"""CLI verbs a user types: schema, status (exit codes, --wait bound), clean, single, analyze, --help."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.core.test_stages import boot, seed_root, status, tether
from tether.cli import build_parser, main

BAD = """#cloud-config
write_files:
  - path: /etc/a
    permissions: 12
  - path: relative
users:
  - name: bob
    groups: [1, 2]
runcmd: "not a list"
colour: blue
"""


def test_schema_annotate_marks_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "ud.yaml"
    f.write_text(BAD)
    rc = main(["schema", "-c", str(f), "--annotate"])
    out = capsys.readouterr()
    assert rc == 1
    lines = out.out.splitlines()
    assert any(line.startswith("  - path: relative") and "# E" in line for line in lines)
    assert any(line.startswith("runcmd:") and "# E" in line for line in lines)
    assert "# E1: write_files[1]: path 'relative' must be absolute" in out.out  # errors in line order
    assert "# E4: runcmd: expected a list of strings, lists of strings or nulls, got a string" in out.out
    assert "runcmd: expected a list" in out.out
    assert "# E5: colour: not a known cloud-config key" in out.out  # an error, as in cloud-init's schema


def test_schema_valid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "ud.yaml"
    f.write_text("#cloud-config\nruncmd:\n  - [ls, -l]\nwrite_files:\n  - path: /x\n    content: y\n")
    assert main(["schema", "-c", str(f)]) == 0
    assert "Valid schema" in capsys.readouterr().out


def test_schema_malformed_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "ud.yaml"
    f.write_text("#cloud-config\nruncmd: [\n")
    assert main(["schema", "-c", str(f)]) == 1
    assert "invalid YAML: line" in capsys.readouterr().out


def test_schema_docs_is_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--docs"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "write_files" in doc["properties"] and "runcmd" in doc["properties"]


def test_every_verb_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "verb")
    for name in ("init", "modules", "single", "status", "query", "schema", "clean", "analyze", "install-units"):
        assert name in sub.choices, name
        with pytest.raises(SystemExit) as ei:
            main([name, "--help"])
        assert ei.value.code == 0


def test_status_wait_is_bounded_and_exit_codes(tmp_path: Path) -> None:
    root = seed_root(tmp_path, "#cloud-config\nruncmd: [[/bin/true]]\n")
    tether(root, "init", "--local")
    t0 = time.monotonic()
    proc = tether(root, "status", "--wait", "--timeout", "1", check=False)
    assert proc.returncode == 1 and time.monotonic() - t0 < 10
    assert "gave up after 1s" in proc.stderr
    for p in boot(root)[1:]:
        assert p.returncode == 0
    rc, st = status(root)
    assert rc == 0 and st["extended_status"] == "done"
    proc = tether(root, "status", "--wait", "--long")
    assert "status: done" in proc.stdout


def test_status_error_exit_1(tmp_path: Path) -> None:
    root = seed_root(tmp_path, "#cloud-config\nwrite_files:\n  - path: /x\n    encoding: b64\n"
                               "    content: '%%%not base64'\n    source: {uri: 'http://127.0.0.1:9/x'}\n")
    for stage in (["init", "--local"], ["init"], ["modules", "--mode", "config"], ["modules", "--mode", "final"]):
        tether(root, *stage, check=False)
    rc, st = status(root)
    assert rc == 1 and st["status"] == "error"
    assert any("write_files" in e for e in st["errors"])


def test_clean_makes_next_boot_a_first_boot(tmp_path: Path) -> None:
    root = seed_root(tmp_path, "#cloud-config\nwrite_files:\n  - {path: /etc/n, content: x, append: true}\n")
    boot(root)
    proc = tether(root, "clean", "--logs")
    assert "removed /var/lib/tether/instances" in proc.stdout
    assert not (root / "var/log/tether.log").exists() or (root / "var/log/tether.log").stat().st_size < 2000
    boot(root)
    assert (root / "etc/n").read_text() == "xx"
    assert (root / "var/lib/cloud/seed/nocloud/meta-data").exists()


def test_single_and_analyze(tmp_path: Path) -> None:
    root = seed_root(tmp_path, "#cloud-config\nwrite_files:\n  - {path: /etc/s, content: x, append: true}\n")
    boot(root)
    proc = tether(root, "single", "--name", "write_files")
    assert "write_files: already-ran" in proc.stdout
    proc = tether(root, "single", "--name", "write_files", "--frequency", "always")
    assert "write_files: ran" in proc.stdout
    assert (root / "etc/s").read_text() == "xx"
    proc = tether(root, "single", "--name", "nope", check=False)
    assert proc.returncode == 1 and "unknown module 'nope'" in proc.stderr
    show = tether(root, "analyze", "show").stdout
    assert "init-local" in show and "write_files" in show and "total" in show
    blame = tether(root, "analyze", "blame").stdout
    assert "init/write_files" in blame


def test_stage_command_lines_skip_argparse() -> None:
    from tether.cli import cmd_init, cmd_modules, stage_args

    a = stage_args(["--root", "/mnt", "init", "--local"])
    assert (a.root, a.local, a.func, a.debug) == ("/mnt", True, cmd_init, False)
    a = stage_args(["init", "--debug"])
    assert (a.root, a.local, a.debug) == ("/", False, True)
    a = stage_args(["modules", "--mode", "final"])
    assert (a.mode, a.func) == ("final", cmd_modules)
    assert stage_args(["modules", "--mode=config", "--root=/x"]).root == "/x"
    assert stage_args(["modules"]).mode == "config"
    for other in (["status"], ["init", "--mode", "final"], ["modules", "-m", "bogus"], ["init", "--help"],
                  ["--root"], [], ["modules", "--local"]):
        assert stage_args(other) is None, other  # argparse handles (and reports) everything else


def test_system_platform_matches_the_platform_module() -> None:
    import platform

    from tether.instance import system_platform
    assert system_platform() == platform.platform()
