"""ssh: host keys (given in ``ssh_keys`` or generated), authorized keys for the default user and root.

Differences from cloud-init, on purpose: the default ``ssh_genkeytypes`` is ed25519 + ecdsa (RSA only when
listed: generating it dominates first-boot time); ``ssh_publish_hostkeys`` records the keys in the instance
directory (``ssh-hostkeys.json``) instead of calling a cloud API; ``ssh_deletekeys`` deletes the image's host
keys once per instance (a marker in the instance directory), so re-running the module keeps the keys it made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tether import accounts, sshkeys
from tether.convert import meta
from tether.errors import CommandError
from tether.module import Frequency, ModuleContext, ModuleError, Stage
from tether.target import FOLLOW_LINK

NAME = "ssh"
STAGE = Stage.INIT
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("ssh_authorized_keys", "ssh_keys", "ssh_genkeytypes", "ssh_deletekeys", "disable_root",
        "disable_root_opts", "allow_public_ssh_keys", "ssh_quiet_keygen", "ssh_publish_hostkeys")
RUN_WITHOUT_KEYS = True   # host keys are generated for every new instance

DEFAULT_GENKEYTYPES = ("ed25519", "ecdsa")
DISABLE_ROOT_OPTS = ("no-port-forwarding,no-agent-forwarding,no-X11-forwarding,"
                     "command=\"echo 'Please login as the user \\\"$USER\\\" rather than the user "
                     "\\\"$DISABLE_USER\\\".';echo;sleep 10;exit 142\"")
HOSTCERT_DROPIN = "/etc/ssh/sshd_config.d/50-tether-hostcerts.conf"
_SUFFIX = {"private": "", "public": ".pub", "certificate": "-cert.pub"}
_MODE = {"private": 0o600, "public": 0o644, "certificate": 0o644}


@dataclass(frozen=True)
class PublishHostkeys:
    enabled: bool = True
    blacklist: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Config:
    ssh_authorized_keys: tuple[str, ...] | None = None
    ssh_keys: dict[str, str] | None = field(default=None, metadata=meta(sensitive=True))
    ssh_genkeytypes: tuple[str, ...] | None = None
    ssh_deletekeys: bool = True
    disable_root: bool | None = None
    disable_root_opts: str | None = None
    allow_public_ssh_keys: bool = True
    ssh_quiet_keygen: bool = False
    ssh_publish_hostkeys: PublishHostkeys | None = None

    def __post_init__(self) -> None:
        for k in self.ssh_keys or {}:
            kind, _, part = k.rpartition("_")
            if kind not in sshkeys.HOST_KEY_TYPES or part not in _SUFFIX:
                raise ValueError(f"ssh_keys.{k}: expected <rsa|ecdsa|ed25519>_<private|public|certificate>")


def handle(ctx: ModuleContext, cfg: Config) -> None:
    if cfg.ssh_deletekeys:
        _delete_image_keys(ctx)
    if cfg.ssh_keys:
        _write_given_keys(ctx, cfg.ssh_keys)
    else:
        _generate_keys(ctx, cfg.ssh_genkeytypes or DEFAULT_GENKEYTYPES, cfg.ssh_quiet_keygen)
    publish = cfg.ssh_publish_hostkeys or PublishHostkeys()
    if publish.enabled:
        _record_hostkeys(ctx, publish.blacklist if publish.blacklist is not None else ("dsa",))
    _authorized_keys(ctx, cfg)


def _delete_image_keys(ctx: ModuleContext) -> None:
    marker = f"{ctx.paths.instance_dir(ctx.instance_id)}/ssh-deletekeys.done"
    if ctx.target.exists(marker):
        return
    try:
        names = [n.name for n in ctx.target.path("/etc/ssh").iterdir() if n.name.startswith("ssh_host_")
                 and "key" in n.name]
    except OSError:
        names = []
    for n in sorted(names):
        ctx.target.remove(f"/etc/ssh/{n}")
    ctx.target.write(marker, "", mode=0o644)


def _write_given_keys(ctx: ModuleContext, keys: dict[str, str]) -> None:
    certs: list[str] = []
    for k, value in keys.items():
        kind, _, part = k.rpartition("_")
        path = sshkeys.HOST_KEY_TPL.format(kind) + _SUFFIX[part]
        text = value if value.endswith("\n") else value + "\n"
        ctx.target.ensure_file(path, text, _MODE[part], links=FOLLOW_LINK)
        if part == "certificate":
            certs.append(path)
    for kind in sshkeys.HOST_KEY_TYPES:
        if f"{kind}_private" in keys and f"{kind}_public" not in keys:
            _derive_public(ctx, sshkeys.HOST_KEY_TPL.format(kind))
    if certs:
        _host_certificates(ctx, certs)


def _derive_public(ctx: ModuleContext, private: str) -> None:
    res = ctx.run(["ssh-keygen", "-y", "-f", str(ctx.target.path(private))])
    ctx.target.ensure_file(private + ".pub", res.stdout.strip() + "\n", 0o644, links=FOLLOW_LINK)


def _host_certificates(ctx: ModuleContext, certs: list[str]) -> None:
    lines = "".join(f"HostCertificate {c}\n" for c in sorted(certs))
    main = ctx.target.read_text("/etc/ssh/sshd_config", default="")
    if any(line.split()[:1] == ["Include"] and "sshd_config.d/" in line for line in main.splitlines()):
        ctx.target.ensure_file(HOSTCERT_DROPIN, "# Host certificates from ssh_keys (tether)\n" + lines, 0o644,
                               links=FOLLOW_LINK)
        return
    missing = [line for line in lines.splitlines() if line not in main.splitlines()]
    if missing:
        ctx.target.write("/etc/ssh/sshd_config", main.rstrip("\n") + "\n" + "\n".join(missing) + "\n")


def _generate_keys(ctx: ModuleContext, types: tuple[str, ...], quiet: bool) -> None:
    ctx.target.makedirs("/etc/ssh")
    for kind in types:
        if kind not in sshkeys.HOST_KEY_TYPES:
            ctx.warn(f"ssh_genkeytypes: unknown key type {kind!r} (expected rsa, ecdsa or ed25519); skipped")
            continue
        private = sshkeys.HOST_KEY_TPL.format(kind)
        if ctx.target.exists(private):
            if not ctx.target.exists(private + ".pub"):
                _derive_public(ctx, private)
            continue
        ctx.target.remove(private + ".pub")
        try:
            ctx.run(["ssh-keygen", "-q", "-N", "", "-t", kind, "-f", str(ctx.target.path(private))])
        except CommandError as e:
            raise ModuleError(f"ssh_genkeytypes: generating the {kind} host key failed: {e}")
        if not quiet:
            pub = sshkeys.parse_key(ctx.target.read_text(private + ".pub", default=""))
            if pub is not None:
                ctx.to_console(f"Generated {kind} host key {private}: {sshkeys.fingerprint_sha256(pub.blob)}")


def _record_hostkeys(ctx: ModuleContext, blacklist: tuple[str, ...]) -> None:
    out = []
    for path in sshkeys.host_key_files(ctx.target):
        key = sshkeys.parse_key(ctx.target.read_text(path, default=""))
        short = path.rsplit("/", 1)[1][len("ssh_host_"):-len("_key.pub")]
        if key is None or short in blacklist or key.keytype in blacklist:
            continue
        out.append([key.keytype, key.blob])
    ctx.target.ensure_file(f"{ctx.paths.instance_dir(ctx.instance_id)}/ssh-hostkeys.json",
                           json.dumps(out, indent=1) + "\n", 0o644, links=FOLLOW_LINK)


def _authorized_keys(ctx: ModuleContext, cfg: Config) -> None:
    keys: list[str] = []
    if cfg.allow_public_ssh_keys:
        keys += list(ctx.instance.public_ssh_keys)
    keys += list(cfg.ssh_authorized_keys or ())
    keys = list(dict.fromkeys(k.strip() for k in keys if k.strip()))
    if not keys:
        return
    user = accounts.default_user_name(ctx.cloud_config, ctx.system_config)
    passwd = accounts.read_passwd(ctx.target)
    if user:
        if user in passwd:
            sshkeys.add_authorized_keys(ctx.target, passwd[user], keys)
        else:
            ctx.warn(f"ssh_authorized_keys: default user {user!r} does not exist; keys not installed for it")
    disable_root = cfg.disable_root
    if disable_root is None:
        disable_root = bool(ctx.system_config.get("disable_root", True))
    opts = ""
    if disable_root:
        opts = (cfg.disable_root_opts if cfg.disable_root_opts is not None else DISABLE_ROOT_OPTS)
        opts = opts.replace("$USER", user or "NONE").replace("$DISABLE_USER", "root")
    if "root" in passwd:
        sshkeys.add_authorized_keys(ctx.target, passwd["root"], keys, options=opts)
