"""``os.modules``: how kernel modules load in the new OS, as files in its ``/etc``.

One file each, owned by tether and rewritten whole on every servicing (so a module dropped from the host
configuration is dropped from the OS): ``/etc/modules-load.d/`` lists the ``always`` modules (systemd-modules-load
loads them at boot), ``/etc/modprobe.d/`` holds ``options`` lines and a ``blacklist`` line for each ``disable``
module (no automatic load by alias; an explicit ``modprobe`` still works, as Trident's "preventing them from
loading automatically"). ``auto`` and ``inherit`` add nothing but options: the kernel loads the module on demand,
or the image's own configuration stays in force.
"""

from __future__ import annotations

from tether.engine.hostconfig import KernelModule
from tether.target import Target

LOAD_FILE = "/etc/modules-load.d/90-tether-host-configuration.conf"
MODPROBE_FILE = "/etc/modprobe.d/90-tether-host-configuration.conf"
_HEADER = "# Written by tether from the host configuration's os.modules; rewritten at every servicing.\n"


def render(modules: tuple[KernelModule, ...]) -> tuple[str | None, str | None]:
    """(modules-load.d text, modprobe.d text); None where nothing is to be written."""
    load = [m.name for m in modules if m.load_mode == "always"]
    probe: list[str] = []
    for m in modules:
        if m.options:
            probe.append(f"options {m.name} " + " ".join(f"{k}={v}" for k, v in m.options.items()))
        if m.load_mode == "disable":
            probe.append(f"blacklist {m.name}")
    return (_HEADER + "".join(f"{n}\n" for n in load) if load else None,
            _HEADER + "".join(f"{line}\n" for line in probe) if probe else None)


def apply(target: Target, modules: tuple[KernelModule, ...]) -> list[str]:
    """Write (or remove) tether's two files in ``target``; returns the paths written."""
    written: list[str] = []
    for path, text in zip((LOAD_FILE, MODPROBE_FILE), render(modules), strict=True):
        if text is None:
            target.remove(path)
        else:
            target.write(path, text, mode=0o644)
            written.append(path)
    return written
