"""The host configuration (engine/hostconfig.py parse_host_config, a strict format): any document gives a
validated model or ConfigErrors naming where (never another exception), in bounded time, and no error quotes a
secret-bearing key's value."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz.strategies import SECRET, json_like, keys_of, leaks, shaped, with_secrets
from tests.fuzz.timing import timed
from tether.engine.hostconfig import HostConfiguration, parse_host_config
from tether.errors import ConfigErrors, TetherError

KEYS = keys_of(HostConfiguration)


def _check(doc: Any) -> None:
    try:
        hc = parse_host_config(doc, "host.yaml")
    except ConfigErrors as e:
        assert e.errors and all(str(x) for x in e.errors)
        assert not leaks(str(e)), f"secret in the error: {e}"
    except TetherError as e:
        assert str(e) and not leaks(str(e))
    else:
        assert isinstance(hc, HostConfiguration)


@given(doc=json_like(st.sampled_from(KEYS)))
@example(doc={"os": {"users": [{"name": "a", "password": 987654321987}]}})
@example(doc={"image": {"url": f"https://u:{SECRET}@example.com/x.cosi"}})
@timed
def test_any_document(doc: Any) -> None:
    _check(doc)


@given(doc=shaped(HostConfiguration))
@timed
def test_documents_shaped_like_a_host_configuration(doc: Any) -> None:
    _check(doc)


@given(doc=with_secrets(KEYS), url=st.sampled_from([f"ftp://u:{SECRET}@h/a.cosi", f"https://h/a?token={SECRET}",
                                                     f"http://{SECRET}@h/a.cosi", f"gs://h/a.cosi#{SECRET}"]))
@timed
def test_secret_values_are_never_quoted(doc: Any, url: str) -> None:
    _check(doc)
    _check({"image": {"url": url, "sha384": "ignored"}, **(doc if isinstance(doc, dict) else {})})


def test_regression_an_unsupported_image_url_is_shown_without_its_credentials() -> None:
    """Found by the fuzzer: the scheme check quoted the whole URL, user:password and token included."""
    for url in (f"ftp://u:{SECRET}@example.com/a.cosi", f"s3://bucket/a.cosi?token={SECRET}"):
        try:
            parse_host_config({"image": {"url": url, "sha384": "ignored"}})
        except ConfigErrors as e:
            assert "images are supported" in str(e) and ("example.com" in str(e) or "s3://" in str(e)), str(e)
            assert not leaks(str(e)), str(e)
        else:
            raise AssertionError("accepted")


def test_regression_uefi_fallback_of_the_wrong_type_is_a_config_error() -> None:
    """Found by the shaped fuzzer: a list or mapping as ``os.uefiFallback`` crashed the alias lookup with
    TypeError (unhashable) instead of a ConfigErrors naming the key."""
    for bad in ([], {"a": 1}):
        try:
            parse_host_config({"os": {"uefiFallback": bad}})
        except ConfigErrors as e:
            assert "os.uefiFallback" in str(e), str(e)
        else:
            raise AssertionError("accepted")


def test_regression_storage_lists_of_the_wrong_type_are_config_errors() -> None:
    """Found by the shaped fuzzer (long profile): ``storage.disks: true``, ``storage.filesystems: true`` and
    ``partitions: true`` crashed the unsupported-feature pass with TypeError instead of a ConfigErrors."""
    for doc, where in (({"storage": {"disks": True}}, "storage.disks"),
                       ({"storage": {"filesystems": True}}, "storage.filesystems"),
                       ({"storage": {"disks": [{"id": "d", "device": "/dev/sda", "partitionTableType": "gpt",
                                                "partitions": True}]}}, "storage.disks[0].partitions")):
        try:
            parse_host_config(doc)
        except ConfigErrors as e:
            assert f"{where}: expected a list" in str(e), str(e)
        else:
            raise AssertionError(f"accepted {doc}")
