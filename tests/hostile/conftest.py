"""Print the worst times of the hostile-server suite after the run."""

from __future__ import annotations

import pytest

from tests.hostile import results


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in results.summary():
        terminalreporter.write_line(line)
