"""NetworkManager keyfile renderer: golden profiles from v1 and v2 input, files a keyfile reader accepts (Python's
configparser and, when installed, NetworkManager's own parser through ``nmcli --offline``), 0600 files,
renderer choice, and what a live apply runs."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fakes import FakeRunner
from tests.network.test_apply import fake_sys
from tests.network.test_v1 import example
from tests.network.test_v2 import EQUIVALENT, FEATURES
from tether.host import Host
from tether.network import apply as netapply
from tether.network import nm
from tether.network.apply import apply_network
from tether.network.nm import CONNECTIONS_DIR, nm_keyfiles, profile_uuid, sync_nm
from tether.network.parse import parse_config
from tether.network.select import choose_renderer
from tether.target import Target

EXPECTED = Path(__file__).parent / "expected" / "nm"
OWN_V2 = {
    "subnet-static": """
version: 2
ethernets:
  interface0:
    match: {macaddress: '00:11:22:33:44:55'}
    set-name: interface0
    addresses: [192.168.23.14/27]
    routes: [{to: default, via: 192.168.23.1}]
    nameservers: {addresses: [192.168.23.2, 8.8.8.8], search: [exemplary.maas]}
""",
    "subnet-dhcp": """
version: 2
ethernets:
  interface0: {match: {macaddress: '00:11:22:33:44:55'}, set-name: interface0, dhcp4: true}
""",
    "vlan": """
version: 2
ethernets:
  eth0: {match: {macaddress: 'c0:d6:9f:2c:e8:80'}, set-name: eth0}
vlans:
  eth0.101: {id: 101, link: eth0, mtu: 1500}
""",
}
V2 = {**OWN_V2, **EQUIVALENT}
# v1 examples from cloud-init; each has a v2 document that says the same and must give the same profiles
CASES = ["bonded-vlan", "bridge", "multiple-vlan", "route", "subnet-dhcp", "subnet-multiple", "subnet-routes",
         "subnet-static", "vlan"]
GOLDEN = sorted(p.name for p in EXPECTED.iterdir())
NM_ROOT = {"usr/sbin/NetworkManager": "", "usr/lib/systemd/system/NetworkManager.service": "[Unit]\n"}


def golden(name: str) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((EXPECTED / name).iterdir())}


def features() -> dict[str, str]:
    return nm_keyfiles(parse_config(yaml.safe_load(FEATURES))).files


def keyfile(text: str) -> configparser.ConfigParser:
    c = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",), comment_prefixes=("#",))
    c.optionxform = str  # type: ignore[assignment,method-assign]
    c.read_string(text)
    return c


def test_golden_set_covers_the_required_features() -> None:
    assert GOLDEN == sorted([*CASES, "v2-features"])
    text = "".join(t for n in GOLDEN for t in golden(n).values())
    for needle in ("type=bond", "type=vlan", "type=bridge", "method=auto", "method=manual", "route1=",
                   "gateway=", "dns=", "dns-search=", "mtu=", "slave-type=bond", "slave-type=bridge",
                   "mac-address=", "[bridge-port]", "[match]", "ignore-auto-dns=true", "dhcp-client-id=mac",
                   "cloned-mac-address=", "wake-on-lan=64", "route1_options="):
        assert needle in text, needle


@pytest.mark.parametrize("name", CASES)
def test_v1_example_profiles_file_by_file(name: str) -> None:
    want = golden(name)
    files = nm_keyfiles(parse_config(example(name))).files
    assert sorted(files) == sorted(want)
    for fname, text in want.items():
        assert files[fname] == text, fname


@pytest.mark.parametrize("name", CASES)
def test_v2_equivalent_gives_the_same_profiles(name: str) -> None:
    assert nm_keyfiles(parse_config(yaml.safe_load(V2[name]))).files == golden(name)


def test_v2_feature_set_profiles_and_warnings() -> None:
    kf = nm_keyfiles(parse_config(yaml.safe_load(FEATURES)))
    assert kf.files == golden("v2-features")
    assert kf.warnings == [
        "lan: optional has no NetworkManager profile setting (NetworkManager-wait-online waits for a profile "
        "whose device is present); not written",
        "lan: dhcp4: use-ntp false has no NetworkManager setting (NetworkManager hands DHCP NTP servers to "
        "dispatcher scripts such as chrony's); not written",
        "bond0: bond primary: 'p1' has no fixed device name (matched without set-name), and NetworkManager "
        "needs one; not written",
        "bond0: bond: NetworkManager needs arp-interval and arp-ip-targets together; neither is written"]


def test_what_the_profiles_say() -> None:
    f = {n: keyfile(t) for n, t in golden("bonded-vlan").items()}
    bond_uuid = f["tether-bond0.nmconnection"]["connection"]["uuid"]
    for port, mac in (("gbe0", "CD:11:22:33:44:00"), ("gbe1", "CD:11:22:33:44:02")):
        c = f[f"tether-{port}.nmconnection"]
        assert (c["connection"]["master"], c["connection"]["slave-type"]) == (bond_uuid, "bond")
        assert c["ethernet"]["mac-address"] == mac
        assert not c.has_section("ipv4")   # a port has no IP configuration
    assert dict(f["tether-bond0.nmconnection"]["bond"]) == {"mode": "802.3ad", "lacp_rate": "fast"}
    vlan = f["tether-bond0.200.nmconnection"]
    assert (vlan["vlan"]["id"], vlan["vlan"]["parent"]) == ("200", bond_uuid)
    assert vlan["ipv4"]["method"] == "auto"
    static = keyfile(golden("subnet-static")["tether-interface0.nmconnection"])
    assert dict(static["ipv4"]) == {"method": "manual", "address1": "192.168.23.14/27", "gateway": "192.168.23.1",
                                    "dns": "192.168.23.2;8.8.8.8;", "dns-search": "exemplary.maas;",
                                    "may-fail": "false"}
    route = keyfile(golden("route")["tether-interface0.nmconnection"])
    assert route["ipv4"]["route1"] == "192.168.24.0/24,192.168.24.1,3"
    assert route["ipv4"]["route1_options"] == "onlink=true"
    br = {n: keyfile(t) for n, t in golden("bridge").items()}
    port = br["tether-jumbo0.nmconnection"]
    assert dict(port["bridge-port"]) == {"path-cost": "75", "priority": "28"}
    assert port["ethernet"]["mtu"] == "9000"
    # forward-delay 1 s is below NetworkManager's minimum: left out (with a warning), the rest kept
    assert dict(br["tether-br0.nmconnection"]["bridge"]) == {"stp": "false", "priority": "22", "hello-time": "1",
                                                             "max-age": "10", "ageing-time": "250"}


@pytest.mark.parametrize("name", GOLDEN)
def test_profiles_are_well_formed_and_refer_to_each_other(name: str) -> None:
    parsed = {n: keyfile(t) for n, t in golden(name).items()}
    uuids = {c["connection"]["uuid"] for c in parsed.values()}
    assert len(uuids) == len(parsed)
    for n, c in parsed.items():
        assert n.startswith("tether-") and n.endswith(".nmconnection")
        assert c["connection"]["type"] in ("ethernet", "bond", "bridge", "vlan")
        assert c["connection"]["id"] == "tether " + n[len("tether-"):-len(".nmconnection")]
        for ref in (c.get("connection", "master", fallback=None), c.get("vlan", "parent", fallback=None)):
            assert ref is None or ref in uuids, f"{n}: {ref} is not one of the profiles"


def test_uuid_is_stable_and_well_formed() -> None:
    u = profile_uuid("eth0")
    assert u == profile_uuid("eth0") != profile_uuid("eth1")
    parts = u.split("-")
    assert [len(p) for p in parts] == [8, 4, 4, 4, 12] and parts[2][0] == "8" and parts[3][0] in "89ab"


def test_values_cannot_break_out_of_their_line() -> None:
    doc = {"version": 2, "ethernets": {"eth0": {"dhcp4": True, "nameservers": {
        "search": ["a.example", "evil\n[ipv4]\nmethod=disabled", "semi;colon"]}}}}
    text = nm_keyfiles(parse_config(doc)).files["tether-eth0.nmconnection"]
    c = keyfile(text)
    assert c.sections() == ["connection", "ethernet", "ipv4", "ipv6"]
    assert c["ipv4"]["method"] == "auto"
    assert c["ipv4"]["dns-search"] == "a.example;evil\\n[ipv4]\\nmethod=disabled;semi\\;colon;"


def test_warnings_for_what_networkmanager_cannot_take() -> None:
    doc = {"version": 2, "ethernets": {"a": {"match": {"macaddress": "52:54:00:00:00:01"}},
                                       "b": {"match": {"macaddress": "52:54:00:00:00:02"}, "set-name": "b0"},
                                       "v6only": {"dhcp6": True, "nameservers": {"addresses": ["10.0.0.53"]},
                                                  "dhcp6-overrides": {"use-domains": False}}},
           "bonds": {"bond0": {"interfaces": ["a", "b"], "parameters": {
               "mode": "balance-xor", "primary": "b", "lacp-rate": "fast", "arp-interval": 100}}}}
    kf = nm_keyfiles(parse_config(doc))
    assert kf.warnings == [
        "v6only: no IPv4 addressing on this interface, so its IPv4 name servers (10.0.0.53) are not written",
        "v6only: dhcp6: use-domains false needs use-dns false under NetworkManager (it takes DHCP name servers "
        "and search domains together); not written",
        "bond0: bond primary: NetworkManager accepts it only with mode active-backup, balance-tlb or balance-alb, "
        "not balance-xor; not written",
        "bond0: bond lacp-rate: NetworkManager accepts fast only with mode 802.3ad; not written",
        "bond0: bond: NetworkManager needs arp-interval and arp-ip-targets together; neither is written"]
    assert dict(keyfile(kf.files["tether-bond0.nmconnection"])["bond"]) == {"mode": "balance-xor"}
    only_dns = nm_keyfiles(parse_config({"version": 2, "ethernets": {"e": {"nameservers": {
        "addresses": ["10.0.0.53", "fd00::53"], "search": ["x.example"]}}}}))
    assert only_dns.warnings == [
        "e: no IPv4 addressing on this interface, so its IPv4 name servers (10.0.0.53) are not written",
        "e: no IPv6 addressing on this interface, so its IPv6 name servers (fd00::53) are not written",
        "e: no IP configuration to carry the search domains; not written"]
    if _nm_offline_works():
        assert lost_in_networkmanager(only_dns.files["tether-e.nmconnection"]) == []
    # a renamed NIC matched by MAC is found by its MAC; the .link file renames it
    b = keyfile(kf.files["tether-b.nmconnection"])
    assert b["ethernet"]["mac-address"] == "52:54:00:00:00:02" and not b.has_option("connection", "interface-name")


def test_match_by_glob_and_driver() -> None:
    doc = {"version": 2, "ethernets": {"lan": {"match": {"name": "en*", "driver": "virtio_net"}, "dhcp4": True},
                                       "wan": {"match": {"name": "eth1"}, "dhcp4": True,
                                               "dhcp4-overrides": {"use-hostname": False, "use-routes": False}}}}
    files = nm_keyfiles(parse_config(doc)).files
    lan = keyfile(files["tether-lan.nmconnection"])
    assert dict(lan["match"]) == {"interface-name": "en*;", "driver": "virtio_net;"}
    assert lan["connection"]["multi-connect"] == "3"
    wan = keyfile(files["tether-wan.nmconnection"])
    assert wan["connection"]["interface-name"] == "eth1" and not wan.has_section("match")
    assert wan["ipv4"]["ignore-auto-routes"] == "true" and dict(wan["hostname"]) == {"from-dhcp": "0"}
    if _nm_offline_works():
        assert lost_in_networkmanager(files["tether-wan.nmconnection"]) == []
        assert lost_in_networkmanager(files["tether-lan.nmconnection"]) == []


def test_sync_writes_0600_keeps_identical_files_and_removes_stale(target: Target) -> None:
    model = parse_config(example("bonded-vlan"))
    rep, _ = sync_nm(model, target)
    d = target.path(CONNECTIONS_DIR)
    assert sorted(os.listdir(d)) == sorted(golden("bonded-vlan"))
    for f in d.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        assert f.read_text() == golden("bonded-vlan")[f.name]
    # renames are udev's: the .link files go with the profiles
    assert sorted(os.listdir(target.path("/etc/systemd/network"))) == ["10-tether-gbe0.link", "10-tether-gbe1.link"]
    mtimes = {f.name: f.stat().st_mtime_ns for f in d.iterdir()}
    rep, _ = sync_nm(model, target)
    assert rep.written == [] and {f.name: f.stat().st_mtime_ns for f in d.iterdir()} == mtimes
    (d / "other.nmconnection").write_text("[connection]\nid=other\n")
    rep, _ = sync_nm(parse_config(example("subnet-dhcp")), target)
    assert sorted(os.listdir(d)) == ["other.nmconnection", "tether-interface0.nmconnection"]
    assert f"{CONNECTIONS_DIR}/tether-bond0.nmconnection" in rep.removed


def root_with(tmp_path: Path, files: dict[str, str], links: dict[str, str] | None = None) -> Target:
    root = tmp_path / "r"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for rel, dest in (links or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(dest, root / rel)
    root.mkdir(exist_ok=True)
    return Target.at(root)


NETWORKD = {"lib/systemd/systemd-networkd": ""}
NETWORKD_ON = {"etc/systemd/system/multi-user.target.wants/systemd-networkd.service":
               "/lib/systemd/system/systemd-networkd.service"}
NM_ON = {"etc/systemd/system/multi-user.target.wants/NetworkManager.service":
         "/usr/lib/systemd/system/NetworkManager.service"}


def test_choice_debian_networkd_image_stays_networkd(tmp_path: Path) -> None:
    assert choose_renderer(root_with(tmp_path, NETWORKD, NETWORKD_ON), {}) == "networkd"


def test_choice_networkmanager_installed_but_not_enabled_beside_networkd(tmp_path: Path) -> None:
    assert choose_renderer(root_with(tmp_path, {**NETWORKD, **NM_ROOT}, NETWORKD_ON), {}) == "networkd"


def test_choice_networkmanager_enabled_wins_over_networkd(tmp_path: Path) -> None:
    assert choose_renderer(root_with(tmp_path, {**NETWORKD, **NM_ROOT}, NM_ON), {}) == "network-manager"


def test_choice_networkmanager_only_root(tmp_path: Path) -> None:
    assert choose_renderer(root_with(tmp_path, NM_ROOT), {}) == "network-manager"


def test_choice_masked_networkmanager_is_not_used(tmp_path: Path) -> None:
    t = root_with(tmp_path, NM_ROOT, {"etc/systemd/system/NetworkManager.service": "/dev/null"})
    assert choose_renderer(t, {}) == "networkd"


def test_choice_netplan_first_in_the_default_order(tmp_path: Path) -> None:
    assert choose_renderer(root_with(tmp_path, {**NM_ROOT, "usr/sbin/netplan": ""}), {}) == "netplan"


def test_choice_renderers_list_is_honoured(tmp_path: Path) -> None:
    nm_root = root_with(tmp_path, {**NM_ROOT, "usr/sbin/netplan": ""})
    assert choose_renderer(nm_root, {"system_info": {"network": {"renderers": ["networkd"]}}}) == "networkd"
    # cloud-init's stock RHEL list: names tether does not render are skipped
    rhel = {"system_info": {"network": {"renderers": ["sysconfig", "eni", "network-manager", "netplan"]}}}
    assert choose_renderer(nm_root, rhel) == "network-manager"
    # tether's older spelling still counts; cloud-init's wins when both are there
    assert choose_renderer(nm_root, {"network": {"renderers": ["networkd"]}}) == "networkd"
    both = {"network": {"renderers": ["networkd"]}, "system_info": {"network": {"renderers": ["network-manager"]}}}
    assert choose_renderer(nm_root, both) == "network-manager"


def test_choice_listed_renderer_missing_from_the_root(tmp_path: Path) -> None:
    empty = root_with(tmp_path, {})
    assert choose_renderer(empty, {"system_info": {"network": {"renderers": ["network-manager"]}}}) == "networkd"


@pytest.fixture
def nm_host(tmp_path: Path) -> Host:
    return fake_sys(tmp_path / "sys", {"lo": ("00:00:00:00:00:00", False), "ens3": ("52:54:00:00:00:01", True)})


V1_LAN = {"version": 1, "config": [
    {"type": "physical", "name": "lan0", "mac_address": "52:54:00:00:00:01",
     "subnets": [{"type": "static", "address": "10.0.0.5/24", "gateway": "10.0.0.1"}]},
    {"type": "vlan", "name": "lan0.7", "vlan_link": "lan0", "vlan_id": 7, "subnets": [{"type": "dhcp"}]}]}


def test_apply_on_a_networkmanager_root(tmp_path: Path, nm_host: Host, fake_runner: FakeRunner) -> None:
    t = root_with(tmp_path, NM_ROOT)
    t.write("/etc/systemd/network/10-tether-lan0.network", "[Match]\nName=lan0\n")   # from an earlier networkd run
    # live in the local stage: the NIC is renamed, NetworkManager (not started yet) is not asked anything
    fake_runner.expect("ip link set dev *")
    res = apply_network(t, nm_host, {}, V1_LAN, fake_runner, live=True)
    assert res.renderer == "network-manager"
    assert sorted(res.written) == [f"{CONNECTIONS_DIR}/tether-lan0.7.nmconnection",
                                   f"{CONNECTIONS_DIR}/tether-lan0.nmconnection",
                                   "/etc/systemd/network/10-tether-lan0.link"]
    assert res.removed == ["/etc/systemd/network/10-tether-lan0.network"]
    assert not any(c.startswith("nmcli") for c in fake_runner.commands())
    lan = keyfile(t.read_text(f"{CONNECTIONS_DIR}/tether-lan0.nmconnection"))
    assert lan["ipv4"]["address1"] == "10.0.0.5/24" and lan["ipv4"]["gateway"] == "10.0.0.1"
    marker = json.loads(t.read_text(netapply.APPLIED_MARKER))
    assert marker["renderer"] == "network-manager" and len(marker["files"]) == 3
    # the network stage, after replacing the fallback: reload, then each profile up by its file, the VLAN's
    # parent before the VLAN
    runner = FakeRunner().expect("nmcli *")
    netapply.activate(t, runner)
    assert runner.commands() == [
        "nmcli connection reload",
        f"nmcli connection up filename {CONNECTIONS_DIR}/tether-lan0.nmconnection",
        f"nmcli connection up filename {CONNECTIONS_DIR}/tether-lan0.7.nmconnection"]
    # another renderer chosen later takes over and our profiles go
    res = apply_network(t, nm_host, {"system_info": {"network": {"renderers": ["networkd"]}}}, V1_LAN,
                        FakeRunner(), live=False)
    assert res.renderer == "networkd"
    assert os.listdir(t.path(CONNECTIONS_DIR)) == []
    assert f"{CONNECTIONS_DIR}/tether-lan0.nmconnection" in res.removed
    runner = FakeRunner().expect("networkctl reload")
    netapply.activate(t, runner)
    assert runner.commands() == ["networkctl reload"]


def test_activate_when_networkmanager_is_not_running(tmp_path: Path, nm_host: Host, fake_runner: FakeRunner,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    t = root_with(tmp_path, NM_ROOT)
    apply_network(t, nm_host, {}, V1_LAN, fake_runner, live=False)
    runner = FakeRunner().expect("nmcli connection reload", code=8, stderr="Error: NetworkManager is not running.")
    netapply.activate(t, runner)   # no profile is brought up, nothing raises
    assert runner.commands() == ["nmcli connection reload"]
    assert "nmcli connection reload exited 8: Error: NetworkManager is not running." in caplog.text


def test_apply_reports_renderer_warnings(tmp_path: Path, nm_host: Host, fake_runner: FakeRunner) -> None:
    t = root_with(tmp_path, NM_ROOT)
    res = apply_network(t, nm_host, {}, example("bridge"), fake_runner, live=False)
    assert res.renderer == "network-manager"
    assert any("forward-delay 1s" in w for w in res.warnings)


# NetworkManager's own reader: ``nmcli --offline connection modify`` (NetworkManager 1.42+) reads a keyfile on
# stdin with libnm's keyfile parser, verifies the profile and prints it back; it needs no daemon and touches no
# interface. A value NetworkManager drops or refuses shows up as a missing key or a non-zero exit.
NM_DEFAULTS = {("ipv4", "may-fail", "true"), ("ipv6", "may-fail", "true"), ("ipv4", "dhcp-send-hostname", "true"),
               ("bridge", "stp", "true")}


def nm_offline(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nmcli", "--offline", "connection", "modify", "connection.id", "check"], input=text,
                          capture_output=True, text=True, timeout=30)


def _nm_offline_works() -> bool:
    if shutil.which("nmcli") is None:
        return False
    return nm_offline("[connection]\nid=x\ntype=ethernet\n").returncode == 0


needs_nmcli = pytest.mark.skipif(not _nm_offline_works(), reason="nmcli with --offline (NetworkManager 1.42+) "
                                 "is not installed")


def lost_in_networkmanager(text: str) -> list[str]:
    """The keys NetworkManager did not keep as written (ignoring values it omits as its defaults, and the
    gateway it folds into address1)."""
    r = nm_offline(text)
    assert r.returncode == 0, r.stderr
    ours, theirs = keyfile(text), keyfile(r.stdout)
    for fam in ("ipv4", "ipv6"):
        if theirs.has_option(fam, "address1") and "," in theirs[fam]["address1"]:
            theirs[fam]["address1"], theirs[fam]["gateway"] = theirs[fam]["address1"].split(",", 1)
    lost = []
    for section in ours.sections():
        for key, value in ours[section].items():
            if key == "id" or (section, key, value) in NM_DEFAULTS:
                continue
            got = theirs.get(section, key, fallback=None)
            if got != value:
                lost.append(f"{section}.{key}={value} -> {got}")
    return lost


@needs_nmcli
@pytest.mark.parametrize("name", GOLDEN)
def test_networkmanager_reads_every_profile_as_written(name: str) -> None:
    for fname, text in golden(name).items():
        assert lost_in_networkmanager(text) == [], fname


@needs_nmcli
def test_networkmanager_check_catches_refused_and_dropped_values() -> None:
    bond = golden("bonded-vlan")["tether-bond0.nmconnection"].replace("mode=802.3ad", "mode=active-backup")
    r = nm_offline(bond)
    assert r.returncode != 0 and "lacp_rate" in r.stderr
    typo = golden("subnet-static")["tether-interface0.nmconnection"].replace("dns-search=", "dns-serch=")
    assert lost_in_networkmanager(typo) == ["ipv4.dns-serch=exemplary.maas; -> None"]


# every branch of the renderer that golden files do not reach, for NetworkManager's reader to check
BRANCHES = """
version: 2
ethernets:
  ll:
    addresses: [10.1.0.2/24, 'fd00::2/64']
    link-local: [ipv4, ipv6]
    routes:
      - {to: default, via: 10.1.0.1, metric: 10}
      - {to: default, via: 'fd00::1'}
      - {to: 'fd01::/64', via: 'fd00::1', metric: 5, table: 7}
      - {to: 10.9.0.0/16, metric: 30}
    nameservers: {addresses: [10.1.0.53, 'fd00::53']}
  stateful:
    dhcp6: true
    accept-ra: false
    dhcp6-overrides: {use-dns: false, use-routes: false, route-metric: 70, send-hostname: false, hostname: h6}
  lonly: {link-local: [ipv4]}
  nolink: {link-local: []}
  m1: {match: {macaddress: '52:54:00:00:01:01'}, set-name: m1}
  m2: {match: {macaddress: '52:54:00:00:01:02'}, set-name: m2}
  d1: {match: {driver: e1000}, set-name: wan0, dhcp4: true}
bonds:
  bond1:
    interfaces: [m1, m2]
    parameters:
      mode: active-backup
      primary: m1
      arp-interval: 200
      arp-ip-targets: [10.1.0.1, 10.1.0.254]
      arp-validate: all
      arp-all-targets: all
      primary-reselect-policy: better
      resend-igmp: 2
      min-links: 1
    dhcp4: true
"""


@needs_nmcli
def test_networkmanager_reads_every_branch_as_written() -> None:
    kf = nm_keyfiles(parse_config(yaml.safe_load(BRANCHES)))
    assert kf.warnings == []
    for fname, text in kf.files.items():
        assert lost_in_networkmanager(text) == [], fname
    ll = keyfile(kf.files["tether-ll.nmconnection"])
    assert ll["ipv4"]["link-local"] == "3" and ll["ipv4"]["route1"] == "0.0.0.0/0,10.1.0.1,10"
    assert ll["ipv6"]["gateway"] == "fd00::1" and ll["ipv4"]["route2"] == "10.9.0.0/16,0.0.0.0,30"
    assert keyfile(kf.files["tether-stateful.nmconnection"])["ipv6"]["method"] == "dhcp"
    assert keyfile(kf.files["tether-lonly.nmconnection"])["ipv4"]["method"] == "link-local"
    off = keyfile(kf.files["tether-nolink.nmconnection"])
    assert (off["ipv4"]["method"], off["ipv6"]["method"]) == ("disabled", "disabled")
    assert keyfile(kf.files["tether-bond1.nmconnection"])["bond"]["primary"] == "m1"
    assert keyfile(kf.files["tether-d1.nmconnection"])["connection"]["interface-name"] == "wan0"


LOADS = """
import sys
from pathlib import Path
from tests.fakes import FakeRunner
from tests.network.test_apply import fake_sys
from tether.network.apply import apply_network
from tether.target import Target
root, sysroot = Path(sys.argv[1]), Path(sys.argv[2])
host = fake_sys(sysroot, {"ens3": ("52:54:00:00:00:01", True)})
res = apply_network(Target.at(root), host, {}, None, FakeRunner(), live=False)
print(res.renderer, "tether.network.nm" in sys.modules)
"""


@pytest.mark.parametrize(("files", "want"), [(NETWORKD, "networkd False"), (NM_ROOT, "network-manager True")])
def test_renderer_module_loads_only_when_chosen(tmp_path: Path, files: dict[str, str], want: str) -> None:
    root = root_with(tmp_path, {**files, "etc/NetworkManager/system-connections/other.nmconnection": ""})
    r = subprocess.run([sys.executable, "-c", LOADS, str(root.path("/")), str(tmp_path / "sys")], text=True,
                       capture_output=True, cwd=Path(__file__).parents[2], timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == want.split()


def test_engine_host_configuration_netplan_on_a_networkmanager_slot(tmp_path: Path) -> None:
    from tether.engine import osconfig
    from tether.engine.hostconfig import parse_host_config
    slot = root_with(tmp_path, NM_ROOT)
    netplan = {"version": 2, "ethernets": {"uplink": {"match": {"macaddress": "52:54:00:12:34:56"},
                                                      "set-name": "uplink", "dhcp4": True}}}
    osconfig.apply_os(slot, parse_host_config({"os": {"netplan": netplan}}))
    path = slot.path(f"{CONNECTIONS_DIR}/tether-uplink.nmconnection")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    profile = keyfile(path.read_text())
    assert profile["ethernet"]["mac-address"] == "52:54:00:12:34:56" and profile["ipv4"]["method"] == "auto"
    assert not slot.exists("/etc/systemd/network/10-tether-uplink.network")
    assert slot.exists("/etc/systemd/network/10-tether-uplink.link")


def test_activation_order_devices_then_bonds_and_bridges_then_vlans(target: Target) -> None:
    model = parse_config(yaml.safe_load(FEATURES))
    rep, _ = sync_nm(model, target)
    cmds = nm.activation_commands(target, sorted(rep.current))
    ups = [c[-1].rsplit("/", 1)[1] for c in cmds[1:]]
    assert cmds[0] == ["nmcli", "connection", "reload"] and all(c[:4] == ["nmcli", "connection", "up", "filename"]
                                                                  for c in cmds[1:])
    assert ups == ["tether-eno1.nmconnection", "tether-lan.nmconnection", "tether-p1.nmconnection",
                   "tether-p2.nmconnection", "tether-p3.nmconnection", "tether-bond0.nmconnection",
                   "tether-br0.nmconnection", "tether-vlan10.nmconnection"]
