"""Semaphores follow cloud-init: written when a once-per-instance / once module starts and kept when it fails,
so a module that failed part-way (a runcmd script that ran some commands) does not run again next boot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.modules.sysmod_support import real_chroot_root
from tether.modrunner import run_modules
from tether.runner import Runner
from tether.status import StageStatus


def _failing_script(root: Path, kind: str) -> None:
    p = root / "var/lib/tether/scripts" / kind / "half"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(f"#!/bin/sh\necho step1 >> /ran-{kind}\nexit 3\n")
    p.chmod(0o700)


def _runs(root: Path, kind: str) -> int:
    f = root / f"ran-{kind}"
    return len(f.read_text().split()) if f.exists() else 0


def test_failed_once_per_instance_and_once_modules_keep_their_semaphore(make_ctx: Any, root: Path) -> None:
    real_chroot_root(root)
    for kind in ("per-instance", "per-once", "per-boot"):
        _failing_script(root, kind)
    names: list[tuple[str, str | None]] = [("scripts_per_instance", None), ("scripts_per_once", None),
                                           ("scripts_per_boot", None)]
    for boot in (1, 2):
        status = StageStatus(make_ctx().target, "modules-final")
        events = run_modules(make_ctx(runner=Runner()), "final", names, status)
        results = {e.name: e.result for e in events.events}
        if boot == 1:
            assert results == dict.fromkeys(("scripts_per_instance", "scripts_per_once", "scripts_per_boot"),
                                            "failed")
            assert len(status.errors) == 3
        else:
            assert results == {"scripts_per_instance": "already-ran", "scripts_per_once": "already-ran",
                               "scripts_per_boot": "failed"}
    assert (_runs(root, "per-instance"), _runs(root, "per-once"), _runs(root, "per-boot")) == (1, 1, 2)
    assert (root / "var/lib/tether/instances/iid-test-0001/sem/config_scripts_per_instance").exists()
    assert (root / "var/lib/tether/sem/config_scripts_per_once.once").exists()
    # a new instance runs the per-instance module again (and only that one)
    status = StageStatus(make_ctx().target, "modules-final")
    run_modules(make_ctx(runner=Runner(), iid="iid-other"), "final", names, status)
    assert (_runs(root, "per-instance"), _runs(root, "per-once"), _runs(root, "per-boot")) == (2, 1, 3)
