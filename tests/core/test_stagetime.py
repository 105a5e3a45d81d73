from __future__ import annotations

import re

import pytest

from tether import stagetime


def test_marks_record_process_age_and_cpu_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each mark: seconds since the process started and the CPU it had used by then; busy work shows in both."""
    monkeypatch.setattr(stagetime, "MARKS", {})
    stagetime.mark("main")
    n = 0
    for i in range(3_000_000):  # ~0.1 s of CPU
        n += i
    stagetime.mark("imports")
    text = stagetime.describe()
    got = re.fullmatch(r"main (\d+\.\d\d)s \(cpu (\d+\.\d\d)s\), imports (\d+\.\d\d)s \(cpu (\d+\.\d\d)s\)", text)
    assert got, text
    age1, cpu1, age2, cpu2 = map(float, got.groups())
    assert age2 >= age1 and cpu2 > cpu1
    assert cpu2 - cpu1 <= age2 - age1 + 0.02   # a single thread cannot use more CPU than time passed
    assert stagetime.MARKS["imports"][1] >= stagetime.MARKS["main"][1]


def test_describe_is_empty_without_marks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stagetime, "MARKS", {})
    assert stagetime.describe() == ""


def test_since_reports_time_and_cpu_from_a_mark(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stagetime, "MARKS", {})
    assert stagetime.since("init") == ""
    stagetime.mark("init")
    n = 0
    for i in range(3_000_000):
        n += i
    got = re.fullmatch(r"(\d+\.\d\d)s \(cpu (\d+\.\d\d)s\)", stagetime.since("init"))
    assert got, stagetime.since("init")
    wall, cpu = map(float, got.groups())
    assert cpu > 0 and cpu <= wall + 0.02
