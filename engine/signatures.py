"""Image signatures: OpenSSH signatures (``ssh-keygen -Y sign``, namespace ``tether-image``) over a small manifest.

What is signed, so that the check happens before any byte is written to a slot:

* a COSI image at URL ``U``: ``metadata.json`` exactly as stored in the COSI file; the signature is ``U.sig``. The
  metadata's SHA-384 of each filesystem image then pins the payload, checked while it streams.
* a raw or compressed image at ``U``: the digest manifest ``U.sha384`` (``sha384sum`` output naming the image's
  file name); the signature is ``U.sha384.sig``. The image's SHA-384 is checked against the manifest while it
  streams, and a mismatch fails the staging before the slot is switched, like a wrong pinned hash.

Trusted keys are in the servicing root's ``/etc/tether/keys/``: every ``*.pub`` file (OpenSSH public key lines,
the signer's name is the file name without ``.pub``) and ``allowed_signers`` files (OpenSSH's own format, for
``valid-after``/``valid-before``). Several keys may be trusted at once (rotation). Once any key is installed an
unsigned image is refused; with none, images are not checked for signatures. Verification is done by the
``ssh-keygen`` binary through the runner.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from tether import log
from tether.engine.sources import ImageSourceError, open_source
from tether.errors import CommandError, TetherError
from tether.runner import Runner
from tether.target import Target

LOG = log.get(__name__)

NAMESPACE = "tether-image"
KEYS_DIR = "/etc/tether/keys"
COSI_SIGNATURE_SUFFIX = ".sig"
MANIFEST_SUFFIX = ".sha384"
SMALL_FILE_CAP = 64 << 10
SSH_KEYGEN_TIMEOUT = 30.0

_KEY_TYPE = re.compile(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.-]+)$")
_PRINCIPAL = re.compile(r"^[A-Za-z0-9._@+-]+$")
_SUM_LINE = re.compile(r"^([0-9a-fA-F]{96}) [ *](.+)$")


class SignatureError(TetherError):
    """The image's signature is missing, malformed, untrusted or does not match; nothing was written."""


@dataclass(frozen=True)
class SignedDigest:
    sha384: str
    signer: str


@dataclass(frozen=True)
class TrustStore:
    """The trusted keys of a servicing root, and the runner that runs ``ssh-keygen``."""

    root: Target
    runner: Runner

    def allowed_signers(self) -> list[str]:
        """allowed_signers lines for every trusted key (empty: no key installed). Bad files are errors."""
        d = self.root.path(KEYS_DIR)
        if not d.is_dir():
            return []
        _not_writable_by_others(d)
        lines: list[str] = []
        for f in sorted(d.iterdir()):
            if f.name.endswith(".pub") or f.name == "allowed_signers" or f.name.endswith(".allowed_signers"):
                _not_writable_by_others(f)
            if f.name.endswith(".pub"):
                lines += _pub_lines(f, f.name[:-4])
            elif f.name == "allowed_signers" or f.name.endswith(".allowed_signers"):
                lines += [ln for ln in _text_lines(f) if ln]
        return lines

    def describe(self) -> str:
        return f"{KEYS_DIR} in {self.root.root}"


_trust: TrustStore | None = None


def use(root: Target, runner: Runner) -> None:
    """Check images against ``root``'s keys (the CLI calls this with ``--root``; the default is ``/``)."""
    global _trust
    _trust = TrustStore(root, runner)


def trust() -> TrustStore:
    return _trust or TrustStore(Target.at("/"), Runner())


def _not_writable_by_others(p: Path) -> None:
    """A key anyone else could replace trusts nobody in particular."""
    mode = p.stat().st_mode
    if mode & 0o022:
        raise SignatureError(f"{p}: writable by group or others (mode {mode & 0o7777:04o}); trusted keys must be "
                             "writable by their owner only (chmod go-w)")


def _text_lines(f: Path) -> list[str]:
    try:
        text = f.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SignatureError(f"{f}: cannot read trusted key file: {e}") from None
    # comments become empty lines, so the line numbers in errors stay those of the file
    return ["" if ln.strip().startswith("#") else ln.strip() for ln in text.splitlines()]


def _pub_lines(f: Path, principal: str) -> list[str]:
    if not _PRINCIPAL.match(principal):
        raise SignatureError(f"{f}: a key file name may hold only letters, digits and . _ @ + - (it names the "
                             "signer)")
    out = []
    for n, line in enumerate(_text_lines(f), 1):
        if not line:
            continue
        parts = line.split()
        if len(parts) < 2 or not _KEY_TYPE.match(parts[0]):
            raise SignatureError(f"{f}:{n}: not an OpenSSH public key line ('TYPE BASE64 [comment]')")
        try:
            base64.b64decode(parts[1], validate=True)
        except binascii.Error:
            raise SignatureError(f"{f}:{n}: the key is not valid base64") from None
        out.append(f'{principal} namespaces="{NAMESPACE}" {parts[0]} {parts[1]}')
    if not out:
        raise SignatureError(f"{f}: holds no public key")
    return out


def fetch_small(url: str, *, timeout: float = 30.0, retries: int = 5, deadline: float | None = None) -> bytes:
    """The whole of a small file next to an image (a signature or a manifest), at most 64 KiB."""
    src = open_source(url, timeout=timeout, retries=retries, deadline=deadline)
    try:
        out = bytearray()
        buf = bytearray(16 << 10)
        while n := src.readinto(memoryview(buf)):
            out += buf[:n]
            if len(out) > SMALL_FILE_CAP:
                raise SignatureError(f"{url}: larger than {SMALL_FILE_CAP} bytes; not a signature or manifest")
        return bytes(out)
    finally:
        src.close()


def _fetch(url: str, what: str, store: TrustStore, net: dict[str, float]) -> bytes:
    try:
        return fetch_small(url, timeout=net.get("timeout", 30.0), retries=int(net.get("retries", 5)),
                           deadline=net.get("deadline"))
    except ImageSourceError as e:
        raise SignatureError(f"{url}: the image's {what} is missing or unreadable ({e}); images must be signed "
                             f"while trusted keys are installed ({store.describe()})") from None


def verify(store: TrustStore, signers: list[str], message: bytes, signature: bytes, what: str) -> str:
    """The signer's name when ``signature`` is a good ``tether-image`` signature of ``message`` by a trusted key."""
    if b"-----BEGIN SSH SIGNATURE-----" not in signature:
        raise SignatureError(f"{what}: not an OpenSSH signature (made with 'ssh-keygen -Y sign -n {NAMESPACE}')")
    with tempfile.TemporaryDirectory(prefix="tether-sig-") as tmp:
        allowed = os.path.join(tmp, "allowed_signers")
        sig = os.path.join(tmp, "image.sig")
        Path(allowed).write_text("\n".join(signers) + "\n", encoding="utf-8")
        Path(sig).write_bytes(signature)
        try:
            found = store.runner.run(["ssh-keygen", "-Y", "find-principals", "-s", sig, "-f", allowed],
                                     timeout=SSH_KEYGEN_TIMEOUT, check=False)
            principals = [p for p in found.stdout.split() if p] if found.code == 0 else []
            if not principals:
                err = found.stderr.strip().splitlines()
                if err and "No principal matched" not in err[0]:
                    raise SignatureError(f"{what}: not a valid OpenSSH signature ({err[0]})")
                raise SignatureError(f"{what}: signed by a key that is not trusted (trusted keys: "
                                     f"{store.describe()})")
            for principal in principals:
                res = store.runner.run(["ssh-keygen", "-Y", "verify", "-f", allowed, "-I", principal,
                                        "-n", NAMESPACE, "-s", sig], data=message, timeout=SSH_KEYGEN_TIMEOUT,
                                       check=False)
                if res.code == 0:
                    return principal
        except CommandError as e:
            raise SignatureError(f"{what}: cannot check the signature: {e}") from None
        raise SignatureError(f"{what}: the signature does not match (signed by trusted key "
                             f"{', '.join(principals)}, but over other content or another namespace)")


def check_cosi_metadata(url: str, metadata: bytes, net: dict[str, float]) -> str | None:
    """Verify ``U.sig`` over the COSI file's ``metadata.json``. None when no key is installed."""
    store = trust()
    signers = store.allowed_signers()
    if not signers:
        return None
    sig_url = url + COSI_SIGNATURE_SUFFIX
    who = verify(store, signers, metadata, _fetch(sig_url, "signature", store, net), f"{sig_url} (metadata.json)")
    LOG.info("%s: metadata.json signed by %s", url, who)
    return who


def signed_digest(url: str, net: dict[str, float], pinned: tuple[str, str] | None = None) -> SignedDigest | None:
    """The raw image's SHA-384 from its verified manifest ``U.sha384``. None when no key is installed.

    ``pinned`` is the host configuration's (algorithm, digest); a SHA-384 pin that disagrees is an error here,
    before anything is downloaded."""
    signed = signed_manifest(url, net)
    if signed is None:
        return None
    manifest, man_url, who = signed
    digest = parse_manifest(manifest, url, man_url)
    if pinned and pinned[0] == "sha384" and not hmac.compare_digest(pinned[1].lower(), digest):
        raise SignatureError(f"{man_url}: signed sha384 {digest} differs from the host configuration's pin "
                             f"{pinned[1]}")
    LOG.info("%s: sha384 %s signed by %s", url, digest, who)
    return SignedDigest(digest, who)


def signed_manifest(url: str, net: dict[str, float]) -> tuple[bytes, str, str] | None:
    """The raw image's manifest ``U.sha384`` once its signature is verified: (its bytes, its URL, the signer).
    None when no key is installed. The manifest may list other files than the image (its chunk index)."""
    store = trust()
    signers = store.allowed_signers()
    if not signers:
        return None
    man_url = url + MANIFEST_SUFFIX
    manifest = _fetch(man_url, "digest manifest", store, net)
    sig_url = man_url + ".sig"
    return manifest, man_url, verify(store, signers, manifest, _fetch(sig_url, "signature", store, net), sig_url)


def parse_manifest(text: bytes, image_url: str, where: str) -> str:
    """The SHA-384 the manifest (``sha384sum`` output) gives for the image's file name."""
    name = os.path.basename(urllib.parse.unquote(urllib.parse.urlsplit(image_url).path))
    try:
        lines = text.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise SignatureError(f"{where}: not a text file") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        m = _SUM_LINE.match(line.strip())
        if m is None:
            raise SignatureError(f"{where}:{n}: expected '<96 hex digits>  <file name>' (sha384sum output)")
        if os.path.basename(m.group(2)) == name:
            return m.group(1).lower()
    raise SignatureError(f"{where}: lists no sha384 for {name!r}")
