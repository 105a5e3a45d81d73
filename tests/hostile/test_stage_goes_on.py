"""The network stage's datasource search against a metadata server that drips its answers: every network
datasource gives up within the stage's deadline (the largest max_wait), each failure is one recoverable error
in status naming the server, and the stage goes on with no datasource (the None datasource, as on a machine
without metadata)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.fakes import FakeRunner
from tests.hostile.server import HostileServer
from tether.host import Host
from tether.stages import Env, find_datasource
from tether.status import StageStatus
from tether.target import Target

MAX_WAIT = 0.8
# local evidence for all five, so the detector offers each of them (tether/detect.py)
DMI = {"sys_vendor": "Amazon EC2", "product_name": "OpenStack Nova", "bios_vendor": "Google",
       "chassis_asset_tag": "7783-7084-3265-9085-8269-3286-77"}


def test_network_stage_goes_on_past_a_dripping_metadata_server(tmp_path: Path) -> None:
    with HostileServer("drip_headers") as srv:
        # NoCloud's seed URL comes from the SMBIOS serial, one of the ways hypervisors pass it
        for key, value in {**DMI, "product_serial": f"ds=nocloud;s={srv.url}/seed/"}.items():
            p = tmp_path / "sys/class/dmi/id" / key
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(value + "\n")
        bounds = {"max_wait": MAX_WAIT, "timeout": 0.25}
        cfg = {"datasource_list": ["Ec2", "OpenStack", "GCE", "Azure", "NoCloud"],
               "datasource": {"Ec2": {"metadata_urls": [srv.url], **bounds},
                              "OpenStack": {"metadata_urls": [srv.url], **bounds},
                              "GCE": {"metadata_url": srv.url, **bounds},
                              "Azure": {"imds_url": srv.url, **bounds},
                              "NoCloud": {"retries": 0, **bounds}}}
        target = Target.at(tmp_path)
        env = Env(target, Host(sysroot=tmp_path, runner=FakeRunner()), FakeRunner(), system_config=cfg)
        status = StageStatus(target, "init")
        t0 = time.monotonic()
        found = find_datasource(env, True, status)
        elapsed = time.monotonic() - t0
        host = srv.url.split("//", 1)[1]
    print(f"five network datasources against a dripping server: {elapsed:.2f}s")
    assert found is None
    msgs = status.recoverable.get("WARNING", [])
    assert sorted(m.split(":", 1)[0] for m in msgs) == sorted(
        f"datasource {n}" for n in ("Ec2", "OpenStack", "GCE", "Azure", "NoCloudNet")), status.recoverable
    for m in msgs:
        assert host in m and ("within the time allowed" in m or "no time left" in m), m
    # the deadline is the stage's, shared: the whole search ends within the largest max_wait, not five of them
    assert elapsed <= MAX_WAIT + 0.6
