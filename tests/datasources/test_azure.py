"""Azure datasource: IMDS against a loopback server, and the ready report to a loopback wire server."""

from __future__ import annotations

import base64
import time
import xml.etree.ElementTree as ET

import pytest

from tests.datasources.fakeserver import (
    AZURE_API,
    MetadataServer,
    Reply,
    azure_doc,
    azure_routes,
    refused_url,
    wireserver_routes,
)
from tether.datasources import azure
from tether.errors import DatasourceError

IMDS_PATH = f"/metadata/instance?api-version={AZURE_API}"


def make(make_ds_ctx, imds: str, wire: str | None = None, files=None, **settings):
    s = {"imds_url": imds, "max_wait": 3, **settings}
    if wire is not None:
        s["wireserver"] = wire
    return azure.AzureDatasource(make_ds_ctx(s, files=files))


def test_fetch_and_report_ready(make_ds_ctx):
    with MetadataServer(azure_routes()) as imds, MetadataServer(wireserver_routes()) as wire:
        ds = make(make_ds_ctx, imds.url, wire.hostport)
        inst = ds.fetch()
        assert imds.requests[0].headers["metadata"] == "true"
        posts = [r for r in wire.requests if r.method == "POST"]
    assert inst.datasource == "Azure" and inst.platform == "azure"
    assert inst.instance_id == "5c6b5d3a-1234-4a5b-9c8d-0123456789ab"
    assert inst.local_hostname == "az-test"
    assert inst.region == "westeurope" and inst.availability_zone == "2"
    assert inst.public_ssh_keys == ["ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDazurekey az@x"]
    assert inst.userdata == b"#cloud-config\n{}\n"
    assert "userData" not in inst.metadata["imds"]["compute"]
    assert inst.host_configuration == {"os": {"hostname": "from-azure"}}
    assert inst.ds["ready_report"] == "ready (incarnation 7)"
    # the health report carries the GoalState's identifiers and "Ready"
    assert len(posts) == 1 and posts[0].path == "/machine?comp=health"
    assert posts[0].headers["x-ms-version"] == "2012-11-30"
    assert posts[0].headers["content-type"].startswith("text/xml")
    doc = ET.fromstring(posts[0].body)
    assert doc.findtext("GoalStateIncarnation") == "7"
    assert doc.findtext("Container/ContainerId") == "c0ffee00-aaaa-bbbb-cccc-000000000001"
    assert doc.findtext("Container/RoleInstanceList/Role/InstanceId") == \
        "5c6b5d3a-1234-4a5b-9c8d-0123456789ab.az-test"
    assert doc.findtext("Container/RoleInstanceList/Role/Health/State") == "Ready"


def test_network_config_all_nics(make_ds_ctx):
    with MetadataServer(azure_routes()) as imds:
        inst = make(make_ds_ctx, imds.url, report_ready=False).fetch()
    assert inst.network_config == {"version": 2, "ethernets": {
        "eth0": {"match": {"macaddress": "00:0d:3a:12:34:56", "driver": "hv_netvsc"}, "dhcp4": True,
                 "dhcp4-overrides": {"route-metric": 100}},
        "eth1": {"match": {"macaddress": "00:0d:3a:65:43:21", "driver": "hv_netvsc"}, "dhcp4": True,
                 "dhcp4-overrides": {"route-metric": 200}, "addresses": ["10.0.1.5/24"]}}}
    assert "ready_report" not in inst.ds


def test_ready_report_failure_is_a_bounded_warning(make_ds_ctx):
    with MetadataServer(azure_routes()) as imds:
        t0 = time.monotonic()
        inst = make(make_ds_ctx, imds.url, refused_url().removeprefix("http://"), ready_timeout=1).fetch()
        assert time.monotonic() - t0 < 2.5
    assert inst.ds["ready_report"] == "failed"
    assert any("could not report ready" in w for w in inst.ds["warnings"])


def test_ready_report_hanging_wireserver_bounded(make_ds_ctx):
    with MetadataServer(azure_routes()) as imds, MetadataServer({"/machine/?comp=goalstate": Reply(hang=True)}) as w:
        t0 = time.monotonic()
        inst = make(make_ds_ctx, imds.url, w.hostport, ready_timeout=1, timeout=0.5).fetch()
        assert time.monotonic() - t0 < 2.5
    assert inst.ds["ready_report"] == "failed"


def test_bad_goal_state(make_ds_ctx):
    with MetadataServer(azure_routes()) as imds, MetadataServer(wireserver_routes("<GoalState>")) as w:
        inst = make(make_ds_ctx, imds.url, w.hostport).fetch()
    assert any("invalid GoalState XML" in x for x in inst.ds["warnings"])
    with pytest.raises(DatasourceError, match="lacks Incarnation"):
        azure.parse_goal_state(b"<GoalState><Container/></GoalState>", "u")


def test_wireserver_from_dhcp_lease(make_ds_ctx):
    ds = make(make_ds_ctx, "http://127.0.0.1:1", files={"run/systemd/netif/leases/2": "ADDRESS=10.0.0.4\n"
                                                         "OPTION_245=a83f8110\n"})
    assert ds.wireserver() == "168.63.129.16"
    ds = make(make_ds_ctx, "http://127.0.0.1:1", files={"run/systemd/netif/leases/2": "OPTION_245=0a000001\n"})
    assert ds.wireserver() == "10.0.0.1"


def test_custom_data_when_no_user_data(make_ds_ctx):
    doc = azure_doc(user_data=None)
    doc["compute"]["customData"] = base64.b64encode(b"#!/bin/sh\necho hi\n").decode()
    with MetadataServer(azure_routes(doc)) as imds:
        assert make(make_ds_ctx, imds.url, report_ready=False).fetch().userdata == b"#!/bin/sh\necho hi\n"


def test_host_config_from_user_data_key(make_ds_ctx):
    doc = azure_doc(user_data=b"host_configuration:\n  os: {hostname: ud}\n", tags=[])
    with MetadataServer(azure_routes(doc)) as imds:
        ds = make(make_ds_ctx, imds.url, report_ready=False)
        assert ds.fetch().host_configuration == {"os": {"hostname": "ud"}}
        assert ds.desired_host_config() == {"os": {"hostname": "ud"}}


def test_missing_metadata_header_and_garbage(make_ds_ctx):
    with MetadataServer({IMDS_PATH: Reply(200, "garbage{")}) as imds, \
            pytest.raises(DatasourceError, match="invalid JSON"):
        make(make_ds_ctx, imds.url, report_ready=False).fetch()
    with MetadataServer({IMDS_PATH: Reply(400, "Bad request")}) as imds, pytest.raises(DatasourceError, match="400"):
        make(make_ds_ctx, imds.url, report_ready=False).fetch()


def test_unreachable_imds_bounded(make_ds_ctx):
    url = refused_url()
    t0 = time.monotonic()
    with pytest.raises(DatasourceError, match=f"{url}/metadata/instance"):
        make(make_ds_ctx, url, max_wait=1).fetch()
    assert time.monotonic() - t0 < 2.0
    with MetadataServer({IMDS_PATH: Reply(hang=True)}) as imds:
        t0 = time.monotonic()
        with pytest.raises(DatasourceError, match="no Azure instance metadata service answered"):
            make(make_ds_ctx, imds.url, max_wait=1.5).fetch()
        assert time.monotonic() - t0 < 2.5


def test_imds_410_then_ok_is_retried(make_ds_ctx):
    calls = []
    ok = azure_routes()[IMDS_PATH]

    def flaky(req):
        calls.append(1)
        return Reply(410, "Gone") if len(calls) < 3 else ok(req)
    with MetadataServer({IMDS_PATH: flaky}) as imds:
        assert make(make_ds_ctx, imds.url, report_ready=False).fetch().instance_id.startswith("5c6b")
    assert len(calls) == 3


def test_detect(make_ds_ctx):
    assert not azure.AzureDatasource(make_ds_ctx()).detect()
    assert azure.AzureDatasource(make_ds_ctx(
        files={"sys/class/dmi/id/chassis_asset_tag": "7783-7084-3265-9085-8269-3286-77\n"})).detect()
