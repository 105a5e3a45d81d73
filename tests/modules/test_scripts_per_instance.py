from __future__ import annotations

from tests.conftest import needs_root
from tests.modules.sysmod_support import fake_system, parse
from tether.modules import scripts_per_instance as mod

DIR = "var/lib/tether/scripts/per-instance"


def test_registration():
    assert (mod.STAGE, mod.FREQUENCY, mod.RUN_WITHOUT_KEYS) == ("final", "once-per-instance", True)


def test_empty_or_missing_directory(make_ctx, fake_runner):
    mod.handle(make_ctx(), parse(mod, {}))
    assert fake_runner.calls == []


@needs_root()
def test_runs_its_own_directory(make_ctx, root, fake_runner):
    fake_system(root)
    for d in ("per-boot", "per-instance", "per-once"):
        p = root / "var/lib/tether/scripts" / d / "s"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("#!/bin/sh\n")
        p.chmod(0o755)
    fake_runner.expect("chroot *")
    mod.handle(make_ctx(), parse(mod, {}))
    assert fake_runner.commands() == [f"chroot {root} /{DIR}/s"]
