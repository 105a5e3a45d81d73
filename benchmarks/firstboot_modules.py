"""First-boot module budget: users_groups + ssh + write_files + set_hostname + runcmd on one user-data,
against a temporary root, with the real tools (useradd, chpasswd, ssh-keygen, visudo); ed25519 host keys only.

Budget (issue 3): <= 300 ms wall. Run as root: ``.venv/bin/python benchmarks/firstboot_modules.py [rounds]``.
Modules missing from modules/ are left out and named in the output.
"""

from __future__ import annotations

import importlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import make_root  # noqa: E402
from tether import yamlsafe  # noqa: E402
from tether.convert import convert  # noqa: E402
from tether.instance import InstanceData  # noqa: E402
from tether.modrunner import module_config  # noqa: E402
from tether.module import ModuleContext  # noqa: E402
from tether.runner import Runner  # noqa: E402
from tether.sysconfig import DEFAULTS  # noqa: E402
from tether.target import Target  # noqa: E402

USER_DATA = """\
#cloud-config
hostname: bench
fqdn: bench.example.com
ssh_genkeytypes: [ed25519]
ssh_quiet_keygen: true
ssh_authorized_keys:
  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm0dZ6oTzqcH8WjAWn7uN2x0t0mDxPpB1n6Ew0Y0B2H admin@laptop
users:
  - default
  - name: app
    gecos: Application
    groups: [users, docker]
    shell: /bin/bash
    sudo: "ALL=(ALL) NOPASSWD:/usr/bin/systemctl"
    plain_text_passwd: bench-password-1
    lock_passwd: false
    ssh_authorized_keys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK2mB7wM5tR9Q2yQ8m0dD4mZ1s0yH0v3k3nW6Xk0X8Qb app@ci
write_files:
  - path: /etc/app/config.toml
    content: |
      listen = "0.0.0.0:8080"
    permissions: '0640'
runcmd:
  - [systemctl, enable, app.service]
  - echo done
"""
ORDER = ("write_files", "set_hostname", "users_groups", "ssh", "runcmd")
# Groups a Debian cloud image already has (the default user joins them). The conftest minimal root lacks
# them, which would add eight groupadd runs (~10-20 ms each) that a real first boot does not pay; the
# "minimal root" figure is printed too, for comparison.
DEBIAN_IMAGE_GROUPS = ("dialout:x:20:\ncdrom:x:24:\nfloppy:x:25:\naudio:x:29:\ndip:x:30:\nvideo:x:44:\n"
                       "plugdev:x:46:\nnetdev:x:108:\n")


def one_round(cloud_config: dict[str, Any], mods: list[Any], image_groups: bool) -> tuple[float, list[str]]:
    with tempfile.TemporaryDirectory() as tmp:
        root = make_root(Path(tmp) / "root")
        if image_groups:
            with open(root / "etc/group", "a") as f:
                f.write(DEBIAN_IMAGE_GROUPS)
            with open(root / "etc/gshadow", "a") as f:
                f.write("".join(f"{line.split(':')[0]}:!::\n" for line in DEBIAN_IMAGE_GROUPS.splitlines()))
        ctx = ModuleContext(target=Target.at(root), runner=Runner(),
                            instance=InstanceData(datasource="NoCloud", instance_id="iid-bench",
                                                  local_hostname="bench"),
                            cloud_config=cloud_config, system_config=DEFAULTS)
        t0 = time.perf_counter()
        for mod in mods:
            warnings: list[str] = []
            mod.handle(ctx, module_config(mod, cloud_config, warnings))
        return (time.perf_counter() - t0) * 1000, ctx.warnings


def main() -> int:
    if os.geteuid() != 0:
        print("needs root (useradd --root)", file=sys.stderr)
        return 2
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    cloud_config = yamlsafe.load(USER_DATA, "bench user-data")
    mods, missing = [], []
    for name in ORDER:
        try:
            mods.append(importlib.import_module(f"tether.modules.{name}"))
        except ImportError:
            missing.append(name)
    convert(dict, {})  # warm the converter's caches outside the measurement
    print(f"modules: {', '.join(m.NAME for m in mods)}" + (f" (missing: {', '.join(missing)})" if missing else ""))
    medians = {}
    for label, image_groups in (("Debian-image root", True), ("minimal root", False)):
        times = []
        for _ in range(rounds):
            ms, warnings = one_round(cloud_config, mods, image_groups)
            times.append(ms)
        medians[label] = statistics.median(times)
        print(f"{label}: wall ms per first boot: median {medians[label]:.1f}, min {min(times):.1f}, "
              f"max {max(times):.1f} over {rounds} rounds; warnings: {warnings}")
    print("budget 300 ms (Debian-image root):", "ok" if medians["Debian-image root"] <= 300 else "OVER")
    return 0 if medians["Debian-image root"] <= 300 else 1


if __name__ == "__main__":
    sys.exit(main())
