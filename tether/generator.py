"""The systemd generator's logic: enable tether.target for this boot, or record why not.

systemd runs generators with three output directories (normal, early, late); a ``.wants`` symlink in the
normal one adds tether.target to this boot only. The verdict is written to /run/tether/ for ``tether status``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tether.detect import detect, write_detection
from tether.host import Host
from tether.target import Target

TARGET_UNIT = "/etc/systemd/system/tether.target"


def main(argv: list[str], root: str = "/", sysroot: str = "/") -> int:
    normal = Path(argv[0]) if argv else Path("/run/systemd/generator")
    target = Target.at(root)
    host = Host(sysroot=Path(sysroot))
    run = target.path("/run/tether")
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    det = detect(host, {}, target)
    reason = None if det.enabled else det.reason
    if det.enabled and det.candidates == ["None"] and not _has_system_config(target):
        # ds-identify's rule: nothing could provide instance data and nobody configured tether by hand
        reason = f"no datasource found: {det.reason}"
    try:
        write_detection(target, det)
    except OSError:
        pass
    link = normal / "multi-user.target.wants" / "tether.target"
    if reason:
        _write(run / "disabled", reason + "\n")
        _remove(run / "enabled")
        _remove(link)
        return 0
    _remove(run / "disabled")
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        os.symlink(TARGET_UNIT, link)
    _write(run / "enabled", "enabled by generator\n")
    return 0


def _has_system_config(target: Target) -> bool:
    """Any tether or cloud-init system configuration (read by the stages, not here: no YAML in a generator)."""
    if target.exists("/etc/tether/tether.cfg"):
        return True
    for d in ("/etc/tether/tether.cfg.d", "/etc/cloud/cloud.cfg.d"):
        try:
            if any(n.endswith(".cfg") for n in os.listdir(target.path(d))):
                return True
        except OSError:
            continue
    return False


def _write(p: Path, text: str) -> None:
    try:
        p.write_text(text)
    except OSError as e:
        print(f"tether-generator: {p}: {e}", file=sys.stderr)


def _remove(p: Path) -> None:
    try:
        p.unlink()
    except OSError:
        pass
