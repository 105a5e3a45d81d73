"""COSI ``metadata.json`` (revisions 1.0-1.2) as typed documents, converted by ``tether.convert``.

One dataclass per object of the specification, one document class per revision: a revision's class adds the
fields it makes required (``osPackages`` and ``bootloader`` from 1.1, ``disk`` and ``compression`` from 1.2), so a
1.0 document may leave them out and a 1.2 one may not. Unknown fields are ignored, as the specification asks (and
so are fields of a later revision than the document's, as before: only their own revision reads them).
Errors name their JSON path (``images[0].image.sha384: expected 96 hex digits``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from tether.convert import FieldError, convert
from tether.errors import ConfigErrors, TetherError

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SHA384 = re.compile(r"^[0-9a-fA-F]{96}$")
_ARCH = re.compile(r"^(x86_64|x64|amd64|arm64|aarch64)$", re.IGNORECASE)
VERSIONS = ("1.0", "1.1", "1.2")


class CosiError(TetherError):
    pass


@dataclass(frozen=True)
class ImageFile:
    CASE = "camel"
    path: str
    compressed_size: int
    uncompressed_size: int
    sha384: str

    def __post_init__(self) -> None:
        if not self.path.startswith("images/") or len(self.path) <= 7 or ".." in self.path.split("/"):
            raise FieldError("path", f"{self.path!r} must be a file under images/")
        for key, size in (("compressedSize", self.compressed_size), ("uncompressedSize", self.uncompressed_size)):
            if size < 0:
                raise FieldError(key, "negative")
        if not _SHA384.match(self.sha384):
            raise FieldError("sha384", "expected 96 hex digits")


@dataclass(frozen=True)
class Verity:
    image: ImageFile
    roothash: str


@dataclass(frozen=True)
class Filesystem:
    CASE = "camel"
    image: ImageFile
    mount_point: str
    fs_type: str
    fs_uuid: str
    part_type: str
    verity: Verity | None = None

    def __post_init__(self) -> None:
        for key, value in (("fsType", self.fs_type), ("fsUuid", self.fs_uuid)):
            if not value:
                raise FieldError(key, "empty")
        if not _UUID.match(self.part_type):
            raise FieldError("partType", f"{self.part_type!r} is not a UUID")


@dataclass(frozen=True)
class OsPackage:
    name: str
    version: str
    release: str
    arch: str


@dataclass(frozen=True)
class BootEntry:
    type: Literal["uki-standalone", "uki-config", "config"]
    path: str
    cmdline: str
    kernel: str


@dataclass(frozen=True)
class SystemdBoot:
    entries: tuple[BootEntry, ...]

    def __post_init__(self) -> None:
        if not self.entries:
            raise FieldError("entries", "at least one entry is required")


@dataclass(frozen=True)
class Bootloader:
    CASE = "camel"
    type: Literal["systemd-boot", "grub"]
    systemd_boot: SystemdBoot | None = None

    def __post_init__(self) -> None:
        if self.type == "systemd-boot" and self.systemd_boot is None:
            raise FieldError("systemdBoot", "required for systemd-boot")
        if self.type != "systemd-boot" and self.systemd_boot is not None:
            raise FieldError("systemdBoot", "must be null unless the type is systemd-boot")


@dataclass(frozen=True)
class GptRegion:
    type: Literal["primary-gpt", "partition"]
    image: ImageFile
    number: int | None = None

    def __post_init__(self) -> None:
        if self.type == "partition" and (self.number is None or self.number < 1):
            raise FieldError("number", "required (a partition number >= 1)")


@dataclass(frozen=True)
class Disk:
    CASE = "camel"
    size: int
    type: Literal["gpt"]
    lba_size: Literal[512, 4096]
    gpt_regions: tuple[GptRegion, ...]

    def __post_init__(self) -> None:
        if self.size % self.lba_size:
            raise FieldError("size", "not a multiple of lbaSize")
        kinds = [r.type for r in self.gpt_regions]
        if not kinds or kinds[0] != "primary-gpt" or kinds.count("primary-gpt") != 1:
            raise FieldError("gptRegions", "the first and only 'primary-gpt' region must come first")


@dataclass(frozen=True)
class Compression:
    CASE = "camel"
    max_window_log: int

    def __post_init__(self) -> None:
        if self.max_window_log < 0:
            raise FieldError("maxWindowLog", "negative")


@dataclass(frozen=True, kw_only=True)
class Metadata10:
    CASE = "camel"
    version: str
    os_arch: str
    os_release: str
    images: tuple[Filesystem, ...]
    id: str | None = None
    os_packages: tuple[OsPackage, ...] | None = None  # read when present; required from 1.1

    def __post_init__(self) -> None:
        if not _ARCH.match(self.os_arch):
            raise FieldError("osArch", f"unknown architecture {self.os_arch!r}")
        if self.id is not None and not _UUID.match(self.id):
            raise FieldError("id", "not a UUID")


@dataclass(frozen=True, kw_only=True)
class Metadata11(Metadata10):
    os_packages: tuple[OsPackage, ...] = field()  # field(): not the default None inherited as a class attribute
    bootloader: Bootloader


@dataclass(frozen=True, kw_only=True)
class Metadata12(Metadata11):
    disk: Disk
    compression: Compression


_REVISIONS: dict[str, type[Metadata10]] = {"1.0": Metadata10, "1.1": Metadata11, "1.2": Metadata12}


def _convert(doc: Any, schema: str | None = None) -> tuple[Metadata10 | None, list[str]]:
    if not isinstance(doc, dict):
        return None, ["(top): metadata must be a JSON object"]
    ver = doc.get("version")
    if not isinstance(ver, str) or ver not in VERSIONS:
        return None, [f"version: {ver!r} is not a COSI revision tether reads ({', '.join(VERSIONS)})"]
    errs = [f"version: expected {schema!r}, got {ver!r}"] if schema is not None and ver != schema else []
    try:
        # lenient: unknown fields are ignored (their warnings are dropped), every other problem is an error
        return convert(_REVISIONS[ver], doc, strict=False, warnings=[]), errs
    except ConfigErrors as e:
        return None, errs + [str(x) for x in e.errors]


def validate_metadata(doc: Any, schema: str | None = None) -> list[str]:
    """Problems with a metadata document, each naming its JSON path. ``schema`` pins one revision."""
    return _convert(doc, schema)[1]


@dataclass(frozen=True)
class CosiFilesystem:
    image: ImageFile
    mount_point: str
    fs_type: str
    fs_uuid: str
    part_type: str
    verity: bool


@dataclass(frozen=True)
class CosiMetadata:
    version: str
    os_arch: str
    filesystems: tuple[CosiFilesystem, ...]
    raw: dict[str, Any]

    def for_mount(self, mount_point: str) -> CosiFilesystem | None:
        for fs in self.filesystems:
            if fs.mount_point == mount_point:
                return fs
        return None


def parse_metadata(raw: bytes) -> CosiMetadata:
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise CosiError(f"metadata.json is not valid JSON: {e}") from None
    meta, errs = _convert(doc)
    if meta is None or errs:
        raise CosiError("metadata.json: " + "; ".join(errs))
    fss = tuple(CosiFilesystem(dataclasses.replace(fs.image, sha384=fs.image.sha384.lower()), fs.mount_point,
                               fs.fs_type, fs.fs_uuid, fs.part_type.lower(), fs.verity is not None)
                for fs in meta.images)
    mps = [f.mount_point for f in fss]
    if len(set(mps)) != len(mps):
        raise CosiError("metadata.json: two images share a mount point")
    return CosiMetadata(meta.version, meta.os_arch, fss, doc)
