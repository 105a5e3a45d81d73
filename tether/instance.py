"""Instance data: what a datasource returns, and its cloud-init v1 JSON shapes."""

from __future__ import annotations

import copy
import os
import sys

from tether.record import Record

TYPE_CHECKING = False  # the boot's first stage does not import typing; mypy reads the block below
if TYPE_CHECKING:
    from typing import Any

    from tether.target import Target


def _b64encode(data: bytes) -> str:
    import base64  # here: only binary user-data needs it, not a later boot's path
    return base64.b64encode(data).decode()


def _b64decode(text: str) -> bytes:
    import base64
    return base64.b64decode(text)

REDACTED = "redacted for non-root user"
# Keys that only the 0600 file carries (cloud-init's list plus ours).
SENSITIVE_KEYS = ("combined_cloud_config", "merged_cfg", "merged_system_cfg", "security-credentials", "userdata",
                  "vendordata", "vendordata2", "ds/meta_data/ssh_keys_private", "ds/user_data", "ds/vendor_data")
MERGED_SYSTEM_DOC = "Merged system config from /etc/tether/tether.cfg(.d) and /etc/cloud/cloud.cfg.d/"
MERGED_CFG_DOC = "DEPRECATED: use merged_system_cfg (the same content, cloud-init's newer name)"
# cloud-init's feature flags (cloudinit/features.py) with the behaviour tether has; a template or script that
# checks one sees tether's answer.
FEATURES = {
    "ERROR_ON_USER_DATA_FAILURE": False,         # an unusable part is reported (status) and the boot goes on
    "ALLOW_EC2_MIRRORS_ON_NON_AWS_INSTANCE_TYPES": False,   # apt_configure never picks EC2 mirrors
    "NOCLOUD_SEED_URL_APPEND_FORWARD_SLASH": True,          # datasources/nocloud_net.py adds the "/"
}
# os-release ID -> cloud-init's variant (its util._get_variant); anything else is "linux"
_VARIANTS = {"ubuntu": "ubuntu", "linuxmint": "ubuntu", "mint": "ubuntu", "opensuse-leap": "suse",
             "opensuse-tumbleweed": "suse", "sles": "suse", "sle_hpc": "suse", "sle-micro": "suse",
             "opensuse-microos": "suse"}
_VARIANT_SELF = ("almalinux", "alpine", "arch", "azurelinux", "centos", "cloudlinux", "debian", "eurolinux",
                 "fedora", "mariner", "miraclelinux", "openeuler", "opencloudos", "openmandriva", "photon", "rhel",
                 "rocky", "suse", "tencentos", "virtuozzo", "freebsd", "netbsd", "openbsd", "dragonfly")


class InstanceData(Record):
    """What a datasource found. ``datasource`` is cloud-init's name (NoCloud, ConfigDrive, Ec2, None ...),
    ``subplatform`` e.g. "seed-dir (/var/lib/cloud/seed/nocloud)", ``platform`` the lower-case platform (nocloud,
    openstack, ec2 ...); ``ds`` holds datasource-specific extras shown under "ds" in instance-data.json and
    ``host_configuration`` the engine's desired host configuration when the metadata carries one."""

    __slots__ = ("datasource", "instance_id", "subplatform", "platform", "cloud_name", "metadata", "userdata",
                 "vendordata", "vendordata2", "network_config", "local_hostname", "public_ssh_keys", "region",
                 "availability_zone", "ds", "host_configuration")

    def __init__(self, datasource: str, instance_id: str, subplatform: str = "", platform: str = "",
                 cloud_name: str = "", metadata: dict[str, Any] | None = None, userdata: bytes | None = None,
                 vendordata: bytes | None = None, vendordata2: bytes | None = None,
                 network_config: dict[str, Any] | None = None, local_hostname: str | None = None,
                 public_ssh_keys: list[str] | None = None, region: str | None = None,
                 availability_zone: str | None = None, ds: dict[str, Any] | None = None,
                 host_configuration: Any = None) -> None:
        self.datasource = datasource
        self.instance_id = instance_id
        self.subplatform = subplatform
        self.platform = platform
        self.cloud_name = cloud_name
        self.metadata: dict[str, Any] = {} if metadata is None else metadata
        self.userdata = userdata
        self.vendordata = vendordata
        self.vendordata2 = vendordata2
        self.network_config = network_config
        self.local_hostname = local_hostname
        self.public_ssh_keys: list[str] = [] if public_ssh_keys is None else public_ssh_keys
        self.region = region
        self.availability_zone = availability_zone
        self.ds: dict[str, Any] = {} if ds is None else ds
        self.host_configuration = host_configuration

    def to_cache(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: getattr(self, k) for k in self.__slots__}
        for k in ("userdata", "vendordata", "vendordata2"):
            v = d[k]
            d[k] = _b64encode(v) if v is not None else None
        return d

    @classmethod
    def from_cache(cls, d: dict[str, Any]) -> InstanceData:
        d = dict(d)
        for k in ("userdata", "vendordata", "vendordata2"):
            if d.get(k) is not None:
                d[k] = _b64decode(d[k])
        known = set(cls.__slots__)
        return cls(**{k: v for k, v in d.items() if k in known})


def _text(b: bytes | None) -> str | None:
    if b is None:
        return None
    try:
        return b.decode()
    except UnicodeDecodeError:
        return _b64encode(b)


def system_platform() -> str:
    """``platform.platform()``'s string (``Linux-6.1.0-18-amd64-x86_64-with-glibc2.36``) without importing
    ``platform``, which also runs ``uname -p`` in a child process: both are slow at boot under TCG."""
    try:
        libc = (os.confstr("CS_GNU_LIBC_VERSION") or "").replace(" ", "")
    except (ValueError, OSError, AttributeError):
        libc = ""
    if not libc.startswith("glibc"):
        import platform
        return platform.platform()
    u = os.uname()
    text = "-".join(x.strip() for x in (u.sysname, u.release, u.machine, "with", libc) if x)
    for c in ' /\\:;"()':
        text = text.replace(c, "_" if c == " " else "-")
    text = text.replace("unknown", "")
    while "--" in text:
        text = text.replace("--", "-")
    return text.rstrip("-")


def os_release(text: str) -> tuple[str, str, str]:
    """(ID, VERSION_ID, VERSION_CODENAME) from an os-release file's text, as cloud-init's ``dist`` triple."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, v = line.split("=", 1)
            fields[k.strip()] = v.strip().strip("'\"")
    codename = fields.get("VERSION_CODENAME") or fields.get("UBUNTU_CODENAME") or ""
    return fields.get("ID", "") or "linux", fields.get("VERSION_ID", ""), codename


def read_os_release(target: Target) -> str:
    """The target's os-release text (``/etc/os-release``, else ``/usr/lib/os-release``), empty if neither."""
    return target.read_text("/etc/os-release", default="") or target.read_text("/usr/lib/os-release", default="")


def variant(distro: str) -> str:
    d = distro.lower()
    return d if d in _VARIANT_SELF else _VARIANTS.get(d, "linux")


def sys_info(os_release_text: str = "") -> dict[str, Any]:
    """cloud-init's ``sys_info``: platform, system, release, python, uname, dist, variant."""
    u = os.uname()
    dist = list(os_release(os_release_text))
    return {"platform": system_platform(), "system": u.sysname, "release": u.release,
            "python": sys.version.split()[0], "uname": [u.sysname, u.nodename, u.release, u.version, u.machine, ""],
            "dist": dist, "variant": variant(dist[0])}


def v1(inst: InstanceData, kernel_release: str | None = None, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """cloud-init's standardized v1 keys, with both underscore and hyphen spellings."""
    info = info or sys_info()
    dist = list(info.get("dist") or ["linux", "", ""]) + ["", "", ""]
    uname = os.uname()
    base = {
        "availability_zone": inst.availability_zone,
        "cloud_id": inst.platform or inst.datasource.lower(),
        "cloud_name": inst.cloud_name or inst.platform or "unknown",
        "distro": dist[0],
        "distro_release": dist[2],
        "distro_version": dist[1],
        "instance_id": inst.instance_id,
        "kernel_release": kernel_release or uname.release,
        "local_hostname": inst.local_hostname,
        "machine": uname.machine,
        "platform": inst.platform or inst.datasource.lower(),
        "public_ssh_keys": list(inst.public_ssh_keys),
        "python_version": sys.version.split()[0],
        "region": inst.region,
        "subplatform": inst.subplatform,
        "system_platform": info.get("platform") or system_platform(),
        "variant": info.get("variant") or variant(dist[0]),
    }
    out: dict[str, Any] = {"_beta_keys": ["subplatform"]}
    for k, v in base.items():
        out[k] = v
        if k in _HYPHENATED:
            out[k.replace("_", "-")] = v
    return out


# the keys cloud-init also spells with a hyphen (not distro_release, kernel_release, ...)
_HYPHENATED = ("availability_zone", "cloud_name", "instance_id", "local_hostname")


def instance_data_doc(inst: InstanceData, combined_cfg: dict[str, Any] | None,
                      info: dict[str, Any] | None = None, system_cfg: dict[str, Any] | None = None,
                      os_release_text: str = "") -> dict[str, Any]:
    """The full (sensitive) document; redact() makes the world-readable one.

    ``combined_cfg`` is the configuration the modules get (system config, vendor-data and user-data merged;
    None before user-data is processed), ``system_cfg`` the system configuration alone (cloud-init's
    ``merged_system_cfg``), ``os_release_text`` the target's os-release (distro, version, codename)."""
    info = info or sys_info(os_release_text)
    system = copy.deepcopy(system_cfg) if system_cfg else {}
    ds = {"_doc": "datasource-specific data, may change between tether releases",
          "meta_data": copy.deepcopy(inst.metadata), **copy.deepcopy(inst.ds)}
    doc: dict[str, Any] = {
        "base64_encoded_keys": [],
        "combined_cloud_config": copy.deepcopy(combined_cfg) if combined_cfg is not None else copy.deepcopy(system),
        "ds": ds,
        "features": dict(FEATURES),
        "merged_cfg": {**copy.deepcopy(system), "_doc": MERGED_CFG_DOC},
        "merged_system_cfg": {**copy.deepcopy(system), "_doc": MERGED_SYSTEM_DOC},
        "sensitive_keys": list(SENSITIVE_KEYS),
        "sys_info": info,
        "system_info": copy.deepcopy(system.get("system_info")) if isinstance(system.get("system_info"), dict)
        else {},
        "userdata": _text(inst.userdata),
        "v1": v1(inst, info=info),
        "vendordata": _text(inst.vendordata),
    }
    # the v1 keys at the top level too, as cloud-init writes them (templates use {{ instance_id }} ...)
    for k, v in doc["v1"].items():
        doc.setdefault(k, copy.deepcopy(v))
    return doc


def redact(doc: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    for key in doc.get("sensitive_keys", SENSITIVE_KEYS):
        parts = key.split("/")
        cur: Any = out
        for p in parts[:-1]:
            cur = cur.get(p) if isinstance(cur, dict) else None
        if isinstance(cur, dict) and parts[-1] in cur:
            cur[parts[-1]] = REDACTED
    return out
