from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tether import yamlsafe
from tether.errors import ConfigError


def test_error_names_line_and_column() -> None:
    with pytest.raises(ConfigError) as ei:
        yamlsafe.load("a: 1\nb: [1, 2\nc: 3\n", source="user-data")
    msg = str(ei.value)
    assert msg.startswith("user-data: invalid YAML: line ")
    assert "column" in msg


def test_alias_bomb_is_refused_quickly() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    prev = "a"
    for i in range(9):
        name = f"l{i}"
        bomb += f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]\n"
        prev = name
    start = time.monotonic()
    with pytest.raises(ConfigError, match="alias bomb"):
        yamlsafe.load(bomb)
    assert time.monotonic() - start < 5


def test_oversized_document_is_refused() -> None:
    with pytest.raises(ConfigError, match="over the 16 MiB limit"):
        yamlsafe.load("a: " + "x" * (17 << 20))


def test_plain_document() -> None:
    assert yamlsafe.load("#cloud-config\nusers: [default]\n") == {"users": ["default"]}


def test_parse_memo_reuses_exact_text_only(tmp_path: Path) -> None:
    memo = tmp_path / "memo.json"
    yamlsafe.use_memo(memo)
    try:
        doc = yamlsafe.load("#cloud-config\nusers: [{name: bob}]\nwhen: 2032-09-01\n")  # a date: YAML-only type
        assert yamlsafe.load("a: [1, 2.5, true, null]\n") == {"a": [1, 2.5, True, None]}
        yamlsafe.save_memo()
        assert memo.stat().st_mode & 0o777 == 0o600
        saved = json.loads(memo.read_text())["entries"]
        assert [t for t, _ in saved] == ["a: [1, 2.5, true, null]\n"]  # the date document is never remembered
        yamlsafe.use_memo(memo)  # a later process
        assert yamlsafe.load("a: [1, 2.5, true, null]\n") == {"a": [1, 2.5, True, None]}
        assert yamlsafe.load("a: [1, 2.5, true, null]  \n") == {"a": [1, 2.5, True, None]}
        assert doc["when"].isoformat() == "2032-09-01"
        with pytest.raises(ConfigError):  # errors are never remembered
            yamlsafe.load("a: [1\n")
        memo.write_text('{"entries": [["k: 1\\n", "{\\"k\\": 2}"]]}')  # the memo answers by exact text
        yamlsafe.use_memo(memo)
        assert yamlsafe.load("k: 1\n") == {"k": 2}
        memo.write_text("not json")
        yamlsafe.use_memo(memo)
        assert yamlsafe.load("k: 1\n") == {"k": 1}
    finally:
        yamlsafe.use_memo(None)


def test_second_stage_needs_no_yaml_parser(tmp_path: Path) -> None:
    """The local stage parses the seed; the network stage finds the user-data in the memo and never imports yaml."""
    from tests.core.test_stages import seed_root, tether

    root = seed_root(tmp_path, "#cloud-config\nbootcmd: [[true]]\n")
    tether(root, "init", "--local")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "tether", "--root", str(root), "init"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "tether.userdata" in imported  # the user-data was processed, from the memo
    assert "yaml" not in imported
    assert "argparse" not in imported


def _string_alias_bomb() -> str:
    """About 0.5 MB of YAML that expands to 100 GB of text: 200 references to 1000 references to 500 kB."""
    big = "x" * 500_000
    refs = ", ".join(["*s"] * 1000)
    outer = ", ".join(["*l1"] * 200)
    return f"s: &s {big}\nl1: &l1 [{refs}]\nl2: [{outer}]\n"


def test_string_alias_bomb_is_refused_by_expanded_text() -> None:
    bomb = _string_alias_bomb()
    assert len(bomb) < 1_000_000
    start = time.monotonic()
    with pytest.raises(ConfigError) as ei:
        yamlsafe.load(bomb, source="user-data part 1 (cloud-config)")
    assert str(ei.value) == ("user-data part 1 (cloud-config): refused YAML: expands to more than 64 MiB of text "
                             "through aliases (an alias bomb?)")
    assert time.monotonic() - start < 5


def test_expanded_text_counts_every_reference_and_keys() -> None:
    s = "y" * 1000
    shared = [s, s]
    assert yamlsafe.expanded_size({"a": shared, "b": shared}) == (9, 4002)  # 1 + 2 keys + 2 lists of 1 + 2
    assert yamlsafe.expanded_size([1, None, True]) == (4, 24)
    # a document under both limits loads, with its aliases
    doc = yamlsafe.load("a: &a " + "z" * 1_000_000 + "\nb: [*a, *a, *a]\n")
    assert len(doc["b"]) == 3 and doc["b"][0] is doc["a"]


def test_nesting_too_deep_is_refused() -> None:
    with pytest.raises(ConfigError, match="refused YAML: nesting deeper than 200 levels"):
        yamlsafe.load("a: " + "[" * 300 + "]" * 300 + "\n")


def test_string_alias_bomb_through_all_stages_costs_only_its_part(tmp_path: Path) -> None:
    """The boot goes on: the bomb part is one recoverable error, the other part's file is written."""
    from tests.core.test_stages import boot, seed_root, status
    from tests.userdata.helpers import mime

    ud = mime(("text/cloud-config", "#cloud-config\n" + _string_alias_bomb()),
              ("text/cloud-config", "#cloud-config\nwrite_files: [{path: /etc/hello, content: hi}]\n"))
    root = seed_root(tmp_path, ud.decode())
    procs = boot(root)
    assert all("Traceback" not in p.stderr for p in procs)
    assert (root / "etc/hello").read_text() == "hi"
    rc, st = status(root)
    assert (rc, st["status"]) == (2, "done"), st
    assert ("user-data: user-data part 1 (cloud-config): refused YAML: expands to more than 64 MiB of text "
            "through aliases (an alias bomb?)") in st["recoverable_errors"]["ERROR"]
