"""Accounts of a target root: the passwd/group/shadow databases, the typed per-user config cloud-init documents,
and how ``users``/``user``/``system_info.default_user`` combine into the list of users to create.

The merge rules follow cloud-init's documented behaviour: ``users`` entries are names (also comma-separated),
lists of names or mappings; ``default`` stands for the distro's default user, which the ``user`` key overrides
(and implies); a mapping without ``name`` configures the default user; the default user's ``groups`` are the
union of the distro's groups and the ones the config gives.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import re
from dataclasses import dataclass, field
from typing import Any

from tether.convert import convert, meta
from tether.errors import CommandError, ConfigErrors
from tether.module import ModuleContext, ModuleError
from tether.target import Target

# Debian's cloud.cfg default user, used when system_info.default_user is absent.
DEBIAN_DEFAULT_USER: dict[str, Any] = {
    "name": "debian",
    "lock_passwd": True,
    "gecos": "Debian",
    "groups": ["adm", "audio", "cdrom", "dialout", "dip", "floppy", "netdev", "plugdev", "sudo", "video"],
    "sudo": ["ALL=(ALL) NOPASSWD:ALL"],
    "shell": "/bin/bash",
}

# cloud-init's test for "this password is already a crypt(3) hash" (md5, bcrypt, sha256, sha512), plus yescrypt.
_HASH_RE = re.compile(r"^\$(1|2a|2b|2y|5|6|y|gy|7)(\$[^$:]+){2,}$")


def _dep(key: str, new: str) -> Any:
    return field(default=None, metadata=meta(key=key, deprecated=f"use {new} instead"))


@dataclass(frozen=True)
class UserSpec:
    """One user to create or update. Every field is optional; None means "not given"."""

    name: str | None = None
    gecos: str | None = None
    homedir: str | None = None
    primary_group: str | None = None
    groups: str | tuple[str, ...] | dict[str, None] | None = None
    # None: not given. False: explicitly no sudo rules (``sudo: null`` and ``sudo: false`` both mean that).
    sudo: str | tuple[str | None, ...] | bool | None = None
    doas: tuple[str, ...] | None = None
    shell: str | None = None
    lock_passwd: bool | None = None
    passwd: str | None = field(default=None, metadata=meta(sensitive=True))
    hashed_passwd: str | None = field(default=None, metadata=meta(sensitive=True))
    plain_text_passwd: str | None = field(default=None, metadata=meta(sensitive=True))
    ssh_authorized_keys: tuple[str, ...] | None = None
    ssh_import_id: tuple[str, ...] | None = None
    ssh_redirect_user: bool | None = None
    system: bool | None = None
    uid: int | str | None = None
    no_create_home: bool | None = None
    no_user_group: bool | None = None
    no_log_init: bool | None = None
    create_groups: bool | None = None
    expiredate: str | None = None
    inactive: str | int | None = None
    selinux_user: str | None = None
    snapuser: str | None = None
    # Hyphenated spellings cloud-init still accepts (deprecated); folded into the fields above.
    lock_passwd_dep: bool | None = _dep("lock-passwd", "lock_passwd")
    no_create_home_dep: bool | None = _dep("no-create-home", "no_create_home")
    no_log_init_dep: bool | None = _dep("no-log-init", "no_log_init")
    no_user_group_dep: bool | None = _dep("no-user-group", "no_user_group")
    hashed_passwd_dep: str | None = _dep("hashed-passwd", "hashed_passwd")
    plain_text_passwd_dep: str | None = _dep("plain-text-passwd", "plain_text_passwd")
    create_groups_dep: bool | None = _dep("create-groups", "create_groups")
    primary_group_dep: str | None = _dep("primary-group", "primary_group")
    selinux_user_dep: str | None = _dep("selinux-user", "selinux_user")
    ssh_authorized_keys_dep: tuple[str, ...] | None = _dep("ssh-authorized-keys", "ssh_authorized_keys")
    ssh_import_id_dep: tuple[str, ...] | None = _dep("ssh-import-id", "ssh_import_id")
    ssh_redirect_user_dep: bool | None = _dep("ssh-redirect-user", "ssh_redirect_user")

    @classmethod
    def normalize(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out = dict(value)
        if "sudo" in out and out["sudo"] is None:
            out["sudo"] = False
        # YAML turns an unquoted 2032-09-01 into a date; useradd wants the text back.
        if isinstance(out.get("expiredate"), datetime.date):
            out["expiredate"] = out["expiredate"].isoformat()
        return out

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.name.endswith("_dep"):
                main = f.name[:-4]
                if getattr(self, main) is None and getattr(self, f.name) is not None:
                    object.__setattr__(self, main, getattr(self, f.name))
        for key in ("name", "primary_group", "homedir", "shell", "gecos"):
            v = getattr(self, key)
            if isinstance(v, str) and ("\n" in v or ":" in v and key != "homedir"):
                raise ValueError(f"{key}: must not contain ':' or a newline")
        if isinstance(self.uid, str) and not self.uid.strip().isdigit():
            raise ValueError(f"uid: expected an integer, got {self.uid!r}")
        if self.ssh_redirect_user and (self.ssh_authorized_keys or self.ssh_import_id):
            raise ValueError("ssh_redirect_user cannot be combined with ssh_authorized_keys or ssh_import_id")

    # --- derived values -------------------------------------------------------------------------------------
    def group_list(self) -> list[str]:
        return split_names(self.groups)

    def sudo_rules(self) -> list[str]:
        if self.sudo is None or self.sudo is False or self.sudo is True:
            return []
        if isinstance(self.sudo, str):
            return [self.sudo]
        return [r for r in self.sudo if r]

    @property
    def locked(self) -> bool:
        return True if self.lock_passwd is None else self.lock_passwd


UsersValue = str | dict[str, UserSpec | bool | str] | tuple[str | tuple[str, ...] | UserSpec, ...]
GroupsValue = str | dict[str, str | tuple[str, ...] | None] | tuple[str | dict[str, str | tuple[str, ...] | None], ...]


def split_names(value: Any) -> list[str]:
    """``"a, b"``, ``["a", "b"]`` or ``{a: null}`` as a de-duplicated list, order kept."""
    if value is None or value is False:
        return []
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, dict):
        items = list(value)
    else:
        items = []
        for v in value:
            items.extend(split_names(v) if not isinstance(v, str) else v.split(","))
    out: list[str] = []
    for i in items:
        i = str(i).strip()
        if i and i not in out:
            out.append(i)
    return out


def merge_specs(*specs: UserSpec) -> UserSpec:
    """The first spec that gives a field wins (cloud-init's mergemanydict priority)."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(UserSpec):
        if f.name.endswith("_dep"):
            continue
        for s in specs:
            v = getattr(s, f.name)
            if v is not None:
                values[f.name] = v
                break
    return UserSpec(**values)


@dataclass(frozen=True)
class Users:
    users: dict[str, UserSpec]          # name -> spec, in config order
    default_name: str | None
    snapusers: tuple[str, ...] = ()     # ``snapuser`` entries (Ubuntu Core only; reported, not created)


def default_user_spec(system_config: dict[str, Any], warnings: list[str] | None = None) -> UserSpec | None:
    info = system_config.get("system_info") or {}
    raw = info.get("default_user", DEBIAN_DEFAULT_USER) if isinstance(info, dict) else DEBIAN_DEFAULT_USER
    if not raw:
        return None
    spec = convert(UserSpec, raw, "system_info.default_user", strict=False, warnings=warnings)
    return spec if spec.name else None


def resolve(users: Any, user: Any, system_config: dict[str, Any], warnings: list[str] | None = None) -> Users:
    """Combine already-converted ``users``/``user`` values with the distro default user."""
    distro_default = default_user_spec(system_config, warnings)
    old_user: UserSpec | None = None
    if isinstance(user, str) and user:
        old_user = UserSpec(name=user)
    elif isinstance(user, UserSpec):
        old_user = user
    default = merge_specs(old_user, distro_default) if old_user and distro_default else old_user or distro_default

    entries: list[str | UserSpec] = []
    if isinstance(users, str):
        entries.extend(split_names(users))
    elif isinstance(users, dict):
        for k, v in users.items():
            if isinstance(v, UserSpec):
                entries.append(dataclasses.replace(v, name=k))
            elif v is True or isinstance(v, str) and v.lower() in ("true", "yes", "on", "1"):
                entries.append(k)
    elif users:
        for item in users:
            if isinstance(item, UserSpec):
                entries.append(item)
            else:
                entries.extend(split_names(item))
    if old_user is not None and "default" not in entries:
        entries.append("default")

    out: dict[str, UserSpec] = {}
    snapusers = tuple(e.snapuser for e in entries if isinstance(e, UserSpec) and e.snapuser and not e.name)
    entries = [e for e in entries if not (isinstance(e, UserSpec) and e.snapuser and not e.name)]
    for e in entries:
        name = e if isinstance(e, str) else (e.name or "default")
        spec = UserSpec(name=name) if isinstance(e, str) else e
        out[name] = merge_specs(spec, out[name]) if name in out else spec
    default_name: str | None = None
    if "default" in out:
        given = out.pop("default")
        if default is not None and default.name:
            default_name = default.name
            parsed = out.pop(default_name, UserSpec(name=default_name))
            # As cloud-init: the distro's default user (with ``user:`` applied) wins over a ``default``
            # entry, which wins over an entry under the default user's real name; groups are the union.
            groups = sorted(set(parsed.group_list()) | set(default.group_list()))
            merged = merge_specs(dataclasses.replace(default, groups=tuple(groups) or None),
                                 dataclasses.replace(given, name=default_name), parsed)
            out = {default_name: merged, **out}
    return Users(out, default_name, snapusers)


def resolve_from(cloud_config: dict[str, Any], system_config: dict[str, Any],
                 warnings: list[str] | None = None) -> Users:
    """Resolve from raw config (for modules that only need the default user). Raises ConfigErrors."""
    users = cloud_config.get("users", system_config.get("users", ["default"]))
    user = cloud_config.get("user")
    u = convert(UsersValue | None, users, "users", strict=False, warnings=warnings)  # type: ignore[arg-type]
    one = convert(str | UserSpec | None, user, "user", strict=False, warnings=warnings)  # type: ignore[arg-type]
    return resolve(u, one, system_config, warnings)


def default_user_name(cloud_config: dict[str, Any], system_config: dict[str, Any]) -> str | None:
    try:
        return resolve_from(cloud_config, system_config).default_name
    except ConfigErrors:
        return None


def normalize_groups(groups: Any) -> dict[str, list[str]]:
    """``groups`` as {name: [members]}, in config order."""
    out: dict[str, list[str]] = {}

    def add(name: str, members: Any) -> None:
        name = name.strip()
        if not name:
            return
        cur = out.setdefault(name, [])
        for m in split_names(members):
            if m not in cur:
                cur.append(m)

    if isinstance(groups, str):
        for g in split_names(groups):
            add(g, None)
    elif isinstance(groups, dict):
        for g, members in groups.items():
            add(g, members)
    elif groups:
        for item in groups:
            if isinstance(item, dict):
                for g, members in item.items():
                    add(g, members)
            else:
                for g in split_names(item):
                    add(g, None)
    return out


# --- the databases ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    gecos: str
    home: str
    shell: str


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def _rows(target: Target, path: str, width: int) -> list[list[str]]:
    rows = []
    for line in target.read_text(path, default="").splitlines():
        if not line.strip() or line.startswith(("#", "+", "-")):
            continue
        parts = line.split(":")
        rows.append(parts + [""] * (width - len(parts)))
    return rows


def read_passwd(target: Target) -> dict[str, PasswdEntry]:
    out = {}
    for p in _rows(target, "/etc/passwd", 7):
        try:
            out[p[0]] = PasswdEntry(p[0], int(p[2]), int(p[3]), p[4], p[5], p[6])
        except ValueError:
            continue
    return out


def read_group(target: Target) -> dict[str, GroupEntry]:
    out = {}
    for p in _rows(target, "/etc/group", 4):
        try:
            out[p[0]] = GroupEntry(p[0], int(p[2]), tuple(m for m in p[3].split(",") if m))
        except ValueError:
            continue
    return out


def read_shadow_hashes(target: Target) -> dict[str, str]:
    """name -> password field of /etc/shadow. Holds secrets: never log the values."""
    return {p[0]: p[1] for p in _rows(target, "/etc/shadow", 9)}


def read_shadow_lastchg(target: Target) -> dict[str, str]:
    return {p[0]: p[2] for p in _rows(target, "/etc/shadow", 9)}


def login_defs(target: Target) -> dict[str, str]:
    out = {}
    for line in target.read_text("/etc/login.defs", default="").splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("#"):
            out[parts[0]] = parts[1]
    return out


def encrypt_method(target: Target) -> str:
    """The hash method chpasswd -c uses offline (PAM is not usable inside a bare root)."""
    m = login_defs(target).get("ENCRYPT_METHOD", "SHA512").upper()
    return m if m in ("SHA256", "SHA512", "YESCRYPT", "MD5", "BCRYPT", "DES") else "SHA512"


# --- passwords ---------------------------------------------------------------------------------------------
def is_hash(password: str) -> bool:
    return bool(_HASH_RE.match(password))


@functools.cache
def _libcrypt() -> Any:
    import ctypes  # only when a password is compared: ctypes is a costly import at boot
    import ctypes.util
    name = ctypes.util.find_library("crypt")
    if not name:
        return None
    lib = ctypes.CDLL(name)
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    return lib


def password_matches(plain: str, stored: str) -> bool:
    """True when ``stored`` (a shadow field, maybe locked with '!') is a hash of ``plain``. Used to skip
    re-setting an unchanged password; False whenever it cannot tell."""
    h = stored.lstrip("!")
    if not h.startswith("$"):
        return False
    lib = _libcrypt()
    if lib is None:
        return False
    import secrets
    out = lib.crypt(plain.encode(), h.encode())
    return bool(out) and secrets.compare_digest(out, h.encode())


def random_password(length: int = 20) -> str:
    """A random password with letters, digits and punctuation that survives a chpasswd line."""
    import secrets
    import string
    classes = (string.ascii_lowercase, string.ascii_uppercase, string.digits, "!#%+,-./;<=>?@[]^_{|}~")
    alphabet = "".join(classes)
    while True:
        pw = "".join(secrets.choice(alphabet) for _ in range(length))
        if all(any(c in cls for c in pw) for cls in classes):
            return pw


# --- setting passwords (chpasswd --root) ----------------------------------------------------------------------
def set_plain(ctx: ModuleContext, root: str, passwords: dict[str, str]) -> None:
    """Set clear-text passwords through chpasswd's stdin (never argv, never logged)."""
    argv = ["chpasswd", "--root", root]
    if not ctx.live:
        argv += ["--crypt-method", encrypt_method(ctx.target)]
    _chpasswd(ctx, argv, passwords)


def set_hashed(ctx: ModuleContext, root: str, hashes: dict[str, str]) -> None:
    _chpasswd(ctx, ["chpasswd", "--root", root, "--encrypted"], hashes)


def _chpasswd(ctx: ModuleContext, argv: list[str], pairs: dict[str, str]) -> None:
    for user, pw in pairs.items():
        if "\n" in pw or "\n" in user or ":" in user:
            raise ModuleError(f"password for {user!r}: must not contain a newline")
    data = "".join(f"{u}:{p}\n" for u, p in pairs.items())
    try:
        ctx.run(argv, data=data, secrets=list(pairs.values()))
    except CommandError as e:
        # the error text comes from chpasswd's stderr, which names users and lines, not passwords
        raise ModuleError(f"setting passwords for {', '.join(pairs)} failed: {e}")
