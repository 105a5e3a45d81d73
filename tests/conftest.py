"""Shared fixtures: a minimal target root, a fake runner, a module context."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeRunner
from tether.instance import InstanceData
from tether.module import ModuleContext
from tether.target import Target

COMPAT = Path(__file__).resolve().parents[1].parent / "shared" / "compat"

MINIMAL_ETC = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/bash\n"
                  "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
                  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    "etc/group": "root:x:0:\ndaemon:x:1:\nadm:x:4:\nsudo:x:27:\nusers:x:100:\nnogroup:x:65534:\n",
    "etc/shadow": "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n",
    "etc/gshadow": "root:*::\ndaemon:*::\nadm:*::\nsudo:*::\nusers:*::\nnogroup:*::\n",
    "etc/login.defs": "UID_MIN 1000\nUID_MAX 60000\nGID_MIN 1000\nGID_MAX 60000\n"
                      "SYS_UID_MIN 100\nSYS_UID_MAX 999\nSYS_GID_MIN 100\nSYS_GID_MAX 999\n"
                      "ENCRYPT_METHOD SHA512\nUSERGROUPS_ENAB yes\nCREATE_HOME yes\n",
    "etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\nKbdInteractiveAuthentication no\n"
                           "UsePAM yes\nX11Forwarding yes\nPrintMotd no\nAcceptEnv LANG LC_*\n"
                           "Subsystem sftp /usr/lib/openssh/sftp-server\n",
    "etc/hosts": "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
    "etc/hostname": "localhost\n",
    "etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
                      'VERSION_ID="12"\nVERSION_CODENAME=bookworm\nID=debian\n',
}


def make_root(base: Path, files: dict[str, str] | None = None) -> Path:
    for rel, text in {**MINIMAL_ETC, **(files or {})}.items():
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (base / "etc/shadow").chmod(0o640)
    (base / "etc/gshadow").chmod(0o640)
    for d in ("root", "home", "tmp", "var/lib", "var/log", "run"):
        (base / d).mkdir(parents=True, exist_ok=True)
    return base


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path / "root")


@pytest.fixture
def target(root: Path) -> Target:
    return Target.at(root)


@pytest.fixture
def fake_runner() -> FakeRunner:
    return FakeRunner()


@pytest.fixture
def make_ctx(target: Target, fake_runner: FakeRunner) -> Any:
    def make(cloud_config: dict[str, Any] | None = None, system_config: dict[str, Any] | None = None,
             runner: Any = None, iid: str = "iid-test-0001", live: bool = False) -> ModuleContext:
        return ModuleContext(
            target=target,
            runner=runner or fake_runner,
            instance=InstanceData(datasource="NoCloud", instance_id=iid, platform="nocloud",
                                  local_hostname="testhost"),
            cloud_config=cloud_config or {},
            system_config=system_config or {},
            live=live,
        )
    return make


def needs_root() -> pytest.MarkDecorator:
    return pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def needs_tool(*names: str) -> pytest.MarkDecorator:
    missing = [n for n in names if shutil.which(n) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}")


def compat_dir(*parts: str) -> Path:
    p = COMPAT.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"compatibility corpus not found at {p}")
    return p


sys.dont_write_bytecode = True
