"""Google Compute Engine metadata server: one ``GET computeMetadata/v1/?recursive=true&alt=json`` with
``Metadata-Flavor: Google``; the answer must carry the same header (anything else is not Google's server).

User data is the instance attribute ``user-data`` (base64 when ``user-data-encoding: base64``). SSH keys come
from the ``ssh-keys`` (and legacy ``sshKeys``) attributes of the instance and, unless the instance sets
``block-project-ssh-keys: true``, of the project; lines are ``user:key``, expired ``google-ssh`` keys are
dropped, and, as in cloud-init, only keys for the users ``cloudinit`` and the default user are used
(``ssh_key_users`` overrides; all parsed keys are kept under ``ds.ssh_keys``).

Settings (``datasource: {GCE: {...}}``): ``metadata_url`` (default ``http://169.254.169.254/computeMetadata/v1``,
the same server as metadata.google.internal without needing DNS this early), ``max_wait`` (10 s),
``timeout`` (2 s), ``default_user`` (debian), ``ssh_key_users``, ``max_bytes`` (16 MiB), ``headers``.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from datetime import UTC, datetime
from typing import Any

from tether import log
from tether.datasource import Datasource
from tether.datasources.mdfetch import Budget, obj, parse_host_config, setting_headers, setting_number, setting_urls
from tether.errors import DatasourceError
from tether.http import HttpError, pause, worth_reporting
from tether.instance import InstanceData

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tether.datasource import Evidence

EVIDENCE: Evidence = {
    "name": "GCE",
    "network": True,
    "aliases": ("gce", "google"),
    "dmi": ("product_name=Google Compute Engine", "product_name=Google", "sys_vendor=Google", "bios_vendor=Google",
            "product_serial=GoogleCloud-*"),
}

LOG = log.get(__name__)

DEFAULT_URL = "http://169.254.169.254/computeMetadata/v1"
FLAVOR = {"Metadata-Flavor": "Google"}
HOST_CONFIG_KEYS = ("host-configuration", "host_configuration")


def parse_ssh_keys(text: str, now: datetime | None = None) -> list[tuple[str, str]]:
    """(user, key) pairs from an ``ssh-keys`` attribute, without expired ``google-ssh`` keys."""
    now = now or datetime.now(UTC)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or ":" not in line:
            continue
        user, key = line.split(":", 1)
        key = key.strip()
        if " google-ssh " in key:
            try:
                info = json.loads(key.split(" google-ssh ", 1)[1])
                expire = datetime.fromisoformat(str(info["expireOn"]))
                if expire.tzinfo is None:
                    expire = expire.replace(tzinfo=UTC)
                if expire < now:
                    continue
            except (ValueError, KeyError, TypeError):
                LOG.debug("google-ssh key for %s without a readable expiry; kept", user)
        if user.strip() and key:
            out.append((user.strip(), key))
    return out


class GCEDatasource(Datasource):
    NAME = "GCE"
    NEEDS_NETWORK = EVIDENCE["network"]

    base: str | None = None

    def _url(self) -> str:
        return str(setting_urls(self.ctx.settings, "metadata_url", (DEFAULT_URL,), self.NAME)[0])

    def _doc(self) -> dict[str, Any]:
        base = self._url()
        url = f"{base}/?recursive=true&alt=json"
        max_wait = setting_number(self.ctx.settings, "max_wait", 10.0, self.NAME)
        timeout = setting_number(self.ctx.settings, "timeout", 2.0, self.NAME)
        deadline = time.monotonic() + self.ctx.time_left(max_wait)
        headers = {**setting_headers(self.ctx.settings, self.NAME), **FLAVOR}
        budget = Budget(self.NAME, self.ctx.settings)
        last: HttpError | None = None
        attempt = 0
        resp = None
        while time.monotonic() < deadline:
            try:
                resp = budget.request(url, headers=headers, timeout=timeout, retries=0, deadline=deadline)
                break
            except HttpError as e:
                if not e.retryable:
                    raise DatasourceError(f"{e}")
                last = worth_reporting(last, e)
            if not pause(attempt, 0.1, deadline, cap=1.0):
                break
            attempt += 1
        if resp is None:
            raise DatasourceError(f"no GCE metadata server answered at {url} within the time allowed"
                                  + (f" (last error: {last})" if last else ""))
        flavor = {k.lower(): v for k, v in resp.headers.items()}.get("metadata-flavor")
        if flavor != "Google":
            raise DatasourceError(f"{url}: the answer lacks the header Metadata-Flavor: Google; not a GCE "
                                  "metadata server")
        try:
            doc = json.loads(resp.body)
        except ValueError as e:
            raise DatasourceError(f"{url}: invalid JSON ({e})")
        if not isinstance(doc, dict) or not isinstance(doc.get("instance"), dict):
            raise DatasourceError(f"{url}: expected a JSON object with an 'instance' object")
        self.base = base
        return doc

    def _keys(self, inst_attrs: dict[str, Any], proj_attrs: dict[str, Any]) -> list[tuple[str, str]]:
        texts = [inst_attrs.get("ssh-keys"), inst_attrs.get("sshKeys")]
        if str(inst_attrs.get("block-project-ssh-keys", "")).lower() != "true":
            texts += [proj_attrs.get("ssh-keys"), proj_attrs.get("sshKeys")]
        pairs: list[tuple[str, str]] = []
        for t in texts:
            if isinstance(t, str):
                pairs.extend(parse_ssh_keys(t))
        return pairs

    def fetch(self) -> InstanceData:
        doc = self._doc()
        inst_doc: dict[str, Any] = dict(doc["instance"])
        project = obj(doc.get("project"))
        attrs = obj(inst_doc.get("attributes"))
        pattrs = obj(project.get("attributes"))
        iid = inst_doc.get("id")
        if iid is None or str(iid).strip() == "":
            raise DatasourceError(f"{self.base}/instance/id: missing")
        userdata = None
        raw = attrs.get("user-data")
        if isinstance(raw, str):
            if str(attrs.get("user-data-encoding", "")).lower() == "base64":
                try:
                    userdata = base64.b64decode(raw, validate=True)
                except (binascii.Error, ValueError):
                    raise DatasourceError(f"{self.base}/instance/attributes/user-data: "
                                          "user-data-encoding is base64 but the value is not valid base64")
            else:
                userdata = raw.encode()
        pairs = self._keys(attrs, pattrs)
        users = self.ctx.settings.get("ssh_key_users")
        if not isinstance(users, list):
            users = ["cloudinit", str(self.ctx.settings.get("default_user") or "debian")]
        keys = list(dict.fromkeys(k for u, k in pairs if u in users))
        zone = str(inst_doc.get("zone") or "").rsplit("/", 1)[-1] or None
        region = zone.rsplit("-", 1)[0] if zone and "-" in zone else None
        hostname = str(inst_doc.get("hostname") or inst_doc.get("name") or "").strip()
        # user-data lives in userdata only; the rest of the attributes stay visible in metadata
        shown = dict(inst_doc)
        shown["attributes"] = {k: v for k, v in attrs.items() if k not in ("user-data",)}
        out = InstanceData(
            datasource=self.NAME,
            instance_id=str(iid),
            subplatform=f"metadata ({self.base})",
            platform="gce",
            cloud_name="gce",
            metadata={"instance-id": str(iid), "local-hostname": hostname.split(".")[0] or None,
                      "availability-zone": zone, "instance": shown, "project": project},
            userdata=userdata,
            local_hostname=hostname.split(".")[0] or None,
            public_ssh_keys=keys,
            region=region,
            availability_zone=zone,
            ds={"ssh_keys": [{"user": u, "key": k} for u, k in pairs]},
        )
        try:
            out.host_configuration = self._host_config(attrs, pattrs)
        except DatasourceError as e:
            LOG.warning("host configuration ignored: %s", e)
            out.ds["warnings"] = [str(e)]
        return out

    @staticmethod
    def _host_config(attrs: dict[str, Any], pattrs: dict[str, Any]) -> dict[str, Any] | None:
        for where, src in (("instance", attrs), ("project", pattrs)):
            for k in HOST_CONFIG_KEYS:
                if isinstance(src.get(k), str):
                    return parse_host_config(src[k], f"GCE {where} attribute {k}")
        return None

    def desired_host_config(self) -> Any:
        """Instance attribute ``host-configuration`` (else the project's), as YAML, read fresh.

        GCE metadata values may be up to 256 KB, so a whole host configuration fits.
        """
        doc = self._doc()
        inst = doc["instance"]
        project = obj(doc.get("project"))
        attrs = obj(inst.get("attributes"))
        pattrs = obj(project.get("attributes"))
        return self._host_config(attrs, pattrs)

    def describe(self) -> str:
        return f"DataSourceGCE [metadata={self.base}]" if self.base else "DataSourceGCE"


DATASOURCE = GCEDatasource
