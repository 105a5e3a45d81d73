"""cloud-config ``output``: parsed as cloud-init parses it, and honoured by the real stages (script output
teed to files and commands in the target, per stage or ``all``, stdout and stderr apart)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.core.test_stages import boot, seed_root, status
from tests.modules.sysmod_support import real_chroot_root
from tether.output_cfg import OutputSpecError, for_stage


@pytest.mark.parametrize("output,stage,want", [
    (None, "final", (None, None)),
    ({"all": "/var/log/x"}, "init", (">> /var/log/x", ">> /var/log/x")),
    ({"all": ">/var/log/x", "final": "|  tee -a /y "}, "final", ("| tee -a /y", "| tee -a /y")),
    ({"all": ">/var/log/x", "final": "| tee"}, "config", ("> /var/log/x", "> /var/log/x")),
    ({"config": [">> /o", "> /e"]}, "config", (">> /o", "> /e")),
    ({"config": [">> /o"]}, "config", (">> /o", None)),
    ({"final": {"output": "> /o", "error": "&1"}}, "final", ("> /o", "> /o")),
    ({"final": {"error": "/e"}}, "final", (None, ">> /e")),
    ({"init": "> /o"}, "final", (None, None)),
])
def test_for_stage_as_cloud_init_reads_it(output: object, stage: str, want: tuple[str | None, str | None]) -> None:
    assert for_stage(output, stage) == want


@pytest.mark.parametrize("output,msg", [
    ("> /x", "output: expected a mapping"),
    ({"all": 3}, "output.all: expected a string, a [stdout, stderr] list or a mapping, got int"),
    ({"final": ["> /a", "> /b", "> /c"]}, "output.final: expected [stdout, stderr], got a list of 3"),
    ({"final": {"output": "> /a", "stderr": "> /b"}}, "output.final: unknown key(s) stderr"),
    ({"final": {"output": ["x"]}}, "output.final.output: expected a string"),
    ({"all": ">>"}, "output.all: '>>' names no file"),
])
def test_bad_output_is_named(output: object, msg: str) -> None:
    with pytest.raises(OutputSpecError) as e:
        for_stage(output, "final")
    assert str(e.value).startswith(msg)


UD = """#cloud-config
bootcmd:
  - echo boot-out; echo boot-err >&2
runcmd:
  - echo run-out; echo run-err >&2
output:
  all: ">> /var/log/all.log"
  final: ["> /var/log/final.out", "| while read l; do echo \\"piped $l\\"; done >> /var/log/final.err"]
"""


def test_output_is_honoured_by_the_stages(tmp_path: Path) -> None:
    root = seed_root(tmp_path, UD)
    real_chroot_root(root)
    boot(root)
    log = root / "var/log"
    assert (log / "all.log").read_text().split() == ["boot-out", "boot-err"]     # init stage (bootcmd), both
    assert (log / "final.out").read_text() == "run-out\n"                         # final: stdout to the file
    assert (log / "final.err").read_text() == "piped run-err\n"                   # stderr through the command
    assert "run-out" in (log / "tether-output.log").read_text()                   # tether's own log kept
    rc, st = status(root)
    assert rc == 0, st
    # next boot, same instance: bootcmd runs again and appends; "> file" is emptied as the stage starts
    shutil.rmtree(root / "run")
    boot(root)
    assert (log / "all.log").read_text().split() == ["boot-out", "boot-err"] * 2
    assert (log / "final.out").read_text() == ""       # runcmd is once per instance: nothing this time


def test_malformed_output_is_a_recoverable_error_naming_it(tmp_path: Path) -> None:
    root = seed_root(tmp_path, "#cloud-config\noutput: {final: 3, later: '> /x'}\n")
    boot(root)
    rc, st = status(root)
    assert rc == 2
    msgs = [m for level in st["recoverable_errors"].values() for m in level]
    assert any(m.startswith("output.final: expected a string") and "not redirected" in m for m in msgs), msgs
    assert any(m.startswith("output.later: not a stage") for m in msgs), msgs
