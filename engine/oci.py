"""Images in OCI registries: ``oci://registry[:port]/repository[:tag|@digest]`` read as a resumable stream.

What is fetched (Trident-compatible): the reference's manifest (OCI image manifest or Docker schema 2; through an
image index or manifest list, the entry for this host's platform, ``linux/<arch>``), and from it the one layer
that holds the image: an artifact with a single layer (what ``oras push REF os.cosi`` makes, whatever the layer's
media type), or, among several layers, the single one whose ``org.opencontainers.image.title`` ends in ``.cosi``
or whose media type names COSI. The layer is a COSI file or a raw/compressed image; the format is told from its
bytes as for any source. A ``@sha256:`` reference names a manifest (OCI); when the registry has no manifest of
that digest, it is taken as the digest of the layer itself (Trident's reading).

What is verified: a manifest fetched by digest must hash to it; the layer's bytes must hash to the layer digest
the manifest gives and have its size. The check runs as the bytes stream: a read past the last byte of a blob that
does not match is an error, and ``close()`` reads a short unread tail (a COSI file's tar padding, at most
``TAIL_CHECK`` bytes) to finish the check. A blob read out of order (a COSI file whose metadata.json comes last)
is not checked as a whole; its metadata pin and per-image hashes still are. The host configuration's pinned
hash applies as for any source.

Where from: the mirrors configured for the registry (``oci_config``), in order, then the registry itself; a
mirror that fails (down, 5xx, missing the content, refusing access, serving the wrong bytes) is logged and the
next one asked. Blob requests may be redirected to a storage URL (credentials are not sent there); resumes and
seeks then ask that URL directly with ``Range`` and fall back to the registry when it has expired. A server that
ignores ``Range`` is read forward to the wanted offset.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import platform
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tether import log
from tether.engine import oci_config
from tether.engine.oci_auth import RegistryAuthError, RegistryClient, RegistryError
from tether.engine.sources import ImageSourceError

if TYPE_CHECKING:
    from tether.engine.oci_blob import OciSource
    from tether.engine.oci_config import RegistryConfig

LOG = log.get(__name__)
MAX_MANIFEST = 4 << 20
TAIL_CHECK = 1 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT = {"Accept": ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))}
TITLE = "org.opencontainers.image.title"
IMAGE_SUFFIXES = (".cosi",)

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
_REGISTRY = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                       r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
         "armv6l": "arm", "i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x",
         "riscv64": "riscv64", "loongarch64": "loong64"}


class OciError(ImageSourceError):
    """An ``oci://`` image could not be resolved or read."""


class OciAuthError(OciError):
    """The registry (or its token service) wants credentials that are not configured, or refused them."""


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        ref = f"oci://{self.registry}/{self.repository}"
        if self.tag:
            ref += f":{self.tag}"
        return ref + (f"@{self.digest}" if self.digest else "")


def parse_reference(url: str) -> Reference:
    """``oci://host[:port]/repo/path[:tag][@sha256:hex]``; no tag and no digest means ``:latest``."""
    if not url.startswith("oci://"):
        raise OciError(f"{url!r}: not an oci:// reference")
    rest = url[len("oci://"):]
    registry, slash, name = rest.partition("/")
    if "@" in registry or not slash:
        what = ("credentials do not go in the URL: put them in " + oci_config.REGISTRIES_FILE if "@" in registry
                else "expected oci://registry/repository:tag or oci://registry/repository@sha256:<hex>")
        raise OciError(f"oci://{registry.rpartition('@')[2]}/…: {what}")
    if not _REGISTRY.match(registry):
        raise OciError(f"{url!r}: {registry!r} is not a registry host[:port]")
    digest = None
    if "@" in name:
        name, digest = name.split("@", 1)
        if not _DIGEST.match(digest):
            raise OciError(f"{url!r}: {digest!r} is not a digest (sha256:<64 hex digits> or sha512:<128>)")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not _TAG.match(tag):
            raise OciError(f"{url!r}: {tag!r} is not a valid tag ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})")
    if not _REPOSITORY.match(name):
        raise OciError(f"{url!r}: {name!r} is not a repository name (lower-case components separated by '/')")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, name, tag, digest)


def host_platform() -> tuple[str, str]:
    machine = platform.machine().lower()
    return "linux", _ARCH.get(machine, machine)


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    media_type: str
    manifest: str | None       # the digest of the manifest that named it (None: the reference named the blob)


def _descriptor(d: Any, where: str) -> Blob:
    if not isinstance(d, dict) or not isinstance(d.get("digest"), str) or not _DIGEST.match(d["digest"]):
        raise OciError(f"{where}: a descriptor without a valid digest")
    size = d.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise OciError(f"{where}: descriptor {d['digest']} has no valid size")
    return Blob(d["digest"], size, str(d.get("mediaType", "")), None)


def _check_digest(body: bytes, digest: str, what: str) -> None:
    alg, want = digest.split(":", 1)
    got = hashlib.new(alg, body).hexdigest()
    if not hmac.compare_digest(got, want):
        raise OciError(f"{what}: the content's {alg} is {got}, not the digest it was asked by ({want})")


def _json(body: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise OciError(f"{what}: the manifest is not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise OciError(f"{what}: the manifest is not a JSON object")
    return doc


def _media_type(doc: dict[str, Any], content_type: str) -> str:
    mt = doc.get("mediaType")
    if isinstance(mt, str) and mt:
        return mt
    if "manifests" in doc:
        return OCI_INDEX
    if "layers" in doc:
        return OCI_MANIFEST
    return content_type


def _pick_platform(doc: dict[str, Any], what: str) -> Blob:
    entries = doc.get("manifests")
    if not isinstance(entries, list) or not entries:
        raise OciError(f"{what}: an image index without manifests")
    os_, arch = host_platform()
    seen: list[str] = []
    for i, e in enumerate(entries):
        plat = e.get("platform") if isinstance(e, dict) else None
        if isinstance(plat, dict):
            seen.append(f"{plat.get('os')}/{plat.get('architecture')}")
            if plat.get("os") == os_ and plat.get("architecture") == arch:
                return _descriptor(e, f"{what}: manifests[{i}]")
    if len(entries) == 1 and not seen:
        return _descriptor(entries[0], f"{what}: manifests[0]")
    raise OciError(f"{what}: the image index has no manifest for this host's platform {os_}/{arch} (it has "
                   f"{', '.join(seen) or 'no platforms'})")


def _pick_layer(doc: dict[str, Any], what: str) -> Blob:
    layers = doc.get("layers")
    if not isinstance(layers, list) or not layers:
        raise OciError(f"{what}: the manifest has no layers; the image must be its single layer")
    if len(layers) == 1:
        return _descriptor(layers[0], f"{what}: layers[0]")

    def title(d: Any) -> str:
        ann = d.get("annotations") if isinstance(d, dict) else None
        return str(ann.get(TITLE, "")) if isinstance(ann, dict) else ""

    hits = [i for i, d in enumerate(layers) if title(d).endswith(IMAGE_SUFFIXES)
            or (isinstance(d, dict) and "cosi" in str(d.get("mediaType", "")).lower())]
    if len(hits) == 1:
        return _descriptor(layers[hits[0]], f"{what}: layers[{hits[0]}]")
    names = ", ".join(title(d) or str(d.get("mediaType", "?")) if isinstance(d, dict) else "?" for d in layers)
    raise OciError(f"{what}: the manifest has {len(layers)} layers ({names}); tether needs an artifact with one "
                   "layer holding the image, or exactly one layer titled *.cosi")


def resolve_on(client: RegistryClient, ref: Reference) -> Blob:
    """The image blob ``ref`` names, on one endpoint."""
    what = str(ref)
    target = ref.digest or ref.tag or "latest"
    try:
        # a digest may name the layer instead (Trident): some registries answer that with 404, others with 500
        resp = client.request(client.url("manifests", target), accept=ACCEPT, max_body=MAX_MANIFEST,
                              retry_statuses=not ref.digest)
    except RegistryError as e:
        if ref.digest and e.status is not None and e.status not in (401, 403, 429):
            return _blob_by_digest(client, ref, e)
        raise
    if ref.digest:
        _check_digest(resp.body, ref.digest, f"{what} (manifest)")
    manifest_digest = ref.digest or "sha256:" + hashlib.sha256(resp.body).hexdigest()
    doc = _json(resp.body, what)
    mt = _media_type(doc, resp.content_type())
    if mt in (OCI_INDEX, DOCKER_LIST):
        entry = _pick_platform(doc, what)
        LOG.info("%s: image index; manifest %s for this platform", what, entry.digest)
        resp = client.request(client.url("manifests", entry.digest), accept=ACCEPT, max_body=MAX_MANIFEST)
        _check_digest(resp.body, entry.digest, f"{what} (platform manifest)")
        manifest_digest = entry.digest
        doc = _json(resp.body, what)
        mt = _media_type(doc, resp.content_type())
    if mt not in (OCI_MANIFEST, DOCKER_MANIFEST):
        raise OciError(f"{what}: unsupported manifest media type {mt!r} (OCI image manifest or Docker schema 2)")
    layer = _pick_layer(doc, what)
    LOG.info("%s: manifest %s, layer %s (%d bytes, %s)", what, manifest_digest, layer.digest, layer.size,
             layer.media_type or "no media type")
    return Blob(layer.digest, layer.size, layer.media_type, manifest_digest)


def _blob_by_digest(client: RegistryClient, ref: Reference, manifest_error: RegistryError) -> Blob:
    assert ref.digest is not None
    try:
        resp = client.request(client.url("blobs", ref.digest), method="HEAD")
    except RegistryError as e:
        if e.status == 404:
            raise OciError(f"no manifest and no blob with this digest in {ref.repository} (the manifest request: "
                           f"{manifest_error})", manifest_error.retryable) from None
        raise
    length = resp.headers.get("content-length", "")
    if not length.isdigit():
        raise OciError(f"{ref}: the registry did not say the blob's size")
    LOG.info("%s: no manifest with this digest; reading it as the image layer's digest", ref)
    return Blob(ref.digest, int(length), resp.headers.get("content-type", ""), None)


def resolve(ref: Reference, cfg: RegistryConfig, *, timeout: float, retries: int,
            deadline: float | None) -> tuple[list[RegistryClient], Blob]:
    """Ask each endpoint in turn; the clients come back with the one that answered first."""
    failures: list[str] = []
    endpoints = cfg.endpoints(ref.registry)
    for i, ep in enumerate(endpoints):
        client = RegistryClient(ep, ref.repository, cfg.credentials(ep.host), timeout=timeout, retries=retries,
                                deadline=deadline)
        try:
            blob = resolve_on(client, ref)
        except (RegistryError, OciError) as e:
            client.close()
            if not ep.mirror:
                tried = f" (mirrors tried first: {'; '.join(failures)})" if failures else ""
                cls = OciError if not isinstance(e, RegistryAuthError) else OciAuthError
                text = str(e) if str(e).startswith(str(ref)) else f"{ref}: {e}"
                raise cls(f"{text}{tried}", getattr(e, "retryable", False)) from None
            LOG.warning("%s: mirror %s failed (%s); trying the next", ref, ep.base, e)
            failures.append(f"{ep.base}: {e}")
            continue
        rest = [RegistryClient(o, ref.repository, cfg.credentials(o.host), timeout=timeout, retries=retries,
                               deadline=deadline) for o in endpoints[i + 1:]]
        return [client, *rest], blob
    raise AssertionError("the registry itself is always the last endpoint")


def open_oci(url: str, *, timeout: float = 30.0, retries: int = 5, deadline: float | None = None,
             min_rate: int = 1024) -> OciSource:
    """The image blob ``url`` names, open for reading (see the module's docstring for what is checked)."""
    ref = parse_reference(url)
    cfg = oci_config.load()
    clients, blob = resolve(ref, cfg, timeout=timeout, retries=retries, deadline=deadline)
    from tether.engine.oci_blob import OciSource
    try:
        return OciSource(ref, clients, blob, timeout=timeout, retries=retries, deadline=deadline,
                         min_rate=min_rate)
    except BaseException:
        for c in clients:
            c.close()
        raise
