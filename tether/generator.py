"""The systemd generator's logic: enable tether.target for this boot, or record why not.

systemd runs generators with three output directories (normal, early, late); a ``.wants`` symlink in the
normal one adds tether.target to this boot only. The verdict is written to /run/tether/ for ``tether status``.

Every generator delays the whole boot, so this path imports ``os``, ``json`` and tether's detector only: paths
are plain strings (no pathlib, no Target, no logging, no subprocess; benchmarks/detect_bench.py measures it).
"""

from __future__ import annotations

import os
import sys

from tether.detect import detect, write_detection_at
from tether.host import Host

TARGET_UNIT = "/etc/systemd/system/tether.target"


def main(argv: list[str], root: str = "/", sysroot: str = "/") -> int:
    normal = argv[0] if argv else "/run/systemd/generator"
    root = os.path.abspath(root)
    run = os.path.join(root, "run/tether")
    try:
        os.makedirs(run, exist_ok=True)
    except OSError:
        pass
    det = detect(Host(sysroot=sysroot), {}, root)
    reason = None if det.enabled else det.reason
    if det.enabled and det.candidates == ["None"] and not _has_system_config(root):
        # ds-identify's rule: nothing could provide instance data and nobody configured tether by hand
        reason = f"no datasource found: {det.reason}"
    try:
        write_detection_at(root, det)
    except OSError as e:
        print(f"tether-generator: detect.json: {e}", file=sys.stderr)
    wants = os.path.join(normal, "multi-user.target.wants")
    link = os.path.join(wants, "tether.target")
    if reason:
        _write(os.path.join(run, "disabled"), reason + "\n")
        _remove(os.path.join(run, "enabled"))
        _remove(link)
        return 0
    _remove(os.path.join(run, "disabled"))
    os.makedirs(wants, exist_ok=True)
    if not os.path.islink(link):
        os.symlink(TARGET_UNIT, link)
    _write(os.path.join(run, "enabled"), "enabled by generator\n")
    return 0


def _has_system_config(root: str) -> bool:
    """Any tether or cloud-init system configuration (read by the stages, not here: no YAML in a generator)."""
    if os.path.exists(os.path.join(root, "etc/tether/tether.cfg")):
        return True
    for d in ("etc/tether/tether.cfg.d", "etc/cloud/cloud.cfg.d"):
        try:
            if any(n.endswith(".cfg") for n in os.listdir(os.path.join(root, d))):
                return True
        except OSError:
            continue
    return False


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        print(f"tether-generator: {path}: {e}", file=sys.stderr)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
