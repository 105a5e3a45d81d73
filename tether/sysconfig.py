"""System configuration: built-in defaults, then /etc/cloud/cloud.cfg.d/*.cfg (so an image prepared for
cloud-init keeps its settings), then /etc/tether/tether.cfg and /etc/tether/tether.cfg.d/*.cfg (lexical order).
Later files win; mappings merge recursively, everything else is replaced.

tether's own files are strict about YAML syntax (a broken file is reported with its name and line and is
skipped, the boot goes on with the rest); cloud-init drop-ins are read leniently.
"""

from __future__ import annotations

import copy
import os

from tether import log
from tether.detect import DEFAULT_LIST
from tether.errors import ConfigError
from tether.target import Target

TYPE_CHECKING = False  # the boot's first stage does not import typing; mypy reads the block below
if TYPE_CHECKING:
    from typing import Any

LOG = log.get(__name__)

# The module lists of Debian's cloud.cfg (cloud-init 23.x), in order, plus the modules Ubuntu's adds that tether
# implements for every family (wireguard, lxd). Names tether does not implement are reported once as "not
# supported by tether" when a user-data asks for them.
DEFAULTS: dict[str, Any] = {
    "datasource_list": list(DEFAULT_LIST),  # from the datasources' declarations (tether/detect_table.py)
    "datasource": {},
    "manual_cache_clean": False,
    "vendor_data": {"enabled": True},
    "vendor_data2": {"enabled": True},
    "reset_machine_id_on_new_instance": True,
    "disable_root": True,
    "preserve_hostname": False,
    "cloud_init_modules": [
        "seed_random", "bootcmd", "write_files", "growpart", "resizefs", "disk_setup", "mounts",
        "set_hostname", "update_hostname", "update_etc_hosts", "ca_certs", "rsyslog", "users_groups", "ssh",
        "set_passwords",
    ],
    "cloud_config_modules": [
        "wireguard", "snap", "ssh_import_id", "keyboard", "locale", "apt_pipelining", "apt_configure", "ntp",
        "timezone", "disable_ec2_metadata", "runcmd", "byobu",
    ],
    "cloud_final_modules": [
        "package_update_upgrade_install", "lxd", "write_files_deferred", "puppet", "chef", "ansible",
        "scripts_vendor", "scripts_per_once",
        "scripts_per_boot", "scripts_per_instance", "scripts_user", "ssh_authkey_fingerprints",
        "keys_to_console", "phone_home", "final_message", "power_state_change",
    ],
    "system_info": {
        "distro": "debian",
        "default_user": {
            "name": "debian",
            "lock_passwd": True,
            "gecos": "Debian",
            "groups": ["adm", "audio", "cdrom", "dialout", "dip", "floppy", "netdev", "plugdev", "sudo", "video"],
            "sudo": ["ALL=(ALL) NOPASSWD:ALL"],
            "shell": "/bin/bash",
        },
        "paths": {"cloud_dir": "/var/lib/tether", "run_dir": "/run/tether"},
        "ssh_svcname": "ssh",
    },
}

STAGE_LIST_KEYS = {"init": "cloud_init_modules", "config": "cloud_config_modules", "final": "cloud_final_modules"}


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def config_files(target: Target) -> list[str]:
    files: list[str] = []
    for d, main in (("/etc/cloud/cloud.cfg.d", None), ("/etc/tether/tether.cfg.d", "/etc/tether/tether.cfg")):
        if main and target.exists(main):
            files.append(main)
        try:
            names = sorted(n for n in os.listdir(target.path(d)) if n.endswith(".cfg"))
        except OSError:
            names = []
        files.extend(f"{d}/{n}" for n in names)
    return files


def load(target: Target, errors: list[str] | None = None) -> dict[str, Any]:
    """The merged system configuration. Problems are appended to ``errors`` (and logged); never raised."""
    cfg = copy.deepcopy(DEFAULTS)
    files = config_files(target)
    if files:
        from tether import yamlsafe  # only when there is YAML to read
    for path in files:
        try:
            data = yamlsafe.load(target.read_bytes(path), source=path)
        except ConfigError as e:
            LOG.warning("%s", e)
            if errors is not None:
                errors.append(str(e))
            continue
        except OSError as e:
            LOG.warning("%s: unreadable: %s", path, e)
            continue
        if data is None:
            continue
        if not isinstance(data, dict):
            msg = f"{path}: expected a mapping at the top level, got {type(data).__name__}"
            LOG.warning("%s", msg)
            if errors is not None:
                errors.append(msg)
            continue
        cfg = merge(cfg, data)
    return cfg


def module_list(cfg: dict[str, Any], stage: str) -> list[tuple[str, str | None]]:
    """(module name, frequency override) pairs for a stage. Entries are names or [name, frequency]."""
    out: list[tuple[str, str | None]] = []
    for item in cfg.get(STAGE_LIST_KEYS[stage]) or []:
        if isinstance(item, str):
            out.append((_norm(item), None))
        elif isinstance(item, list | tuple) and item and isinstance(item[0], str):
            freq = item[1] if len(item) > 1 and isinstance(item[1], str) else None
            out.append((_norm(item[0]), _norm_freq(freq)))
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            out.append((_norm(item["name"]), _norm_freq(item.get("frequency"))))
    return out


def _norm(name: str) -> str:
    name = name.strip().replace("-", "_")
    return name[3:] if name.startswith("cc_") else name


def _norm_freq(f: object) -> str | None:
    if not isinstance(f, str):
        return None
    f = f.strip().lower().replace("_", "-")
    return {"per-instance": "once-per-instance", "instance": "once-per-instance", "per-always": "always",
            "per-once": "once", "boot": "always", "per-boot": "always"}.get(f, f)
