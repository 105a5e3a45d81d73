"""cloud-config values cloud-init's schema marks deprecated or changed, reported by ``tether schema`` as
cloud-init reports them (path, the cloud-init version that deprecated it, what to write instead).

tether still accepts every one of these at boot; they are notices, not errors. Paths use cloud-init's form
(``users.0.sudo``). One rule per entry: where (a path with ``*`` for any list index or mapping key), when (a
test on the value found there), and the notice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple


class Rule(NamedTuple):
    path: str                      # "users.*.sudo": dots between keys, * for any index / key
    applies: Callable[[Any], bool]
    kind: str                      # "Deprecated" | "Changed", as cloud-init's schema annotates it
    version: str                   # the cloud-init release that made the change
    advice: str


def _present(_v: Any) -> bool:
    return True


def _renamed(new: str) -> str:
    return f"use {new} instead"


_USER_HYPHENATED = {"lock-passwd": "22.3", "ssh-authorized-keys": "18.3", "no-create-home": "24.2",
                    "no-log-init": "24.2", "no-user-group": "24.2", "hashed-passwd": "24.2",
                    "plain-text-passwd": "24.2", "create-groups": "24.2", "primary-group": "24.2",
                    "selinux-user": "24.2", "ssh-import-id": "24.2", "ssh-redirect-user": "24.2"}

RULES: tuple[Rule, ...] = (
    Rule("users.*.sudo", lambda v: v is False, "Changed", "22.2", "the value false is deprecated, use null"),
    Rule("users.*.uid", lambda v: isinstance(v, str), "Changed", "22.3", "a string uid is deprecated, use an integer"),
    Rule("users.*.groups.*", lambda v: v is None, "Deprecated", "23.1",
         "groups as a mapping is deprecated, use a string or a list of strings"),
    *(Rule(f"users.*.{key}", _present, "Deprecated", version, _renamed(key.replace("-", "_")))
      for key, version in _USER_HYPHENATED.items()),
    Rule("ca-certs", _present, "Deprecated", "22.3", _renamed("ca_certs")),
    Rule("ca_certs.remove-defaults", _present, "Deprecated", "22.3", _renamed("remove_defaults")),
    Rule("ca-certs.remove-defaults", _present, "Deprecated", "22.3", _renamed("remove_defaults")),
    Rule("grub-dpkg", _present, "Deprecated", "22.2", _renamed("grub_dpkg")),
    Rule("grub_dpkg.grub-pc/install_devices_empty", lambda v: isinstance(v, str), "Changed", "22.3",
         "use a boolean"),
    Rule("apt_update", _present, "Deprecated", "22.2", _renamed("package_update")),
    Rule("apt_upgrade", _present, "Deprecated", "22.2", _renamed("package_upgrade")),
    Rule("apt_reboot_if_required", _present, "Deprecated", "22.2", _renamed("package_reboot_if_required")),
    Rule("apt_pipelining", lambda v: v in ("none", "unchanged"), "Deprecated", "22.4", "use os"),
    Rule("power_state.delay", lambda v: isinstance(v, str) and v != "now", "Changed", "22.3",
         "a string delay is deprecated, use now or an integer"),
    Rule("rh_subscription.org", lambda v: isinstance(v, int) and not isinstance(v, bool), "Deprecated", "24.2",
         "an integer org is deprecated, use a string"),
    *(Rule(f"rh_subscription.{key}", _present, "Deprecated", "25.3", _renamed(key.replace("-", "_")))
      for key in ("activation-key", "auto-attach", "service-level", "add-pool", "enable-repo", "disable-repo",
                  "rhsm-baseurl", "server-hostname")),
    Rule("vendor_data.enabled", lambda v: isinstance(v, str), "Deprecated", "22.3",
         "a string is deprecated, use a boolean"),
    Rule("ssh_pwauth", lambda v: not isinstance(v, bool), "Changed", "22.3", "use a boolean"),
    Rule("chpasswd.list", _present, "Deprecated", "22.2", _renamed("chpasswd.users")),
    Rule("manage_etc_hosts", lambda v: v == "template", "Changed", "22.3", "template is deprecated, use true"),
    Rule("growpart.mode", lambda v: v is False, "Changed", "22.3", "false is deprecated, use 'off'"),
    Rule("system_info", _present, "Deprecated", "24.2", "system_info belongs in the system configuration, "
         "not in user-data"),
    Rule("ubuntu_advantage", _present, "Deprecated", "24.1", _renamed("ubuntu_pro")),
    Rule("ansible.pull.playbook_name", _present, "Deprecated", "25.2", _renamed("playbook_names")),
)


def _walk(value: Any, parts: list[str], path: str) -> Iterator[tuple[str, Any]]:
    if not parts:
        yield path, value
        return
    head, rest = parts[0], parts[1:]
    if isinstance(value, dict):
        items = value.items() if head == "*" else ([(head, value[head])] if head in value else [])
        for k, v in items:
            yield from _walk(v, rest, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list) and head == "*":
        for i, v in enumerate(value):
            yield from _walk(v, rest, f"{path}.{i}" if path else str(i))


def find(cfg: Any) -> list[tuple[str, str]]:
    """(path, notice) for every deprecated value in one cloud-config mapping, in path order."""
    if not isinstance(cfg, dict):
        return []
    out: list[tuple[str, str]] = []
    for rule in RULES:
        for path, value in _walk(cfg, rule.path.split("."), ""):
            try:
                hit = rule.applies(value)
            except TypeError:  # an unhashable value against an ``in`` test: not this rule's case
                hit = False
            if hit:
                out.append((path, f"{rule.kind} in cloud-init {rule.version}: {rule.advice}."))
    return sorted(out)
