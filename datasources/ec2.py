"""Amazon EC2 instance metadata service (IMDS), IMDSv2 first.

Flow: ``PUT /latest/api/token`` (header ``X-aws-ec2-metadata-token-ttl-seconds``) on each of ``metadata_urls``
until one answers or ``max_wait`` passes; then every GET carries ``X-aws-ec2-metadata-token``. A 401 during the
crawl (token expired or revoked) gets one fresh token and one retry. IMDSv1 (no token) is used only when the
service has no token endpoint *and* ``allow_imdsv1: true`` is set.

Settings (``datasource: {Ec2: {...}}``): ``metadata_urls`` (default 169.254.169.254 and fd00:ec2::254),
``max_wait`` (10 s, whole fetch), ``timeout`` (2 s per request), ``allow_imdsv1`` (false), ``api_version``
(2021-03-23, falls back to ``latest``), ``token_ttl`` (21600), ``apply_full_imds_network_config`` (false: only
the primary NIC is configured), ``max_bytes`` (16 MiB read in all), ``max_entries`` (2000 requests), ``headers``
(extra request headers).

The crawl never reads ``iam/security-credentials`` or ``identity-credentials``: those are live secrets that
have no business in instance-data.json.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tether import log
from tether.datasource import Datasource, DsContext
from tether.datasources.mdfetch import Budget, obj, parse_host_config, setting_headers, setting_number, setting_urls
from tether.errors import DatasourceError
from tether.http import HttpError, Response, Session, pause, worth_reporting
from tether.instance import InstanceData
from tether.network.ec2 import metadata_to_v2, text_lines
from tether.network.live import interface_names

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tether.datasource import Evidence

EVIDENCE: Evidence = {
    "name": "Ec2",
    "network": True,
    "aliases": ("ec2", "aws"),
    "dmi": ("sys_vendor=Amazon EC2*", "board_vendor=Amazon EC2*", "chassis_asset_tag=Amazon EC2*",
            "bios_vendor=Amazon EC2*",
            # Xen-based instances: a random UUID starts with "ec2" 1 time in 4096, so the serial must agree
            ("product_uuid=ec2*", "product_serial=ec2*")),
    "files": ("sys/hypervisor/uuid=ec2*",),
}
LOG = log.get(__name__)

DEFAULT_URLS = ("http://169.254.169.254", "http://[fd00:ec2::254]")
TOKEN_PATH = "/latest/api/token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
DEFAULT_API = "2021-03-23"
SECRET_DIRS = ("iam/security-credentials/", "identity-credentials/")
RETRY_STATUSES = (429, 500, 502, 503, 504)
HOST_CONFIG_TAGS = ("host-configuration", "host_configuration")


class Endpoint:
    """One metadata endpoint reached through one kept-alive connection (``tether.http.Session``).

    The crawl makes ~80 tiny requests; a connection each costs several times more than the answers themselves.
    Every request counts against the fetch's budget (bytes, entries); proxies are never used.
    """

    def __init__(self, base: str, budget: Budget) -> None:
        self.base = base
        self.budget = budget
        self.session = Session(proxies=False)

    def close(self) -> None:
        self.session.close()

    def call(self, method: str, path: str, headers: dict[str, str], timeout: float, deadline: float) -> Response:
        url = f"{self.base}/{path.lstrip('/')}"
        return self.budget.call(self.session, url, method=method, headers=headers, timeout=timeout,
                                deadline=deadline, max_redirects=0)


class ImdsClient:
    """Token-aware, deadline- and budget-bounded access to one IMDS endpoint."""

    def __init__(self, settings: dict[str, Any], deadline: float) -> None:
        self.urls = setting_urls(settings, "metadata_urls", DEFAULT_URLS, "Ec2")
        self.timeout = setting_number(settings, "timeout", 2.0, "Ec2")
        self.ttl = int(setting_number(settings, "token_ttl", 21600, "Ec2"))
        self.allow_v1 = bool(settings.get("allow_imdsv1", False))
        self.headers = setting_headers(settings, "Ec2")
        self.budget = Budget("Ec2", settings)
        self.deadline = deadline
        self.endpoint: Endpoint | None = None
        self.token: str | None = None
        self.requests = 0

    @property
    def base(self) -> str | None:
        return self.endpoint.base if self.endpoint else None

    def _call(self, ep: Endpoint, method: str, path: str, headers: dict[str, str]) -> Response:
        resp = ep.call(method, path, {**self.headers, **headers}, self.timeout, self.deadline)
        if resp.status == 200 and resp.content_type() == "text/html":
            # IMDS answers text/plain or JSON; an HTML page is a captive portal or a web server, not metadata
            raise DatasourceError(f"{resp.url}: the answer is an HTML page (Content-Type text/html), not EC2 "
                                  "metadata")
        return resp

    # -- token ----------------------------------------------------------------------------------

    def _put_token(self, ep: Endpoint) -> str | None:
        """The token, or None when the service has no token endpoint (IMDSv1 only)."""
        url = ep.base + TOKEN_PATH
        resp = self._call(ep, "PUT", TOKEN_PATH, {TTL_HEADER: str(self.ttl)})
        if resp.status == 403:
            raise DatasourceError(f"{url}: the metadata service refused a token (HTTP 403); "
                                  "is the instance metadata service disabled for this instance?")
        if resp.status in (400, 404, 405):
            return None
        if resp.status != 200:
            raise HttpError(url, f"HTTP {resp.status}", resp.status)
        token = resp.body.decode("ascii", "replace").strip()
        if not token:
            raise DatasourceError(f"{url}: the metadata service answered an empty token")
        if any(c in token for c in "\r\n\0") or len(token) > 4096:
            raise DatasourceError(f"{url}: the metadata service answered a token that cannot be sent back "
                                  "(line breaks or over 4096 bytes)")
        return token

    def connect(self) -> None:
        """Find the first endpoint that answers the token request, retrying until the deadline."""
        last: HttpError | None = None
        attempt = 0
        while True:
            for base in self.urls:
                if time.monotonic() >= self.deadline:
                    break
                ep = Endpoint(base, self.budget)
                try:
                    token = self._put_token(ep)
                except HttpError as e:
                    ep.close()
                    last = worth_reporting(last, e)
                    LOG.debug("IMDS %s", e)
                    continue
                except DatasourceError:
                    ep.close()
                    raise
                if token is None and not self.allow_v1:
                    ep.close()
                    raise DatasourceError(
                        f"{base}{TOKEN_PATH}: the metadata service has no IMDSv2 token endpoint and IMDSv1 is "
                        "not allowed (set datasource.Ec2.allow_imdsv1: true to use it)")
                self.endpoint, self.token = ep, token
                LOG.debug("IMDS at %s (%s)", base, "IMDSv2" if token else "IMDSv1")
                return
            if not pause(attempt, 0.1, self.deadline, cap=1.0):
                break
            attempt += 1
        urls = ", ".join(u + TOKEN_PATH for u in self.urls)
        raise DatasourceError(f"no EC2 metadata service answered at {urls} within the time allowed"
                              + (f" (last error: {last})" if last else ""))

    def close(self) -> None:
        if self.endpoint:
            self.endpoint.close()

    # -- reads ----------------------------------------------------------------------------------

    def get(self, path: str, optional: bool = False) -> bytes | None:
        """GET ``path`` below the base URL. ``optional``: a 404 is None. One token refresh on 401."""
        ep = self.endpoint
        assert ep is not None
        url = f"{ep.base}/{path.lstrip('/')}"
        for attempt in (0, 1):
            headers = {TOKEN_HEADER: self.token} if self.token else {}
            self.requests += 1
            try:
                resp = self._call(ep, "GET", path, headers)
                if resp.status in RETRY_STATUSES and time.monotonic() + 0.1 < self.deadline:
                    time.sleep(0.1)
                    resp = self._call(ep, "GET", path, headers)
            except HttpError as e:
                if time.monotonic() >= self.deadline:
                    raise DatasourceError(f"{url}: no answer within the time allowed ({e})")
                raise DatasourceError(str(e))
            status = resp.status
            if status == 200:
                return resp.body
            if status == 404 and optional:
                return None
            if status == 401 and attempt == 0:
                LOG.debug("IMDS token rejected at %s; fetching a new one", url)
                try:
                    token = self._put_token(ep)
                except HttpError as e:
                    raise DatasourceError(f"token refresh after HTTP 401 from {url} failed: {e}")
                if token is None:
                    raise DatasourceError(f"{ep.base}{TOKEN_PATH}: token endpoint vanished mid-crawl")
                self.token = token
                continue
            if status == 401:
                raise DatasourceError(f"{url}: rejected a fresh metadata token (HTTP 401)")
            raise DatasourceError(f"{url}: HTTP {status}")
        raise DatasourceError(f"{url}: rejected the metadata token twice (HTTP 401)")  # pragma: no cover

    def text(self, path: str, optional: bool = False) -> str | None:
        b = self.get(path, optional)
        return None if b is None else b.decode("utf-8", "replace")

    def crawl(self, root: str) -> dict[str, Any]:
        """The tree below ``root`` (a directory path ending in ``/``), breadth first, within the budget."""
        tree: dict[str, Any] = {}
        # (parent node, key in parent, path, is_directory); the root node is filled in place
        pending: list[tuple[dict[str, Any], str | None, str, bool]] = [(tree, None, root, True)]
        while pending:
            parent, key, path, is_dir = pending.pop(0)
            # the root must exist; an entry that was listed and then vanished is skipped
            body = self.text(path, optional=key is not None)
            if body is None:
                continue
            if not is_dir:
                assert key is not None
                parent[key] = _leaf(body)
                continue
            node = parent if key is None else parent.setdefault(key, {})
            pending.extend(_children(node, path, body))
        return tree


def _leaf(body: str) -> Any:
    s = body.strip()
    if s.startswith("{") and s.endswith("}"):
        try:
            return json.loads(s)
        except ValueError:
            pass
    return body


def _children(node: dict[str, Any], path: str, listing: str) -> list[tuple[dict[str, Any], str, str, bool]]:
    out: list[tuple[dict[str, Any], str, str, bool]] = []
    for line in listing.splitlines():
        entry = line.strip()
        if not entry or entry.startswith(".") or "/" in entry.rstrip("/") or ".." in entry:
            continue
        if path.endswith("public-keys/") and "=" in entry:
            # "0=my-key": the key's material is under 0/, shown under its name as cloud-init does
            idx, name = entry.split("=", 1)
            node[name] = {}
            out.append((node, name, f"{path}{idx}/", True))
        elif entry.endswith("/"):
            sub = path + entry
            if sub.split("meta-data/", 1)[-1] in SECRET_DIRS:
                continue
            out.append((node, entry[:-1], sub, True))
        else:
            out.append((node, entry, path + entry, False))
    return out


def public_keys(md: dict[str, Any]) -> list[str]:
    keys: list[str] = []
    pk = md.get("public-keys")
    if isinstance(pk, dict):
        for entry in pk.values():
            if isinstance(entry, dict):
                keys.extend(text_lines(entry.get("openssh-key")))
            else:
                keys.extend(text_lines(entry))
    return list(dict.fromkeys(keys))


class Ec2Datasource(Datasource):
    NAME = "Ec2"
    NEEDS_NETWORK = EVIDENCE["network"]

    def __init__(self, ctx: DsContext) -> None:
        super().__init__(ctx)
        self.client: ImdsClient | None = None
        self.api = DEFAULT_API

    def _connect(self) -> ImdsClient:
        max_wait = setting_number(self.ctx.settings, "max_wait", 10.0, self.NAME)
        deadline = time.monotonic() + self.ctx.time_left(max_wait)
        if self.client is None:
            self.client = ImdsClient(self.ctx.settings, deadline)
            self.api = str(self.ctx.settings.get("api_version") or DEFAULT_API)
            self.client.connect()
        else:
            self.client.deadline = deadline
            self.client.budget = Budget(self.NAME, self.ctx.settings)
        return self.client

    def fetch(self) -> InstanceData:
        c = self._connect()
        t0 = time.monotonic()
        listing = c.text(f"{self.api}/meta-data/", optional=True)
        if listing is None and self.api != "latest":
            LOG.debug("IMDS has no API version %s; using latest", self.api)
            self.api = "latest"
        md = c.crawl(f"{self.api}/meta-data/")
        iid = str(md.get("instance-id") or "").strip()
        if not iid:
            raise DatasourceError(f"{c.base}/{self.api}/meta-data/instance-id: missing or empty")
        userdata = c.get(f"{self.api}/user-data", optional=True)
        ident: dict[str, Any] = {}
        warnings: list[str] = []
        doc = c.text(f"{self.api}/dynamic/instance-identity/document", optional=True)
        if doc is not None:
            try:
                parsed = json.loads(doc)
                if not isinstance(parsed, dict):
                    raise ValueError("not a JSON object")
                ident = parsed
            except ValueError as e:
                msg = f"{c.base}/{self.api}/dynamic/instance-identity/document: invalid JSON ({e}); region unknown"
                LOG.warning("%s", msg)
                warnings.append(msg)
        LOG.debug("IMDS crawl: %d requests in %.1f ms", c.requests, (time.monotonic() - t0) * 1000)
        c.close()

        placement = obj(md.get("placement"))
        az = str(placement.get("availability-zone") or ident.get("availabilityZone") or "").strip() or None
        region = str(ident.get("region") or placement.get("region") or "").strip() or None
        if region is None and az and az[-1].isalpha():
            region = az[:-1]
        full = bool(self.ctx.settings.get("apply_full_imds_network_config", False))
        hostname = str(md.get("local-hostname") or md.get("hostname") or "").strip() or None
        inst = InstanceData(
            datasource=self.NAME,
            instance_id=iid,
            subplatform=f"metadata ({c.base})",
            platform="ec2",
            cloud_name="aws",
            metadata=md,
            userdata=userdata,
            network_config=metadata_to_v2(md, full, interface_names(self.ctx.host.sysroot)),
            local_hostname=hostname.split()[0] if hostname else None,
            public_ssh_keys=public_keys(md),
            region=region,
            availability_zone=az,
            ds={"dynamic": {"instance-identity": {"document": ident}}, "imds": "v2" if c.token else "v1",
                **({"warnings": warnings} if warnings else {})},
        )
        tags = ((md.get("tags") or {}).get("instance") or {}) if isinstance(md.get("tags"), dict) else {}
        try:
            inst.host_configuration = self._host_config_from(tags)
        except DatasourceError as e:
            LOG.warning("host configuration ignored: %s", e)
            warnings.append(str(e))
            inst.ds["warnings"] = warnings
        return inst

    def _host_config_from(self, tags: Any) -> dict[str, Any] | None:
        if not isinstance(tags, dict):
            return None
        for name in HOST_CONFIG_TAGS:
            if isinstance(tags.get(name), str):
                return parse_host_config(tags[name], f"EC2 instance tag {name}")
        return None

    def desired_host_config(self) -> Any:
        """The instance tag ``host-configuration`` (or ``host_configuration``) as YAML, read fresh.

        Needs "instance metadata tags" enabled on the instance. EC2 tag values are at most 256 characters.
        """
        c = self._connect()
        for name in HOST_CONFIG_TAGS:
            text = c.text(f"{self.api}/meta-data/tags/instance/{name}", optional=True)
            if text is not None:
                c.close()
                return parse_host_config(text, f"EC2 instance tag {name}")
        c.close()
        return None

    def describe(self) -> str:
        base = self.client.base if self.client else None
        return f"DataSourceEc2 [metadata={base}]" if base else "DataSourceEc2"


DATASOURCE = Ec2Datasource
