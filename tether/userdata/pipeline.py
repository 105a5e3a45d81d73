"""``process()``: user-data and vendor-data in, merged cloud-config, scripts and boothooks out."""

from __future__ import annotations

import os
from typing import Any

from tether.userdata import include, merge
from tether.userdata.model import Processed, Script
from tether.userdata.walker import Fetch, Walker

# vendor-data goes *under* user-data the way cloud-init stacks configs: nested mappings are merged, and
# wherever both set a value the user's wins.
_STACK = merge.policy(merge.STACK_DEFAULT)
_FALSE = {"false", "no", "off", "0", "disabled"}


def process(userdata: bytes | str | None, vendordata: bytes | str | None, *, instance_data: dict[str, Any],
            fetch: Fetch | None = None, vendor_enabled: bool = True,
            include_once_cache: include.IncludeCache | str | os.PathLike[str] | None = None,
            launch_index: int | None = None) -> Processed:
    """Process one instance's user-data and vendor-data.

    ``fetch(url) -> bytes`` fetches ``#include`` URLs (None: includes are reported and skipped).
    ``include_once_cache`` is a mapping or a directory (inside the target, per instance) that keeps
    ``#include-once`` content; None keeps it for this call only. ``launch_index`` filters parts that carry a
    ``Launch-Index`` (EC2-style); None keeps every part.
    """
    cache: include.IncludeCache
    if include_once_cache is None:
        cache = {}
    elif isinstance(include_once_cache, str | os.PathLike):
        cache = include.DirCache(include_once_cache)
    else:
        cache = include_once_cache
    out = Processed()
    user = _walk("user-data", userdata, instance_data, fetch, cache, launch_index)
    out.scripts = user.scripts
    out.boothooks = list(user.boothooks)
    out.dir_scripts = {kind: list(scripts) for kind, scripts in user.dir_scripts.items()}
    out.warnings.extend(user.warnings)
    out.errors.extend(user.errors)
    cfg = user.cfg
    if vendordata is not None and vendor_enabled and _vendor_allowed(cfg):
        vendor = _walk("vendor-data", vendordata, instance_data, fetch, cache, launch_index)
        out.vendor_scripts = vendor.scripts
        _add_dir_scripts(out.dir_scripts, vendor.dir_scripts)
        taken = {h.name for h in out.boothooks}
        for hook in vendor.boothooks:
            name = f"vendor-{hook.name}"
            while name in taken:
                name += "_"
            taken.add(name)
            out.boothooks.append(Script(name, hook.content))
        out.warnings.extend(vendor.warnings)
        out.errors.extend(vendor.errors)
        cfg = merge.merge(cfg, vendor.cfg, _STACK)
    out.cloud_config = cfg
    return out


def _walk(source: str, data: bytes | str | None, instance_data: dict[str, Any], fetch: Fetch | None,
          cache: include.IncludeCache, launch_index: int | None) -> Walker:
    w = Walker(source, instance_data=instance_data, fetch=fetch, cache=cache, launch_index=launch_index)
    if data:
        w.run(data.encode() if isinstance(data, str) else data)
    return w


def _add_dir_scripts(into: dict[str, list[Script]], vendor: dict[str, list[Script]]) -> None:
    """Vendor-data's per-boot/instance/once scripts go into the same directories as the user's (as in
    cloud-init); a name the user-data already uses gets a ``vendor-`` prefix instead of replacing it."""
    for kind, scripts in vendor.items():
        mine = into.setdefault(kind, [])
        taken = {s.name for s in mine}
        for s in scripts:
            name = s.name if s.name not in taken else f"vendor-{s.name}"
            while name in taken:
                name += "_"
            taken.add(name)
            mine.append(Script(name, s.content))


def _vendor_allowed(user_cfg: dict[str, Any]) -> bool:
    """User-data can refuse vendor-data with ``vendor_data: {enabled: false}``, as in cloud-init."""
    vd = user_cfg.get("vendor_data")
    if not isinstance(vd, dict) or "enabled" not in vd:
        return True
    enabled = vd["enabled"]
    if isinstance(enabled, str):
        return enabled.strip().lower() not in _FALSE
    return bool(enabled)
