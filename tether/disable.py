"""Whether tether runs this boot: /etc/tether/disabled or ``tether=disabled`` on the kernel command line."""

from __future__ import annotations

from tether.host import Host
from tether.target import Target


def disabled_reason(target: Target, host: Host) -> str | None:
    if target.exists("/etc/tether/disabled"):
        return "disabled by marker file /etc/tether/disabled"
    if host.cmdline_value("tether") == "disabled":
        return "disabled by kernel command line (tether=disabled)"
    return None
