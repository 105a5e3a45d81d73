"""Network namespaces for root tests, and systemd-networkd run inside one against a directory of files.

networkd runs in a private mount namespace where /etc/systemd/network is the test's directory, /run/systemd
is a fresh tmpfs, and /sys is read-only: that last one tells networkd there is no udev to wait for (as in a
container), so it configures links as soon as it sees them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

NETWORKD = "/lib/systemd/systemd-networkd"
_SCRIPT = ('set -e; mount --make-rprivate /; mount -o remount,bind,ro /sys; mkdir -p /run/systemd; '
           'mount -t tmpfs tmpfs /run/systemd; mkdir -p /run/systemd/netif; '
           'chown systemd-network: /run/systemd/netif 2>/dev/null || true; '
           'mount --bind "$1" /etc/systemd/network; exec "$2"')


@contextlib.contextmanager
def netns() -> Iterator[str]:
    name = f"tether-t-{os.getpid()}-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=10)


def ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, timeout=10, capture_output=True)


@contextlib.contextmanager
def networkd(ns: str, confdir: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """systemd-networkd in ``ns`` reading ``confdir``; stopped (by its pid) on exit."""
    with open(log, "wb") as out:
        # ip netns exec, unshare and sh all exec, so the pid we hold ends up being networkd itself
        proc = subprocess.Popen(["ip", "netns", "exec", ns, "unshare", "-m", "sh", "-c", _SCRIPT, "sh",
                                 str(confdir), NETWORKD], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
