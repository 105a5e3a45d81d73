"""keys_to_console: print the host key fingerprints and public keys to the console, between the BEGIN/END
markers that cloud-init's consumers (console scrapers) look for.

``ssh.emit_keys_to_console: false`` turns it off; ``ssh_fp_console_blacklist`` and
``ssh_key_console_blacklist`` skip keys whose type (``ssh-rsa`` or just ``rsa``) or fingerprint is listed.
Fingerprints are computed from the public key files, as ``ssh-keygen -l`` prints them.
"""

from __future__ import annotations

from dataclasses import dataclass

from tether import sshkeys
from tether.module import Frequency, ModuleContext, Stage

NAME = "keys_to_console"
STAGE = Stage.FINAL
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("ssh", "ssh_key_console_blacklist", "ssh_fp_console_blacklist")
RUN_WITHOUT_KEYS = True
TAG = "ec2: "   # the prefix cloud-init's helper logs under; scrapers of the console expect it


@dataclass(frozen=True)
class SshConsole:
    emit_keys_to_console: bool = True


@dataclass(frozen=True)
class Config:
    ssh: SshConsole | None = None
    ssh_key_console_blacklist: tuple[str, ...] = ("ssh-dss",)
    ssh_fp_console_blacklist: tuple[str, ...] = ("ssh-dss",)


def handle(ctx: ModuleContext, cfg: Config) -> None:
    if cfg.ssh is not None and not cfg.ssh.emit_keys_to_console:
        return
    text = render(ctx, cfg)
    if text:
        ctx.to_console(text)


def render(ctx: ModuleContext, cfg: Config) -> str:
    keys = []
    for path in sshkeys.host_key_files(ctx.target):
        key = sshkeys.parse_key(ctx.target.read_text(path, default=""))
        if key is not None:
            short = path.rsplit("/", 1)[1][len("ssh_host_"):-len("_key.pub")]
            keys.append((short, key))
    if not keys:
        return ""

    def listed(short: str, key: sshkeys.AuthorizedKey, blacklist: tuple[str, ...], fp: str) -> bool:
        plain_fp = fp.split(":", 1)[1]
        return any(b in (short, key.keytype, fp, plain_fp) for b in blacklist)

    lines = ["-----BEGIN SSH HOST KEY FINGERPRINTS-----"]
    for short, key in keys:
        fp = sshkeys.fingerprint_sha256(key.blob)
        if listed(short, key, cfg.ssh_fp_console_blacklist, fp):
            continue
        bits = sshkeys.key_bits(key.keytype, key.blob)
        comment = key.comment or "no comment"
        lines.append(f"{bits if bits is not None else '?'} {fp} {comment} ({short.upper()})")
    lines.append("-----END SSH HOST KEY FINGERPRINTS-----")
    lines.append("-----BEGIN SSH HOST KEY KEYS-----")
    for short, key in keys:
        fp = sshkeys.fingerprint_sha256(key.blob)
        if not listed(short, key, cfg.ssh_key_console_blacklist, fp):
            lines.append(f"{key.keytype} {key.blob}" + (f" {key.comment}" if key.comment else ""))
    lines.append("-----END SSH HOST KEY KEYS-----")
    return "\n".join(TAG + line for line in lines)
