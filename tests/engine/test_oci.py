"""oci:// images pulled from a real distribution registry (Debian's docker-registry) on a random loopback port:
anonymous, htpasswd (Basic) and token (Bearer) authentication, tags and digests, verification, image indexes,
mirrors, and A/B staging of a pulled image into slot B on a loop disk."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import BuiltImage, LoopDisk
from tests.engine.registry_rig import (
    OCI_INDEX,
    OCI_MANIFEST,
    Front,
    Registry,
    TokenService,
    basic,
    htpasswd_line,
    running,
)
from tether.engine import oci_config
from tether.engine.hostconfig import parse_host_config
from tether.engine.images import probe
from tether.engine.install import InstallOptions, install
from tether.engine.oci import OciAuthError, OciError, host_platform
from tether.engine.oci_blob import OciSource
from tether.engine.oci_config import RegistryConfigError
from tether.engine.sources import open_source
from tether.engine.update import UpdateOptions, stage
from tether.errors import TetherError
from tether.runner import Runner
from tether.target import Target

REPO = "os/raw"


def read_all(url: str) -> tuple[bytes, OciSource]:
    src = open_source(url, timeout=10, retries=1, deadline=None)
    assert isinstance(src, OciSource)
    out = bytearray()
    buf = bytearray(256 << 10)
    try:
        while n := src.readinto(memoryview(buf)):
            out += buf[:n]
    finally:
        src.close()
    return bytes(out), src


@pytest.fixture(autouse=True)
def settings_root(tmp_path: Path) -> Iterator[Path]:
    """Registry settings come from a root of the test's own (none written: anonymous, no mirrors)."""
    root = tmp_path / "root"
    (root / "etc/tether").mkdir(parents=True)
    oci_config.use(Target.at(root))
    yield root
    oci_config.use(None)


def write_settings(root: Path, doc: dict[str, Any], mode: int = 0o600) -> None:
    f = root / "etc/tether/registries.json"
    f.write_text(json.dumps(doc))
    f.chmod(mode)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with running(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="module")
def pushed(registry: Registry) -> dict[str, Any]:
    data = os.urandom(3 << 20) + b"end of the image"
    manifest, layer = registry.push_artifact(REPO, "v1", data, "disk.img.zst")
    return {"data": data, "manifest": manifest, "layer": layer}


def test_pull_by_tag_by_manifest_digest_and_by_layer_digest(registry: Registry, pushed: dict[str, Any]) -> None:
    for ref in (":v1", f"@{pushed['manifest']}", f"@{pushed['layer']}", f":v1@{pushed['manifest']}"):
        got, src = read_all(f"oci://{registry.host}/{REPO}{ref}")
        assert got == pushed["data"], ref
        assert src.size == len(pushed["data"]) and src.verified, ref
        assert src.blob.digest == pushed["layer"]


def test_seek_reads_the_right_bytes_with_range_requests(registry: Registry, pushed: dict[str, Any]) -> None:
    src = open_source(f"oci://{registry.host}/{REPO}:v1", timeout=10)
    data = pushed["data"]
    try:
        buf = bytearray(4096)
        for offset in (2 << 20, 17, len(data) - 100, 0):
            src.seek(offset)
            n = src.readinto(memoryview(buf))
            assert n and bytes(buf[:n]) == data[offset:offset + n], offset
    finally:
        src.close()


def test_unknown_tag_and_unknown_digest_are_clear_errors(registry: Registry, pushed: dict[str, Any]) -> None:
    with pytest.raises(OciError, match=r"oci://127\.0\.0\.1:\d+/os/raw:nope: .*/v2/os/raw/manifests/nope: "
                                       r"HTTP 404: MANIFEST_UNKNOWN"):
        open_source(f"oci://{registry.host}/{REPO}:nope", timeout=10)
    wrong = "sha256:" + hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(OciError, match="no manifest and no blob with this digest in os/raw"):
        open_source(f"oci://{registry.host}/{REPO}@{wrong}", timeout=10)


def test_bytes_that_do_not_match_their_digest_are_refused(tmp_path: Path) -> None:
    with running(tmp_path / "reg") as reg:
        data = os.urandom(1 << 20)
        manifest, layer = reg.push_artifact("os/bad", "v1", data, "disk.img")
        # the registry's storage is altered behind its back: same length, other bytes
        blob = reg.blob_file(layer)
        blob.write_bytes(b"X" + data[1:])
        with pytest.raises(OciError, match=rf"the blob's sha256 is [0-9a-f]{{64}}, the manifest says "
                                           rf"{layer.split(':')[1]}"):
            read_all(f"oci://{reg.host}/os/bad:v1")
        stored = reg.blob_file(manifest)
        stored.write_bytes(stored.read_bytes().replace(b"tether.test", b"tether.TEST"))
        with pytest.raises(OciError, match=rf"^oci://{reg.host}/os/bad@{manifest} \(manifest\): the content's "
                                           r"sha256 is [0-9a-f]{64}, not the digest"):
            open_source(f"oci://{reg.host}/os/bad@{manifest}", timeout=10)


def test_an_image_index_gives_this_hosts_platform(registry: Registry) -> None:
    os_, arch = host_platform()
    other = "arm64" if arch != "arm64" else "amd64"
    mine, theirs = os.urandom(1 << 16), os.urandom(1 << 16)
    entries = []
    for platform_arch, data in ((other, theirs), (arch, mine)):
        manifest, _ = registry.push_artifact("os/multi", f"only-{platform_arch}", data, "os.cosi")
        size = len(json.dumps(_manifest_doc(registry, "os/multi", manifest)).encode())
        entries.append({"mediaType": OCI_MANIFEST, "digest": manifest, "size": size,
                        "platform": {"os": os_, "architecture": platform_arch}})
    registry.push_manifest("os/multi", "v1", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    got, _ = read_all(f"oci://{registry.host}/os/multi:v1")
    assert got == mine
    registry.push_manifest("os/multi", "foreign", {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                   "manifests": entries[:1]})
    with pytest.raises(OciError, match=f"no manifest for this host's platform {os_}/{arch} \\(it has "
                                       f"{os_}/{other}\\)"):
        open_source(f"oci://{registry.host}/os/multi:foreign", timeout=10)


def _manifest_doc(reg: Registry, repo: str, digest: str) -> dict[str, Any]:
    return dict(json.loads(reg.blob_file(digest).read_bytes()))


def test_htpasswd_registry_with_and_without_credentials(tmp_path: Path, settings_root: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(htpasswd_line("puller", "correct-horse-battery"))
    auth = {"htpasswd": {"realm": "tether-test", "path": str(htpasswd)}}
    with running(tmp_path / "reg", auth, push_auth=basic("puller", "correct-horse-battery")) as reg:
        data = os.urandom(1 << 20)
        reg.push_artifact("private/os", "v1", data, "disk.img")
        url = f"oci://{reg.host}/private/os:v1"
        with pytest.raises(OciAuthError, match=rf"HTTP 401: the registry requires a login \(Basic realm "
                                               rf"'tether-test'\); add credentials for {reg.host} to "
                                               r"/etc/tether/registries\.json"):
            open_source(url, timeout=10)

        write_settings(settings_root, {"auths": {reg.host: {"username": "puller", "password": "wrong-password"}}})
        with pytest.raises(OciAuthError, match=rf"HTTP 401.*refused the credentials for {reg.host} \(user "
                                               r"'puller'\)") as e:
            open_source(url, timeout=10)
        assert "wrong-password" not in str(e.value)

        write_settings(settings_root, {"auths": {f"https://{reg.host}/v2/": {"auth": basic(
            "puller", "correct-horse-battery").split()[1]}}}, mode=0o644)
        with pytest.raises(RegistryConfigError, match=r"registries\.json in .*: mode 0644; it holds registry "
                                                      r"credentials and must be readable by its owner only"):
            open_source(url, timeout=10)
        (settings_root / "etc/tether/registries.json").chmod(0o600)
        got, src = read_all(url)
        assert got == data and src.verified
    assert "correct-horse-battery" not in caplog.text and "wrong-password" not in caplog.text


def test_token_service_bearer_flow(tmp_path: Path, settings_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = TokenService(tmp_path / "token", "fleet", "token-secret-pw").start()
    try:
        reg = Registry(tmp_path / "reg", tokens.registry_auth())
        reg.push_auth = "Bearer " + tokens.mint("repository:fleet/os:pull,push")
        with running(reg.work, reg.auth, reg.push_auth) as reg:
            data = os.urandom(1 << 20)
            manifest, _ = reg.push_artifact("fleet/os", "v2", data, "os.cosi")
            url = f"oci://{reg.host}/fleet/os@{manifest}"
            with pytest.raises(OciAuthError, match=r"token service http://127\.0\.0\.1:\d+/token: HTTP 401: refused "
                                                   r"an anonymous token for repository:fleet/os:pull; add credentials"):
                open_source(url, timeout=10)
            write_settings(settings_root, {"auths": {reg.host: {"username": "fleet",
                                                                "password": "token-secret-pw"}}})
            before = len(tokens.minted)
            got, src = read_all(url)
            assert got == data and src.verified
            asked = tokens.asked[-1]
            assert asked["query"] == {"service": "tether-test-registry", "scope": "repository:fleet/os:pull"}
            assert asked["authorization"] == basic("fleet", "token-secret-pw")
            assert len(tokens.minted) == before + 1

            # a token that expires during a download: the seek's request is refused, a new token is fetched
            front = Front(reg, refuse=2).start()
            write_settings(settings_root, {"auths": {front.host: {"username": "fleet",
                                                                  "password": "token-secret-pw"}}})
            try:
                src = open_source(f"oci://{front.host}/fleet/os@{manifest}", timeout=10)
                try:
                    src.seek(1000)
                    buf = bytearray(100)
                    assert src.readinto(memoryview(buf)) == 100 and bytes(buf) == data[1000:1100]
                finally:
                    src.close()
            finally:
                front.stop()
            assert len(tokens.minted) == before + 3   # the open's token, then the one after the refusal
            issued = tokens.minted[before:]
    finally:
        tokens.stop()
    assert "token-secret-pw" not in caplog.text
    assert not any(t in caplog.text or t.split(".")[2] in caplog.text for t in issued)


def test_a_mirror_that_is_down_falls_back_to_the_origin(registry: Registry, pushed: dict[str, Any],
                                                         settings_root: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    from tests.engine.registry_rig import free_port
    dead = f"127.0.0.1:{free_port()}"
    write_settings(settings_root, {"mirrors": {registry.host: [f"http://{dead}"]}})
    got, src = read_all(f"oci://{registry.host}/{REPO}:v1")
    assert got == pushed["data"] and src.verified
    assert f"mirror http://{dead} failed" in caplog.text


def test_a_mirror_is_asked_before_the_origin(tmp_path: Path, settings_root: Path) -> None:
    with running(tmp_path / "origin") as origin, running(tmp_path / "mirror") as mirror:
        data = os.urandom(1 << 18)
        origin.push_artifact("os/m", "v1", data, "disk.img")
        mirror.push_artifact("os/m", "v1", data, "disk.img")
        write_settings(settings_root, {"mirrors": {origin.host: [mirror.host]}})
        origin.stop()  # only the mirror can answer now
        got, src = read_all(f"oci://{origin.host}/os/m:v1")
        assert got == data and src.verified
        mirror.stop()
        with pytest.raises(OciError) as e:
            open_source(f"oci://{origin.host}/os/m:v1", timeout=3, retries=0)
        print(e.value)
        assert str(e.value).startswith(f"oci://{origin.host}/os/m:v1: http://{origin.host}/v2/os/m/manifests/v1: ")
        assert f"(mirrors tried first: http://{mirror.host}: " in str(e.value)


def test_install_and_stage_images_pulled_from_the_registry(loopdisk: LoopDisk, images: dict[str, BuiltImage],
                                                           registry: Registry, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """A raw zstd image installed into slot A and a COSI file staged into slot B, both from oci:// references."""
    from tests.engine.test_servicing import ROOT_A, ROOT_B, _metadata, commit, config, live_root, mounted_ro, sha
    v1, v2 = images["v1"], images["v2"]
    registry.push_artifact("os/loop", "v1", v1.zst.read_bytes(), "v1.img.zst")
    v2_manifest, v2_layer = registry.push_artifact("os/loop", "v2", v2.cosi.read_bytes(), "v2.cosi")

    hc = parse_host_config(config(loopdisk.device, f"oci://{registry.host}/os/loop:v1", v1.sha256(v1.zst)))
    info = probe(hc.image) if hc.image else None
    assert info is not None and info.kind == "zstd"
    install(hc, Runner(), InstallOptions())
    with mounted_ro(loopdisk.part(ROOT_A), tmp_path / "a") as a:
        assert (a / "usr/share/payload.bin").read_bytes() == v1.files["usr/share/payload.bin"]
    commit(loopdisk, tmp_path)
    a_before = sha(loopdisk.part(ROOT_A))

    pin = hashlib.sha384(_metadata(v2.cosi)).hexdigest()
    hc2 = parse_host_config(config(loopdisk.device, f"oci://{registry.host}/os/loop@{v2_manifest}", pin,
                                   "node-2", "sha384"))
    assert hc2.image is not None
    info = probe(hc2.image)
    assert info.kind == "cosi" and info.metadata is not None and info.provides("/")
    caplog.set_level(logging.INFO, logger="tether.engine.oci_blob")
    with live_root(loopdisk, tmp_path / "live") as live:
        what, doc = stage(hc2, Runner(), live, UpdateOptions())
    # the COSI file's tar padding is read at close, so the whole blob was checked against its digest
    assert f"blob digest {v2_layer} verified" in caplog.text
    assert what == "staged into volume-b", what
    assert doc["servicingState"] == "ab-update-staged"
    assert sha(loopdisk.part(ROOT_A)) == a_before
    with mounted_ro(loopdisk.part(ROOT_B), tmp_path / "b") as b:
        assert (b / "usr/share/payload.bin").read_bytes() == v2.files["usr/share/payload.bin"]
        assert (b / "etc/os-release").read_bytes() == b"ID=test\nVERSION_ID=2\n"
        assert (b / "etc/hostname").read_text() == "node-2\n"


def test_a_wrong_pin_on_a_pulled_image_stops_the_install(loopdisk: LoopDisk, images: dict[str, BuiltImage],
                                                         registry: Registry) -> None:
    v1 = images["v1"]
    registry.push_artifact("os/pinned", "v1", v1.zst.read_bytes(), "v1.img.zst")
    hc = parse_host_config(config_for(loopdisk.device, f"oci://{registry.host}/os/pinned:v1", "0" * 64))
    with pytest.raises(TetherError, match=r"oci://127\.0\.0\.1:\d+/os/pinned:v1: sha256 is [0-9a-f]{64}, the host "
                                          r"configuration pins 0{64}; nothing was written"):
        install(hc, Runner(), InstallOptions())
    import subprocess
    table = subprocess.run(["blkid", "-p", "-o", "value", "-s", "PTTYPE", loopdisk.device], capture_output=True)
    assert table.stdout.strip() == b""  # refused before the disk was partitioned


def config_for(disk: str, url: str, digest: str) -> dict[str, Any]:
    from tests.engine.test_servicing import config
    return config(disk, url, digest)


def test_a_signed_cosi_image_from_the_registry(images: dict[str, BuiltImage], registry: Registry, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The signature of oci://R/repo:TAG is the artifact tagged TAG.sig, as U.sig is for any other URL."""
    import shutil

    from tests.engine.test_signatures import keygen, metadata_of, sign, trust
    from tether.engine import signatures
    from tether.engine.hostconfig import OsImage
    if shutil.which("ssh-keygen") is None:
        pytest.skip("needs ssh-keygen")
    root = tmp_path / "servicing-root"
    (root / "etc/tether/keys").mkdir(parents=True)
    monkeypatch.setattr(signatures, "_trust", signatures.TrustStore(Target.at(root), Runner()))
    key = keygen(tmp_path, "release")
    trust(root / "etc/tether/keys", key, "release-2026")
    cosi = images["v2"].cosi
    meta = tmp_path / "metadata.json"
    meta.write_bytes(metadata_of(cosi))
    manifest, _ = registry.push_artifact("os/signed", "v2", cosi.read_bytes(), "v2.cosi")
    url = f"oci://{registry.host}/os/signed:v2"
    with pytest.raises(signatures.SignatureError, match=rf"{url}\.sig: the image's signature is missing"):
        probe(OsImage(url=url, sha384="ignored"))
    registry.push_artifact("os/signed", "v2.sig", sign(key, meta).read_bytes(), "v2.cosi.sig")
    assert probe(OsImage(url=url, sha384="ignored")).kind == "cosi"
    other = keygen(tmp_path, "intruder")
    registry.push_artifact("os/signed", "v2.sig", sign(other, meta).read_bytes(), "v2.cosi.sig")
    with pytest.raises(signatures.SignatureError, match="signed by a key that is not trusted"):
        probe(OsImage(url=url, sha384="ignored"))
    with pytest.raises(signatures.SignatureError, match="signature is missing or unreadable"):
        probe(OsImage(url=f"oci://{registry.host}/os/signed@{manifest}", sha384="ignored"))


def test_a_signed_raw_image_from_the_registry(images: dict[str, BuiltImage], registry: Registry, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """oci://R/os/sraw:v1 is signed by TAG.sha384 (sha384sum output naming ``sraw:v1``) and TAG.sha384.sig."""
    import shutil

    from tests.engine.test_signatures import keygen, sign, trust
    from tether.engine import signatures
    if shutil.which("ssh-keygen") is None:
        pytest.skip("needs ssh-keygen")
    root = tmp_path / "servicing-root"
    (root / "etc/tether/keys").mkdir(parents=True)
    monkeypatch.setattr(signatures, "_trust", signatures.TrustStore(Target.at(root), Runner()))
    key = keygen(tmp_path, "release")
    trust(root / "etc/tether/keys", key, "release-2026")
    data = images["v1"].zst.read_bytes()
    registry.push_artifact("os/sraw", "v1", data, "v1.img.zst")
    man = tmp_path / "v1.img.zst.sha384"
    man.write_text(f"{hashlib.sha384(data).hexdigest()}  sraw:v1\n")
    registry.push_artifact("os/sraw", "v1.sha384", man.read_bytes(), man.name)
    registry.push_artifact("os/sraw", "v1.sha384.sig", sign(key, man).read_bytes(), man.name + ".sig")
    got = signatures.signed_digest(f"oci://{registry.host}/os/sraw:v1", {})
    assert got == signatures.SignedDigest(hashlib.sha384(data).hexdigest(), "release-2026")


@pytest.mark.parametrize("url,want", [
    ("oci://registry.example.com/os/base:3.0", ("registry.example.com", "os/base", "3.0", None)),
    ("oci://127.0.0.1:5000/base", ("127.0.0.1:5000", "base", "latest", None)),
    ("oci://[::1]:5000/a/b/c@sha256:" + "ab" * 32, ("[::1]:5000", "a/b/c", None, "sha256:" + "ab" * 32)),
    ("oci://r.io/x:v1@sha256:" + "00" * 32, ("r.io", "x", "v1", "sha256:" + "00" * 32)),
])
def test_references(url: str, want: tuple[str, str, str | None, str | None]) -> None:
    from tether.engine.oci import parse_reference
    ref = parse_reference(url)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == want


@pytest.mark.parametrize("url,message", [
    ("oci://registry", "expected oci://registry/repository:tag"),
    ("oci://u:p@registry/os:1", "credentials do not go in the URL"),
    ("oci://registry/os@sha256:abc", "is not a digest"),
    ("oci://registry/os:bad/tag", "is not a repository name"),
    ("oci://registry/os:-x", "is not a valid tag"),
    ("oci://bad_host!/os:1", "is not a registry host"),
])
def test_bad_references_are_named(url: str, message: str) -> None:
    from tether.engine.oci import parse_reference
    with pytest.raises(OciError, match=message) as e:
        parse_reference(url)
    assert ":p@" not in str(e.value)


@pytest.mark.parametrize("doc,message", [
    ({"auths": {"r.io": {"auth": "not base64!"}}}, r"auths\.r\.io\.auth: not base64 of user:password"),
    ({"auths": {"r.io": {"identitytoken": "x"}}}, r"auths\.r\.io: expected \"auth\".*found identitytoken"),
    ({"credsStore": "desktop"}, "credsStore: credential helpers are not supported"),
    ({"mirrors": {"r.io": "m.lan"}}, r"mirrors\.r\.io: expected a list"),
    ({"mirrors": {"r.io": ["m.lan/path"]}}, r"mirrors\.r\.io: expected a list of host\[:port\]"),
    ({"plainHttp": "r.io"}, "plainHttp: expected a list"),
])
def test_bad_registry_settings_are_named(settings_root: Path, doc: dict[str, Any], message: str) -> None:
    write_settings(settings_root, doc)
    with pytest.raises(RegistryConfigError, match=message):
        oci_config.load()


def test_registry_settings_endpoints(settings_root: Path) -> None:
    write_settings(settings_root, {"mirrors": {"r.io": ["m1.lan", "http://m2.lan:5000", "127.0.0.1:5001"]},
                                   "plainHttp": ["m1.lan"]})
    cfg = oci_config.load()
    assert [e.base for e in cfg.endpoints("r.io")] == ["http://m1.lan", "http://m2.lan:5000",
                                                       "http://127.0.0.1:5001", "https://r.io"]
    assert [e.base for e in cfg.endpoints("other.io")] == ["https://other.io"]


def test_a_blob_redirected_to_storage_is_read_and_seeked_there(registry: Registry, pushed: dict[str, Any]) -> None:
    # the storage origin differs from the registry's (localhost vs 127.0.0.1): the credentials are not sent there
    front = Front(registry, storage=f"http://localhost:{registry.port}").start()
    try:
        got, src = read_all(f"oci://{front.host}/{REPO}:v1")
        assert got == pushed["data"] and src.verified
        src = open_source(f"oci://{front.host}/{REPO}:v1", timeout=10)
        try:
            buf = bytearray(1000)
            for offset in (1 << 20, 5):
                src.seek(offset)
                n = src.readinto(memoryview(buf))
                assert bytes(buf[:n]) == pushed["data"][offset:offset + n]
        finally:
            src.close()
        assert len(front.blob_gets) == 2   # one per open; the seeks went to the storage URL with Range
    finally:
        front.stop()


def test_a_dropped_blob_download_resumes_with_range(registry: Registry, pushed: dict[str, Any]) -> None:
    front = Front(registry, drop_after=1 << 20).start()
    try:
        got, src = read_all(f"oci://{front.host}/{REPO}:v1")
        assert got == pushed["data"] and src.verified and src.reconnects == 1
        assert [g["range"] for g in front.blob_gets] == ["", f"bytes={1 << 20}-"]
    finally:
        front.stop()


def test_cli_install_reads_registry_credentials_from_its_root(loopdisk: LoopDisk, images: dict[str, BuiltImage],
                                                             tmp_path: Path, settings_root: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """``tether --root R install`` pulls with the credentials in R/etc/tether/registries.json."""
    import yaml

    from tests.engine.test_servicing import ROOT_A, cli, config, mounted_ro
    v1 = images["v1"]
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(htpasswd_line("installer", "install-pw-123"))
    auth = {"htpasswd": {"realm": "tether-test", "path": str(htpasswd)}}
    with running(tmp_path / "reg", auth, push_auth=basic("installer", "install-pw-123")) as reg:
        reg.push_artifact("os/cli", "v1", v1.zst.read_bytes(), "v1.img.zst")
        cfg = tmp_path / "install.yaml"
        cfg.write_text(yaml.safe_dump(config(loopdisk.device, f"oci://{reg.host}/os/cli:v1", v1.sha256(v1.zst))))
        oci_config.use(None)  # only the CLI's --root can point at the settings
        args = cli(["--root", str(settings_root), "install", str(cfg), "--allowed-operations", "stage"])
        assert args.func(args) == 1
        assert f"add credentials for {reg.host} to /etc/tether/registries.json" in capsys.readouterr().err
        write_settings(settings_root, {"auths": {reg.host: {"username": "installer", "password": "install-pw-123"}}})
        oci_config.use(None)
        args = cli(["--root", str(settings_root), "install", str(cfg), "--allowed-operations", "stage"])
        assert args.func(args) == 0, capsys.readouterr().err
    with mounted_ro(loopdisk.part(ROOT_A), tmp_path / "a") as a:
        assert (a / "usr/share/payload.bin").read_bytes() == v1.files["usr/share/payload.bin"]
