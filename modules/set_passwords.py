"""set_passwords: ``chpasswd`` (``users``, ``expire``, the deprecated ``list``), ``password`` for the default
user, and ``ssh_pwauth``.

Passwords reach ``chpasswd`` on stdin only and are redacted from the runner's log; RANDOM passwords are printed
to the console and nowhere else. To stay idempotent, a password the account already has is not set again, and
RANDOM passwords are generated once per instance (the user names, never the passwords, are recorded in the
instance directory).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from tether import accounts
from tether.convert import meta
from tether.errors import CommandError
from tether.module import Frequency, ModuleContext, ModuleError, Stage
from tether.sshkeys import set_sshd_options

NAME = "set_passwords"
STAGE = Stage.INIT
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("chpasswd", "password", "ssh_pwauth")

PWAUTH_DROPIN = "50-tether-pwauth.conf"
_TRUE = ("true", "1", "on", "yes", "y")
_FALSE = ("false", "0", "off", "no", "n")
# cloud-init's rule for "this list entry is already a hash"
_HASHED = re.compile(r"\$(1|2a|2y|5|6)(\$.+){2}")


@dataclass(frozen=True)
class ChpasswdUser:
    name: str
    password: str | None = field(default=None, metadata=meta(sensitive=True))
    type: Literal["hash", "text", "RANDOM"] = "hash"

    def __post_init__(self) -> None:
        if self.type != "RANDOM" and self.password is None:
            raise ValueError("password: required unless type is RANDOM")


@dataclass(frozen=True)
class Chpasswd:
    expire: bool = True
    users: tuple[ChpasswdUser, ...] = ()
    list: str | tuple[str, ...] | None = field(
        default=None, metadata=meta(deprecated="use chpasswd.users instead", sensitive=True))


@dataclass(frozen=True)
class Config:
    chpasswd: Chpasswd | None = None
    password: str | None = field(default=None, metadata=meta(sensitive=True))
    ssh_pwauth: bool | str | None = None


def handle(ctx: ModuleContext, cfg: Config) -> None:
    ch = cfg.chpasswd or Chpasswd()
    plain: dict[str, str] = {}
    hashed: dict[str, str] = {}
    random_users: list[str] = []
    legacy = _legacy_list(ch.list)
    if not legacy and cfg.password:
        user = accounts.default_user_name(ctx.cloud_config, ctx.system_config)
        if user:
            legacy = [(user, cfg.password)]
        else:
            ctx.warn("password: no default user to set it for")
    for name, pw in legacy:
        if _HASHED.match(pw) and ":" not in pw:
            hashed[name] = pw
        elif pw in ("R", "RANDOM"):
            random_users.append(name)
        else:
            plain[name] = pw
    for u in ch.users:
        if u.type == "RANDOM":
            random_users.append(u.name)
        elif u.type == "text":
            plain[u.name] = u.password or ""
        else:
            hashed[u.name] = u.password or ""

    existing = accounts.read_passwd(ctx.target)
    for group in (plain, hashed):
        for name in [n for n in group if n not in existing]:
            ctx.warn(f"chpasswd: user {name!r} does not exist; password not set")
            del group[name]
    for name in [n for n in dict.fromkeys(random_users) if n not in existing]:
        ctx.warn(f"chpasswd: user {name!r} does not exist; password not set")
    random_users = [n for n in dict.fromkeys(random_users) if n in existing]

    root = str(ctx.target.root)
    current = accounts.read_shadow_hashes(ctx.target)
    plain = {n: p for n, p in plain.items() if not accounts.password_matches(p, current.get(n, ""))}
    hashed = {n: h for n, h in hashed.items() if current.get(n, "") != h}
    randoms = _new_random(ctx, random_users)
    changed = list(plain) + list(randoms) + list(hashed)
    if plain or randoms:
        accounts.set_plain(ctx, root, {**plain, **randoms})
    if hashed:
        accounts.set_hashed(ctx, root, hashed)
    if randoms:
        _record_random(ctx, list(randoms))
        ctx.to_console("Set the following 'random' passwords\n" +
                       "\n".join(f"{n}:{p}" for n, p in randoms.items()))
    if ch.expire and changed:
        for name in changed:
            ctx.run(["chage", "--root", root, "--lastday", "0", name])
    _ssh_pwauth(ctx, cfg.ssh_pwauth)


def _legacy_list(value: str | tuple[str, ...] | None) -> list[tuple[str, str]]:
    if not value:
        return []
    lines = value.splitlines() if isinstance(value, str) else list(value)
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        name, sep, pw = line.partition(":")
        if not sep or not name.strip() or not pw:
            raise ModuleError(f"chpasswd.list[{i}]: expected 'user:password'")
        out.append((name.strip(), pw))
    return out


def _random_record(ctx: ModuleContext) -> str:
    return f"{ctx.paths.instance_dir(ctx.instance_id)}/random-passwords-set"


def _new_random(ctx: ModuleContext, users: list[str]) -> dict[str, str]:
    done = set(ctx.target.read_text(_random_record(ctx), default="").split())
    return {n: accounts.random_password() for n in users if n not in done}


def _record_random(ctx: ModuleContext, users: list[str]) -> None:
    done = ctx.target.read_text(_random_record(ctx), default="").split()
    ctx.target.write(_random_record(ctx), "".join(f"{n}\n" for n in dict.fromkeys(done + users)), mode=0o600)


def _ssh_pwauth(ctx: ModuleContext, value: bool | str | None) -> None:
    if value is None:
        return
    if isinstance(value, str):
        low = value.strip().lower()
        if low == "unchanged":
            return
        if low not in _TRUE + _FALSE:
            ctx.warn(f"ssh_pwauth: unrecognized value {value!r}; PasswordAuthentication left unchanged")
            return
        ctx.warn("ssh_pwauth: a string value is deprecated, use true or false")
        value = low in _TRUE
    setting = "yes" if value else "no"
    header = "# Written by tether from the cloud-config's ssh_pwauth\n"
    if not set_sshd_options(ctx.target, PWAUTH_DROPIN, {"PasswordAuthentication": setting}, header):
        return
    if ctx.live:
        svc = str((ctx.system_config.get("system_info") or {}).get("ssh_svcname") or "ssh")
        try:
            state = ctx.run(["systemctl", "show", "--property", "ActiveState", "--value", svc], check=False)
            if state.stdout.strip().lower() in ("active", "activating", "reloading"):
                ctx.run(["systemctl", "restart", svc], timeout=60)
        except CommandError as e:
            ctx.warn(f"ssh_pwauth: could not restart {svc}: {e}")
