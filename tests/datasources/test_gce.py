"""GCE datasource against a loopback metadata server."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest

from tests.datasources.fakeserver import (
    GCE_KEY_INST,
    GCE_KEY_PROJ,
    MetadataServer,
    Reply,
    gce_doc,
    gce_routes,
    refused_url,
)
from tether.datasources import gce
from tether.errors import DatasourceError

PATH = "/computeMetadata/v1/?recursive=true&alt=json"


def make(make_ds_ctx, url: str, **settings):
    return gce.GCEDatasource(make_ds_ctx({"metadata_url": url + "/computeMetadata/v1", "max_wait": 3,
                                          **settings}))


def test_fetch_typical_instance(make_ds_ctx):
    with MetadataServer(gce_routes()) as srv:
        ds = make(make_ds_ctx, srv.url)
        inst = ds.fetch()
        assert srv.requests[0].headers["metadata-flavor"] == "Google"
    assert inst.datasource == "GCE" and inst.platform == "gce"
    assert inst.instance_id == "1234567890123456789"
    assert inst.local_hostname == "gce-test"
    assert inst.availability_zone == "us-central1-a" and inst.region == "us-central1"
    assert inst.userdata == b"#cloud-config\n{}\n"
    # debian (default user) and cloudinit keys; alice's key is not the default user's; the expired one is gone
    assert inst.public_ssh_keys == [GCE_KEY_INST, GCE_KEY_PROJ]
    assert {"user": "alice", "key": "ssh-rsa AAAAB3alice alice@x"} in inst.ds["ssh_keys"]
    assert "user-data" not in inst.metadata["instance"]["attributes"]
    assert inst.host_configuration == {"os": {"hostname": "from-gce"}}
    assert inst.subplatform == f"metadata ({srv.url}/computeMetadata/v1)"


def test_block_project_keys_and_key_users(make_ds_ctx):
    attrs = {"ssh-keys": f"debian:{GCE_KEY_INST}", "block-project-ssh-keys": "TRUE"}
    with MetadataServer(gce_routes(gce_doc(attributes=attrs))) as srv:
        assert make(make_ds_ctx, srv.url).fetch().public_ssh_keys == [GCE_KEY_INST]
    with MetadataServer(gce_routes()) as srv:
        keys = make(make_ds_ctx, srv.url, ssh_key_users=["alice"]).fetch().public_ssh_keys
    assert keys == ["ssh-rsa AAAAB3alice alice@x"]


def test_expiry_parsing():
    now = datetime(2020, 1, 1, tzinfo=UTC)
    text = ('u:ssh-rsa A google-ssh {"userName":"u","expireOn":"2021-01-01T00:00:00+0000"}\n'
            'u:ssh-rsa B google-ssh {"userName":"u","expireOn":"2019-01-01T00:00:00+0000"}\n'
            "no-colon-line\n\nv:ssh-ed25519 C")
    keys = [k for _, k in gce.parse_ssh_keys(text, now)]
    assert keys == ['ssh-rsa A google-ssh {"userName":"u","expireOn":"2021-01-01T00:00:00+0000"}',
                    "ssh-ed25519 C"]


def test_base64_user_data(make_ds_ctx):
    attrs = {"user-data": base64.b64encode(b"\x1f\x8bgz").decode(), "user-data-encoding": "base64"}
    with MetadataServer(gce_routes(gce_doc(attributes=attrs))) as srv:
        assert make(make_ds_ctx, srv.url).fetch().userdata == b"\x1f\x8bgz"
    attrs = {"user-data": "***", "user-data-encoding": "base64"}
    with MetadataServer(gce_routes(gce_doc(attributes=attrs))) as srv, pytest.raises(DatasourceError,
                                                                                     match="not valid base64"):
        make(make_ds_ctx, srv.url).fetch()


def test_missing_flavor_header_is_not_gce(make_ds_ctx):
    with MetadataServer({PATH: Reply(200, "{}")}) as srv, pytest.raises(DatasourceError, match="Metadata-Flavor"):
        make(make_ds_ctx, srv.url).fetch()


def test_garbage_json(make_ds_ctx):
    routes = {PATH: Reply(200, "not json", {"Metadata-Flavor": "Google"})}
    with MetadataServer(routes) as srv, pytest.raises(DatasourceError, match="invalid JSON"):
        make(make_ds_ctx, srv.url).fetch()


def test_refused_and_hanging_are_bounded(make_ds_ctx):
    url = refused_url()
    t0 = time.monotonic()
    with pytest.raises(DatasourceError, match=f"{url}/computeMetadata/v1/"):
        make(make_ds_ctx, url, max_wait=1).fetch()
    assert time.monotonic() - t0 < 2.0
    with MetadataServer({PATH: Reply(hang=True)}) as srv:
        t0 = time.monotonic()
        with pytest.raises(DatasourceError, match="no GCE metadata server answered"):
            make(make_ds_ctx, srv.url, max_wait=1.5).fetch()
        assert time.monotonic() - t0 < 2.5


def test_slow_answer_within_max_wait(make_ds_ctx):
    with MetadataServer(gce_routes()) as srv:
        inner = srv.routes[PATH]
        srv.routes[PATH] = lambda req: Reply(**{**inner(req).__dict__, "delay": 0.5})
        assert make(make_ds_ctx, srv.url).fetch().instance_id == "1234567890123456789"


def test_desired_host_config_project_fallback(make_ds_ctx):
    doc = gce_doc(attributes={}, project_attributes={"host_configuration": "os: {hostname: p}"})
    with MetadataServer(gce_routes(doc)) as srv:
        assert make(make_ds_ctx, srv.url).desired_host_config() == {"os": {"hostname": "p"}}
    with MetadataServer(gce_routes(gce_doc(attributes={}, project_attributes={}))) as srv:
        assert make(make_ds_ctx, srv.url).desired_host_config() is None


def test_detect(make_ds_ctx):
    assert not gce.GCEDatasource(make_ds_ctx()).detect()
    assert gce.GCEDatasource(make_ds_ctx(files={"sys/class/dmi/id/product_name": "Google Compute Engine"})).detect()
