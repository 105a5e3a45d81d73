"""cloud-init modules tether does not implement, by the cloud-config keys that would activate them.

A user-data that uses one gets exactly one warning per module naming it; the boot goes on.
"""

from __future__ import annotations

from typing import Any

UNSUPPORTED: dict[str, tuple[str, ...]] = {
    "apk_configure": ("apk_repos",),
    "fan": ("fan",),
    "grub_dpkg": ("grub_dpkg", "grub-dpkg"),
    "install_hotplug": ("updates",),
    "landscape": ("landscape",),
    "mcollective": ("mcollective",),
    "raspberry_pi": ("rpi",),
    "resolv_conf": ("manage_resolv_conf", "resolv_conf"),
    "reset_rmc": (),
    "rh_subscription": ("rh_subscription",),
    "salt_minion": ("salt_minion",),
    "spacewalk": ("spacewalk",),
    "ubuntu_autoinstall": ("autoinstall",),
    "ubuntu_drivers": ("drivers",),
    "ubuntu_pro": ("ubuntu_pro", "ubuntu_advantage"),
    "yum_add_repo": ("yum_repos", "yum_repo_dir"),
    "zypper_add_repo": ("zypper",),
    "lxd_init": (),
    "scripts_per_vendor": (),
}


# Modules that only make sense on Ubuntu (Canonical's services and installer): the warning says so, so a user
# on another distribution is not left waiting for support that will not come.
UBUNTU_ONLY: dict[str, str] = {
    "ubuntu_pro": "attaches an Ubuntu Pro subscription (the 'pro' client)",
    "ubuntu_drivers": "installs Ubuntu's proprietary drivers (the 'ubuntu-drivers' tool)",
    "ubuntu_autoinstall": "hands the config to Ubuntu's installer (subiquity)",
}


def unsupported_in(cloud_config: dict[str, Any], implemented: set[str]) -> list[str]:
    """Warnings, one per unsupported module the config uses."""
    out = []
    for mod, keys in UNSUPPORTED.items():
        if mod in implemented:
            continue
        used = [k for k in keys if k in cloud_config]
        if used:
            why = f" (Ubuntu-only: it {UBUNTU_ONLY[mod]})" if mod in UBUNTU_ONLY else ""
            out.append(f"module {mod} (key {', '.join(repr(k) for k in used)}) is not supported by tether{why}; "
                       "skipped")
    return out
