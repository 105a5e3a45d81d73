"""OpenStack metadata service against a loopback server, and the shared OpenStack format parsing."""

from __future__ import annotations

import json
import time

import pytest

from tests.datasources.fakeserver import OS_META, OS_NETWORK, MetadataServer, Reply, openstack_routes, refused_url
from tether.datasources import openstack
from tether.datasources.openstack_format import network_data_to_v1, parse_openstack, vendordata_bytes
from tether.errors import DatasourceError


def make(make_ds_ctx, url: str, **settings):
    return openstack.OpenStackDatasource(make_ds_ctx({"metadata_urls": [url], "max_wait": 3, **settings}))


def test_fetch_typical_instance(make_ds_ctx):
    with MetadataServer(openstack_routes()) as srv:
        ds = make(make_ds_ctx, srv.url)
        inst = ds.fetch()
    assert inst.datasource == "OpenStack"
    assert inst.instance_id == OS_META["uuid"]
    assert inst.local_hostname == "os-test.novalocal"
    assert inst.availability_zone == "nova"
    assert inst.public_ssh_keys == ["ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDopenstacktestkey os@test"]
    assert inst.userdata == b"#cloud-config\n{}\n"
    assert inst.vendordata == b"#cloud-config\nruncmd: [vendor]\n"
    assert inst.vendordata2 is None                          # 404: not provided
    assert inst.platform == "openstack" and inst.subplatform == f"metadata ({srv.url})"
    assert inst.host_configuration == {"os": {"hostname": "from-meta"}}
    assert inst.network_config["version"] == 1
    assert ds.describe() == f"DataSourceOpenStack [net,ver=2 {srv.url}]"


def test_network_data_to_v1_bond_vlan_routes_dns():
    cfg = network_data_to_v1(OS_NETWORK, {"fa:16:3e:00:00:02": "ens4"})
    by_name = {c.get("name"): c for c in cfg["config"]}
    assert by_name["eth0"] == {"type": "physical", "name": "eth0", "mac_address": "fa:16:3e:00:00:01",
                               "mtu": 1450, "subnets": []}
    assert by_name["ens4"]["mac_address"] == "fa:16:3e:00:00:02"            # named from the host's MAC
    bond = by_name["bond0"]
    assert bond["bond_interfaces"] == ["eth0", "ens4"]
    assert bond["params"] == {"bond-mode": "802.3ad", "bond-miimon": 100, "bond-xmit-hash-policy": "layer3+4"}
    assert bond["subnets"] == [
        {"type": "static", "address": "10.0.0.5", "netmask": "255.255.255.0", "gateway": "10.0.0.1",
         "routes": [{"network": "192.168.0.0", "gateway": "10.0.0.254", "prefix": 16}],
         "dns_nameservers": ["10.0.0.2"]},
        {"type": "ipv6_slaac"}]
    vlan = by_name["bond0.42"]
    assert vlan["vlan_link"] == "bond0" and vlan["vlan_id"] == 42 and vlan["subnets"] == [{"type": "dhcp4"}]
    assert cfg["config"][-1] == {"type": "nameserver", "address": ["8.8.8.8"]}


def test_network_data_static6_prefix():
    nd = {"links": [{"id": "l", "type": "phy", "ethernet_mac_address": "fa:16:3e:00:00:09"}],
          "networks": [{"id": "n", "type": "ipv6", "link": "l", "ip_address": "2001:db8::5",
                        "netmask": "ffff:ffff:ffff:ffff::",
                        "routes": [{"network": "::", "netmask": "::", "gateway": "2001:db8::1"}]}]}
    sub = network_data_to_v1(nd)["config"][0]["subnets"][0]
    assert sub == {"type": "static6", "address": "2001:db8::5/64", "gateway": "2001:db8::1"}


@pytest.mark.parametrize("nd, where", [
    ({"links": "x"}, "links: expected a list"),
    ({"links": [{"type": "phy"}]}, r"links\[0\].id: missing"),
    ({"links": [{"id": "a"}], "networks": [{"link": "b", "type": "ipv4"}]}, r"networks\[0\].link: unknown link"),
    ({"links": [{"id": "a"}], "networks": [{"link": "a", "type": "ipv4"}]}, r"networks\[0\].ip_address"),
    ({"links": [{"id": "a"}], "networks": [{"link": "a", "type": "weird"}]}, "unsupported network type"),
    ({"links": [{"id": "a"}, {"id": "v", "type": "vlan", "vlan_link": "zz", "vlan_id": 3}]}, "vlan_link"),
])
def test_network_data_errors_name_where(nd, where):
    with pytest.raises(DatasourceError, match=where):
        network_data_to_v1(nd)


def test_parse_openstack_contract_for_configdrive():
    inst = parse_openstack(dict(OS_META), None, None, None)
    assert inst.instance_id == OS_META["uuid"] and inst.userdata is None and inst.network_config is None
    with pytest.raises(DatasourceError, match="uuid"):
        parse_openstack({"hostname": "x"}, None, None, None)
    # a broken network_data.json does not sink the instance: a warning, no network config
    inst = parse_openstack(dict(OS_META), b"x", "vendor", {"links": "bad"})
    assert inst.network_config is None and "network_data.json" in inst.ds["warnings"][0]
    assert inst.vendordata == b"vendor"


def test_vendordata_forms():
    assert vendordata_bytes("a") == b"a"
    assert vendordata_bytes({"cloud-init": "#cloud-config\n"}) == b"#cloud-config\n"
    assert vendordata_bytes({"other": 1}) is None
    assert vendordata_bytes(None) is None


def test_optional_documents_404(make_ds_ctx):
    routes = {"/openstack/latest/meta_data.json": Reply(200, json.dumps(OS_META))}
    with MetadataServer(routes) as srv:
        inst = make(make_ds_ctx, srv.url).fetch()
    assert inst.userdata is None and inst.vendordata is None and inst.network_config is None


def test_garbage_meta_data_json_is_an_error(make_ds_ctx):
    routes = openstack_routes()
    routes["/openstack/latest/meta_data.json"] = Reply(200, "<html>nope")
    with MetadataServer(routes) as srv, pytest.raises(DatasourceError, match="meta_data.json: invalid JSON"):
        make(make_ds_ctx, srv.url).fetch()


def test_garbage_optional_json_is_a_warning(make_ds_ctx):
    routes = openstack_routes()
    routes["/openstack/latest/network_data.json"] = Reply(200, "{{{")
    with MetadataServer(routes) as srv:
        inst = make(make_ds_ctx, srv.url).fetch()
    assert inst.network_config is None
    assert any("network_data.json: invalid JSON" in w for w in inst.ds["warnings"])


def test_404_meta_data_is_not_openstack(make_ds_ctx):
    with MetadataServer({}) as srv, pytest.raises(DatasourceError, match="HTTP 404"):
        make(make_ds_ctx, srv.url).fetch()


def test_connection_refused_bounded(make_ds_ctx):
    url = refused_url()
    t0 = time.monotonic()
    with pytest.raises(DatasourceError, match=f"{url}/openstack/latest/meta_data.json"):
        make(make_ds_ctx, url, max_wait=1).fetch()
    assert time.monotonic() - t0 < 2.0


def test_hanging_service_bounded(make_ds_ctx):
    routes = openstack_routes()
    routes["/openstack/latest/meta_data.json"] = Reply(hang=True)
    with MetadataServer(routes) as srv:
        t0 = time.monotonic()
        with pytest.raises(DatasourceError, match="no OpenStack metadata service answered"):
            make(make_ds_ctx, srv.url, max_wait=1.5).fetch()
        assert time.monotonic() - t0 < 2.5


def test_hanging_optional_document_bounded(make_ds_ctx):
    routes = openstack_routes()
    routes["/openstack/latest/vendor_data.json"] = Reply(hang=True)
    with MetadataServer(routes) as srv:
        t0 = time.monotonic()
        with pytest.raises(DatasourceError, match="vendor_data.json"):
            make(make_ds_ctx, srv.url, max_wait=1.5).fetch()
        assert time.monotonic() - t0 < 2.5


def test_desired_host_config_fresh_and_bad(make_ds_ctx):
    meta = dict(OS_META, meta={"host_configuration": "storage: {disks: []}"})
    routes = openstack_routes(meta)
    with MetadataServer(routes) as srv:
        ds = make(make_ds_ctx, srv.url)
        assert ds.desired_host_config() == {"storage": {"disks": []}}
        srv.routes["/openstack/latest/meta_data.json"] = Reply(200, json.dumps(dict(OS_META, meta={})))
        assert ds.desired_host_config() is None
        srv.routes["/openstack/latest/meta_data.json"] = Reply(
            200, json.dumps(dict(OS_META, meta={"host-configuration": "a: [unclosed"})))
        with pytest.raises(DatasourceError, match="invalid YAML"):
            ds.desired_host_config()


def test_detect(make_ds_ctx):
    assert not openstack.OpenStackDatasource(make_ds_ctx()).detect()
    assert openstack.OpenStackDatasource(
        make_ds_ctx(files={"sys/class/dmi/id/product_name": "OpenStack Nova\n"})).detect()
    assert openstack.DATASOURCE.NAME == "OpenStack" and openstack.DATASOURCE.NEEDS_NETWORK
