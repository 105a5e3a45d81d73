"""ssh_authkey_fingerprints: print the fingerprints of each configured user's authorized keys to the console
(cloud-init's ``ci-info:`` table), unless ``no_ssh_fingerprints``. ``authkey_hash`` picks the digest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from tether import accounts, sshkeys
from tether.errors import ConfigErrors
from tether.module import Frequency, ModuleContext, Stage

NAME = "ssh_authkey_fingerprints"
STAGE = Stage.FINAL
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("no_ssh_fingerprints", "authkey_hash")
RUN_WITHOUT_KEYS = True
PREFIX = "ci-info: "


@dataclass(frozen=True)
class Config:
    no_ssh_fingerprints: bool = False
    authkey_hash: str = "sha256"

    def __post_init__(self) -> None:
        if self.authkey_hash.lower() not in hashlib.algorithms_available:
            raise ValueError(f"authkey_hash: unknown hash {self.authkey_hash!r} (for example sha256, sha512, md5)")


def handle(ctx: ModuleContext, cfg: Config) -> None:
    if cfg.no_ssh_fingerprints:
        return
    try:
        users = accounts.resolve_from(ctx.cloud_config, ctx.system_config).users
    except ConfigErrors as e:
        ctx.warn(f"ssh_authkey_fingerprints: users config unusable: {e}")
        return
    passwd = accounts.read_passwd(ctx.target)
    for name, spec in users.items():
        if spec.system or spec.no_create_home or name not in passwd:
            continue
        path, keys = sshkeys.read_authorized_keys(ctx.target, passwd[name])
        ctx.to_console(table(name, path, keys, cfg.authkey_hash.lower()))


def table(user: str, path: str, keys: list[sshkeys.AuthorizedKey], method: str) -> str:
    if not keys:
        return f"{PREFIX}no authorized SSH keys fingerprints found for user {user}."
    head = ["Keytype", f"Fingerprint ({method})", "Options", "Comment"]
    rows = [[k.keytype, sshkeys.fingerprint_hex(k.blob, method), k.options or "-", k.comment or "-"] for k in keys]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt(r: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

    lines = [rule, fmt(head), rule, *(fmt(r) for r in rows), rule]
    title = f"Authorized keys from {path} for user {user}"
    banner = title.center(len(rule), "+")
    return "\n".join(PREFIX + line for line in [banner, *lines])
