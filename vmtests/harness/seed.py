"""Small disks the host builds per test: the NoCloud ``cidata`` seed (ISO 9660 via xorriso) and the VMPLAN
disk (vfat via mtools) that carries the guest-side checks, so the base disk can stay a read-only backing file."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _run(argv: list[str], **kw: Any) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")


def _text(value: str | bytes | Mapping[str, Any]) -> bytes:
    # JSON is YAML, so dicts need no YAML library on the host (the harness is standard library only).
    if isinstance(value, Mapping):
        return (json.dumps(value, indent=1) + "\n").encode()
    return value.encode() if isinstance(value, str) else value


def cidata_iso(out: Path, user_data: str | bytes | None, meta_data: Mapping[str, Any] | str,
               network_config: str | Mapping[str, Any] | None = None, vendor_data: str | None = None,
               label: str = "cidata") -> Path:
    """A NoCloud seed ISO; a file given as None is left out (e.g. no network-config)."""
    files = {"meta-data": meta_data, "user-data": user_data, "network-config": network_config,
             "vendor-data": vendor_data}
    with tempfile.TemporaryDirectory(prefix="vmtest-seed.") as tmp:
        names = []
        for name, value in files.items():
            if value is None:
                continue
            (Path(tmp) / name).write_bytes(_text(value))
            names.append(str(Path(tmp) / name))
        out.unlink(missing_ok=True)
        _run(["xorriso", "-as", "genisoimage", "-quiet", "-output", str(out), "-volid", label, "-joliet", "-rock",
              *names])
    return out


def vfat_disk(out: Path, files: Mapping[str, str | bytes], label: str, size_kib: int = 2048) -> Path:
    """A small vfat disk image holding ``files`` at its root (names must be 8.3-safe or long-name safe)."""
    out.unlink(missing_ok=True)
    _run(["mkfs.vfat", "-n", label, "-C", str(out), str(size_kib)])
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    with tempfile.TemporaryDirectory(prefix="vmtest-vfat.") as tmp:
        paths = []
        for name, content in files.items():
            (Path(tmp) / name).write_bytes(_text(content))
            paths.append(str(Path(tmp) / name))
        if paths:
            _run(["mcopy", "-i", str(out), *paths, "::"], env=env)
    return out
