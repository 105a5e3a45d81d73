"""Root tests: rendered files read by the real systemd-networkd inside a network namespace.

1. Every v1 example and the v2 feature set is loaded by networkd; it must log no warning about our files
   (unknown keys, bad values). A deliberately broken file proves the check notices.
2. A static config (address, MTU, extra route) plus a bridge is brought up for real on veth pairs and the
   result is read back with pyroute2.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.conftest import needs_root, needs_tool
from tests.network import netns as nsutil
from tests.network.test_v1 import EXAMPLES, example
from tests.network.test_v2 import FEATURES
from tether.network.live import netlink_addresses, netlink_interfaces
from tether.network.networkd import NETWORK_DIR, render_networkd
from tether.network.parse import parse_config
from tether.target import Target

pytestmark = [needs_root(), needs_tool("ip", "unshare"),
              pytest.mark.skipif(not os.path.exists(nsutil.NETWORKD), reason="needs systemd-networkd"),
              pytest.mark.root]


def _render(tmp_path: Path, doc: dict) -> Path:
    target = Target.at(tmp_path / "root")
    render_networkd(parse_config(doc), target)
    return target.path(NETWORK_DIR)


def _networkd_complaints(confdir: Path, log: Path) -> list[str]:
    with nsutil.netns() as ns, nsutil.networkd(ns, confdir, log):
        nsutil.wait_for(lambda: "Enumeration completed" in log.read_text(errors="replace"), 15,
                        "networkd to finish loading")
    # networkd names the file (path:line: message) when it ignores or rejects something in it
    return [line for line in log.read_text(errors="replace").splitlines()
            if "10-tether-" in line and "Configuring with" not in line]


CASES = [f"v1-{n}" for n in EXAMPLES] + ["v2-features"]


@pytest.mark.parametrize("case", CASES)
def test_networkd_loads_rendered_files_without_complaint(tmp_path: Path, case: str) -> None:
    doc = yaml.safe_load(FEATURES) if case == "v2-features" else example(case[3:])
    confdir = _render(tmp_path, doc)
    assert _networkd_complaints(confdir, tmp_path / "networkd.log") == []


def test_the_networkd_check_notices_a_bad_file(tmp_path: Path) -> None:
    confdir = _render(tmp_path, example("subnet-static"))
    (confdir / "10-tether-broken.network").write_text("[Match]\nName=x\n\n[Network]\nNoSuchKey=1\nDHCP=maybe\n")
    complaints = _networkd_complaints(confdir, tmp_path / "networkd.log")
    assert any("NoSuchKey" in c for c in complaints), complaints
    assert any("DHCP" in c for c in complaints), complaints


LIVE = {"version": 1, "config": [
    {"type": "physical", "name": "va", "mtu": 1400, "subnets": [
        {"type": "static", "address": "192.0.2.10/24", "gateway": "192.0.2.1",
         "routes": [{"destination": "198.51.100.0/24", "gateway": "192.0.2.254", "metric": 42}]}]},
    {"type": "physical", "name": "vc"},
    {"type": "bridge", "name": "br0", "bridge_interfaces": ["vc"], "params": {"bridge_stp": "off"},
     "subnets": [{"type": "static", "address": "203.0.113.1/24"}]},
]}


def test_static_config_comes_up_for_real(tmp_path: Path) -> None:
    pytest.importorskip("pyroute2")
    from pyroute2 import NetNS

    confdir = _render(tmp_path, LIVE)
    log = tmp_path / "networkd.log"
    with nsutil.netns() as ns:
        nsutil.ip(ns, "link", "add", "va", "type", "veth", "peer", "name", "vb")
        nsutil.ip(ns, "link", "add", "vc", "type", "veth", "peer", "name", "vd")
        # the peers are up so va/vc get carrier; networkd configures addresses only with carrier
        nsutil.ip(ns, "link", "set", "vb", "up")
        nsutil.ip(ns, "link", "set", "vd", "up")
        with nsutil.networkd(ns, confdir, log):
            nsutil.wait_for(lambda: "192.0.2.10/24" in netlink_addresses("va", ns)
                            and "203.0.113.1/24" in netlink_addresses("br0", ns), 20,
                            "addresses on va and br0 (networkd log: see below)")
            links = {i.name: i for i in netlink_interfaces(ns)}
            assert links["va"].up and links["br0"].up
            ipr = NetNS(ns)
            try:
                va = ipr.get_links(ifname="va")[0]
                vc = ipr.get_links(ifname="vc")[0]
                br = ipr.get_links(ifname="br0")[0]
                assert va.get_attr("IFLA_MTU") == 1400
                assert vc.get_attr("IFLA_MASTER") == br["index"]
                routes = {(r.get_attr("RTA_DST"), r["dst_len"], r.get_attr("RTA_GATEWAY"), r.get_attr("RTA_PRIORITY"))
                          for r in ipr.get_routes(family=2, table=254)}
            finally:
                ipr.close()
            assert ("198.51.100.0", 24, "192.0.2.254", 42) in routes
            assert any(dst is None and gw == "192.0.2.1" for dst, _, gw, _ in routes), routes
    assert "10-tether-" not in "".join(line for line in log.read_text().splitlines() if "ignoring" in line)
