"""FakeRunner handlers that emulate the shadow tools (useradd, groupadd, usermod, chpasswd, chage) and
ssh-keygen against a temporary root, so tree-diff tests see the files the real tools would change."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from tests.fakes import FakeRunner
from tether import accounts

# A fixed, valid ed25519 public key blob per key type (content does not matter to the modules).
_BLOBS = {t: base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + hashlib.sha256(t.encode()).digest())
          .decode() for t in ("rsa", "ecdsa", "ed25519")}


def _lines(root: Path, name: str) -> list[list[str]]:
    return [line.split(":") for line in (root / "etc" / name).read_text().splitlines() if line]


def _save(root: Path, name: str, rows: list[list[str]]) -> None:
    (root / "etc" / name).write_text("".join(":".join(r) + "\n" for r in rows))


def _opts(argv: list[str]) -> tuple[dict[str, str], set[str], str]:
    valued = {"--root", "--comment", "--home-dir", "--gid", "--uid", "--shell", "--expiredate", "--inactive",
              "--selinux-user", "--groups", "--crypt-method"}
    opts: dict[str, str] = {}
    flags: set[str] = set()
    i = 1
    while i < len(argv) - 1:
        a = argv[i]
        if a in valued:
            opts[a] = argv[i + 1]
            i += 2
        else:
            flags.add(a)
            i += 1
    return opts, flags, argv[-1]


def groupadd(argv: list[str], kw: dict[str, Any]) -> None:
    opts, _f, name = _opts(argv)
    root = Path(opts["--root"])
    rows = _lines(root, "group")
    gid = max([int(r[2]) for r in rows if 1000 <= int(r[2]) < 60000] + [999]) + 1
    _save(root, "group", rows + [[name, "x", str(gid), ""]])
    _save(root, "gshadow", _lines(root, "gshadow") + [[name, "!", "", ""]])


def useradd(argv: list[str], kw: dict[str, Any]) -> None:
    opts, flags, name = _opts(argv)
    root = Path(opts["--root"])
    pw = _lines(root, "passwd")
    if "--uid" in opts:
        uid = int(opts["--uid"])
    elif "--system" in flags:
        uid = min([int(r[2]) for r in pw if 100 <= int(r[2]) < 1000] + [1000]) - 1
    else:
        uid = max([int(r[2]) for r in pw if 1000 <= int(r[2]) < 60000] + [999]) + 1
    groups = _lines(root, "group")
    if "--gid" in opts:
        gid = next(int(g[2]) for g in groups if opts["--gid"] in (g[0], g[2]))
    elif "--no-user-group" in flags:
        gid = 100
    else:
        gid = uid
        groups.append([name, "x", str(gid), ""])
        _save(root, "gshadow", _lines(root, "gshadow") + [[name, "!", "", ""]])
    for g in opts.get("--groups", "").split(","):
        for row in groups:
            if g and row[0] == g:
                row[3] = ",".join([m for m in row[3].split(",") if m] + [name])
    _save(root, "group", groups)
    home = opts.get("--home-dir", f"/home/{name}")
    _save(root, "passwd", pw + [[name, "x", str(uid), str(gid), opts.get("--comment", ""), home,
                                 opts.get("--shell", "/bin/sh")]])
    _save(root, "shadow", _lines(root, "shadow") + [[name, "!", "19000", "0", "99999", "7", "", "", ""]])
    if "--create-home" in flags:
        (root / home.lstrip("/")).mkdir(parents=True, exist_ok=True)


def usermod(argv: list[str], kw: dict[str, Any]) -> None:
    opts, flags, name = _opts(argv)
    root = Path(opts["--root"])
    if "--groups" in opts:
        groups = _lines(root, "group")
        for row in groups:
            if row[0] in opts["--groups"].split(",") and name not in row[3].split(","):
                row[3] = ",".join([m for m in row[3].split(",") if m] + [name])
        _save(root, "group", groups)
    if flags & {"--lock", "--unlock"}:
        rows = _lines(root, "shadow")
        for r in rows:
            if r[0] == name:
                r[1] = "!" + r[1] if "--lock" in flags else r[1].lstrip("!")
        _save(root, "shadow", rows)


def chpasswd(argv: list[str], kw: dict[str, Any]) -> None:
    opts, flags, _ = _opts(argv + ["-"])
    root = Path(opts["--root"])
    rows = _lines(root, "shadow")
    for line in str(kw["data"]).splitlines():
        user, pw = line.split(":", 1)
        if "--encrypted" not in flags:
            pw = accounts._libcrypt().crypt(pw.encode(), b"$6$fakesalt$").decode()
        for r in rows:
            if r[0] == user:
                r[1] = pw
                r[2] = "20000"
    _save(root, "shadow", rows)


def chage(argv: list[str], kw: dict[str, Any]) -> None:
    opts, _f, name = _opts(argv)
    rows = _lines(Path(opts["--root"]), "shadow")
    for r in rows:
        if r[0] == name:
            r[2] = argv[argv.index("--lastday") + 1]
    _save(Path(opts["--root"]), "shadow", rows)


def ssh_keygen(argv: list[str], kw: dict[str, Any]) -> str | None:
    path = Path(argv[argv.index("-f") + 1])
    kind = path.name[len("ssh_host_"):-len("_key")]
    pub = f"ssh-ed25519 {_BLOBS.get(kind, _BLOBS['ed25519'])} root@fake\n"
    if "-y" in argv:
        return pub
    path.write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\nfake {kind}\n-----END OPENSSH PRIVATE KEY-----\n")
    path.chmod(0o600)
    path.with_name(path.name + ".pub").write_text(pub)
    return None


def accounts_runner(runner: FakeRunner | None = None) -> FakeRunner:
    r = runner or FakeRunner()
    r.expect("groupadd *", handler=groupadd)
    r.expect("useradd *", handler=useradd)
    r.expect("usermod *", handler=usermod)
    r.expect("chpasswd *", handler=chpasswd)
    r.expect("chage *", handler=chage)
    r.expect("visudo *")
    r.expect("ssh-keygen *", handler=ssh_keygen)
    return r
