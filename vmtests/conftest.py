"""Fixtures for the QEMU-booted tests (``pytest vmtests``; needs root, installs missing host tools itself).

Environment: ``TETHER_VM_CACHE`` (image cache, default /var/cache/tether-vmtests), ``TETHER_VM_KEEP=1`` (keep
every serial log, not only failed tests'). Every test here gets the ``vm`` marker.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmtests.harness import cache, hosttools, image, rootfs
from vmtests.harness.imds import ImdsServer
from vmtests.harness.lab import Lab, log_tail, ssh_keypair

HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vm_engine: boots QEMU guests through the servicing engine's A/B loop")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rerun = config.pluginmanager.hasplugin("rerunfailures")
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.vm)
            if rerun:
                # TCG timing on a shared 2-core host varies 2-4x; a VM scenario gets one more try (the first
                # failure is still reported as a rerun in the summary)
                item.add_marker(pytest.mark.flaky(reruns=1))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    if report.failed:
        lab: Lab | None = getattr(item, "_vm_lab", None)
        for log in lab.logs if lab else []:
            report.sections.append((f"serial console tail ({log})", log_tail(log)))


_FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def vm_host() -> None:
    """Root, the host tools (apt-get installs what is missing) and the cached base root filesystem."""
    if os.geteuid() != 0:
        pytest.skip("VM tests need root (debootstrap, chroot)")
    hosttools.ensure_host_tools()
    rootfs.base_rootfs()


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Big per-session files (the tether disk) live in the cache's file system, removed at the end."""
    path = cache.cache_dir() / f"session-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def base_image(vm_host: None) -> Path:
    """Debian + the harness agent, no first-boot agent (cached)."""
    return image.base_disk()


@pytest.fixture(scope="session")
def tether_wheel(vm_host: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return image.build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def tether_image(tether_wheel: Path, session_dir: Path) -> Path:
    """Debian + harness agent + tether from this checkout, its units installed; built once per session."""
    try:
        return image.tether_disk(session_dir / "tether", tether_wheel)
    except image.TetherNotReady as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    return ssh_keypair(tmp_path_factory.mktemp("ssh"))


@pytest.fixture
def lab(request: pytest.FixtureRequest, tmp_path: Path, vm_host: None) -> Iterator[Lab]:
    the_lab = Lab(tmp_path / "vm")
    request.node._vm_lab = the_lab  # read by pytest_runtest_makereport for the serial tail
    yield the_lab
    failed = request.node.stash.get(_FAILED, True)
    the_lab.cleanup(keep_logs=failed or os.environ.get("TETHER_VM_KEEP") == "1")


@pytest.fixture
def imds() -> Iterator[ImdsServer]:
    with ImdsServer() as server:
        yield server
