"""users_groups: create groups and users (cloud-init's ``groups``, ``users``, ``user``), their passwords,
sudo/doas rules and authorized keys.

Tools act on the target through their own ``--root`` option (``groupadd``, ``useradd``, ``usermod``,
``chpasswd``), which works for ``/`` and for a mounted root alike. Offline, plain-text passwords are hashed by
``chpasswd -c <ENCRYPT_METHOD>`` because PAM cannot run inside a bare root. As in cloud-init, most settings
apply only when a user is created; passwords, locking, sudo/doas rules and SSH keys also apply to existing
users. Every step checks the current state first, so a second run changes nothing.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from tether import accounts, log, sshkeys
from tether.accounts import GroupsValue, Users, UserSpec, UsersValue
from tether.convert import convert
from tether.errors import CommandError, ConfigErrors
from tether.module import Frequency, ModuleContext, ModuleError, Stage
from tether.target import FOLLOW_LINK

NAME = "users_groups"
STAGE = Stage.INIT
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("users", "user", "groups")
LOG = log.get(__name__)
RUN_WITHOUT_KEYS = True   # the distro's default user is created even when the user-data says nothing

SUDOERS = "/etc/sudoers.d/90-tether-users"
DOAS_CONF = "/etc/doas.conf"
BLOCK = "# User rules for "
# Shown when someone logs in with a cloud key as a user that has ssh_redirect_user set.
REDIRECT_OPTS = ("no-port-forwarding,no-agent-forwarding,no-X11-forwarding,"
                 "command=\"echo 'Please login as the user \\\"{user}\\\" rather than the user "
                 "\\\"{disabled}\\\".';echo;sleep 10;exit 142\"")


@dataclass(frozen=True)
class Config:
    users: UsersValue | None = None
    user: str | UserSpec | None = None
    groups: GroupsValue | None = None


def handle(ctx: ModuleContext, cfg: Config) -> None:
    users = _resolve(ctx, cfg)
    for email in users.snapusers:
        ctx.warn(f"users: snapuser {email!r} is not supported by tether (Ubuntu Core only); skipped")
    root = str(ctx.target.root)
    groups = accounts.normalize_groups(cfg.groups)
    for group in groups:
        _ensure_group(ctx, root, group)

    sudo: dict[str, list[str]] = {}
    doas: dict[str, list[str]] = {}
    for name, spec in users.users.items():
        _ensure_user(ctx, root, name, spec, users.default_name)
        if spec.sudo_rules():
            sudo[name] = spec.sudo_rules()
        elif spec.sudo is False:
            # cloud-init: "false" is deprecated in favour of null; both mean no rules are added
            pass
        if spec.doas:
            doas[name] = list(spec.doas)
    # Members are added once the users exist (cloud-init adds them before, so a member created by the same
    # config is reported missing there).
    for group, members in groups.items():
        _add_members(ctx, root, group, members)
    if sudo:
        _write_rules(ctx, SUDOERS, sudo, validate=("visudo", "-c", "-q", "-f"), mode=0o440)
        _ensure_sudoers_includedir(ctx)
    if doas:
        _write_rules(ctx, DOAS_CONF, doas, validate=("doas", "-C"), mode=0o400)


def _resolve(ctx: ModuleContext, cfg: Config) -> Users:
    warnings: list[str] = []
    users_value = cfg.users
    if users_value is None and "users" not in ctx.cloud_config:
        # Debian's cloud.cfg says ``users: [default]``: no ``users`` key means just the default user.
        try:
            users_value = convert(UsersValue | None, ctx.system_config.get("users", ["default"]),  # type: ignore[arg-type]
                                  "users", strict=False, warnings=warnings)
        except ConfigErrors as e:
            raise ModuleError(f"system configuration: {e}")
    try:
        out = accounts.resolve(users_value, cfg.user, ctx.system_config, warnings)
    except ConfigErrors as e:
        raise ModuleError(str(e))
    for w in warnings:
        ctx.warn(w)
    return out


# --- groups ------------------------------------------------------------------------------------------------
def _ensure_group(ctx: ModuleContext, root: str, group: str) -> bool:
    if group in accounts.read_group(ctx.target):
        return False
    ctx.run(["groupadd", "--root", root, group])
    return True


def _add_members(ctx: ModuleContext, root: str, group: str, members: list[str]) -> None:
    existing = accounts.read_group(ctx.target)[group].members if members else ()
    passwd = accounts.read_passwd(ctx.target) if members else {}
    for m in members:
        if m in existing:
            continue
        if m not in passwd:
            ctx.warn(f"groups: cannot add {m!r} to group {group!r}: no such user")
            continue
        ctx.run(["usermod", "--root", root, "--append", "--groups", group, m])


# --- users -------------------------------------------------------------------------------------------------
def _ensure_user(ctx: ModuleContext, root: str, name: str, spec: UserSpec, default_name: str | None) -> None:
    where = f"users[{name}]"
    created = name not in accounts.read_passwd(ctx.target)
    if created:
        _useradd(ctx, root, name, spec)
    elif _creation_only_keys(spec):
        LOG.info("%s: user already exists; only passwords, locking, sudo/doas rules and SSH keys are applied",
                 where)
    _passwords(ctx, root, name, spec, created)
    entry = accounts.read_passwd(ctx.target).get(name)
    if entry is None:
        raise ModuleError(f"{where}: user was not created")
    if spec.ssh_authorized_keys:
        if spec.system or spec.no_create_home:
            ctx.warn(f"{where}.ssh_authorized_keys: ignored for a user without a home directory "
                     "(system or no_create_home)")
        else:
            sshkeys.add_authorized_keys(ctx.target, entry, list(spec.ssh_authorized_keys))
    if spec.ssh_redirect_user:
        cloud_keys = list(ctx.instance.public_ssh_keys)
        if not default_name:
            ctx.warn(f"{where}.ssh_redirect_user: ignored, there is no default user to redirect to")
        elif not cloud_keys:
            ctx.warn(f"{where}.ssh_redirect_user: no cloud public keys to disable for {name}")
        else:
            opts = REDIRECT_OPTS.format(user=default_name, disabled=name)
            sshkeys.add_authorized_keys(ctx.target, entry, cloud_keys, options=opts)


def _creation_only_keys(spec: UserSpec) -> bool:
    return any(getattr(spec, k) is not None for k in (
        "gecos", "homedir", "primary_group", "shell", "uid", "expiredate", "inactive", "selinux_user",
        "system", "no_create_home", "no_user_group", "passwd"))


def _useradd(ctx: ModuleContext, root: str, name: str, spec: UserSpec) -> None:
    groups = spec.group_list()
    wanted = groups + ([spec.primary_group] if spec.primary_group else [])
    known = accounts.read_group(ctx.target)
    for g in wanted:
        if g in known:
            continue
        if spec.create_groups is False:
            ctx.warn(f"users[{name}].groups: group {g!r} does not exist and create_groups is false; skipped")
            groups = [x for x in groups if x != g]
        else:
            _ensure_group(ctx, root, g)
    argv = ["useradd", "--root", root]
    for flag, value in (("--comment", spec.gecos), ("--home-dir", spec.homedir), ("--gid", spec.primary_group),
                        ("--uid", spec.uid), ("--shell", spec.shell), ("--expiredate", spec.expiredate),
                        ("--inactive", spec.inactive), ("--selinux-user", spec.selinux_user)):
        if value is not None and value != "":
            argv += [flag, str(value).strip()]
    if groups and (spec.primary_group is None or groups != [spec.primary_group]):
        argv += ["--groups", ",".join(g for g in groups if g != spec.primary_group)]
    if spec.no_user_group:
        argv.append("--no-user-group")
    if spec.system:
        argv.append("--system")
    if spec.no_log_init:
        argv.append("--no-log-init")
    argv.append("--no-create-home" if spec.system or spec.no_create_home else "--create-home")
    argv.append(name)
    try:
        ctx.run(argv)
    except CommandError as e:
        raise ModuleError(f"users[{name}]: useradd failed: {e}")


def _passwords(ctx: ModuleContext, root: str, name: str, spec: UserSpec, created: bool) -> None:
    where = f"users[{name}]"
    hashes = accounts.read_shadow_hashes(ctx.target)
    current = hashes.get(name, "")
    # passwd applies to new users only; hashed_passwd and plain_text_passwd always (cloud-init's rules).
    hashed = spec.hashed_passwd or (spec.passwd if created else None)
    if spec.passwd and created and not accounts.is_hash(spec.passwd):
        ctx.warn(f"{where}.passwd: not a crypt(3) hash; it is stored as given. Use plain_text_passwd for "
                 "a clear-text password")
    if spec.plain_text_passwd and not accounts.password_matches(spec.plain_text_passwd, current):
        accounts.set_plain(ctx, root, {name: spec.plain_text_passwd})
        current = accounts.read_shadow_hashes(ctx.target).get(name, "")
    if hashed and current.lstrip("!") != hashed:
        accounts.set_hashed(ctx, root, {name: hashed})
        current = accounts.read_shadow_hashes(ctx.target).get(name, "")
    if spec.locked:
        if not current.startswith("!"):
            ctx.run(["usermod", "--root", root, "--lock", name])
    elif current.startswith("!") and current.lstrip("!").startswith("$"):
        # lock_passwd: false with a password: make the password usable again
        ctx.run(["usermod", "--root", root, "--unlock", name])


# --- sudo / doas rules -------------------------------------------------------------------------------------
def _parse_blocks(text: str) -> dict[str, list[str]]:
    blocks: dict[str, list[str]] = {}
    cur: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(BLOCK):
            cur = blocks.setdefault(line[len(BLOCK):].strip(), [])
        elif cur is not None and line.strip() and not line.startswith("#"):
            cur.append(line)
    return blocks


def render_rules(existing: str, rules: dict[str, list[str]], fmt: str) -> str:
    """Rules file text: one block per user; users already in the file keep their block unless replaced."""
    blocks = _parse_blocks(existing)
    for user, rs in rules.items():
        blocks[user] = [fmt.format(user=user, rule=r) for r in rs]
    out = ["# Written by tether (users_groups): one block per user, rewritten from the cloud-config.", ""]
    for user, lines in blocks.items():
        out += [f"{BLOCK}{user}", *lines, ""]
    return "\n".join(out)


def _write_rules(ctx: ModuleContext, path: str, rules: dict[str, list[str]], validate: tuple[str, ...],
                 mode: int) -> None:
    for user, rs in rules.items():
        for r in rs:
            if "\n" in r:
                raise ModuleError(f"users[{user}]: a sudo/doas rule must be a single line")
    fmt = "{user} {rule}" if path == SUDOERS else "{rule}"
    text = render_rules(ctx.target.read_text(path, default=""), rules, fmt)
    if ctx.target.read_text(path, default="") == text:
        ctx.target.ensure_file(path, text, mode, links=FOLLOW_LINK)   # unchanged rules: at most fix the mode
        return
    tool = shutil.which(validate[0])
    if tool:
        # Check a candidate beside the real file ('.' in the name: sudo's includedir skips it meanwhile).
        check = f"{os.path.dirname(path)}/.tether-check-{os.path.basename(path)}"
        ctx.target.write(check, text, mode=mode)
        try:
            ctx.run([*validate, str(ctx.target.path(check))])
        except CommandError as e:
            raise ModuleError(f"{path}: rules rejected by {validate[0]}, not installed: {e}")
        finally:
            ctx.target.remove(check)
    ctx.target.ensure_file(path, text, mode, links=FOLLOW_LINK)


def _ensure_sudoers_includedir(ctx: ModuleContext) -> None:
    """Make /etc/sudoers read /etc/sudoers.d when it exists but does not (Debian's does already). A missing
    /etc/sudoers is left alone: the sudo package installs its own, which includes the directory."""
    text = ctx.target.read_text("/etc/sudoers", default="")
    if not text:
        return
    for line in text.splitlines():
        toks = line.split()
        if len(toks) >= 2 and toks[0] in ("#includedir", "@includedir") and toks[1].rstrip("/") == "/etc/sudoers.d":
            return
    ctx.target.write("/etc/sudoers", text.rstrip("\n") + "\n\n@includedir /etc/sudoers.d\n")
