"""Ec2 datasource against a loopback IMDS: IMDSv2 tokens, crawl, network config, and the unhappy paths."""

from __future__ import annotations

import time

import pytest

from tests.datasources.fakeserver import (
    EC2_KEY,
    EC2_PRIMARY_MAC,
    EC2_SECOND_MAC,
    Ec2Server,
    Reply,
    ec2_routes,
    ec2_tree,
    refused_url,
)
from tether.datasources import ec2
from tether.errors import DatasourceError


def make(make_ds_ctx, server_url: str, **settings):
    return ec2.Ec2Datasource(make_ds_ctx({"metadata_urls": [server_url], "max_wait": 3, **settings}))


def test_fetch_typical_instance(make_ds_ctx):
    with Ec2Server() as srv:
        ds = make(make_ds_ctx, srv.url)
        inst = ds.fetch()
    assert inst.datasource == "Ec2"
    assert inst.instance_id == "i-0123456789abcdef0"
    assert inst.local_hostname == "ip-172-31-1-10.us-west-2.compute.internal"
    assert inst.public_ssh_keys == [EC2_KEY]
    assert inst.availability_zone == "us-west-2b"
    assert inst.region == "us-west-2"
    assert inst.platform == "ec2" and inst.cloud_name == "aws"
    assert inst.subplatform == f"metadata ({srv.url})"
    assert inst.userdata == b"#cloud-config\n{}\n"
    assert inst.metadata["placement"]["availability-zone"] == "us-west-2b"
    assert inst.metadata["public-keys"]["my-key"]["openssh-key"].strip() == EC2_KEY
    assert inst.ds["imds"] == "v2"
    assert inst.ds["dynamic"]["instance-identity"]["document"]["accountId"] == "123456789012"
    # every GET carried the token; the PUT asked for a TTL
    gets = [r for r in srv.requests if r.method == "GET"]
    assert gets and all(r.headers.get("x-aws-ec2-metadata-token", "").startswith("TOKEN-") for r in gets)
    assert srv.token_ttls == ["21600"]
    assert ds.describe() == f"DataSourceEc2 [metadata={srv.url}]"


def test_credentials_are_never_crawled(make_ds_ctx):
    with Ec2Server() as srv:
        inst = make(make_ds_ctx, srv.url).fetch()
    assert not any("security-credentials" in p for p in srv.paths())
    assert "TOPSECRET" not in repr(inst.to_cache())
    assert inst.metadata["iam"]["info"]["Code"] == "Success"      # the harmless part is kept (JSON parsed)


def test_network_config_primary_nic_only(make_ds_ctx):
    with Ec2Server() as srv:
        inst = make(make_ds_ctx, srv.url).fetch()
    assert inst.network_config == {"version": 2, "ethernets": {"eth0": {
        "match": {"macaddress": EC2_PRIMARY_MAC}, "dhcp4": True, "dhcp6": True,
        "addresses": ["172.31.1.11/20"]}}}


def test_network_config_full_uses_sysfs_names_and_metrics(make_ds_ctx):
    files = {"sys/class/net/ens5/address": EC2_PRIMARY_MAC + "\n", "sys/class/net/ens6/address": EC2_SECOND_MAC,
             "sys/class/net/lo/address": "00:00:00:00:00:00"}
    with Ec2Server() as srv:
        ds = ec2.Ec2Datasource(make_ds_ctx({"metadata_urls": [srv.url], "apply_full_imds_network_config": True},
                                           files=files))
        inst = ds.fetch()
    eths = inst.network_config["ethernets"]
    assert list(eths) == ["ens5", "ens6"]
    assert eths["ens5"]["dhcp4-overrides"] == {"route-metric": 100}
    assert eths["ens6"] == {"match": {"macaddress": EC2_SECOND_MAC}, "dhcp4": True,
                            "dhcp4-overrides": {"route-metric": 200}}


def test_imdsv2_required_401_without_token(make_ds_ctx):
    # The server refuses token-less GETs; with the token dance the crawl works, and no GET went without it.
    with Ec2Server(require_token=True) as srv:
        make(make_ds_ctx, srv.url).fetch()
        assert srv.paths("PUT") == ["/latest/api/token"]
    from tether.http import HttpError, request
    with Ec2Server(require_token=True) as srv, pytest.raises(HttpError) as e:
        request(srv.url + "/2021-03-23/meta-data/instance-id", retries=0)
    assert e.value.status == 401


def test_token_expiry_mid_crawl_refreshes_once(make_ds_ctx):
    with Ec2Server(expire_after=10) as srv:
        inst = make(make_ds_ctx, srv.url).fetch()
        assert inst.instance_id == "i-0123456789abcdef0"
        assert len(srv.tokens) >= 2                    # a new token was fetched after the 401s
        assert srv.paths("PUT").count("/latest/api/token") == len(srv.tokens)


def test_token_rejected_twice_is_a_clear_error(make_ds_ctx):
    with Ec2Server(expire_after=0) as srv, pytest.raises(DatasourceError, match="401"):
        make(make_ds_ctx, srv.url).fetch()


def test_imdsv1_refused_unless_allowed(make_ds_ctx):
    with Ec2Server(v1_only=True) as srv:
        with pytest.raises(DatasourceError, match="allow_imdsv1"):
            make(make_ds_ctx, srv.url).fetch()
        inst = make(make_ds_ctx, srv.url, allow_imdsv1=True).fetch()
    assert inst.instance_id == "i-0123456789abcdef0"
    assert inst.ds["imds"] == "v1"


def test_optional_paths_404(make_ds_ctx):
    routes = ec2_routes(user_data=None)
    for p in [p for p in routes if "instance-identity" in p]:
        del routes[p]
    with Ec2Server(routes) as srv:
        inst = make(make_ds_ctx, srv.url).fetch()
    assert inst.userdata is None
    assert inst.region == "us-west-2"          # from placement/region instead


def test_api_version_falls_back_to_latest(make_ds_ctx):
    with Ec2Server(ec2_routes(versions=("latest",))) as srv:
        inst = make(make_ds_ctx, srv.url).fetch()
    assert inst.instance_id == "i-0123456789abcdef0"
    assert "/latest/meta-data/instance-id" in srv.paths()


def test_missing_instance_id_is_an_error_naming_the_url(make_ds_ctx):
    tree = ec2_tree()
    del tree["instance-id"]
    with Ec2Server(ec2_routes(tree)) as srv, pytest.raises(DatasourceError, match="meta-data/instance-id"):
        make(make_ds_ctx, srv.url).fetch()


def test_garbage_identity_document_is_a_warning(make_ds_ctx):
    routes = ec2_routes()
    routes["/2021-03-23/dynamic/instance-identity/document"] = Reply(200, "{not json")
    tree_routes = routes
    with Ec2Server(tree_routes) as srv:
        inst = make(make_ds_ctx, srv.url).fetch()
    assert inst.region == "us-west-2"
    assert any("instance-identity/document: invalid JSON" in w for w in inst.ds["warnings"])


def test_server_error_during_crawl_is_a_clear_error(make_ds_ctx):
    routes = ec2_routes()
    routes["/2021-03-23/meta-data/placement/"] = Reply(500, "boom")
    with Ec2Server(routes) as srv, pytest.raises(DatasourceError, match="placement/: HTTP 500"):
        make(make_ds_ctx, srv.url).fetch()


def test_connection_refused_gives_up_within_max_wait(make_ds_ctx):
    url = refused_url()
    ds = make(make_ds_ctx, url, max_wait=1.0)
    t0 = time.monotonic()
    with pytest.raises(DatasourceError) as e:
        ds.fetch()
    assert time.monotonic() - t0 < 1.0 + 1.0
    assert f"{url}/latest/api/token" in str(e.value)
    assert "no EC2 metadata service answered" in str(e.value)


def test_hanging_token_endpoint_is_bounded(make_ds_ctx):
    routes = ec2_routes()
    with Ec2Server(routes) as srv:
        srv.routes["/latest/api/token"] = Reply(hang=True)
        ds = make(make_ds_ctx, srv.url, max_wait=1.5, timeout=5)
        t0 = time.monotonic()
        with pytest.raises(DatasourceError, match="no EC2 metadata service answered"):
            ds.fetch()
        assert time.monotonic() - t0 < 1.5 + 1.0


def test_hanging_crawl_is_bounded(make_ds_ctx):
    routes = ec2_routes()
    routes["/2021-03-23/meta-data/placement/"] = Reply(hang=True)
    with Ec2Server(routes) as srv:
        ds = make(make_ds_ctx, srv.url, max_wait=1.5)
        t0 = time.monotonic()
        with pytest.raises(DatasourceError, match="placement"):
            ds.fetch()
        assert time.monotonic() - t0 < 1.5 + 1.0


def test_slow_but_in_time_responses_succeed(make_ds_ctx):
    routes = ec2_routes()
    routes["/2021-03-23/meta-data/instance-id"] = Reply(200, "i-slow", delay=0.5)
    with Ec2Server(routes) as srv:
        inst = make(make_ds_ctx, srv.url, max_wait=3).fetch()
    assert inst.instance_id == "i-slow"


def test_ctx_deadline_bounds_the_fetch(make_ds_ctx):
    url = refused_url()
    ds = ec2.Ec2Datasource(make_ds_ctx({"metadata_urls": [url], "max_wait": 30},
                                       deadline=time.monotonic() + 0.8))
    t0 = time.monotonic()
    with pytest.raises(DatasourceError):
        ds.fetch()
    assert time.monotonic() - t0 < 0.8 + 1.0


def test_second_url_used_when_first_refuses(make_ds_ctx):
    with Ec2Server() as srv:
        ds = ec2.Ec2Datasource(make_ds_ctx({"metadata_urls": [refused_url(), srv.url], "max_wait": 3}))
        inst = ds.fetch()
    assert inst.subplatform == f"metadata ({srv.url})"


def test_bad_settings_are_named(make_ds_ctx):
    with pytest.raises(DatasourceError, match=r"datasource\.Ec2\.max_wait"):
        ec2.Ec2Datasource(make_ds_ctx({"max_wait": "soon"})).fetch()
    with pytest.raises(DatasourceError, match=r"datasource\.Ec2\.metadata_urls"):
        ec2.Ec2Datasource(make_ds_ctx({"metadata_urls": ["ftp://x"]})).fetch()


def test_host_configuration_from_instance_tag(make_ds_ctx):
    tree = ec2_tree(tags={"Name": "web", "host-configuration": "os:\n  hostname: from-tag\n"})
    with Ec2Server(ec2_routes(tree)) as srv:
        ds = make(make_ds_ctx, srv.url)
        inst = ds.fetch()
        assert inst.host_configuration == {"os": {"hostname": "from-tag"}}
        assert ds.desired_host_config() == {"os": {"hostname": "from-tag"}}
        # the watch reads it fresh
        srv.routes["/2021-03-23/meta-data/tags/instance/host-configuration"] = Reply(200, "os: {hostname: b}")
        assert ds.desired_host_config() == {"os": {"hostname": "b"}}


def test_host_configuration_absent_or_bad(make_ds_ctx):
    with Ec2Server() as srv:
        ds = make(make_ds_ctx, srv.url)
        assert ds.fetch().host_configuration is None
        assert ds.desired_host_config() is None
    tree = ec2_tree(tags={"host_configuration": "- just\n- a list\n"})
    with Ec2Server(ec2_routes(tree)) as srv:
        ds = make(make_ds_ctx, srv.url)
        inst = ds.fetch()
        assert inst.host_configuration is None
        assert any("must be a YAML mapping" in w for w in inst.ds["warnings"])
        with pytest.raises(DatasourceError, match="EC2 instance tag host_configuration"):
            ds.desired_host_config()


def test_detect_from_dmi_and_kernel_arg(make_ds_ctx):
    assert not ec2.Ec2Datasource(make_ds_ctx()).detect()
    assert ec2.Ec2Datasource(make_ds_ctx(files={"sys/class/dmi/id/sys_vendor": "Amazon EC2\n"})).detect()


def test_detect_from_kernel_arg(make_ds_ctx):
    assert ec2.Ec2Datasource(make_ds_ctx(files={"proc/cmdline": "root=/dev/vda1 ds=ec2"})).detect()


def test_module_contract():
    assert ec2.DATASOURCE is ec2.Ec2Datasource
    assert ec2.DATASOURCE.NAME == "Ec2" and ec2.DATASOURCE.NEEDS_NETWORK is True
