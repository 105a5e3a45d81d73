"""cloud-init's own examples, applied by tether to temporary roots.

Every ``doc/examples/cloud-config-*.txt`` and ``doc/module-docs/*/example*.yaml``: parsed by the user-data
pipeline, then every module of the three stages runs against a temporary root (commands answered by a fake
runner that emulates the account tools; nothing touches the network). An example that uses only modules
tether implements must apply with no error and no invalid-config warning; one that names unsupported modules
must produce exactly the "not supported" warnings for those modules. Totals are printed (run with -s).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import compat_dir, make_root
from tests.fakes import FakeRunner
from tests.modules.fake_accounts import accounts_runner
from tether import http, sysconfig
from tether.instance import InstanceData, instance_data_doc
from tether.modrunner import run_modules
from tether.module import ModuleContext
from tether.modules import REGISTERED, load
from tether.runner import Result, Runner
from tether.status import StageStatus
from tether.target import Target
from tether.unsupported import UNSUPPORTED, unsupported_in
from tether.userdata import process

RESULTS: dict[str, list[str]] = {"applied": [], "warned": [], "failed": []}
MODULE_USE: dict[str, int] = {}


def examples() -> list[Path]:
    base = compat_dir("cloud-init", "doc")
    return sorted(base.glob("examples/cloud-config-*.txt")) + sorted(base.glob("module-docs/*/example*.yaml"))


def _ids() -> list[str]:
    try:
        return [f"{p.parent.name}/{p.name}" for p in examples()]
    except pytest.skip.Exception:
        return []


def keys_by_module() -> dict[str, tuple[str, ...]]:
    return {name: tuple(load(name).KEYS) for name in REGISTERED}


def _real(argv: list[str], kw: dict[str, Any]) -> Result:
    return Runner().run(argv, check=False, timeout=60)


def permissive_runner() -> FakeRunner:
    runner = accounts_runner(FakeRunner())
    for tool in ("fallocate", "dd", "mkswap", "chmod"):  # swap files: made for real inside the temp root
        runner.expect(f"{tool} *", handler=_real)
    runner.expect("*")  # anything else (apt-get, update-ca-certificates, systemctl --root ...) succeeds
    return runner


KEY = (b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBFakeKeyFromTheStandInKeyserver\n"
       b"-----END PGP PUBLIC KEY BLOCK-----\n")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in web: keyserver look-ups (apt examples) get a key, other URLs (write_files source) a body."""
    def fake(url: str, **kw: Any) -> Any:
        if "/pks/lookup" in url:
            return http.Response(url, 200, KEY, {})
        return http.Response(url, 200, b"stand-in body for " + url.encode(), {})
    monkeypatch.setattr(http, "request", fake)


@pytest.mark.parametrize("path", examples() if _ids() else [], ids=_ids())
def test_example_applies(path: Path, tmp_path: Path) -> None:
    raw = path.read_bytes()
    inst = InstanceData(datasource="NoCloud", instance_id="iid-compat", platform="nocloud",
                        local_hostname="compat-host", userdata=raw)
    processed = process(raw, None, instance_data=instance_data_doc(inst, None))
    assert not processed.errors, processed.errors
    cfg = processed.cloud_config
    used = [m for m, keys in keys_by_module().items() if any(k in cfg for k in keys)]
    for m in used:
        MODULE_USE[m] = MODULE_USE.get(m, 0) + 1
    expected_unsupported = unsupported_in(cfg, set(REGISTERED))
    root = make_root(tmp_path / "root")
    tz = cfg.get("timezone")
    if isinstance(tz, str) and Path("/usr/share/zoneinfo", tz).is_file():  # the image would carry tzdata
        (root / "usr/share/zoneinfo" / tz).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path("/usr/share/zoneinfo", tz), root / "usr/share/zoneinfo" / tz)
    merged = sysconfig.merge(sysconfig.load(Target.at(root)), cfg)
    ctx = ModuleContext(target=Target.at(root), runner=permissive_runner(), instance=inst, cloud_config=merged,
                        system_config=sysconfig.DEFAULTS)
    problems: list[str] = []
    for stage, key in (("init", "init"), ("config", "modules-config"), ("final", "modules-final")):
        status = StageStatus(Target.at(root), key)
        run_modules(ctx, stage, sysconfig.module_list(merged, stage), status)
        problems += [f"{stage}: {e}" for e in status.errors]
        problems += [f"{stage}: {w}" for w in status.recoverable.get("WARNING", [])
                     if "invalid configuration" in w]
    name = f"{path.parent.name}/{path.name}"
    if problems:
        RESULTS["failed"].append(name)
    elif expected_unsupported:
        RESULTS["warned"].append(name)
    else:
        RESULTS["applied"].append(name)
    assert not problems, "\n".join(problems)
    # one warning per unsupported module the example uses, naming it
    named = sorted(m for m, keys in UNSUPPORTED.items() if any(k in cfg for k in keys))
    assert [w.split()[1] for w in expected_unsupported] == named


def test_zz_report() -> None:
    """Printed last: how many examples applied, warned and failed, and per module how many use it."""
    if not any(RESULTS.values()):
        pytest.skip("no examples ran")
    print(f"\ncloud-init examples: applied {len(RESULTS['applied'])} / warned {len(RESULTS['warned'])} "
          f"(unsupported modules named) / failed {len(RESULTS['failed'])}")
    for m in sorted(MODULE_USE, key=lambda m: -MODULE_USE[m]):
        print(f"  {m:<34} used by {MODULE_USE[m]:3d} examples, handled by tether")
    assert not RESULTS["failed"], RESULTS["failed"]
