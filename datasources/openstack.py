"""OpenStack metadata service: ``/openstack/latest/{meta_data.json, user_data, vendor_data.json,
vendor_data2.json, network_data.json}``. Parsing is shared with ConfigDrive (``openstack_format``).

Settings (``datasource: {OpenStack: {...}}``): ``metadata_urls`` (default ``http://169.254.169.254``),
``max_wait`` (10 s, whole fetch), ``timeout`` (2 s per try for the headers, as much for the body), ``max_bytes``
(16 MiB read in all), ``max_entries`` (2000 requests), ``headers`` (extra request headers).

Only ``meta_data.json`` is required; a 404 on any other document means "not provided". Garbage JSON in
``meta_data.json`` is an error naming the URL; in an optional document it is a warning and the document is
ignored.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tether import log
from tether.datasource import Datasource
from tether.datasources.mdfetch import Budget, parse_host_config, setting_headers, setting_number, setting_urls
from tether.datasources.openstack_format import host_config_text, parse_openstack
from tether.errors import DatasourceError
from tether.http import HttpError, pause, worth_reporting
from tether.instance import InstanceData
from tether.network.live import interface_names

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tether.datasource import Evidence

EVIDENCE: Evidence = {
    "name": "OpenStack",
    "network": True,
    "aliases": ("openstack",),
    "dmi": ("product_name=OpenStack Nova", "product_name=OpenStack Compute", "chassis_asset_tag=OpenStack Nova",
            "chassis_asset_tag=OpenStack Compute", "chassis_asset_tag=OpenTelekomCloud",
            "chassis_asset_tag=SAP CCloud VM", "chassis_asset_tag=HUAWEICLOUD", "sys_vendor=OpenStack Foundation"),
}

LOG = log.get(__name__)

DEFAULT_URLS = ("http://169.254.169.254",)
PREFIX = "openstack/latest"


class OpenStackDatasource(Datasource):
    NAME = "OpenStack"
    NEEDS_NETWORK = EVIDENCE["network"]

    base: str | None = None
    budget: Budget

    def _deadline(self) -> float:
        self.budget = Budget(self.NAME, self.ctx.settings)
        max_wait = setting_number(self.ctx.settings, "max_wait", 10.0, self.NAME)
        return time.monotonic() + self.ctx.time_left(max_wait)

    def _get(self, base: str, name: str, deadline: float, optional: bool, retries: int = 1) -> bytes | None:
        url = f"{base}/{PREFIX}/{name}"
        timeout = setting_number(self.ctx.settings, "timeout", 2.0, self.NAME)
        headers = setting_headers(self.ctx.settings, self.NAME)
        try:
            return self.budget.request(url, headers=headers, timeout=timeout, retries=retries, deadline=deadline,
                                       sleep=0.2).body
        except HttpError as e:
            if e.status == 404 and optional:
                return None
            raise

    def _find(self, deadline: float) -> tuple[str, bytes]:
        """The first metadata URL whose meta_data.json answers, retrying until the deadline."""
        urls = setting_urls(self.ctx.settings, "metadata_urls", DEFAULT_URLS, self.NAME)
        last: HttpError | None = None
        attempt = 0
        while True:
            for base in urls:
                if time.monotonic() >= deadline:
                    break
                try:
                    body = self._get(base, "meta_data.json", deadline, optional=False, retries=0)
                    assert body is not None
                    return base, body
                except HttpError as e:
                    if e.status == 404:
                        raise DatasourceError(f"{e.url}: HTTP 404 (no OpenStack metadata at {base})")
                    last = worth_reporting(last, e)
            if not pause(attempt, 0.1, deadline, cap=1.0):
                break
            attempt += 1
        where = ", ".join(f"{u}/{PREFIX}/meta_data.json" for u in urls)
        raise DatasourceError(f"no OpenStack metadata service answered at {where} within the time allowed"
                              + (f" (last error: {last})" if last else ""))

    def _json(self, base: str, name: str, body: bytes | None, required: bool, warnings: list[str]) -> Any:
        if body is None:
            return None
        try:
            return json.loads(body)
        except ValueError as e:
            msg = f"{base}/{PREFIX}/{name}: invalid JSON ({e})"
            if required:
                raise DatasourceError(msg)
            LOG.warning("%s; ignored", msg)
            warnings.append(msg + "; ignored")
            return None

    def fetch(self) -> InstanceData:
        deadline = self._deadline()
        base, body = self._find(deadline)
        self.base = base
        warnings: list[str] = []
        meta = self._json(base, "meta_data.json", body, True, warnings)
        if not isinstance(meta, dict):
            raise DatasourceError(f"{base}/{PREFIX}/meta_data.json: expected a JSON object")
        try:
            user_data = self._get(base, "user_data", deadline, optional=True)
            docs = {name: self._json(base, name, self._get(base, name, deadline, optional=True), False, warnings)
                    for name in ("vendor_data.json", "vendor_data2.json", "network_data.json")}
        except HttpError as e:
            raise DatasourceError(str(e))
        network = docs["network_data.json"]
        if network is not None and not isinstance(network, dict):
            warnings.append(f"{base}/{PREFIX}/network_data.json: not a JSON object; ignored")
            network = None
        inst = parse_openstack(meta, user_data, docs["vendor_data.json"], network,
                               vendor_data2=docs["vendor_data2.json"], datasource=self.NAME,
                               subplatform=f"metadata ({base})", mac_to_name=interface_names(self.ctx.host.sysroot))
        if warnings:
            inst.ds["warnings"] = warnings + inst.ds.get("warnings", [])
        return inst

    def desired_host_config(self) -> Any:
        """``meta.host-configuration`` (or ``meta.host_configuration``) of meta_data.json, as YAML, read fresh.

        Set it with ``openstack server set --property host-configuration="$(cat hc.yaml)"``; Nova limits
        metadata values to 255 characters.
        """
        deadline = self._deadline()
        base, body = self._find(deadline)
        meta = self._json(base, "meta_data.json", body, True, [])
        if not isinstance(meta, dict):
            raise DatasourceError(f"{base}/{PREFIX}/meta_data.json: expected a JSON object")
        return parse_host_config(host_config_text(meta), "OpenStack meta_data.json meta.host-configuration")

    def describe(self) -> str:
        return f"DataSourceOpenStack [net,ver=2 {self.base}]" if self.base else "DataSourceOpenStack"


DATASOURCE = OpenStackDatasource
