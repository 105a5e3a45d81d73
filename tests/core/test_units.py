"""systemd units: installed into a root, accepted by systemd-analyze verify, and the generator's verdict."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tether.cli_units import install
from tether.generator import main as generator
from tether.target import Target

UNITS = ["tether-local.service", "tether-network.service", "tether-config.service", "tether-final.service",
         "tether.target"]


def test_install_units_writes_units_generator_and_wants(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/local/bin/tether").write_text("#!/bin/sh\n")
    written = install(Target.at(root))
    unit_dir = root / "etc/systemd/system"
    for u in UNITS:
        assert (unit_dir / u).is_file()
    assert "ExecStart=/usr/lib/tether/tether init --local --serve" in (unit_dir / "tether-local.service").read_text()
    launcher = (root / "usr/lib/tether/tether").read_text()
    assert launcher.startswith(f"#!{sys.executable} -S\n") or launcher.startswith("#!/usr/bin/python3 -S\n")
    assert "from tether.cli import main" in launcher
    gen = root / "etc/systemd/system-generators/tether-generator"
    assert os.access(gen, os.X_OK)
    assert gen.read_text().startswith("#!/usr/bin/python3 -S\n")
    assert 'TETHER_PATH = ""' in gen.read_text()     # tether is not inside this root: site's paths are used
    wants = unit_dir / "tether.target.wants/tether-network.service"
    assert os.readlink(wants) == "/etc/systemd/system/tether-network.service"
    # tether.target is not enabled statically: the generator pulls it in per boot
    assert not (unit_dir / "multi-user.target.wants/tether.target").exists()
    assert len(written) == len(set(written))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_analyze_verify_accepts_units(tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(Target.at(root), tether_path="/bin/true")
    unit_dir = root / "etc/systemd/system"
    # the stage client lives in the root; verify checks executables on this host, so point at the installed copy
    client = root / "usr/lib/tether/tether-stage"
    assert os.access(client, os.X_OK) and "exec \"$tether\"" in client.read_text()
    for unit in UNITS:
        p = unit_dir / unit
        p.write_text(p.read_text().replace("/usr/lib/tether/tether-stage", str(client)))
    proc = subprocess.run(["systemd-analyze", "verify", *UNITS], cwd=unit_dir, capture_output=True, text=True,
                          env={**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""


def test_local_stage_runs_before_network_and_network_before_sshd() -> None:
    units = Path(__file__).resolve().parents[2] / "units"
    local = (units / "tether-local.service").read_text()
    net = (units / "tether-network.service").read_text()
    assert "Before=network-pre.target" in local
    assert "After=tether-local.service" in net
    assert "sshd.service" in net.split("Before=", 1)[1]


def test_launcher_runs_tether_without_site(tmp_path: Path) -> None:
    """The units' launcher as systemd starts it: python -S, tether and its dependencies from the baked path."""
    from tether.cli_units import launcher
    text = launcher(Target.at("/")).decode()
    paths = eval(text.split("sys.path.extend(", 1)[1].split(")\n", 1)[0])  # the literal list written in
    assert isinstance(paths, list)
    prefetch = eval(text.split("PREFETCH = ", 1)[1].split("\n", 1)[0])
    names = {os.path.basename(p).split(".")[0] for p in prefetch}
    assert {"stages", "cli", "bootserver", "dataclasses", "subprocess"} <= names, sorted(names)
    assert any("/logging/" in p for p in prefetch) and any("/yaml/" in p for p in prefetch)
    assert all(p.startswith("/") and p.endswith((".pyc", ".so")) for p in prefetch)
    script = tmp_path / "tether"
    script.write_text(text)
    script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-S", str(script), "--version"], capture_output=True, text=True,
                         timeout=60, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("tether ")


def test_generator_script_finds_tether_without_site(tmp_path: Path) -> None:
    import tether
    pkg = Path(tether.__file__).resolve().parent
    root = tmp_path / "root"
    dest = root / str(pkg.parent).lstrip("/") / "tether"
    dest.mkdir(parents=True)
    (dest / "generator.py").write_text("")
    install(Target.at(root), tether_path="/bin/true")
    script = (root / "etc/systemd/system-generators/tether-generator").read_text()
    assert f'TETHER_PATH = "{pkg.parent}"' in script
    # the script as systemd starts it (python -S): tether imports from the baked-in directory, site is not loaded
    probe = script.split("try:", 1)[0] + \
        "import tether.generator, sys; print(tether.generator.__file__, 'site' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(pkg / "generator.py"), "False"]


def test_generator_enables_or_records_why_not(tmp_path: Path) -> None:
    root = tmp_path / "root"
    sysroot = tmp_path / "sys"
    (sysroot / "proc").mkdir(parents=True)
    (sysroot / "proc/cmdline").write_text("root=/dev/vda1 console=ttyS0\n")
    out = tmp_path / "gen"
    link = out / "multi-user.target.wants/tether.target"
    # nothing could provide instance data and nothing is configured: off, as cloud-init's ds-identify
    generator([str(out), str(out), str(out)], root=str(root), sysroot=str(sysroot))
    assert not link.is_symlink()
    assert "no datasource found" in (root / "run/tether/disabled").read_text()
    # a NoCloud seed directory in the image: on, and the detection is recorded for the stages
    (root / "var/lib/cloud/seed/nocloud").mkdir(parents=True)
    (root / "var/lib/cloud/seed/nocloud/meta-data").write_text("instance-id: x\n")
    generator([str(out), str(out), str(out)], root=str(root), sysroot=str(sysroot))
    assert link.is_symlink()
    assert (root / "run/tether/enabled").exists()
    assert not (root / "run/tether/disabled").exists()
    assert '"NoCloud"' in (root / "run/tether/detect.json").read_text()

    (sysroot / "proc/cmdline").write_text("root=/dev/vda1 tether=disabled\n")
    generator([str(out), str(out), str(out)], root=str(root), sysroot=str(sysroot))
    assert not link.is_symlink()
    assert "kernel command line tether=disabled" in (root / "run/tether/disabled").read_text()

    (sysroot / "proc/cmdline").write_text("root=/dev/vda1\n")
    (root / "etc/tether").mkdir(parents=True)
    (root / "etc/tether/disabled").write_text("")
    generator([str(out), str(out), str(out)], root=str(root), sysroot=str(sysroot))
    assert not link.is_symlink()
    assert "/etc/tether/disabled exists" in (root / "run/tether/disabled").read_text()


ENGINE_UNITS = ["tether-commit.service", "tether-update.service", "tether-update.timer"]


def test_engine_units_installed_enabled_and_gating_boot_complete(tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(Target.at(root), tether_path="/usr/bin/tether")
    unit_dir = root / "etc/systemd/system"
    commit = (unit_dir / "tether-commit.service").read_text()
    assert "ExecStart=/usr/bin/tether commit" in commit
    assert "Before=boot-complete.target" in commit
    # boot-complete.target (pulled in on counted boots) requires the commit, so a failed commit is never blessed
    gate = (unit_dir / "boot-complete.target.d/10-tether.conf").read_text()
    assert "Requires=tether-commit.service" in gate and "After=tether-commit.service" in gate
    bless = (unit_dir / "systemd-bless-boot.service.d/10-esp.conf").read_text()
    assert "RequiresMountsFor=" in bless and "/efi" in bless.split("RequiresMountsFor=")[1]
    assert os.readlink(unit_dir / "multi-user.target.wants/tether-commit.service") == \
        "/etc/systemd/system/tether-commit.service"
    assert os.readlink(unit_dir / "timers.target.wants/tether-update.timer") == \
        "/etc/systemd/system/tether-update.timer"
    timer = (unit_dir / "tether-update.timer").read_text()
    assert "OnBootSec=" in timer and "OnUnitActiveSec=" in timer and "RandomizedDelaySec=" in timer
    assert "update --from-metadata" in (unit_dir / "tether-update.service").read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_analyze_verify_accepts_engine_units(tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(Target.at(root), tether_path="/bin/true")
    unit_dir = root / "etc/systemd/system"
    proc = subprocess.run(["systemd-analyze", "verify", *ENGINE_UNITS], cwd=unit_dir, capture_output=True, text=True,
                          env={**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""


def test_install_units_twice_keeps_unit_files(tmp_path: Path) -> None:
    # an A/B stage installs the units into a root that already has them enabled (seen in a QEMU boot: the
    # enable links resolved to the unit files, which became links to themselves and the slot ran no tether unit)
    target = Target.at(tmp_path)
    install(target)
    install(target)
    unit = tmp_path / "etc/systemd/system/tether-commit.service"
    assert unit.is_file() and not unit.is_symlink()
    link = tmp_path / "etc/systemd/system/multi-user.target.wants/tether-commit.service"
    assert os.readlink(link) == "/etc/systemd/system/tether-commit.service"
