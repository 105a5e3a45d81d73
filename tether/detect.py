"""Which datasources could be present on this boot, decided from local evidence only.

This is the one detector: the systemd generator calls ``detect()`` to decide whether tether runs at all, the
stages read the same answer (``/run/tether/detect.json``) or call it again, and each datasource's own
``detect()`` asks ``evidence()`` here, so the three can never disagree.

It must stay cheap: the generator imports it before anything else runs, so only the standard library is used
(no YAML, no HTTP) and nothing here touches the network. Inputs, in order of authority:

1. ``tether=disabled|enabled`` (or cloud-init's ``cloud-init=...``) on the kernel command line, then the file
   ``/etc/tether/disabled`` in the root;
2. ``ds=NAME`` / ``ci.ds=NAME`` / ``ci.datasource=NAME`` on the kernel command line (the operator's choice);
3. ``datasource_list`` from the system configuration (a single entry is used without checks, as cloud-init);
4. per-datasource evidence: DMI strings, filesystem labels (``cidata``, ``config-2``) and seed directories.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing itself costs the generator ~10 ms; mypy still reads the block below

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from tether.host import Host
    from tether.target import Target

DETECT_JSON = "/run/tether/detect.json"
DISABLED_FILE = "/etc/tether/disabled"
# The built-in order (tether.sysconfig DEFAULTS repeats it; sysconfig imports YAML so it cannot be shared here).
DEFAULT_LIST = ("NoCloud", "ConfigDrive", "OpenStack", "Ec2", "GCE", "Azure", "None")

# Lower-case spellings accepted in ds= and datasource_list -> cloud-init's datasource name.
ALIASES: dict[str, str] = {
    "nocloud": "NoCloud", "nocloud-net": "NoCloud", "nocloudnet": "NoCloud",
    "configdrive": "ConfigDrive", "config-drive": "ConfigDrive", "config_drive": "ConfigDrive",
    "openstack": "OpenStack",
    "ec2": "Ec2", "aws": "Ec2",
    "gce": "GCE", "google": "GCE",
    "azure": "Azure", "azurenet": "Azure",
    "none": "None",
}

NOCLOUD_SEED_DIRS = ("/var/lib/cloud/seed/nocloud", "/var/lib/cloud/seed/nocloud-net",
                     "/var/lib/tether/seed/nocloud", "/var/lib/tether/seed/nocloud-net")
CONFIGDRIVE_SEED_DIRS = ("/var/lib/cloud/seed/config_drive", "/var/lib/tether/seed/config_drive")

AZURE_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"
OPENSTACK_PRODUCTS = ("OpenStack Nova", "OpenStack Compute")
OPENSTACK_ASSET_TAGS = ("OpenStack Nova", "OpenStack Compute", "OpenTelekomCloud", "SAP CCloud VM", "HUAWEICLOUD")


class Detection:
    """The verdict (a plain class: dataclasses would cost the generator ~15 ms of imports)."""

    FIELDS = ("enabled", "reason", "candidates", "evidence", "kernel_ds")

    def __init__(self, enabled: bool, reason: str, candidates: list[str] | None = None,
                 evidence: dict[str, str] | None = None, kernel_ds: str | None = None) -> None:
        self.enabled = enabled
        self.reason = reason
        self.candidates = list(candidates or [])      # ordered cloud-init datasource names
        self.evidence = dict(evidence or {})          # name -> why it is a candidate
        self.kernel_ds = kernel_ds                    # the ds= value, when given

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Detection) and other.as_dict() == self.as_dict()

    def __repr__(self) -> str:
        return f"Detection({self.as_dict()!r})"

    def to_json(self) -> str:
        """The verdict as JSON (sorted keys), encoded here: the json module pulls in ``re`` and ``enum``, about
        20 ms of the generator's 50 ms budget, for five fields of strings, lists, a dict and a bool."""
        return _encode(self.as_dict(), "") + "\n"


def _encode_str(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _encode(value: object, indent: str) -> str:
    """JSON for None, bools, strings, lists and str-keyed dicts (what Detection holds), one item per line."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        return _encode_str(value)
    inner = indent + " "
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{_encode_str(str(k))}: {_encode(value[k], inner)}" for k in sorted(value)]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(inner + _encode(v, inner) for v in value) + f"\n{indent}]"
    raise TypeError(f"detect.json cannot hold {type(value).__name__}")


def canonical(name: str) -> str | None:
    """cloud-init's spelling of a datasource name given in any case or alias, or None if unknown."""
    return ALIASES.get(name.strip().lower())


def kernel_datasource(host: Host) -> tuple[str | None, str | None]:
    """(canonical name, raw value) of ``ds=`` / ``ci.ds=`` / ``ci.datasource=``; last one wins.

    ``ds=nocloud;s=http://10.0.0.1/`` names NoCloud; the part after ``;`` is the datasource's own business.
    """
    raw = None
    for arg in host.cmdline_args():
        for key in ("ds=", "ci.ds=", "ci.datasource="):
            if arg.startswith(key):
                raw = arg[len(key):]
    if not raw:
        return None, raw
    return canonical(raw.split(";", 1)[0]), raw


def _root_of(host: Host, target: Target | str | None) -> _Root:
    if target is None:
        return _Root(host.root, None)
    if isinstance(target, str):
        return _Root(target, None)
    return _Root(str(target.root), target)


class _Root:
    """The root holding seed directories and the disabled file: a Target (links resolved inside it) when the
    caller has one, else a plain directory (the generator: no Target, no pathlib)."""

    def __init__(self, root: str, target: Target | None) -> None:
        self.root = root
        self.target = target

    def where(self, rel: str) -> str:
        if self.target is not None:
            return str(self.target.path(rel))
        return os.path.join(self.root, rel.lstrip("/"))


def _seed_dir(root: _Root, dirs: tuple[str, ...]) -> str | None:
    for d in dirs:
        p = root.where(d)
        if os.path.isfile(os.path.join(p, "meta-data")) or os.path.isfile(os.path.join(p, "user-data")) \
                or os.path.isfile(os.path.join(p, "meta_data.json")) or os.path.isdir(os.path.join(p, "openstack")):
            return d
    return None


class _Evidence:
    """Lazily read facts (DMI, labels) so each is read at most once per detection."""

    def __init__(self, host: Host, root: _Root) -> None:
        self.host = host
        self.root = root
        self._dmi: dict[str, str] | None = None
        self._labels: dict[str, list[str]] | None = None

    @property
    def dmi(self) -> dict[str, str]:
        if self._dmi is None:
            self._dmi = self.host.dmi_all()
        return self._dmi

    def label(self, name: str) -> list[str]:
        if self._labels is None:
            # One lookup for both labels (on a live host without udev links that is one blkid run);
            # only when something matched is it split per label.
            both = self.host.devices_by_label("cidata", "config-2")
            self._labels = {"cidata": [], "config-2": []}
            if both:
                self._labels = {"cidata": self.host.devices_by_label("cidata"),
                                "config-2": self.host.devices_by_label("config-2")}
        return self._labels[name]

    def check(self, name: str) -> str | None:
        fn = _CHECKS.get(name)
        return fn(self) if fn else None


def _nocloud(ev: _Evidence) -> str | None:
    devs = ev.label("cidata")
    if devs:
        return f"filesystem label cidata on {devs[0]}"
    serial = ev.dmi.get("product_serial", "")
    if serial.lower().startswith("ds=nocloud"):
        return f"DMI product_serial={serial.split(';', 1)[0]}"
    seed = _seed_dir(ev.root, NOCLOUD_SEED_DIRS)
    return f"seed directory {seed}" if seed else None


def _configdrive(ev: _Evidence) -> str | None:
    devs = ev.label("config-2")
    if devs:
        return f"filesystem label config-2 on {devs[0]}"
    seed = _seed_dir(ev.root, CONFIGDRIVE_SEED_DIRS)
    return f"seed directory {seed}" if seed else None


def _openstack(ev: _Evidence) -> str | None:
    d = ev.dmi
    if d.get("product_name") in OPENSTACK_PRODUCTS:
        return f"DMI product_name={d['product_name']}"
    if d.get("chassis_asset_tag") in OPENSTACK_ASSET_TAGS:
        return f"DMI chassis_asset_tag={d['chassis_asset_tag']}"
    if d.get("sys_vendor") == "OpenStack Foundation":
        return "DMI sys_vendor=OpenStack Foundation"
    return None


def _ec2(ev: _Evidence) -> str | None:
    d = ev.dmi
    for key in ("sys_vendor", "board_vendor", "chassis_asset_tag", "bios_vendor"):
        if d.get(key, "").startswith("Amazon EC2"):
            return f"DMI {key}={d[key]}"
    # Xen-based instances: the UUID (and serial) start with "ec2"; a random UUID does so 1 time in 4096, so
    # both must agree, or the Xen hypervisor UUID must.
    uuid = d.get("product_uuid", "").lower()
    if uuid.startswith("ec2") and d.get("product_serial", "").lower().startswith("ec2"):
        return "DMI product_uuid and product_serial start with ec2"
    hv = (ev.host.read("sys/hypervisor/uuid") or "").strip().lower()
    if hv.startswith("ec2"):
        return "Xen hypervisor uuid starts with ec2"
    return None


def _gce(ev: _Evidence) -> str | None:
    d = ev.dmi
    if d.get("product_name") in ("Google Compute Engine", "Google"):
        return f"DMI product_name={d['product_name']}"
    for key in ("sys_vendor", "bios_vendor"):
        if d.get(key) == "Google":
            return f"DMI {key}=Google"
    if d.get("product_serial", "").startswith("GoogleCloud-"):
        return "DMI product_serial starts with GoogleCloud-"
    return None


def _azure(ev: _Evidence) -> str | None:
    if ev.dmi.get("chassis_asset_tag") == AZURE_ASSET_TAG:
        return f"DMI chassis_asset_tag={AZURE_ASSET_TAG}"
    return None


_CHECKS = {"NoCloud": _nocloud, "ConfigDrive": _configdrive, "OpenStack": _openstack, "Ec2": _ec2,
           "GCE": _gce, "Azure": _azure}


def evidence(name: str, host: Host, target: Target | str | None = None) -> str | None:
    """Why datasource ``name`` could be present (kernel ``ds=`` or local evidence), or None.

    Each datasource's ``detect()`` is ``evidence(NAME, host) is not None``.
    """
    kname, raw = kernel_datasource(host)
    if kname == name:
        return f"kernel command line ds={raw}"
    return _Evidence(host, _root_of(host, target)).check(name)


def datasource_list(system_config: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(known names in order, names tether does not know) from ``datasource_list``."""
    given = system_config.get("datasource_list")
    if not isinstance(given, list) or not given:
        given = list(DEFAULT_LIST)
    names: list[str] = []
    unknown: list[str] = []
    for n in given:
        canon = canonical(n) if isinstance(n, str) else None
        if canon is None:
            unknown.append(str(n))
        elif canon not in names:
            names.append(canon)
    return names, unknown


def is_disabled(host: Host, target: Target | str | None = None) -> str | None:
    """Why tether is off for this boot, or None. The kernel command line beats the file."""
    for key in ("tether", "cloud-init"):
        val = host.cmdline_value(key)
        if val == "disabled":
            return f"kernel command line {key}=disabled"
        if val == "enabled":
            return None
    root = _root_of(host, target)
    if os.path.exists(root.where(DISABLED_FILE)):
        return f"{DISABLED_FILE} exists"
    return None


def detect(host: Host, system_config: dict[str, Any], target: Target | str | None = None) -> Detection:
    """Enable or disable tether for this boot and order the candidate datasources. Never touches the network.

    ``target`` is the root holding ``/etc/tether/disabled`` and the seed directories (default: the host's
    sysroot, i.e. ``/`` live).
    """
    root = _root_of(host, target)
    off = is_disabled(host, target)
    if off:
        return Detection(False, off, [])
    names, unknown = datasource_list(system_config)
    note = f" (ignored unknown datasource_list entries: {', '.join(unknown)})" if unknown else ""
    kname, raw = kernel_datasource(host)
    if raw is not None:
        if kname is None:
            note += f" (ignored unknown kernel ds={raw})"
        else:
            cands = [kname] + (["None"] if kname != "None" else [])
            return Detection(True, f"kernel command line ds={raw}{note}", cands,
                             {kname: f"kernel command line ds={raw}"}, raw)
    real = [n for n in names if n != "None"]
    if len(real) == 1:
        # The image builder named exactly one datasource: trust it, as cloud-init does.
        return Detection(True, f"datasource_list names only {real[0]}{note}", [real[0], "None"],
                         {real[0]: "only entry of datasource_list"})
    ev = _Evidence(host, root)
    found: dict[str, str] = {}
    for n in real:
        why = ev.check(n)
        if why:
            found[n] = why
    cands = list(found) + ["None"]
    if found:
        reason = "found " + "; ".join(f"{n}: {w}" for n, w in found.items())
    else:
        reason = "no datasource found locally; booting with None (system configuration only)"
    return Detection(True, reason + note, cands, found)


def write_detection(target: Target, det: Detection) -> Path:
    """Record the decision in ``/run/tether/detect.json`` for the stages and for people debugging a boot."""
    return target.write(DETECT_JSON, det.to_json(), mode=0o644)


def write_detection_at(root: str, det: Detection) -> str:
    """``write_detection`` for the generator, which has a plain directory and no Target: same file, same
    atomic replace, no fsync (``/run`` is a tmpfs)."""
    from tether.atomicfile import write_atomic

    path = os.path.join(root, DETECT_JSON.lstrip("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomic(path, det.to_json().encode(), 0o644, fsync=False)
    return path


def read_detection(target: Target) -> Detection | None:
    try:
        import json
        data = json.loads(target.read_text(DETECT_JSON))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    known = set(Detection.FIELDS)
    try:
        return Detection(**{k: v for k, v in data.items() if k in known})
    except TypeError:
        return None


def main(argv: list[str] | None = None) -> int:
    """``python -m tether.detect [ROOT]``: detect, write detect.json, print it (the generator's core)."""
    import sys

    from tether.host import Host
    args = sys.argv[1:] if argv is None else argv
    root = os.path.abspath(args[0]) if args else "/"
    det = detect(Host(sysroot=root), {}, root)
    try:
        write_detection_at(root, det)
    except OSError as e:
        print(f"tether detect: cannot write {DETECT_JSON}: {e}", file=sys.stderr)
    sys.stdout.write(det.to_json())
    return 0 if det.enabled else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
