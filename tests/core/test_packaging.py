"""A built wheel (not only the editable install) carries tether.modules, .datasources, .engine and the units."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # from a copy: an in-tree build/ directory would keep files deleted since, and dirty the checkout
    src = tmp_path_factory.mktemp("src") / "tether"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", ".cache",
                                                             "__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"pip wheel failed:\n{proc.stdout}\n{proc.stderr}")
    (whl,) = out.glob("tether-*.whl")
    return whl


def test_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for must in ("tether/cli.py", "tether/modules/write_files.py", "tether/datasources/nocloud.py",
                 "tether/engine/hostconfig.py", "tether/units/tether-local.service", "tether/units/tether-generator",
                 "tether/units/tether-stage", "tether/units/tether-launcher",
                 "tether/userdata/pipeline.py", "tether/network/networkd.py", "tether/examples/nocloud/user-data"):
        assert must in names, must
    assert not any(n.startswith(("modules/", "datasources/", "engine/", "units/")) for n in names)
    assert not any(n.startswith("tests/") for n in names)


def test_installed_wheel_imports_and_runs(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, timeout=300)
    code = ("import tether.modules, tether.datasources, tether.engine, tether.units, tether.network;"
            "from tether.modules import REGISTERED, load; [load(n) for n in REGISTERED];"
            "from tether.cli_units import install; from tether.target import Target; import sys;"
            "print(len(install(Target.at(sys.argv[1]), tether_path='/bin/true')))")
    proc = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}",
                           str(tmp_path / "root")], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) >= 9
    assert (tmp_path / "root/etc/systemd/system/tether-final.service").exists()
