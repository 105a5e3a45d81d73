"""SSH key files in a target: authorized_keys editing, key fingerprints, host key paths, sshd options.

Formats follow OpenSSH's sshd(8) AUTHORIZED_KEYS FILE FORMAT: ``[options] keytype base64 [comment]``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import struct
from dataclasses import dataclass

from tether.accounts import PasswdEntry
from tether.filesync import ensure_dir
from tether.target import FOLLOW_LINK, REPLACE_LINK, Target

HOST_KEY_TYPES = ("rsa", "ecdsa", "ed25519")
HOST_KEY_TPL = "/etc/ssh/ssh_host_{}_key"
_KEY_TYPE_RE = re.compile(r"^(ssh-(rsa|dss|ed25519|ed448)|ecdsa-sha2-nistp\d+|sk-\S+@openssh\.com"
                          r"|\S+-cert-v\d\d@openssh\.com)$")
DEFAULT_AUTHORIZED_KEYS_FILE = ".ssh/authorized_keys"


@dataclass(frozen=True)
class AuthorizedKey:
    keytype: str
    blob: str
    comment: str = ""
    options: str = ""

    def line(self) -> str:
        parts = [self.options] if self.options else []
        parts += [self.keytype, self.blob]
        if self.comment:
            parts.append(self.comment)
        return " ".join(parts)


def _split_options(line: str) -> tuple[str, str]:
    """Split a leading options field (which may hold quoted spaces) from the rest of the line."""
    quoted = False
    for i, c in enumerate(line):
        if c == '"' and (i == 0 or line[i - 1] != "\\"):
            quoted = not quoted
        elif c in " \t" and not quoted:
            return line[:i], line[i:].strip()
    return line, ""


def parse_key(line: str) -> AuthorizedKey | None:
    """One authorized_keys line, or None when it is blank, a comment or not a key."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    options = ""
    toks = line.split(None, 2)
    if not _KEY_TYPE_RE.match(toks[0]):
        options, line = _split_options(line)
        toks = line.split(None, 2)
        if not toks or not _KEY_TYPE_RE.match(toks[0]):
            return None
    if len(toks) < 2:
        return None
    try:
        base64.b64decode(toks[1], validate=True)
    except (binascii.Error, ValueError):
        return None
    return AuthorizedKey(toks[0], toks[1], toks[2] if len(toks) > 2 else "", options)


def merge_authorized_keys(existing: str, keys: list[str], options: str = "") -> str:
    """``existing`` with each of ``keys`` present once: a key already there (same blob) has its line replaced,
    new keys are appended; comments and unknown lines stay. ``options`` prefixes the given keys."""
    wanted: dict[str, AuthorizedKey] = {}
    for k in keys:
        parsed = parse_key(k)
        if parsed is None:
            continue
        if options:
            parsed = AuthorizedKey(parsed.keytype, parsed.blob, parsed.comment, options)
        wanted.setdefault(parsed.blob, parsed)
    lines: list[str] = []
    for raw in existing.splitlines():
        parsed = parse_key(raw)
        if parsed is not None and parsed.blob in wanted:
            lines.append(wanted.pop(parsed.blob).line())
        else:
            lines.append(raw)
    lines += [k.line() for k in wanted.values()]
    return "\n".join(lines) + "\n" if lines else ""


def _sshd_lines(target: Target) -> list[list[str]]:
    """sshd_config keyword lines, with Include'd files expanded in place (first one wins, as sshd reads)."""
    out: list[list[str]] = []

    def read(path: str, depth: int) -> None:
        for line in target.read_text(path, default="").splitlines():
            toks = line.split()
            if not toks or toks[0].startswith("#"):
                continue
            if toks[0].lower() == "include" and depth < 4:
                for pat in toks[1:]:
                    pat = pat if pat.startswith("/") else f"/etc/ssh/{pat}"
                    d, base = os.path.split(pat)
                    rx = re.compile("^" + re.escape(base).replace(r"\*", ".*").replace(r"\?", ".") + "$")
                    try:
                        names = sorted(n for n in os.listdir(target.path(d)) if rx.match(n))
                    except OSError:
                        names = []
                    for n in names:
                        read(f"{d}/{n}", depth + 1)
                continue
            if toks[0].lower() == "match":
                return  # options inside Match blocks are conditional; stop at the first one
            out.append(toks)

    read("/etc/ssh/sshd_config", 0)
    return out


def sshd_option(target: Target, keyword: str) -> list[str] | None:
    for toks in _sshd_lines(target):
        if toks[0].lower() == keyword.lower():
            return toks[1:]
    return None


def authorized_keys_path(target: Target, user: PasswdEntry) -> str:
    """The first AuthorizedKeysFile of sshd_config, expanded for ``user`` (the one tether writes)."""
    files = sshd_option(target, "AuthorizedKeysFile") or [DEFAULT_AUTHORIZED_KEYS_FILE]
    first = files[0] if files[0].lower() != "none" else DEFAULT_AUTHORIZED_KEYS_FILE
    path = first.replace("%%", "\0").replace("%h", user.home).replace("%u", user.name).replace("%U", str(user.uid))
    path = path.replace("\0", "%")
    return path if path.startswith("/") else f"{user.home.rstrip('/')}/{path}"


def read_authorized_keys(target: Target, user: PasswdEntry) -> tuple[str, list[AuthorizedKey]]:
    path = authorized_keys_path(target, user)
    text = target.read_text(path, default="")
    return path, [k for k in (parse_key(line) for line in text.splitlines()) if k is not None]


def add_authorized_keys(target: Target, user: PasswdEntry, keys: list[str], options: str = "") -> bool:
    """Make each key present in the user's authorized_keys (0600, in a 0700 dir inside the home, both owned
    by the user). Returns True when anything changed."""
    path = authorized_keys_path(target, user)
    owner = (user.uid, user.gid)
    changed = False
    parent = os.path.dirname(path)
    if parent.startswith(user.home.rstrip("/") + "/"):
        changed |= ensure_dir(target, parent, 0o700, owner)
    else:
        target.makedirs(parent)
    existing = target.read_text(path, default="")
    content = merge_authorized_keys(existing, keys, options)
    if not content:
        return changed
    changed |= target.ensure_file(path, content, 0o600, owner, links=REPLACE_LINK)  # a user controls ~/.ssh
    return changed


# --- fingerprints ------------------------------------------------------------------------------------------
def fingerprint_hex(blob_b64: str, method: str = "sha256") -> str:
    """cloud-init's authorized-key fingerprint: the digest of the key blob as colon-separated hex pairs."""
    h = hashlib.new(method, base64.b64decode(blob_b64))
    hexd = h.hexdigest()
    return ":".join(hexd[i:i + 2] for i in range(0, len(hexd), 2))


def fingerprint_sha256(blob_b64: str) -> str:
    """OpenSSH's ``SHA256:...`` form (as ``ssh-keygen -l`` prints)."""
    digest = hashlib.sha256(base64.b64decode(blob_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def key_bits(keytype: str, blob_b64: str) -> int | None:
    """Key size in bits as ``ssh-keygen -l`` reports it, from the public key blob."""
    if "ed25519" in keytype:
        return 256
    m = re.search(r"nistp(\d+)", keytype)
    if m:
        return int(m.group(1))
    if keytype == "ssh-rsa":
        data = base64.b64decode(blob_b64)
        fields: list[bytes] = []
        pos = 0
        while pos + 4 <= len(data) and len(fields) < 3:
            (n,) = struct.unpack(">I", data[pos:pos + 4])
            fields.append(data[pos + 4:pos + 4 + n])
            pos += 4 + n
        if len(fields) == 3:
            return int.from_bytes(fields[2], "big").bit_length()
    return None


def host_key_files(target: Target) -> list[str]:
    """Paths (in the target) of the host public keys, sorted."""
    try:
        names = sorted(n for n in os.listdir(target.path("/etc/ssh"))
                       if n.startswith("ssh_host_") and n.endswith("_key.pub"))
    except OSError:
        return []
    return [f"/etc/ssh/{n}" for n in names]


def set_sshd_options(target: Target, dropin: str, options: dict[str, str], header: str) -> bool:
    """Set sshd options in a drop-in under sshd_config.d when sshd_config includes that directory; otherwise
    set them in sshd_config itself (replacing the keyword's first line or appending). True when changed."""
    main = target.read_text("/etc/ssh/sshd_config", default="")
    includes_dropins = any(
        line.split()[0].lower() == "include" and "sshd_config.d/" in line
        for line in main.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    if includes_dropins:
        body = header + "".join(f"{k} {v}\n" for k, v in options.items())
        return target.ensure_file(f"/etc/ssh/sshd_config.d/{dropin}", body, 0o644, links=FOLLOW_LINK)
    lines = main.splitlines()
    for k, v in options.items():
        for i, line in enumerate(lines):
            toks = line.split()
            if toks and toks[0].lower() == k.lower():
                lines[i] = f"{k} {v}"
                break
            if toks and toks[0].lower() == "match":
                lines.insert(i, f"{k} {v}")
                break
        else:
            lines.append(f"{k} {v}")
    new = "\n".join(lines) + "\n"
    if new == main:
        return False
    target.write("/etc/ssh/sshd_config", new)
    return True
