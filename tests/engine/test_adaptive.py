"""Adaptive downloads (issue 19 point 2): a 64 MiB image with 1% of its 4 KiB blocks changed in scattered places,
published with ``tether image index`` on a loopback server that counts every byte it sends. Slots are regular
files here (``images.deploy`` writes files as it writes partitions); the last test stages through ``update.stage``
on a loop disk (root only)."""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.engine.conftest import BuiltImage, LoopDisk
from tests.engine.rangeserver import RangeServer
from tests.engine.test_servicing import (
    ROOT_A,
    ROOT_B,
    commit,
    config,
    do_install,
    live_root,
    mounted_ro,
    read_status,
    sha,
)
from tether.engine import checkpoints, chunks, images, signatures
from tether.engine.cli import add_parsers
from tether.engine.hostconfig import OsImage, parse_host_config
from tether.engine.update import UpdateOptions, stage
from tether.errors import TetherError
from tether.runner import Runner
from tether.target import Target

SIZE = 64 << 20
BLOCK = 4096


@dataclass
class Versions:
    old: bytes
    new: bytes
    changed: set[int]      # chunk numbers whose bytes are new (fetched)
    moved: int             # a chunk of new that is a chunk of old found elsewhere
    zeros: set[int]        # chunk numbers that are zero in new but not in old


@pytest.fixture(scope="module")
def versions() -> Versions:
    rnd = random.Random(19)
    old = bytearray(rnd.randbytes(SIZE))
    old[8 << 20:12 << 20] = bytes(4 << 20)          # an empty region, as filesystems have
    new = bytearray(old)
    count = SIZE // BLOCK
    picks = rnd.sample(range(count), count // 100)   # 1% of the blocks, scattered
    moved, zeros = picks[0], set(picks[1:4])
    changed = set(picks[4:])
    for b in changed:
        new[b * BLOCK:(b + 1) * BLOCK] = rnd.randbytes(BLOCK)
    new[moved * BLOCK:(moved + 1) * BLOCK] = old[20 * BLOCK:21 * BLOCK]   # content that moved
    for b in zeros:
        new[b * BLOCK:(b + 1) * BLOCK] = bytes(BLOCK)
    zeros = {b for b in zeros if old[b * BLOCK:(b + 1) * BLOCK] != bytes(BLOCK)}
    return Versions(bytes(old), bytes(new), changed, moved, zeros)


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default="/")
    parser.add_argument("--debug", action="store_true")
    add_parsers(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(argv)
    return int(args.func(args))


@dataclass
class Host:
    active: Path
    target: Path
    cache: Path


@pytest.fixture
def host(tmp_path: Path, versions: Versions) -> Host:
    h = Host(tmp_path / "slot-a", tmp_path / "slot-b", tmp_path / "cache")
    h.active.write_bytes(versions.old)
    with open(h.target, "wb") as f:
        f.truncate(SIZE + (4 << 20))      # an empty inactive slot, a little larger than the image
    return h


@pytest.fixture
def published(tmp_path: Path, versions: Versions) -> Path:
    pub = tmp_path / "srv"
    pub.mkdir()
    (pub / "v2.img").write_bytes(versions.new)
    assert cli(["image", "index", str(pub / "v2.img")]) == 0
    return pub


def serve(pub: Path, ranges: bool = True) -> RangeServer:
    return RangeServer({p.name: p for p in pub.iterdir()}, ranges=ranges)


def deploy(url: str, h: Host, digest: str = "ignored") -> list[images.Deployed]:
    return images.deploy_seeded(OsImage(url=url, sha256=digest), {"/": str(h.target)}, [str(h.active)],
                                str(h.cache), timeout=5.0, retries=1.0)


def fetched_chunks(srv: RangeServer, name: str = "v2.img") -> list[int]:
    out = []
    for what, rng in srv.requests:
        if what != name or rng is None or rng == "bytes=0-0":
            continue
        for span in rng.removeprefix("bytes=").split(","):
            a, b = (int(x) for x in span.split("-"))
            assert a % BLOCK == 0
            out += range(a // BLOCK, b // BLOCK + 1)
    return out


def image_of(h: Host) -> bytes:
    with open(h.target, "rb") as f:
        return f.read(SIZE)


def test_index_format(published: Path, versions: Versions) -> None:
    idx = chunks.parse((published / "v2.img.chunks").read_bytes(), "v2.img.chunks")
    assert (idx.chunk_size, idx.size, idx.data) == (BLOCK, SIZE, "v2.img")
    assert idx.sha256 == hashlib.sha256(versions.new).hexdigest()
    assert idx.digest(5) == hashlib.sha256(versions.new[5 * BLOCK:6 * BLOCK]).digest()
    raw = (published / "v2.img.chunks").read_bytes()
    with pytest.raises(chunks.ChunkIndexError, match=r"where\.chunks: .* bytes of chunk hashes"):
        chunks.parse(raw[:-1], "where.chunks")
    with pytest.raises(chunks.ChunkIndexError, match="data must be a file name"):
        chunks.parse(raw.replace(b'"data": "v2.img"', b'"data": "../x"'), "where.chunks")
    assert cli(["image", "index", str(published / "missing.img")]) == 1


def test_fetches_only_the_changed_chunks(published: Path, host: Host, versions: Versions) -> None:
    with serve(published) as srv:
        out = deploy(f"{srv.base}/v2.img", host, hashlib.sha256(versions.new).hexdigest())
    assert image_of(host) == versions.new
    assert out == [images.Deployed("/", str(host.target), SIZE, 0, None)]
    assert srv.bytes_sent <= SIZE * 5 // 100, srv.bytes_sent
    got = fetched_chunks(srv)
    assert sorted(got) == sorted(versions.changed)          # each changed chunk once; moved and zeros not fetched
    assert not any(rng is None for what, rng in srv.requests if what == "v2.img")   # never the whole image
    assert sorted(p.name for p in host.cache.iterdir()) == sorted(
        hashlib.sha256(versions.new[b * BLOCK:(b + 1) * BLOCK]).hexdigest() for b in versions.changed)
    assert os.stat(host.cache).st_mode & 0o777 == 0o700
    assert {os.stat(p).st_mode & 0o777 for p in host.cache.iterdir()} == {0o600}


def test_corrupt_chunk_on_the_server_is_refused(published: Path, host: Host, versions: Versions) -> None:
    bad = sorted(versions.changed)[len(versions.changed) // 2]
    with serve(published) as srv:
        srv.corrupt["v2.img"] = {bad * BLOCK + 100}
        with pytest.raises(images.ImageHashError, match=rf"v2.img: chunk {bad} \(bytes {bad * BLOCK}-.*the chunk "
                                                       "index says .*corrupt") as e:
            deploy(f"{srv.base}/v2.img", host)
    assert e.value.mount_point == "/"
    bad_digest = hashlib.sha256(versions.new[bad * BLOCK:(bad + 1) * BLOCK]).hexdigest()
    assert not (host.cache / bad_digest).exists()


def test_without_index_the_whole_image_is_downloaded(published: Path, host: Host, versions: Versions) -> None:
    (published / "v2.img.chunks").unlink()
    with serve(published) as srv:
        deploy(f"{srv.base}/v2.img", host, hashlib.sha256(versions.new).hexdigest())
    assert image_of(host) == versions.new
    assert ("v2.img.chunks", None) in srv.requests
    assert [r for r in srv.requests if r[0] == "v2.img"][-1] == ("v2.img", None)   # one plain GET
    assert srv.bytes_sent >= SIZE
    assert not host.cache.exists()


def test_server_without_range_support_gets_a_full_download(published: Path, host: Host,
                                                           versions: Versions) -> None:
    with serve(published, ranges=False) as srv:
        deploy(f"{srv.base}/v2.img", host)
    assert image_of(host) == versions.new
    assert srv.bytes_sent >= SIZE
    assert fetched_chunks(srv) == []


def test_killed_mid_fetch_then_rerun_fetches_only_the_rest(published: Path, host: Host,
                                                           versions: Versions) -> None:
    with serve(published) as srv:
        pid = os.fork()
        if pid == 0:  # the staging process, killed after its 40th Range request
            seen = [0]

            def kill(name: str) -> None:
                if name == "adaptive:fetched":
                    seen[0] += 1
                    if seen[0] == 40:
                        os._exit(9)
            checkpoints.HOOK = kill
            try:
                deploy(f"{srv.base}/v2.img", host)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 9
        by_digest = {hashlib.sha256(versions.new[b * BLOCK:(b + 1) * BLOCK]).hexdigest(): b
                     for b in versions.changed}
        kept = {by_digest[p.name] for p in host.cache.iterdir()}
        assert 40 <= len(kept) < len(versions.changed)   # 40 ranges, some of several chunks
        srv.reset()
        deploy(f"{srv.base}/v2.img", host)
        second = fetched_chunks(srv)
    assert image_of(host) == versions.new
    assert sorted(second) == sorted(versions.changed - kept)     # what the killed run had kept is not fetched


def test_server_answering_several_ranges_with_the_whole_file(published: Path, host: Host,
                                                             versions: Versions) -> None:
    with RangeServer({p.name: p for p in published.iterdir()}, multi=False) as srv:
        deploy(f"{srv.base}/v2.img", host)
    assert image_of(host) == versions.new
    multi = [rng for what, rng in srv.requests if what == "v2.img" and rng and "," in rng]
    assert len(multi) == 1                               # answered with the whole file: refused, not read
    srv.requests = [r for r in srv.requests if r[1] not in multi]
    assert sorted(fetched_chunks(srv)) == sorted(versions.changed)   # then one range per request


def test_compressed_image_fetches_from_its_data_file(tmp_path: Path, host: Host, versions: Versions) -> None:
    pub = tmp_path / "zsrv"
    pub.mkdir()
    (pub / "v2.img").write_bytes(versions.new)
    subprocess.run(["zstd", "-q", "--rm", "-3", str(pub / "v2.img"), "-o", str(pub / "v2.img.zst")], check=True)
    assert cli(["image", "index", str(pub / "v2.img.zst")]) == 0
    data = pub / "v2.img.zst.data"
    assert data.read_bytes() == versions.new
    assert data.stat().st_blocks * 512 < SIZE - (3 << 20)     # the zero region is a hole
    with serve(pub) as srv:
        deploy(f"{srv.base}/v2.img.zst", host)
    assert image_of(host) == versions.new
    assert sorted(fetched_chunks(srv, "v2.img.zst.data")) == sorted(versions.changed)
    assert ("v2.img.zst", None) not in srv.requests
    # a pinned compressed image without a signature: the pin cannot vouch for the index, so it is not used
    with serve(pub) as srv:
        deploy(f"{srv.base}/v2.img.zst", host, hashlib.sha256((pub / "v2.img.zst").read_bytes()).hexdigest())
    assert image_of(host) == versions.new
    assert fetched_chunks(srv, "v2.img.zst.data") == []
    assert ("v2.img.zst", None) in srv.requests


@pytest.fixture
def trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("needs ssh-keygen")
    keydir = tmp_path / "root/etc/tether/keys"
    keydir.mkdir(parents=True)
    key = tmp_path / "release"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    shutil.copy(str(key) + ".pub", keydir / "release.pub")
    monkeypatch.setattr(signatures, "_trust", signatures.TrustStore(Target.at(tmp_path / "root"), Runner()))
    yield key


def sign_manifest(key: Path, pub: Path, names: list[str]) -> None:
    man = pub / "v2.img.sha384"
    man.write_text("".join(f"{hashlib.sha384((pub / n).read_bytes()).hexdigest()}  {n}\n" for n in names))
    Path(str(man) + ".sig").unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", "tether-image", str(man)], check=True,
                   capture_output=True)


def test_index_must_be_signed_when_keys_are_trusted(trusted: Path, published: Path, host: Host,
                                                    versions: Versions) -> None:
    sign_manifest(trusted, published, ["v2.img"])          # the manifest does not name the index
    with serve(published) as srv:
        deploy(f"{srv.base}/v2.img", host)
    assert image_of(host) == versions.new
    assert fetched_chunks(srv) == [] and ("v2.img", None) in srv.requests

    sign_manifest(trusted, published, ["v2.img", "v2.img.chunks"])
    with serve(published) as srv:
        deploy(f"{srv.base}/v2.img", host)
    assert image_of(host) == versions.new
    assert ("v2.img", None) not in srv.requests
    assert srv.bytes_sent <= SIZE * 5 // 100

    # an index that is not the signed one is not trusted: the image is downloaded whole (and checked)
    raw = bytearray((published / "v2.img.chunks").read_bytes())
    raw[-1] ^= 1
    (published / "v2.img.chunks").write_bytes(raw)
    with serve(published) as srv:
        deploy(f"{srv.base}/v2.img", host)
    assert image_of(host) == versions.new
    assert fetched_chunks(srv) == [] and ("v2.img", None) in srv.requests


def test_update_stage_uses_it_and_a_bad_chunk_marks_the_slot_bad(loopdisk: LoopDisk, images: dict[str, BuiltImage],
                                                                 tmp_path: Path) -> None:
    """``tether update`` on a loop disk: slot A holds v1 (grown to its partition); v2 is a raw image with an
    index. A corrupted chunk fails the staging (slot B bad, nothing switched); then it stages fetching little."""
    v1, v2 = images["v1"], images["v2"]
    do_install(loopdisk, v1)
    commit(loopdisk, tmp_path)
    a_before = sha(loopdisk.part(ROOT_A))
    pub = tmp_path / "srv"
    pub.mkdir()
    shutil.copy(v2.raw, pub / "v2.img")
    assert cli(["image", "index", str(pub / "v2.img")]) == 0
    raw = v2.raw.read_bytes()
    payload_at = raw.find(v2.files["usr/share/payload.bin"][:BLOCK])
    assert payload_at > 0
    opts = UpdateOptions(net_timeout=5.0, net_retries=1)
    with serve(pub) as srv, live_root(loopdisk, tmp_path / "live") as live:
        hc = parse_host_config(config(loopdisk.device, f"{srv.base}/v2.img", hashlib.sha256(raw).hexdigest(),
                                      "node-2"))
        srv.corrupt["v2.img"] = {payload_at + 10}
        with pytest.raises(TetherError, match=rf"chunk {payload_at // BLOCK} .*corrupt"):
            stage(hc, Runner(), live, opts)
        status = read_status(loopdisk, tmp_path, live)
        assert status["servicingState"] == "provisioned" and status["abActiveVolume"] == "volume-a"
        assert status["slots"]["volume-b"]["state"] == "bad"
        assert status["lastError"]["category"] == "image-hash-mismatch"

        srv.corrupt.clear()
        srv.reset()
        what, doc = stage(hc, Runner(), live, opts)
        assert what == "staged into volume-b" and doc["servicingState"] == "ab-update-staged"
        # the format probe and the size check open the image (plain GETs, closed after the headers); after the
        # index, only Range requests
        after = srv.requests[srv.requests.index(("v2.img.chunks", None)):]
        assert ("v2.img", None) not in after
        assert payload_at // BLOCK in fetched_chunks(srv)
        ranged = len(fetched_chunks(srv)) * BLOCK
        assert ranged < len(raw) // 4, ranged
    assert sha(loopdisk.part(ROOT_A)) == a_before
    with mounted_ro(loopdisk.part(ROOT_B), tmp_path / "b") as b:
        assert (b / "usr/share/payload.bin").read_bytes() == v2.files["usr/share/payload.bin"]
        assert (b / "etc/hostname").read_text() == "node-2\n"


def test_active_slot_changing_during_the_staging_is_caught_and_repaired(published: Path, host: Host,
                                                                        versions: Versions) -> None:
    """The active slot is live: a block written after the scan found it matching must not reach the new slot."""
    unchanged = next(b for b in range(100, SIZE // BLOCK) if b not in versions.changed
                     and versions.new[b * BLOCK:(b + 1) * BLOCK] != bytes(BLOCK))

    def live_write(name: str) -> None:
        if name == "adaptive:fetched":
            fd = os.open(host.active, os.O_WRONLY)
            os.pwrite(fd, b"written by the running system", unchanged * BLOCK)
            os.close(fd)
    checkpoints.HOOK = live_write
    try:
        with serve(published) as srv:
            deploy(f"{srv.base}/v2.img", host)
    finally:
        checkpoints.HOOK = None
    assert image_of(host) == versions.new
    assert unchanged in fetched_chunks(srv)              # fetched again after the whole-image digest differed


def test_index_refuses_a_cosi_file(images: dict[str, BuiltImage], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["image", "index", str(images["v1"].cosi)]) == 1
    assert "a COSI file cannot be indexed" in capsys.readouterr().err
    assert not Path(str(images["v1"].cosi) + ".chunks").exists()
