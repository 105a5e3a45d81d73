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


def test_mime_script_parts_end_to_end_across_boots(tmp_path):
    """user-data with per-boot/instance/once parts -> scripts in the right directories (0700) -> run by the
    final stage's scripts_per_* modules: every boot, once per instance, once ever."""
    import shutil
    import stat

    from tests.core.test_stages import SEED, boot, seed_root
    from tests.userdata.helpers import mime

    ud = mime(*((f"text/x-shellscript-per-{kind}", f"#!/bin/sh\necho {kind} >> /ran-{kind}\n")
                for kind in ("boot", "instance", "once"))).decode()
    root = seed_root(tmp_path, ud)
    real_chroot_root(root)

    def counts():
        return [len((root / f"ran-{k}").read_text().split()) if (root / f"ran-{k}").exists() else 0
                for k in ("boot", "instance", "once")]

    boot(root)
    for n, kind in enumerate(("per-boot", "per-instance", "per-once"), start=1):
        path = root / "var/lib/tether/scripts" / kind / f"file{n}"
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, kind
    assert counts() == [1, 1, 1]
    shutil.rmtree(root / "run")
    boot(root)                       # same instance
    assert counts() == [2, 1, 1]
    (root / SEED / "meta-data").write_text("instance-id: iid-second\n")
    shutil.rmtree(root / "run")
    boot(root)                       # new instance
    assert counts() == [3, 2, 1]
