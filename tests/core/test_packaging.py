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


def _requires(wheel: Path) -> tuple[set[str], set[str]]:
    """(unconditional, extra-only) distribution names from the wheel's METADATA, lower-case."""
    import re
    meta = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".dist-info/METADATA"))
    plain: set[str] = set()
    extra: set[str] = set()
    for line in zipfile.ZipFile(wheel).read(meta).decode().splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        spec = line.split(":", 1)[1].strip()
        name = re.split(r"[\s<>=!~;\[(]", spec, maxsplit=1)[0].lower()
        (extra if "extra ==" in spec else plain).add(name)
    return plain, extra


# what the README says tether does -> the distribution that feature imports
README_PROMISES = {"jinja templates": "jinja2", "COSI": "zstandard", "PyYAML": "pyyaml"}


def test_default_install_covers_what_the_readme_promises(wheel: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    install = [ln for ln in readme.splitlines() if ln.lstrip().startswith("pip install")]
    assert install, "the README has no install line"
    assert all("[" not in ln.split("#", 1)[0] for ln in install), install  # no extras needed for the features
    plain, _extra = _requires(wheel)
    for phrase, dist in README_PROMISES.items():
        assert phrase in readme, f"README no longer mentions {phrase!r}: update README_PROMISES"
        assert dist in plain, f"README promises {phrase} but {dist} is not a default dependency ({sorted(plain)})"


def test_template_and_zstd_errors_do_not_name_removed_extras() -> None:
    for rel in ("tether/userdata/template.py", "engine/formats.py", "docs/userdata.md", "README.md"):
        text = (ROOT / rel).read_text()
        assert "tether[templates]" not in text and "tether[image]" not in text, rel
