"""Loopback HTTP servers that behave like the clouds' metadata services, including their bad days.

``MetadataServer`` serves a route table: a path (query string included when given) maps to a ``Reply`` or to a
callable ``(req) -> Reply``. Unknown paths are 404. Every request is recorded (method, path, headers, body) so a
test can assert what a datasource sent. ``hang`` replies stall until the server stops (bounded, so a broken test
never wedges the run); ``delay`` replies answer late.

``ec2_routes()``, ``openstack_routes()``, ``gce_routes()``, ``azure_routes()`` and ``wireserver_routes()`` build
the route tables of a typical instance; tests tweak them.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG_LIMIT = 30.0


@dataclass
class Reply:
    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0          # seconds before answering
    hang: bool = False          # never answer (until the server stops)


@dataclass
class Req:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Route = Reply | Callable[[Req], Reply]


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 drops SYNs when a datasource crawls in parallel (a 1 s retransmit each).
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass              # a client that hangs up early (a size cap, a deadline) is not news here


class MetadataServer:
    def __init__(self, routes: dict[str, Route] | None = None,
                 default_headers: dict[str, str] | None = None) -> None:
        self.routes: dict[str, Route] = dict(routes or {})
        self.default_headers = dict(default_headers or {})
        self.requests: list[Req] = []
        self.stopping = threading.Event()
        # A hook that sees every request before routing; it may return a Reply (e.g. a 401 for a bad token).
        self.guard: Callable[[Req], Reply | None] | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"      # keep-alive, as the real services
            disable_nagle_algorithm = True     # headers and body go out in two writes

            def _serve(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                req = Req(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                server.requests.append(req)
                reply = server.guard(req) if server.guard else None
                if reply is None:
                    route = server.routes.get(self.path) or server.routes.get(self.path.split("?", 1)[0])
                    if route is None:
                        reply = Reply(404, b"Not Found")
                    else:
                        reply = route(req) if callable(route) else route
                if reply.hang:
                    server.stopping.wait(HANG_LIMIT)
                    self.close_connection = True
                    return
                if reply.delay:
                    server.stopping.wait(reply.delay)
                data = reply.body.encode() if isinstance(reply.body, str) else reply.body
                self.send_response(reply.status)
                for k, v in {**server.default_headers, **reply.headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:
                    pass

            do_GET = do_PUT = do_POST = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> MetadataServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def paths(self, method: str | None = None) -> list[str]:
        return [r.path for r in self.requests if method is None or r.method == method]


def refused_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


# -- EC2 -----------------------------------------------------------------------------------------

EC2_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEc2ZXhhbXBsZWtleWZvcnRlc3RzMDAwMDAwMDAw ec2-test"
EC2_PRIMARY_MAC = "0a:1b:2c:3d:4e:5f"
EC2_SECOND_MAC = "0a:1b:2c:3d:4e:60"


def ec2_tree(tags: dict[str, str] | None = None) -> dict[str, Any]:
    """A typical instance's meta-data tree (dict = directory, str = leaf)."""
    def nic(dev: int, ips: list[str], cidr: str, ipv6: list[str]) -> dict[str, Any]:
        d: dict[str, Any] = {
            "device-number": str(dev), "network-card": "0", "interface-id": f"eni-0000{dev}",
            "local-hostname": f"ip-{ips[0].replace('.', '-')}.us-west-2.compute.internal",
            "local-ipv4s": "\n".join(ips), "mac": "", "owner-id": "123456789012",
            "security-group-ids": "sg-0123", "security-groups": "default", "subnet-id": f"subnet-{dev}",
            "subnet-ipv4-cidr-block": cidr, "vpc-id": "vpc-1", "vpc-ipv4-cidr-block": "172.31.0.0/16",
            "vpc-ipv4-cidr-blocks": "172.31.0.0/16",
        }
        if ipv6:
            d["ipv6s"] = "\n".join(ipv6)
            d["subnet-ipv6-cidr-blocks"] = "2600:1f14:aaa:bb00::/64"
        return d
    tree: dict[str, Any] = {
        "ami-id": "ami-0123456789abcdef0", "ami-launch-index": "0", "ami-manifest-path": "(unknown)",
        "block-device-mapping": {"ami": "/dev/xvda", "root": "/dev/xvda"},
        "events": {"maintenance": {"history": "[]", "scheduled": "[]"}},
        "hostname": "ip-172-31-1-10.us-west-2.compute.internal",
        "iam": {"info": '{"Code":"Success","InstanceProfileArn":"arn:aws:iam::123456789012:instance-profile/r"}',
                "security-credentials": {"role": '{"SecretAccessKey":"TOPSECRET"}'}},
        "identity-credentials": {"ec2": {"security-credentials": {"ec2-instance": '{"Token":"TOPSECRET"}'}}},
        "instance-action": "none", "instance-id": "i-0123456789abcdef0", "instance-life-cycle": "on-demand",
        "instance-type": "t3.micro", "local-hostname": "ip-172-31-1-10.us-west-2.compute.internal",
        "local-ipv4": "172.31.1.10", "mac": EC2_PRIMARY_MAC,
        "metrics": {"vhostmd": '<?xml version="1.0" encoding="UTF-8"?>'},
        "network": {"interfaces": {"macs": {
            EC2_PRIMARY_MAC: nic(0, ["172.31.1.10", "172.31.1.11"], "172.31.0.0/20",
                                 ["2600:1f14:aaa:bb00::10"]),
            EC2_SECOND_MAC: nic(1, ["172.31.2.20"], "172.31.16.0/20", []),
        }}},
        "placement": {"availability-zone": "us-west-2b", "availability-zone-id": "usw2-az2",
                      "region": "us-west-2"},
        "profile": "default-hvm", "public-hostname": "ec2-34-1-2-3.us-west-2.compute.amazonaws.com",
        "public-ipv4": "34.1.2.3", "public-keys": {"0=my-key": {"openssh-key": EC2_KEY + "\n"}},
        "reservation-id": "r-0123", "security-groups": "default",
        "services": {"domain": "amazonaws.com", "partition": "aws"},
        "system": "nitro",
    }
    if tags is not None:
        tree["tags"] = {"instance": dict(tags)}
    return tree


def _flatten(prefix: str, tree: dict[str, Any], out: dict[str, Route]) -> None:
    listing = []
    for k, v in tree.items():
        if isinstance(v, dict):
            if "=" in k:          # public-keys: "0=name" lists as such, lives under "0/"
                idx = k.split("=", 1)[0]
                listing.append(k)
                _flatten(f"{prefix}{idx}/", v, out)
            else:
                listing.append(k + "/")
                _flatten(f"{prefix}{k}/", v, out)
        else:
            listing.append(k)
            out[prefix + k] = Reply(200, v)
    out[prefix] = Reply(200, "\n".join(listing))


IDENTITY_DOC = {"accountId": "123456789012", "architecture": "x86_64", "availabilityZone": "us-west-2b",
                "imageId": "ami-0123456789abcdef0", "instanceId": "i-0123456789abcdef0",
                "instanceType": "t3.micro", "privateIp": "172.31.1.10", "region": "us-west-2",
                "version": "2017-09-30"}


def ec2_routes(tree: dict[str, Any] | None = None, user_data: bytes | None = b"#cloud-config\n{}\n",
               versions: tuple[str, ...] = ("2021-03-23", "latest")) -> dict[str, Route]:
    routes: dict[str, Route] = {}
    for ver in versions:
        _flatten(f"/{ver}/meta-data/", tree if tree is not None else ec2_tree(), routes)
        if user_data is not None:
            routes[f"/{ver}/user-data"] = Reply(200, user_data)
        routes[f"/{ver}/dynamic/instance-identity/document"] = Reply(200, json.dumps(IDENTITY_DOC))
    return routes


class Ec2Server(MetadataServer):
    """IMDS with IMDSv2: PUT /latest/api/token hands out tokens; GETs without a valid token get 401.

    ``expire_after``: a token stops working after that many GETs (expiry mid-crawl).
    ``v1_only``: no token endpoint (404 on PUT), GETs need no token.
    """

    def __init__(self, routes: dict[str, Route] | None = None, *, require_token: bool = True,
                 expire_after: int | None = None, v1_only: bool = False) -> None:
        super().__init__(routes if routes is not None else ec2_routes())
        self.require_token = require_token and not v1_only
        self.expire_after = expire_after
        self.tokens: dict[str, int] = {}     # token -> GETs served with it
        self.token_ttls: list[str] = []
        self._lock = threading.Lock()
        self.guard = self._guard
        if not v1_only:
            self.routes["/latest/api/token"] = self._token

    def _token(self, req: Req) -> Reply:
        if req.method != "PUT":
            return Reply(405, "Method Not Allowed")
        ttl = req.headers.get("x-aws-ec2-metadata-token-ttl-seconds")
        if not ttl:
            return Reply(400, "Bad Request")
        self.token_ttls.append(ttl)
        with self._lock:
            tok = f"TOKEN-{len(self.tokens)}-" + "x" * 40
            self.tokens[tok] = 0
        return Reply(200, tok)

    def _guard(self, req: Req) -> Reply | None:
        if req.path == "/latest/api/token" or not self.require_token:
            return None
        tok = req.headers.get("x-aws-ec2-metadata-token")
        with self._lock:
            if tok not in self.tokens:
                return Reply(401, "Unauthorized")
            self.tokens[tok] += 1
            if self.expire_after is not None and self.tokens[tok] > self.expire_after:
                return Reply(401, "Unauthorized")
        return None


# -- OpenStack ----------------------------------------------------------------------------------

OS_META = {
    "uuid": "83679162-1378-4288-a2d4-70e13ec132aa", "hostname": "os-test.novalocal", "name": "os-test",
    "availability_zone": "nova", "launch_index": 0, "project_id": "f7ac731cc11f40efbc03a9f9e1d1d21f",
    "public_keys": {"mykey": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDopenstacktestkey os@test\n"},
    "keys": [{"name": "mykey", "type": "ssh",
              "data": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDopenstacktestkey os@test\n"}],
    "meta": {"role": "web", "host-configuration": "os:\n  hostname: from-meta\n"},
    "random_seed": base64.b64encode(b"\x00" * 16).decode(), "devices": [],
}
OS_NETWORK = {
    "links": [
        {"id": "tap1", "type": "phy", "ethernet_mac_address": "fa:16:3e:00:00:01", "mtu": 1450,
         "vif_id": "1"},
        {"id": "tap2", "type": "phy", "ethernet_mac_address": "fa:16:3e:00:00:02", "mtu": 1450},
        {"id": "bond0", "type": "bond", "bond_links": ["tap1", "tap2"], "bond_mode": "802.3ad",
         "bond_miimon": 100, "bond_xmit_hash_policy": "layer3+4", "ethernet_mac_address": "fa:16:3e:00:00:01"},
        {"id": "vlan42", "type": "vlan", "vlan_link": "bond0", "vlan_id": 42,
         "vlan_mac_address": "fa:16:3e:00:00:01"},
    ],
    "networks": [
        {"id": "net0", "type": "ipv4", "link": "bond0", "ip_address": "10.0.0.5", "netmask": "255.255.255.0",
         "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"},
                    {"network": "192.168.0.0", "netmask": "255.255.0.0", "gateway": "10.0.0.254"}],
         "network_id": "n0", "dns_nameservers": ["10.0.0.2"]},
        {"id": "net1", "type": "ipv4_dhcp", "link": "vlan42", "network_id": "n1"},
        {"id": "net2", "type": "ipv6_slaac", "link": "bond0", "network_id": "n2"},
    ],
    "services": [{"type": "dns", "address": "8.8.8.8"}],
}


def openstack_routes(meta: dict[str, Any] | None = None, user_data: bytes | None = b"#cloud-config\n{}\n",
                     vendor: Any = None, network: Any = None) -> dict[str, Route]:
    r: dict[str, Route] = {
        "/openstack/latest/meta_data.json": Reply(200, json.dumps(meta if meta is not None else OS_META)),
        "/openstack/latest/network_data.json": Reply(200, json.dumps(network if network is not None
                                                                     else OS_NETWORK)),
        "/openstack/latest/vendor_data.json": Reply(200, json.dumps(
            vendor if vendor is not None else {"cloud-init": "#cloud-config\nruncmd: [vendor]\n"})),
        "/openstack/": Reply(200, "2012-08-10\n2013-04-04\nlatest"),
    }
    if user_data is not None:
        r["/openstack/latest/user_data"] = Reply(200, user_data)
    return r


# -- GCE ----------------------------------------------------------------------------------------

GCE_KEY_INST = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGceinstancekey000000000000000000000000 debian@x"
GCE_KEY_PROJ = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDgceprojectkey cloudinit@x"


def gce_doc(attributes: dict[str, str] | None = None, project_attributes: dict[str, str] | None = None
            ) -> dict[str, Any]:
    attrs = {"ssh-keys": f"debian:{GCE_KEY_INST}\nalice:ssh-rsa AAAAB3alice alice@x\n"
                         "debian:ssh-rsa AAAAB3expired google-ssh "
                         '{"userName":"d@example.com","expireOn":"2001-01-01T00:00:00+0000"}',
             "user-data": "#cloud-config\n{}\n", "host-configuration": "os:\n  hostname: from-gce\n"}
    if attributes is not None:
        attrs = attributes
    return {
        "instance": {
            "attributes": attrs, "hostname": "gce-test.c.proj.internal", "id": 1234567890123456789,
            "image": "projects/debian-cloud/global/images/debian-12", "machineType": "projects/1/machineTypes/e2",
            "name": "gce-test", "zone": "projects/123/zones/us-central1-a",
            "networkInterfaces": [{"mac": "42:01:0a:80:00:02", "ip": "10.128.0.2", "network": "n"}],
        },
        "project": {"attributes": project_attributes if project_attributes is not None
                    else {"ssh-keys": f"cloudinit:{GCE_KEY_PROJ}"},
                    "numericProjectId": 123, "projectId": "proj"},
    }


def gce_routes(doc: Any = None) -> dict[str, Route]:
    body = json.dumps(doc if doc is not None else gce_doc())
    return {"/computeMetadata/v1/?recursive=true&alt=json":
            lambda req: Reply(200, body, {"Metadata-Flavor": "Google", "Content-Type": "application/json"})
            if req.headers.get("metadata-flavor") == "Google" else Reply(403, "Missing Metadata-Flavor")}


# -- Azure --------------------------------------------------------------------------------------

AZURE_API = "2021-08-01"


def azure_doc(user_data: bytes | None = b"#cloud-config\n{}\n", tags: list[dict[str, str]] | None = None
              ) -> dict[str, Any]:
    return {
        "compute": {
            "vmId": "5c6b5d3a-1234-4a5b-9c8d-0123456789ab", "name": "az-test", "location": "westeurope",
            "zone": "2", "osProfile": {"adminUsername": "azureuser", "computerName": "az-test"},
            "publicKeys": [{"keyData": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDazurekey az@x\n",
                            "path": "/home/azureuser/.ssh/authorized_keys"}],
            "tagsList": tags if tags is not None else [
                {"name": "env", "value": "test"},
                {"name": "host-configuration", "value": "os:\n  hostname: from-azure\n"}],
            "userData": base64.b64encode(user_data).decode() if user_data else "",
            "customData": "", "vmSize": "Standard_B1s", "subscriptionId": "sub",
        },
        "network": {"interface": [
            {"macAddress": "000D3A123456", "ipv4": {"ipAddress": [{"privateIpAddress": "10.0.0.4",
                                                                   "publicIpAddress": ""}],
                                                    "subnet": [{"address": "10.0.0.0", "prefix": "24"}]},
             "ipv6": {"ipAddress": []}},
            {"macAddress": "000D3A654321", "ipv4": {"ipAddress": [{"privateIpAddress": "10.0.1.4"},
                                                                  {"privateIpAddress": "10.0.1.5"}],
                                                    "subnet": [{"address": "10.0.1.0", "prefix": "24"}]},
             "ipv6": {"ipAddress": []}},
        ]},
    }


def azure_routes(doc: Any = None) -> dict[str, Route]:
    body = json.dumps(doc if doc is not None else azure_doc())
    return {f"/metadata/instance?api-version={AZURE_API}":
            lambda req: Reply(200, body, {"Content-Type": "application/json"})
            if req.headers.get("metadata") == "true" else Reply(400, "Bad request: Required metadata header")}


GOAL_STATE = """<?xml version="1.0" encoding="utf-8"?>
<GoalState xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <Version>2012-11-30</Version>
  <Incarnation>7</Incarnation>
  <Machine><ExpectedState>Started</ExpectedState></Machine>
  <Container>
    <ContainerId>c0ffee00-aaaa-bbbb-cccc-000000000001</ContainerId>
    <RoleInstanceList>
      <RoleInstance>
        <InstanceId>5c6b5d3a-1234-4a5b-9c8d-0123456789ab.az-test</InstanceId>
        <State>Started</State>
      </RoleInstance>
    </RoleInstanceList>
  </Container>
</GoalState>
"""


def wireserver_routes(goal_state: str = GOAL_STATE) -> dict[str, Route]:
    def need_version(reply: Reply) -> Callable[[Req], Reply]:
        return lambda req: reply if req.headers.get("x-ms-version") == "2012-11-30" else Reply(400, "no version")
    return {"/machine/?comp=goalstate": need_version(Reply(200, goal_state, {"Content-Type": "text/xml"})),
            "/machine?comp=health": need_version(Reply(200, ""))}


def wait_until(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()
