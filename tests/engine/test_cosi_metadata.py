"""COSI metadata.json read per revision: what each revision requires, and errors that name the JSON path."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tether.engine.cosi import CosiError, parse_metadata, validate_metadata

SHA = "AB" * 48
PART = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"


def image(path: str = "images/root.rawzst") -> dict[str, Any]:
    return {"path": path, "compressedSize": 10, "uncompressedSize": 20, "sha384": SHA}


def doc(version: str = "1.2", **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "version": version, "osArch": "x86_64", "osRelease": "ID=azurelinux\n", "futureField": {"any": "thing"},
        "images": [{"image": image(), "mountPoint": "/", "fsType": "ext4", "fsUuid": "u1", "partType": PART}],
    }
    if version >= "1.1":
        d["osPackages"] = [{"name": "bash", "version": "5.2", "release": "1", "arch": "x86_64"}]
        d["bootloader"] = {"type": "grub"}
    if version >= "1.2":
        d["disk"] = {"size": 8192, "type": "gpt", "lbaSize": 512,
                     "gptRegions": [{"type": "primary-gpt", "image": image("images/gpt.rawzst")},
                                    {"type": "partition", "number": 1, "image": image()}]}
        d["compression"] = {"maxWindowLog": 27}
    return {**d, **extra}


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_each_revision_reads_with_unknown_fields_ignored(version: str) -> None:
    meta = parse_metadata(json.dumps(doc(version)).encode())
    (fs,) = meta.filesystems
    assert (meta.version, fs.mount_point, fs.image.sha384, fs.part_type) == (version, "/", SHA.lower(), PART.lower())


def test_fields_are_required_from_their_revision_on() -> None:
    bare = {k: v for k, v in doc("1.2").items() if k not in ("osPackages", "bootloader", "disk", "compression")}
    assert validate_metadata({**bare, "version": "1.0"}) == []
    assert validate_metadata({**bare, "version": "1.1"}) == ["osPackages: missing required key",
                                                              "bootloader: missing required key"]
    assert validate_metadata({**doc("1.1"), "version": "1.2"}) == ["disk: missing required key",
                                                                    "compression: missing required key"]
    # a later revision's field in an earlier document is not read, as before
    assert validate_metadata(doc("1.0", disk={"type": "mbr"})) == []


def test_errors_name_the_json_path() -> None:
    bad = doc("1.2")
    bad["images"][0]["image"]["sha384"] = "abc"
    bad["disk"]["gptRegions"][1] = {"type": "partition", "image": image()}
    bad["bootloader"] = {"type": "systemd-boot"}
    bad["osPackages"] = [{"name": "bash"}]
    assert validate_metadata(bad) == [
        "images[0].image.sha384: expected 96 hex digits",
        "osPackages[0].version: missing required key",
        "osPackages[0].release: missing required key",
        "osPackages[0].arch: missing required key",
        "bootloader.systemdBoot: required for systemd-boot",
        "disk.gptRegions[1].number: required (a partition number >= 1)",
    ]
    with pytest.raises(CosiError, match=r"^metadata.json: images\[0\].image.sha384: expected 96 hex digits; "):
        parse_metadata(json.dumps(bad).encode())


def test_not_a_document_or_revision() -> None:
    assert validate_metadata([]) == ["(top): metadata must be a JSON object"]
    assert validate_metadata(doc("2.0")) == ["version: '2.0' is not a COSI revision tether reads (1.0, 1.1, 1.2)"]
    assert validate_metadata(doc("1.1"), schema="1.2") == ["version: expected '1.2', got '1.1'"]
