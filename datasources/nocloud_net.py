"""NoCloud's network half (``seedfrom=http...``), registered on its own so it runs in the network stage.

The seed's files are read with the one HTTP client: ``meta-data`` is required, ``user-data`` too unless the
server answers 404, ``vendor-data`` and ``network-config`` are optional. Settings (``datasource: {NoCloud:
{...}}``): ``timeout`` (5 s per try), ``retries`` (2), ``max_wait`` (10 s, the whole fetch), ``max_bytes``
(16 MiB, all files together), ``headers`` (extra request headers: put credentials here, not in the URL).
A file over the size cap costs only that file (a warning); meta-data over it is an error.
"""

from __future__ import annotations

import time

from tether import log
from tether.datasource import DsContext
from tether.datasources.mdfetch import Budget, setting_headers, setting_number
from tether.datasources.nocloud import NoCloudNet
from tether.datasources.seedfiles import FILES, MAX_SEED_FILE, Seed, parse_meta_data, parse_network_config
from tether.errors import DatasourceError
from tether.http import HttpError, redact_url, request

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tether.datasource import Evidence

# NoCloud's part that runs in the network stage: present when a seedfrom URL is given.
EVIDENCE: Evidence = {"name": "NoCloudNet", "part_of": "NoCloud", "network": True, "seedfrom": ("http://", "https://")}
LOG = log.get(__name__)
NAME = "NoCloud"


def read_seed(ctx: DsContext, seedfrom: str) -> tuple[Seed, list[str]]:
    """The seed below ``seedfrom`` and the warnings about files that were dropped."""
    timeout = setting_number(ctx.settings, "timeout", 5.0, NAME)
    retries = int(setting_number(ctx.settings, "retries", 2, NAME))
    deadline = time.monotonic() + ctx.time_left(setting_number(ctx.settings, "max_wait", 10.0, NAME))
    headers = setting_headers(ctx.settings, NAME)
    budget = Budget(NAME, ctx.settings)
    base = seedfrom if seedfrom.endswith("/") else seedfrom + "/"
    shown = redact_url(base)
    got: dict[str, bytes | None] = {}
    warnings: list[str] = []
    for name in FILES:
        cap = min(MAX_SEED_FILE, budget.begin(base + name))
        try:
            got[name] = budget.spend(request(base + name, headers=headers, timeout=timeout, retries=retries,
                                             deadline=deadline, max_body=cap)).body
        except HttpError as e:
            if e.kind == "size" and name != "meta-data":
                msg = f"seedfrom {shown}: {name} dropped: {budget.failed(e) if cap < MAX_SEED_FILE else e}"
                LOG.warning("%s", msg)
                warnings.append(msg)
                got[name] = None
                continue
            if name == "meta-data" or (name == "user-data" and e.status != 404):
                raise DatasourceError(f"seedfrom {shown}: {budget.failed(e)}") from None
            got[name] = None
    return Seed(shown, parse_meta_data(got["meta-data"], shown), got["user-data"], got["vendor-data"],
                parse_network_config(got["network-config"], shown)), warnings


DATASOURCE = NoCloudNet
