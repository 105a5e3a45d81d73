"""tether.digest gives hashlib's SHA-256 digests without importing hashlib (OpenSSL) at boot."""

from __future__ import annotations

import hashlib

from tether.digest import sha256


def test_same_digests_as_hashlib() -> None:
    for data in (b"", b"abc", bytes(range(256)) * 1000):
        assert sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
    h = sha256()
    h.update(b"user-data")
    h.update(b"vendor-data")
    assert h.digest() == hashlib.sha256(b"user-datavendor-data").digest()
