"""Every network datasource and every HTTP consumer against every kind of hostile server.

Each case runs the consumer as the stage does, with small bounds set through its configuration (``max_wait``,
``timeout``, ``max_bytes``, the image source's ``deadline``, phone_home's ``tries`` and ``timeout``, the system
config's ``include`` section), and checks what a user would: it ends within its documented bound, with one clear
message that names the server and what was wrong, and the failure is the kind the caller survives (a
DatasourceError the stage logs before trying the next datasource, a warning, a user-data error, an
ImageSourceError). Anything else escaping is a crash and fails the case. The worst times are printed at the end
of the run (conftest.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.datasources.fakeserver import MetadataServer, azure_routes
from tests.fakes import FakeRunner
from tests.hostile import results
from tests.hostile.server import SCENARIOS, HostileServer, make_cert
from tether.datasource import Datasource, DsContext
from tether.datasources.azure import AzureDatasource
from tether.datasources.ec2 import Ec2Datasource
from tether.datasources.gce import GCEDatasource
from tether.datasources.nocloud import NoCloudNet
from tether.datasources.openstack import OpenStackDatasource
from tether.engine.sources import ImageSourceError, open_source
from tether.errors import DatasourceError
from tether.host import Host
from tether.target import Target

MAX_WAIT = 1.0        # every consumer's overall bound in these tests
TIMEOUT = 0.4         # per try
MAX_BYTES = 1 << 20
SLACK = 0.6           # scheduling on a busy 2-core machine; the bug this guards against took minutes

# what the message must say, whatever the consumer
EXPECT = {
    "drip_headers": r"within the time allowed",
    "drip_body": r"within the time allowed|slower than \d+ bytes/s",
    "garbage_status": r"not an HTTP response \(status line 'SSH-2\.0",
    "huge_headers": r"response headers larger than \d+ bytes",
    "huge_body": r"larger than \d+ bytes|exceeds \d+ bytes in total \(datasource\.\w+\.max_bytes\)|deadline passed",
    "endless_redirects": r"more than \d+ redirects",
    "https_to_http": r"refused a redirect from https to http",
    "reset_mid_body": r"connection failed|connection closed after \d+ bytes|closed the connection",
    "never_answers": r"within the time allowed",
}
# an HTML page where data was expected: each consumer says it in its own terms (None: a success is right)
EXPECT_HTML: dict[str, str | None] = {
    "Ec2": r"HTML page \(Content-Type text/html\), not EC2 metadata",
    "OpenStack": r"meta_data\.json: invalid JSON",
    "GCE": r"lacks the header Metadata-Flavor: Google",
    "Azure": r"invalid JSON",
    "NoCloud seedfrom": r"meta-data: expected a mapping, got str",
    "#include": r"from http://127\.0\.0\.1:\d+/part\.yaml\): no known start line",
    "image source": r"HTML page \(Content-Type text/html\), not an image",
    "Azure ready report": r"GoalState lacks Incarnation",
    "phone_home": None,
}


def _ctx(tmp: Path, settings: dict[str, Any]) -> DsContext:
    return DsContext(Host(sysroot=tmp, runner=FakeRunner()), Target.at(tmp), FakeRunner(), settings, None)


def _fetch(ds: Datasource) -> str | None:
    try:
        ds.fetch()
    except DatasourceError as e:          # what find_datasource logs before it tries the next datasource
        return str(e)
    return None


BOUNDS = {"max_wait": MAX_WAIT, "timeout": TIMEOUT, "max_bytes": MAX_BYTES}


def ec2(url: str, tmp: Path) -> str | None:
    return _fetch(Ec2Datasource(_ctx(tmp, {"metadata_urls": [url], **BOUNDS})))


def openstack(url: str, tmp: Path) -> str | None:
    return _fetch(OpenStackDatasource(_ctx(tmp, {"metadata_urls": [url], **BOUNDS})))


def gce(url: str, tmp: Path) -> str | None:
    return _fetch(GCEDatasource(_ctx(tmp, {"metadata_url": url + "/computeMetadata/v1", **BOUNDS})))


def azure(url: str, tmp: Path) -> str | None:
    return _fetch(AzureDatasource(_ctx(tmp, {"imds_url": url, "report_ready": False, **BOUNDS})))


def nocloud(url: str, tmp: Path) -> str | None:
    ds = NoCloudNet(_ctx(tmp, {"seedfrom": url + "/seed/", "retries": 1, **BOUNDS}))
    assert ds.detect()
    return _fetch(ds)


def azure_ready(url: str, tmp: Path) -> str | None:
    """A healthy IMDS and a hostile wire server: the instance is still found, the report is a warning."""
    with MetadataServer(azure_routes()) as imds:
        ds = AzureDatasource(_ctx(tmp, {"imds_url": imds.url, "wireserver": url.split("://", 1)[1],
                                        "ready_timeout": MAX_WAIT, **BOUNDS}))
        inst = ds.fetch()
    assert inst.ds["ready_report"] == "failed"
    warnings = inst.ds["warnings"]
    assert len(warnings) == 1 and warnings[0].startswith("could not report ready to the Azure wire server: ")
    return str(warnings[0])


def include(url: str, tmp: Path) -> str | None:
    from tether.userdata import process
    from tether.userdata.include import Fetcher

    fetch = Fetcher({"timeout": TIMEOUT, "retries": 1, "max_wait": MAX_WAIT, "max_bytes": MAX_BYTES})
    assert fetch.problems == []
    r = process(f"#include\n{url}/part.yaml\n".encode(), None, instance_data={}, fetch=fetch)
    assert r.cloud_config == {}
    msgs = r.errors + r.warnings
    assert len(msgs) == 1, msgs
    return str(msgs[0])


def phone_home(url: str, tmp: Path) -> str | None:
    from tests.conftest import make_root
    from tests.modules.sysmod_support import parse
    from tether.instance import InstanceData
    from tether.module import ModuleContext
    from tether.modules import phone_home as mod

    root = make_root(tmp / "root")
    ctx = ModuleContext(target=Target.at(root), runner=FakeRunner(),
                        instance=InstanceData(datasource="NoCloud", instance_id="iid-1", platform="nocloud"),
                        cloud_config={"fqdn": "h.example"}, system_config={}, live=True)
    mod.handle(ctx, parse(mod, {"phone_home": {"url": url + "/$INSTANCE_ID/", "tries": 1, "timeout": TIMEOUT}}))
    assert len(ctx.warnings) <= 1
    return ctx.warnings[0] if ctx.warnings else None


def image(url: str, tmp: Path) -> str | None:
    buf = memoryview(bytearray(1 << 16))
    try:
        src = open_source(url + "/disk.img", timeout=TIMEOUT, retries=2, deadline=time.monotonic() + MAX_WAIT)
        try:
            while src.readinto(buf):
                pass
        finally:
            src.close()
    except ImageSourceError as e:
        return str(e)
    return None


# name -> (run, bound in seconds as documented for the settings above)
TARGETS: dict[str, tuple[Callable[[str, Path], str | None], float]] = {
    "Ec2": (ec2, MAX_WAIT),
    "OpenStack": (openstack, MAX_WAIT),
    "GCE": (gce, MAX_WAIT),
    "Azure": (azure, MAX_WAIT),
    "NoCloud seedfrom": (nocloud, MAX_WAIT),
    "Azure ready report": (azure_ready, MAX_WAIT),
    "#include": (include, MAX_WAIT),
    "phone_home": (phone_home, 2 * TIMEOUT),          # tries x (2 x timeout) + (tries - 1) x 5 s of pauses
    "image source": (image, MAX_WAIT),
}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def hostile(request: pytest.FixtureRequest, tls: tuple[Path, Path],
            monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileServer]:
    scenario = request.param
    if scenario != "https_to_http":
        with HostileServer(scenario) as srv:
            yield srv
        return
    monkeypatch.setenv("SSL_CERT_FILE", str(tls[0]))     # the client trusts the test CA, verification stays on
    with HostileServer("html") as plain, HostileServer(scenario, tls=tls, http_url=plain.url) as srv:
        yield srv
        assert plain.requests == 0, "the client followed a redirect from https to http"


@pytest.mark.parametrize("hostile", SCENARIOS, indirect=True)
@pytest.mark.parametrize("target", list(TARGETS))
def test_hostile_server(target: str, hostile: HostileServer, tmp_path: Path) -> None:
    if target == "Azure ready report" and hostile.scenario == "https_to_http":
        pytest.skip("the wire server is always plain http (a host[:port] setting)")
    run, bound = TARGETS[target]
    t0 = time.monotonic()
    msg = run(hostile.url, tmp_path)
    elapsed = time.monotonic() - t0
    results.record(target, hostile.scenario, elapsed, bound)
    assert elapsed <= bound + SLACK, f"{target} took {elapsed:.2f}s against {hostile.scenario} (bound {bound}s)"
    assert hostile.requests >= 1
    want = EXPECT_HTML[target] if hostile.scenario == "html" else EXPECT[hostile.scenario]
    if want is None:
        assert msg is None
        return
    assert msg is not None, f"{target} succeeded against {hostile.scenario}"
    assert re.search(want, msg), msg
    assert "127.0.0.1:" in msg, f"the message does not say which server: {msg}"
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", msg), f"raw control bytes from the server: {msg!r}"
