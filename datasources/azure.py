"""Microsoft Azure: the instance metadata service (IMDS) for instance data, then the "ready" health report to
the wire server so the platform does not mark the freshly provisioned VM as failed.

IMDS: ``GET /metadata/instance?api-version=2021-08-01`` with ``Metadata: true``. User data is
``compute.userData`` (base64); when empty, a non-empty ``compute.customData`` is used. (The provisioning ISO with
``ovf-env.xml`` is not read by this datasource.) Network config: every NIC on DHCP, matched by MAC and by the
``hv_netvsc`` driver (accelerated networking adds a VF with the same MAC), secondary IPv4 addresses static, the
primary NIC with the lowest route metric.

Ready report: ``GET /machine/?comp=goalstate`` then ``POST /machine?comp=health`` with the GoalState's
incarnation, container id and role instance id and ``<State>Ready</State>``, both with
``x-ms-version: 2012-11-30``. It has its own bound (``ready_timeout``, 5 s); a failure is a warning in the
instance data, not a failed boot.

Settings (``datasource: {Azure: {...}}``): ``imds_url`` (http://169.254.169.254), ``wireserver`` (host[:port];
default from DHCP option 245 in systemd-networkd's leases, else 168.63.129.16), ``max_wait`` (10 s),
``timeout`` (2 s), ``report_ready`` (true), ``ready_timeout`` (5 s), ``max_bytes`` (16 MiB), ``headers`` (IMDS).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
import xml.etree.ElementTree as ET
from typing import Any
from xml.sax.saxutils import escape

from tether import log
from tether.datasource import Datasource
from tether.datasources.mdfetch import Budget, obj, parse_host_config, setting_headers, setting_number, setting_urls
from tether.errors import DatasourceError
from tether.http import HttpError, pause, request, worth_reporting
from tether.instance import InstanceData

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tether.datasource import Evidence

EVIDENCE: Evidence = {
    "name": "Azure",
    "network": True,
    "aliases": ("azure", "azurenet"),
    "dmi": ("chassis_asset_tag=7783-7084-3265-9085-8269-3286-77",),
}

LOG = log.get(__name__)

DEFAULT_IMDS = "http://169.254.169.254"
API_VERSION = "2021-08-01"
DEFAULT_WIRESERVER = "168.63.129.16"
WIRE_HEADERS = {"x-ms-agent-name": "WALinuxAgent", "x-ms-version": "2012-11-30"}
HOST_CONFIG_TAGS = ("host-configuration", "host_configuration")
MAX_GOALSTATE = 1 << 20

HEALTH_TEMPLATE = """<?xml version="1.0" encoding="utf-8"?>
<Health xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">
 <GoalStateIncarnation>{incarnation}</GoalStateIncarnation>
 <Container>
  <ContainerId>{container}</ContainerId>
  <RoleInstanceList>
   <Role>
    <InstanceId>{instance}</InstanceId>
    <Health><State>Ready</State></Health>
   </Role>
  </RoleInstanceList>
 </Container>
</Health>
"""


def health_report(incarnation: str, container: str, instance: str) -> bytes:
    return HEALTH_TEMPLATE.format(incarnation=escape(incarnation), container=escape(container),
                                  instance=escape(instance)).encode()


def parse_goal_state(body: bytes, url: str) -> tuple[str, str, str]:
    """(incarnation, container id, role instance id) from the GoalState XML."""
    if len(body) > MAX_GOALSTATE:
        raise DatasourceError(f"{url}: GoalState larger than {MAX_GOALSTATE} bytes")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise DatasourceError(f"{url}: invalid GoalState XML ({e})")
    inc = root.findtext("Incarnation")
    cid = root.findtext("Container/ContainerId")
    iid = root.findtext("Container/RoleInstanceList/RoleInstance/InstanceId")
    missing = [n for n, v in (("Incarnation", inc), ("Container/ContainerId", cid),
                              ("Container/RoleInstanceList/RoleInstance/InstanceId", iid)) if not v]
    if missing:
        raise DatasourceError(f"{url}: GoalState lacks {', '.join(missing)}")
    return str(inc).strip(), str(cid).strip(), str(iid).strip()


def _mac(raw: Any) -> str | None:
    s = str(raw or "").replace("-", "").replace(":", "").lower()
    if len(s) != 12:
        return None
    return ":".join(s[i:i + 2] for i in range(0, 12, 2))


def network_config(net: Any) -> dict[str, Any] | None:
    """Netplan v2 from IMDS ``network.interface``: DHCP everywhere, secondary IPv4 addresses static."""
    nics = net.get("interface") if isinstance(net, dict) else None
    if not isinstance(nics, list) or not nics:
        return None
    ethernets: dict[str, Any] = {}
    for i, nic in enumerate(nics):
        if not isinstance(nic, dict) or not (mac := _mac(nic.get("macAddress"))):
            continue
        cfg: dict[str, Any] = {"match": {"macaddress": mac, "driver": "hv_netvsc"}, "dhcp4": True,
                               "dhcp4-overrides": {"route-metric": 100 * (i + 1)}}
        v4 = (nic.get("ipv4") or {}) if isinstance(nic.get("ipv4"), dict) else {}
        addrs = [a.get("privateIpAddress") for a in v4.get("ipAddress") or [] if isinstance(a, dict)]
        subnets = [s for s in v4.get("subnet") or [] if isinstance(s, dict)]
        prefix = subnets[0].get("prefix") if subnets else None
        extra = [f"{a}/{prefix}" for a in addrs[1:] if a and prefix]
        if extra:
            cfg["addresses"] = extra
        v6 = (nic.get("ipv6") or {}) if isinstance(nic.get("ipv6"), dict) else {}
        if v6.get("ipAddress"):
            cfg["dhcp6"] = True
        ethernets[f"eth{i}"] = cfg
    return {"version": 2, "ethernets": ethernets} if ethernets else None


class AzureDatasource(Datasource):
    NAME = "Azure"
    NEEDS_NETWORK = EVIDENCE["network"]

    base: str | None = None

    def _imds(self) -> dict[str, Any]:
        base = setting_urls(self.ctx.settings, "imds_url", (DEFAULT_IMDS,), self.NAME)[0]
        url = f"{base}/metadata/instance?api-version={API_VERSION}"
        max_wait = setting_number(self.ctx.settings, "max_wait", 10.0, self.NAME)
        timeout = setting_number(self.ctx.settings, "timeout", 2.0, self.NAME)
        deadline = time.monotonic() + self.ctx.time_left(max_wait)
        headers = {**setting_headers(self.ctx.settings, self.NAME), "Metadata": "true"}
        budget = Budget(self.NAME, self.ctx.settings)
        last: HttpError | None = None
        attempt, resp = 0, None
        while time.monotonic() < deadline:
            try:
                resp = budget.request(url, headers=headers, timeout=timeout, retries=0, deadline=deadline)
                break
            except HttpError as e:
                # IMDS answers 404/410/429/5xx while the VM is still being set up; those are worth a retry
                if not (e.retryable or e.status in (404, 410)):
                    raise DatasourceError(str(e))
                last = worth_reporting(last, e)
            if not pause(attempt, 0.1, deadline, cap=1.0):
                break
            attempt += 1
        if resp is None:
            raise DatasourceError(f"no Azure instance metadata service answered at {url} within the time allowed"
                                  + (f" (last error: {last})" if last else ""))
        try:
            doc = json.loads(resp.body)
        except ValueError as e:
            raise DatasourceError(f"{url}: invalid JSON ({e})")
        if not isinstance(doc, dict) or not isinstance(doc.get("compute"), dict):
            raise DatasourceError(f"{url}: expected a JSON object with a 'compute' object")
        self.base = base
        return doc

    def fetch(self) -> InstanceData:
        doc = self._imds()
        compute: dict[str, Any] = doc["compute"]
        vm_id = str(compute.get("vmId") or "").strip().lower()
        if not vm_id:
            raise DatasourceError(f"{self.base}/metadata/instance: compute.vmId missing")
        warnings: list[str] = []
        userdata = None
        for key in ("userData", "customData"):
            raw = compute.get(key)
            if isinstance(raw, str) and raw.strip():
                try:
                    userdata = base64.b64decode(raw, validate=True)
                except (binascii.Error, ValueError):
                    raise DatasourceError(f"{self.base}/metadata/instance: compute.{key} is not valid base64")
                break
        keys = [str(k["keyData"]).strip() for k in compute.get("publicKeys") or []
                if isinstance(k, dict) and k.get("keyData")]
        os_profile = obj(compute.get("osProfile"))
        hostname = os_profile.get("computerName") or compute.get("name")
        shown = {k: v for k, v in compute.items() if k not in ("userData", "customData")}
        inst = InstanceData(
            datasource=self.NAME,
            instance_id=vm_id,
            subplatform=f"metadata ({self.base})",
            platform="azure",
            cloud_name="azure",
            metadata={"instance-id": vm_id, "local-hostname": hostname, "imds": {**doc, "compute": shown}},
            userdata=userdata,
            network_config=network_config(doc.get("network")),
            local_hostname=str(hostname) if hostname else None,
            public_ssh_keys=list(dict.fromkeys(keys)),
            region=str(compute.get("location") or "") or None,
            availability_zone=str(compute.get("zone") or "") or None,
        )
        try:
            inst.host_configuration = self._host_config(compute, userdata)
        except DatasourceError as e:
            LOG.warning("host configuration ignored: %s", e)
            warnings.append(str(e))
        if self.ctx.settings.get("report_ready", True):
            try:
                inst.ds["ready_report"] = self.report_ready()
            except DatasourceError as e:
                msg = f"could not report ready to the Azure wire server: {e}"
                LOG.warning("%s", msg)
                warnings.append(msg)
                inst.ds["ready_report"] = "failed"
        if warnings:
            inst.ds["warnings"] = warnings
        return inst

    # -- host configuration ---------------------------------------------------------------------

    @staticmethod
    def _host_config(compute: dict[str, Any], userdata: bytes | None) -> dict[str, Any] | None:
        for tag in compute.get("tagsList") or []:
            if isinstance(tag, dict) and tag.get("name") in HOST_CONFIG_TAGS and isinstance(tag.get("value"), str):
                return parse_host_config(tag["value"], f"Azure tag {tag['name']}")
        if userdata and b"host_configuration" in userdata:
            # userData as a YAML mapping with a top-level host_configuration key (tags hold only 256 chars)
            from tether import yamlsafe
            from tether.errors import ConfigError
            try:
                doc = yamlsafe.load(userdata, "Azure userData")
            except ConfigError:
                return None
            if isinstance(doc, dict) and isinstance(doc.get("host_configuration"), dict):
                return obj(doc["host_configuration"])
        return None

    def desired_host_config(self) -> Any:
        """Tag ``host-configuration`` (YAML), else ``host_configuration`` in userData (YAML mapping); fresh."""
        doc = self._imds()
        compute = doc["compute"]
        raw = compute.get("userData")
        ud = None
        if isinstance(raw, str) and raw:
            try:
                ud = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                ud = None
        return self._host_config(compute, ud)

    # -- ready report ---------------------------------------------------------------------------

    def wireserver(self) -> str:
        configured = self.ctx.settings.get("wireserver")
        if isinstance(configured, str) and configured.strip():
            return configured.strip()
        return _lease_wireserver(self) or DEFAULT_WIRESERVER

    def report_ready(self) -> str:
        """GoalState, then the Ready health report; bounded by ``ready_timeout``. Returns a summary."""
        limit = setting_number(self.ctx.settings, "ready_timeout", 5.0, self.NAME)
        timeout = setting_number(self.ctx.settings, "timeout", 2.0, self.NAME)
        deadline = time.monotonic() + limit
        ws = self.wireserver()
        gs_url = f"http://{ws}/machine/?comp=goalstate"
        try:
            resp = request(gs_url, headers=WIRE_HEADERS, timeout=timeout, retries=10, deadline=deadline,
                           sleep=0.3, max_body=MAX_GOALSTATE)
            inc, cid, iid = parse_goal_state(resp.body, gs_url)
            url = f"http://{ws}/machine?comp=health"
            request(url, method="POST", data=health_report(inc, cid, iid),
                    headers={**WIRE_HEADERS, "Content-Type": "text/xml; charset=utf-8"},
                    timeout=timeout, retries=10, deadline=deadline, sleep=0.3, max_body=MAX_GOALSTATE)
        except HttpError as e:
            raise DatasourceError(str(e))
        LOG.info("reported ready to the Azure fabric (incarnation %s)", inc)
        return f"ready (incarnation {inc})"

    def describe(self) -> str:
        return f"DataSourceAzure [metadata={self.base}]" if self.base else "DataSourceAzure"


def _lease_wireserver(ds: AzureDatasource) -> str | None:
    """The wire server from DHCP option 245 (``OPTION_245=a83f8110`` in systemd-networkd lease files)."""
    d = ds.ctx.host.sysroot / "run/systemd/netif/leases"
    try:
        names = sorted(os.listdir(d))
    except OSError:
        return None
    for name in names:
        for line in (ds.ctx.host.read(f"run/systemd/netif/leases/{name}") or "").splitlines():
            if line.startswith("OPTION_245="):
                hexval = line.split("=", 1)[1].strip().replace(":", "")
                try:
                    raw = bytes.fromhex(hexval)
                except ValueError:
                    continue
                if len(raw) == 4:
                    return ".".join(str(b) for b in raw)
    return None


DATASOURCE = AzureDatasource
