"""A metadata fetch is bounded by total bytes and number of requests, whatever the service serves; request
headers come from configuration; URLs with credentials never show them."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from tests.datasources.fakeserver import Ec2Server, MetadataServer, Reply, ec2_routes, ec2_tree, gce_doc, gce_routes
from tether.datasources import ec2, gce, openstack
from tether.datasources.nocloud import NoCloudNet
from tether.errors import DatasourceError

MiB = 1 << 20


def test_ec2_crawl_of_many_large_leaves_stops_at_max_bytes_with_bounded_memory(make_ds_ctx):
    big = b"x" * MiB                                  # one object, served 200 times: the server costs nothing
    tree = ec2_tree()
    tree["huge"] = {f"leaf{i}": big for i in range(200)}
    with Ec2Server(ec2_routes(tree)) as srv:
        ds = ec2.Ec2Datasource(make_ds_ctx({"metadata_urls": [srv.url], "max_wait": 20, "max_bytes": 8 * MiB}))
        tracemalloc.start()
        try:
            t0 = time.monotonic()
            with pytest.raises(DatasourceError) as ei:
                ds.fetch()
            elapsed = time.monotonic() - t0
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    print(f"Ec2 crawl of 200 x 1 MiB leaves, max_bytes 8 MiB: {elapsed:.2f}s, peak {peak / MiB:.1f} MiB traced")
    msg = str(ei.value)
    assert msg.startswith("Ec2: the metadata read from ") and "/meta-data/huge/leaf" in msg
    assert msg.endswith("exceeds 8388608 bytes in total (datasource.Ec2.max_bytes)")
    # what was read (8 MiB) as bytes and as text, and a response in flight; 200 MiB without the bound
    assert peak < 24 * MiB
    assert sum(1 for r in srv.requests if "/huge/" in r.path) <= 9


def test_ec2_crawl_stops_at_max_entries(make_ds_ctx):
    tree = ec2_tree()
    tree["many"] = {f"k{i}": "v" for i in range(5000)}
    with Ec2Server(ec2_routes(tree)) as srv:
        ds = ec2.Ec2Datasource(make_ds_ctx({"metadata_urls": [srv.url], "max_entries": 150}))
        with pytest.raises(DatasourceError, match=r"^Ec2: more than 150 metadata requests, the last for "
                                                  r"http://127\.0\.0\.1:\d+/2021-03-23/meta-data/many/k\d+ "
                                                  r"\(datasource\.Ec2\.max_entries\)$"):
            ds.fetch()
        assert len(srv.requests) <= 152            # the token PUT and 150 GETs


def test_one_document_over_max_bytes_names_the_key(make_ds_ctx):
    doc = gce_doc({"padding": "p" * (2 * MiB)})
    with MetadataServer(gce_routes(doc)) as srv:
        ds = gce.GCEDatasource(make_ds_ctx({"metadata_url": srv.url + "/computeMetadata/v1", "max_bytes": MiB}))
        with pytest.raises(DatasourceError, match=r"^GCE: the metadata read from .* exceeds 1048576 bytes in "
                                                  r"total \(datasource\.GCE\.max_bytes\)$"):
            ds.fetch()


@pytest.mark.parametrize("key, value, message", [
    ("max_bytes", "lots", r"datasource\.OpenStack\.max_bytes: expected a non-negative number"),
    ("headers", {"X-Token": "a\nb"}, r"datasource\.OpenStack\.headers\.X-Token: .*line breaks"),
    ("headers", ["X-Token: 1"], r"datasource\.OpenStack\.headers: expected a mapping"),
    ("metadata_urls", ["http://u:SECRETPW@127.0.0.1:9/"],
     r"^datasource\.OpenStack\.metadata_urls: http://127\.0\.0\.1:9/: credentials in a URL end up in logs; put "
     r"them in datasource\.OpenStack\.headers$"),
])
def test_bad_bound_or_header_settings_are_clear_errors(make_ds_ctx, key, value, message):
    ds = openstack.OpenStackDatasource(make_ds_ctx({"metadata_urls": ["http://127.0.0.1:9"], key: value}))
    with pytest.raises(DatasourceError, match=message):
        ds.fetch()


def test_configured_headers_are_sent(make_ds_ctx):
    with Ec2Server() as srv:
        ec2.Ec2Datasource(make_ds_ctx({"metadata_urls": [srv.url],
                                       "headers": {"X-Proxy-Auth": "letmein"}})).fetch()
    assert srv.requests and all(r.headers.get("x-proxy-auth") == "letmein" for r in srv.requests)


def test_seedfrom_credentials_from_headers_and_never_shown(make_ds_ctx, sysroot):
    def guarded(req):
        return None if req.headers.get("authorization") == "Bearer SEEDTOKEN" else Reply(401, "no")

    routes = {"/seed/meta-data": Reply(200, "instance-id: i-seed\n"), "/seed/user-data": Reply(200, "#cloud-config\n")}
    with MetadataServer(routes) as srv:
        srv.guard = guarded
        url = srv.url.replace("http://", "http://bob:hunter2@") + "/seed/?sig=SIGNATURE"
        ok = NoCloudNet(make_ds_ctx({"seedfrom": srv.url + "/seed/",
                                     "headers": {"Authorization": "Bearer SEEDTOKEN"}})).fetch()
        assert ok.instance_id == "i-seed"
        ds = NoCloudNet(make_ds_ctx({"seedfrom": url, "retries": 0}))
        with pytest.raises(DatasourceError) as ei:
            ds.fetch()
    assert "HTTP 401" in str(ei.value)
    for secret in ("bob", "hunter2", "SIGNATURE"):
        assert secret not in str(ei.value)
    assert srv.requests[-1].headers["authorization"].startswith("Basic ")   # userinfo is still used


def test_seedfrom_oversized_user_data_costs_only_the_user_data(make_ds_ctx):
    routes = {"/s/meta-data": Reply(200, "instance-id: i-big\nlocal-hostname: h1\n"),
              "/s/user-data": Reply(200, b"#cloud-config\n" + b"#" * (2 * MiB))}
    with MetadataServer(routes) as srv:
        inst = NoCloudNet(make_ds_ctx({"seedfrom": srv.url + "/s/", "max_bytes": MiB})).fetch()
    assert (inst.instance_id, inst.local_hostname, inst.userdata) == ("i-big", "h1", None)
    assert inst.ds["warnings"] == [f"seedfrom {srv.url}/s/: user-data dropped: NoCloud: the metadata read from "
                                   f"{srv.url}/s/user-data and before it exceeds 1048576 bytes in total "
                                   "(datasource.NoCloud.max_bytes)"]
