from __future__ import annotations

import pytest

from tests.conftest import needs_root, needs_tool
from tests.modules.sysmod_support import apply_twice, fake_system, parse, real_chroot_root
from tether.module import ModuleError
from tether.modules import scripts_per_boot as mod
from tether.runner import Runner

DIR = "var/lib/tether/scripts/per-boot"


def _script(root, name, text="#!/bin/sh\necho hi\n", mode=0o755):
    p = root / DIR / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    p.chmod(mode)


def test_registration():
    assert (mod.STAGE, mod.FREQUENCY, mod.RUN_WITHOUT_KEYS) == ("final", "always", True)


def test_no_runnable_system_leaves_scripts_unrun(make_ctx, root, fake_runner):
    _script(root, "a")
    assert apply_twice(mod, make_ctx(), {}, root) == {}
    assert fake_runner.calls == []


@needs_root()
def test_runs_in_name_order_and_reports_failures(make_ctx, root, fake_runner):
    fake_system(root)
    _script(root, "20-b")
    _script(root, "10-a")
    _script(root, "30-c")
    _script(root, "15-not-executable", mode=0o644)
    fake_runner.expect(f"chroot * /{DIR}/20-b", code=3).expect("chroot *", stdout="out\n")
    with pytest.raises(ModuleError, match=r"20-b \(exit code 3\)"):
        mod.handle(make_ctx(), parse(mod, {}))
    assert fake_runner.commands() == [f"chroot {root} /{DIR}/10-a", f"chroot {root} /{DIR}/20-b",
                                      f"chroot {root} /{DIR}/30-c"]
    log = (root / "var/log/tether-output.log").read_text()
    assert f"/{DIR}/10-a (exit 0)\nout\n" in log and f"/{DIR}/20-b (exit 3)" in log


@needs_root()
@needs_tool("chroot", "ldd")
def test_real_chroot_run(make_ctx, root):
    real_chroot_root(root)
    _script(root, "hello", "#!/bin/sh\necho hello from $INSTANCE_ID\n")
    mod.handle(make_ctx(runner=Runner()), parse(mod, {}))
    assert "hello from iid-test-0001" in (root / "var/log/tether-output.log").read_text()
