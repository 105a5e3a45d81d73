"""Signed images: OpenSSH signatures over COSI metadata.json or a raw image's sha384 manifest, checked against the
keys in /etc/tether/keys before any byte is written (root only: real images, loop disks, the real ssh-keygen)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.engine.conftest import BuiltImage, LoopDisk
from tests.engine.servicing_rig import (
    ROOT_A,
    ROOT_B,
    Rig,
    config,
    kimages_fixture,  # noqa: F401  (the "kimages" fixture)
)
from tether.engine import images as engine_images
from tether.engine import signatures
from tether.engine.commit import commit
from tether.engine.hostconfig import OsImage, parse_host_config
from tether.engine.update import UpdateOptions, stage
from tether.runner import Runner
from tether.target import Target

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")


def keygen(d: Path, name: str) -> Path:
    key = d / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key


def sign(key: Path, message: Path, namespace: str = "tether-image") -> Path:
    Path(str(message) + ".sig").unlink(missing_ok=True)  # ssh-keygen will not overwrite a signature
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", namespace, str(message)], check=True,
                   capture_output=True)
    return Path(str(message) + ".sig")


def metadata_of(cosi: Path) -> bytes:
    with tarfile.open(cosi) as tar:
        f = tar.extractfile("metadata.json")
        assert f is not None
        return f.read()


def publish_cosi(src: Path, dest: Path, key: Path | None) -> Path:
    """A publisher's steps: copy the COSI file, sign its metadata.json as <image>.sig."""
    dest.mkdir(parents=True, exist_ok=True)
    img = dest / src.name
    shutil.copy(src, img)
    if key:
        meta = dest / "metadata.json"
        meta.write_bytes(metadata_of(img))
        sign(key, meta).rename(str(img) + ".sig")
        meta.unlink()
    return img


def publish_raw(src: Path, dest: Path, key: Path | None) -> Path:
    """sha384sum IMAGE > IMAGE.sha384; ssh-keygen -Y sign ... IMAGE.sha384 (writes IMAGE.sha384.sig)."""
    dest.mkdir(parents=True, exist_ok=True)
    img = dest / src.name
    shutil.copy(src, img)
    if key:
        man = Path(str(img) + ".sha384")
        man.write_text(f"{hashlib.sha384(img.read_bytes()).hexdigest()}  {img.name}\n")
        sign(key, man)
    return img


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A servicing root whose /etc/tether/keys the engine trusts, and a directory of publisher keys."""
    root = tmp_path / "servicing-root"
    (root / "etc/tether/keys").mkdir(parents=True)
    monkeypatch.setattr(signatures, "_trust", signatures.TrustStore(Target.at(root), Runner()))
    pub = tmp_path / "publisher"
    pub.mkdir()
    return root / "etc/tether/keys", pub


def trust(keydir: Path, key: Path, name: str) -> None:
    shutil.copy(str(key) + ".pub", keydir / f"{name}.pub")


def probe(img: Path, digest: str = "ignored") -> engine_images.ImageInfo:
    return engine_images.probe(OsImage(url=f"file://{img}", sha384=digest))


def test_good_signatures_cosi_and_raw(keys: tuple[Path, Path], images: dict[str, BuiltImage],
                                      tmp_path: Path) -> None:
    keydir, pub = keys
    k = keygen(pub, "release")
    trust(keydir, k, "release-2026")
    cosi = publish_cosi(images["v2"].cosi, tmp_path / "srv", k)
    assert probe(cosi).kind == "cosi"
    assert signatures.check_cosi_metadata(f"file://{cosi}", metadata_of(cosi), {}) == "release-2026"
    raw = publish_raw(images["v2"].zst, tmp_path / "srv", k)
    assert probe(raw).kind == "zstd"
    got = signatures.signed_digest(f"file://{raw}", {})
    assert got == signatures.SignedDigest(hashlib.sha384(raw.read_bytes()).hexdigest(), "release-2026")


def test_bad_signature_is_refused(keys: tuple[Path, Path], images: dict[str, BuiltImage], tmp_path: Path) -> None:
    keydir, pub = keys
    k = keygen(pub, "release")
    trust(keydir, k, "release")
    cosi = publish_cosi(images["v2"].cosi, tmp_path / "a", k)
    other = publish_cosi(images["v1"].cosi, tmp_path / "b", k)
    shutil.copy(str(other) + ".sig", str(cosi) + ".sig")  # a good signature, of another image's metadata
    with pytest.raises(signatures.SignatureError, match=r"v2\.cosi\.sig \(metadata\.json\): the signature does "
                                                        r"not match \(signed by trusted key release"):
        probe(cosi)
    Path(str(cosi) + ".sig").write_text("-----BEGIN SSH SIGNATURE-----\nbm9wZQ==\n-----END SSH SIGNATURE-----\n")
    with pytest.raises(signatures.SignatureError, match="not a valid OpenSSH signature"):
        probe(cosi)
    Path(str(cosi) + ".sig").write_text("gpg? no\n")
    with pytest.raises(signatures.SignatureError, match="not an OpenSSH signature"):
        probe(cosi)
    # a signature made for another purpose (namespace) does not count
    meta = tmp_path / "metadata.json"
    meta.write_bytes(metadata_of(cosi))
    sign(k, meta, namespace="file").rename(str(cosi) + ".sig")
    with pytest.raises(signatures.SignatureError, match="does not match"):
        probe(cosi)


def test_signed_manifest_for_another_file_or_pin_is_refused(keys: tuple[Path, Path], images: dict[str, BuiltImage],
                                                            tmp_path: Path) -> None:
    keydir, pub = keys
    k = keygen(pub, "release")
    trust(keydir, k, "release")
    raw = publish_raw(images["v2"].zst, tmp_path / "srv", k)
    with pytest.raises(signatures.SignatureError, match="differs from the host configuration's pin"):
        probe(raw, "0" * 96)
    man = Path(str(raw) + ".sha384")
    man.write_text(man.read_text().replace(raw.name, "other.img.zst"))
    sign(k, man)
    with pytest.raises(signatures.SignatureError, match=r"lists no sha384 for 'v2\.img\.zst'"):
        probe(raw)


def test_missing_signature_is_refused(keys: tuple[Path, Path], images: dict[str, BuiltImage],
                                      tmp_path: Path) -> None:
    keydir, pub = keys
    trust(keydir, keygen(pub, "release"), "release")
    cosi = publish_cosi(images["v2"].cosi, tmp_path / "srv", None)
    with pytest.raises(signatures.SignatureError, match=r"v2\.cosi\.sig: the image's signature is missing"):
        probe(cosi)
    raw = publish_raw(images["v2"].zst, tmp_path / "srv", None)
    with pytest.raises(signatures.SignatureError, match=r"\.sha384: the image's digest manifest is missing"):
        probe(raw)


def test_untrusted_signer_is_refused(keys: tuple[Path, Path], images: dict[str, BuiltImage], tmp_path: Path) -> None:
    keydir, pub = keys
    trust(keydir, keygen(pub, "release"), "release")
    stranger = keygen(pub, "stranger")
    cosi = publish_cosi(images["v2"].cosi, tmp_path / "srv", stranger)
    with pytest.raises(signatures.SignatureError, match="signed by a key that is not trusted"):
        probe(cosi)


def test_rotation_two_keys_then_the_old_one_removed(keys: tuple[Path, Path], images: dict[str, BuiltImage],
                                                    tmp_path: Path) -> None:
    keydir, pub = keys
    old, new = keygen(pub, "old"), keygen(pub, "new")
    trust(keydir, old, "release-2025")
    trust(keydir, new, "release-2026")
    by_old = publish_cosi(images["v1"].cosi, tmp_path / "old", old)
    by_new = publish_cosi(images["v2"].cosi, tmp_path / "new", new)
    assert signatures.check_cosi_metadata(f"file://{by_old}", metadata_of(by_old), {}) == "release-2025"
    assert signatures.check_cosi_metadata(f"file://{by_new}", metadata_of(by_new), {}) == "release-2026"
    (keydir / "release-2025.pub").unlink()
    probe(by_new)
    with pytest.raises(signatures.SignatureError, match="not trusted"):
        probe(by_old)


def test_unsigned_images_are_accepted_only_without_keys(keys: tuple[Path, Path], images: dict[str, BuiltImage],
                                                        tmp_path: Path) -> None:
    keydir, pub = keys
    cosi = publish_cosi(images["v2"].cosi, tmp_path / "srv", None)
    assert probe(cosi).kind == "cosi"  # no key installed: signatures are not asked for
    (keydir / "README").write_text("not a key\n")
    assert probe(cosi).kind == "cosi"
    trust(keydir, keygen(pub, "release"), "release")
    with pytest.raises(signatures.SignatureError, match="missing"):
        probe(cosi)


def test_bad_key_files_are_named(keys: tuple[Path, Path], images: dict[str, BuiltImage], tmp_path: Path) -> None:
    keydir, _pub = keys
    (keydir / "ops.pub").write_text("# rotation 2026\nssh-ed25519 !!!notbase64\n")
    with pytest.raises(signatures.SignatureError, match=r"ops\.pub:2: the key is not valid base64"):
        probe(images["v2"].cosi)
    (keydir / "ops.pub").write_text("hello world\n")
    with pytest.raises(signatures.SignatureError, match=r"ops\.pub:1: not an OpenSSH public key line"):
        probe(images["v2"].cosi)


def test_keys_writable_by_others_are_refused(keys: tuple[Path, Path], images: dict[str, BuiltImage]) -> None:
    keydir, pub = keys
    trust(keydir, keygen(pub, "release"), "release")
    (keydir / "release.pub").chmod(0o666)
    with pytest.raises(signatures.SignatureError, match=r"release\.pub: writable by group or others \(mode 0666\)"):
        probe(images["v2"].cosi)
    (keydir / "release.pub").chmod(0o644)
    keydir.chmod(0o777)
    with pytest.raises(signatures.SignatureError, match=r"keys: writable by group or others"):
        probe(images["v2"].cosi)


def sha(dev: str) -> str:
    with open(dev, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_refused_update_leaves_the_slots_untouched(loopdisk: LoopDisk, kimages: dict[str, BuiltImage],
                                                   keys: tuple[Path, Path], tmp_path: Path) -> None:
    keydir, pub = keys
    k, stranger = keygen(pub, "release"), keygen(pub, "stranger")
    rig = Rig(loopdisk, tmp_path)
    rig.install(kimages["v1"])
    rig.boot()
    with rig.running() as live:
        assert commit(rig.env(live)).code == 0
    trust(keydir, k, "release")
    a_before, b_before = sha(loopdisk.part(ROOT_A)), sha(loopdisk.part(ROOT_B))
    cosi = publish_cosi(kimages["v2"].cosi, tmp_path / "bad", stranger)
    cfg = config(loopdisk.device, kimages["v2"], "node-2")
    cfg["image"] = {"url": f"file://{cosi}", "sha384": "ignored"}
    with rig.running() as live:
        with pytest.raises(signatures.SignatureError, match="not trusted"):
            stage(parse_host_config(cfg), Runner(), live, UpdateOptions())
        assert rig.status(live)["servicingState"] == "provisioned"
    assert sha(loopdisk.part(ROOT_A)) == a_before
    assert sha(loopdisk.part(ROOT_B)) == b_before  # not one byte written to the inactive slot

    # a tampered raw image under a good signed manifest: streamed, refused at the hash, never staged
    raw = publish_raw(kimages["v2"].raw, tmp_path / "tampered", k)
    data = bytearray(raw.read_bytes())
    data[-100] ^= 0xFF
    raw.write_bytes(bytes(data))
    cfg["image"] = {"url": f"file://{raw}", "sha256": "ignored"}
    with rig.running() as live:
        with pytest.raises(engine_images.ImageHashError, match="its signed manifest .signer release. says"):
            stage(parse_host_config(cfg), Runner(), live, UpdateOptions())
        st = rig.status(live)
        assert st["servicingState"] == "provisioned" and st["slots"]["volume-b"]["state"] == "bad"
    assert sha(loopdisk.part(ROOT_A)) == a_before

    # correctly signed: staged
    good = publish_cosi(kimages["v2"].cosi, tmp_path / "good", k)
    cfg["image"] = {"url": f"file://{good}", "sha384": "ignored"}
    with rig.running() as live:
        what, st = stage(parse_host_config(cfg), Runner(), live, UpdateOptions())
        assert st["servicingState"] == "ab-update-staged"
    assert sha(loopdisk.part(ROOT_A)) == a_before


def test_cli_install_checks_the_keys_of_its_root(loopdisk: LoopDisk, kimages: dict[str, BuiltImage],
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    import yaml

    from tether.engine.cli import add_parsers

    monkeypatch.setattr(signatures, "_trust", None)  # the CLI sets it from --root; restored after the test
    root = tmp_path / "installer"
    (root / "etc/tether/keys").mkdir(parents=True)
    pub = tmp_path / "publisher"
    pub.mkdir()
    k = keygen(pub, "release")
    trust(root / "etc/tether/keys", k, "release")
    cfg = config(loopdisk.device, kimages["v1"])
    unsigned = publish_cosi(kimages["v1"].cosi, tmp_path / "unsigned", None)
    cfg["image"] = {"url": f"file://{unsigned}", "sha384": "ignored"}
    cfg_file = tmp_path / "hc.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default="/")
    parser.add_argument("--debug", action="store_true")
    add_parsers(parser.add_subparsers(dest="verb"))
    before = sha(loopdisk.device)
    args = parser.parse_args(["--root", str(root), "install", str(cfg_file), "--allowed-operations", "stage"])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert "k1.cosi.sig: the image's signature is missing or unreadable" in err and str(root) in err
    assert sha(loopdisk.device) == before  # not partitioned, nothing written

    signed = publish_cosi(kimages["v1"].cosi, tmp_path / "signed", k)
    cfg["image"] = {"url": f"file://{signed}", "sha384": "ignored"}
    cfg_file.write_text(yaml.safe_dump(cfg))
    args = parser.parse_args(["--root", str(root), "install", str(cfg_file), "--allowed-operations", "stage"])
    assert args.func(args) == 0, capsys.readouterr().err
