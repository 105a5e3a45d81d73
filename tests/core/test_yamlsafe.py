from __future__ import annotations

import time

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
