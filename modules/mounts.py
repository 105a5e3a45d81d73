"""mounts: /etc/fstab entries and a swap file.

fstab lines tether writes carry ``comment=tether`` in their options (ignored by mount, shown by findmnt), so
each run first drops the lines it wrote before and then writes the current ones: running twice gives the
same file, and removing an entry from the config removes its line. A line the image had for a mount point
the config now sets is commented out (``# replaced by tether:``), not deleted. Mount point directories are
created in the target. The swap file is created with host tools acting on the file inside the target
(``fallocate``/``dd`` and ``mkswap`` need no chroot) and only when it does not exist yet. Live only:
``systemctl daemon-reload``, ``mount -a`` and ``swapon``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from tether import log
from tether.convert import meta
from tether.ensure import ensure_dir
from tether.errors import CommandError
from tether.module import Frequency, ModuleContext, ModuleError, Stage
from tether.target import REPLACE_LINK

NAME = "mounts"
STAGE = Stage.INIT
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("mounts", "mount_default_fields", "swap")
LOG = log.get(__name__)
MARK = "comment=tether"
REPLACED = "# replaced by tether: "
GIB = 1 << 30
DEFAULT_FIELDS: tuple[str | None, ...] = (None, None, "auto", "defaults,nofail,x-systemd.after=tether-network.service",
                                          "0", "2")
DEFAULT_SWAPFILE = "/swap.img"
_SIZE = re.compile(r"^(\d*\.?\d+)([BKMGT])?$")

Field = str | int | float | None


def _field(v: Field) -> str | None:
    if v is None or (isinstance(v, str) and v in ("None", "none", "null")):
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def parse_size(v: str | int, what: str) -> int:
    """Bytes from an integer or ``<number><B|K|M|G|T>`` (binary multiples, as cloud-init)."""
    if isinstance(v, int):
        if v < 0:
            raise ValueError(f"{what} must not be negative")
        return v
    m = _SIZE.match(v.strip())
    if not m:
        raise ValueError(f"{what} {v!r} is not a size like 2G, 512M or a number of bytes")
    mult = 1 << (10 * "BKMGT".index(m.group(2) or "B"))
    return int(float(m.group(1)) * mult)


@dataclass(frozen=True)
class Swap:
    filename: str = field(default=DEFAULT_SWAPFILE, metadata=meta(doc="swap file path"))
    size: str | int | None = field(default=None, metadata=meta(doc="bytes, 'auto', or e.g. 2G"))
    maxsize: str | int | None = field(default=None, metadata=meta(doc="upper bound for 'auto'"))

    def __post_init__(self) -> None:
        if not self.filename.startswith("/"):
            raise ValueError(f"filename {self.filename!r} must be an absolute path")
        if self.size is not None and self.size != "auto":
            parse_size(self.size, "size")
        if self.maxsize is not None:
            parse_size(self.maxsize, "maxsize")


@dataclass(frozen=True)
class Config:
    mounts: tuple[tuple[Field, ...], ...] = field(default=(), metadata=meta(
        doc="fstab entries: [fs_spec, fs_file, fs_vfstype, fs_mntops, fs_freq, fs_passno]"))
    mount_default_fields: tuple[Field, ...] | None = field(default=None, metadata=meta(
        doc="the six defaults for missing fields"))
    swap: Swap | None = None

    def __post_init__(self) -> None:
        for i, m in enumerate(self.mounts):
            if not 1 <= len(m) <= 6:
                raise ValueError(f"mounts[{i}]: an entry has 1 to 6 fields, got {len(m)}")
            if _field(m[0]) is None:
                raise ValueError(f"mounts[{i}]: fs_spec (the first field) is required")
        if self.mount_default_fields is not None and len(self.mount_default_fields) != 6:
            raise ValueError(f"mount_default_fields: exactly 6 fields, got {len(self.mount_default_fields)}")


def fstab_escape(s: str) -> str:
    return s.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011").replace("\n", "\\012")


def fstab_unescape(s: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def device_spec(spec: str, resolve: Callable[[str], str | None] | None = None) -> str | None:
    """``sdc`` → ``/dev/sdc``; LABEL=/UUID=/paths/network specs as given; ``ephemeralN``/``swap`` and
    ``device_aliases`` names (also ``alias.N``) through ``resolve`` (disk_setup's resolver, which knows the
    datasource's block-device-mapping); None when they cannot be resolved."""
    if spec.startswith("/") or "=" in spec or ":" in spec:
        return spec
    if resolve is not None:
        found = resolve(spec)
        if found:
            return found
    if re.match(r"^(ephemeral\d+|swap)(\.\d+)?$", spec):
        return None
    return f"/dev/{spec}"


def build_entries(cfg: Config, warn: list[str],
                  resolve: Callable[[str], str | None] | None = None) -> list[tuple[str, ...]]:
    defaults = tuple(_field(v) for v in (cfg.mount_default_fields or DEFAULT_FIELDS))
    out = []
    for i, raw in enumerate(cfg.mounts):
        vals = [_field(v) for v in raw]
        spec = device_spec(vals[0] or "", resolve)
        if spec is None:
            warn.append(f"mounts[{i}]: {vals[0]!r} needs the datasource's device mapping, which tether does not "
                        "provide; entry skipped")
            continue
        if len(vals) < 2 or vals[1] is None:
            LOG.info("mounts[%d]: %s has no mount point; skipped", i, spec)
            continue
        full = [spec, vals[1]] + [vals[j] if j < len(vals) and vals[j] is not None else defaults[j]
                                  for j in range(2, 6)]
        if any(v is None for v in full):
            warn.append(f"mounts[{i}]: incomplete entry after defaults; skipped")
            continue
        opts = full[3] or "defaults"
        full[3] = opts if MARK in opts.split(",") else f"{opts},{MARK}"
        out.append(tuple(v or "" for v in full))
    return out


def render_fstab(old: str, entries: list[tuple[str, ...]]) -> str:
    mountpoints = {e[1] for e in entries if e[2] != "swap"}
    kept = []
    for line in old.splitlines():
        parts = line.split()
        if parts and not parts[0].startswith("#") and len(parts) >= 4:
            if MARK in parts[3].split(","):
                continue  # ours from an earlier run: rewritten below
            if fstab_unescape(parts[1]) in mountpoints:
                kept.append(REPLACED + line)
                continue
        kept.append(line)
    lines = kept + ["\t".join([fstab_escape(e[0]), fstab_escape(e[1]), *e[2:]]) for e in entries]
    return "\n".join(lines) + "\n"


def suggested_swap_size(mem: int, maxsize: int | None, avail: int | None) -> int:
    """Size for ``size: auto``: about the memory size for small machines, 4 GiB for mid-sized ones and the
    square root of the memory (in GiB) above 16 GiB; never over ``maxsize`` (default: a quarter of the free
    space, at most 8 GiB) nor over 90% of the free space."""
    if mem < 4 * GIB:
        want = mem
    elif mem < 16 * GIB:
        want = 4 * GIB
    else:
        want = round(math.sqrt(mem / GIB)) * GIB
    if maxsize is None:
        maxsize = 8 * GIB if avail is None else min(avail // 4, 8 * GIB)
    if avail is not None:
        maxsize = min(maxsize, int(avail * 0.9))
    return max(0, min(want, maxsize))


def _mem_total() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def swap_size(ctx: ModuleContext, swap: Swap) -> int:
    if swap.size is None:
        return 0
    if swap.size != "auto":
        return parse_size(swap.size, "swap.size")
    maxsize = parse_size(swap.maxsize, "swap.maxsize") if swap.maxsize is not None else None
    parent = ctx.target.path(os.path.dirname(swap.filename) or "/")
    while not parent.exists() and parent != ctx.target.root:
        parent = parent.parent
    st = os.statvfs(parent)
    return suggested_swap_size(_mem_total(), maxsize, st.f_frsize * st.f_bavail)


def create_swapfile(ctx: ModuleContext, path: str, size: int) -> bool:
    """Create the swap file unless it exists. True when created."""
    host = ctx.target.path(path)
    if host.exists():
        LOG.info("swap file %s exists; kept as it is", path)
        return False
    host.parent.mkdir(parents=True, exist_ok=True)
    mib = max(1, size >> 20)
    try:
        try:
            ctx.run(["fallocate", "-l", f"{mib}M", str(host)], timeout=300)
        except CommandError:
            # Some filesystems (older XFS, btrfs without NOCOW) refuse fallocate'd swap: write zeros instead.
            if host.exists():
                host.unlink()
            ctx.run(["dd", "if=/dev/zero", f"of={host}", "bs=1M", f"count={mib}", "status=none"], timeout=1800)
        os.chmod(host, 0o600)
        ctx.run(["mkswap", str(host)], timeout=120)
    except (CommandError, OSError) as e:
        if host.exists():
            host.unlink()
        raise ModuleError(f"swap file {path}: {e}")
    return True


def handle(ctx: ModuleContext, cfg: Config) -> None:
    warn: list[str] = []
    from tether.modules.disk_setup import device_for  # the same names disk_setup/fs_setup accept
    entries = build_entries(cfg, warn, lambda name: device_for(ctx, name))
    for w in warn:
        ctx.warn(w)
    swap_created = False
    swap_path = None
    if cfg.swap is not None:
        size = swap_size(ctx, cfg.swap)
        if size > 0:
            swap_path = cfg.swap.filename
            swap_created = create_swapfile(ctx, swap_path, size)
            entries.append((swap_path, "none", "swap", f"sw,{MARK}", "0", "0"))
        else:
            LOG.info("swap: size 0 or not set; no swap file")
    for e in entries:
        if e[2] != "swap" and e[1].startswith("/"):
            ensure_dir(ctx.target, e[1])
    old = ctx.target.read_text("/etc/fstab", default="")
    changed = ctx.target.ensure_file("/etc/fstab", render_fstab(old, entries), mode=0o644, links=REPLACE_LINK)
    if not ctx.live:
        return
    try:
        if changed:
            ctx.run(["systemctl", "daemon-reload"], timeout=60)
            ctx.run(["mount", "-a"], timeout=300)
        if swap_path and swap_created:
            ctx.run(["swapon", swap_path], timeout=60)
    except CommandError as e:
        ctx.warn(f"mounts: fstab written but activating it failed: {e}")
