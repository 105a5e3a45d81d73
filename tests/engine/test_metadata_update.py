"""Updates triggered by instance metadata: NoCloud meta-data ``host-configuration`` and the first boot's
cloud-config ``host_configuration``, the reboot policy, and a metadata source that is down (root only)."""

from __future__ import annotations

import datetime as dt
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.core.test_reporting import Hook
from tests.engine.conftest import BuiltImage, LoopDisk
from tests.engine.servicing_rig import (
    ROOT_A,
    Rig,
    config,
    kimages_fixture,  # noqa: F401  (the "kimages" fixture)
)
from tests.engine.test_servicing import sha
from tether.engine.commit import commit
from tether.engine.metadata_update import from_metadata, read_check
from tether.engine.rebootpolicy import PolicyError, parse_policy
from tether.engine.state import datastore_location
from tether.host import Host
from tether.instance import InstanceData
from tether.instancestore import InstanceStore
from tether.target import Target


def seed(live: Target, host_configuration: Any = None, iid: str = "iid-1") -> None:
    md: dict[str, Any] = {"instance-id": iid}
    if host_configuration is not None:
        md["host-configuration"] = host_configuration
    live.write("/var/lib/cloud/seed/nocloud/meta-data", yaml.safe_dump(md))
    live.write("/var/lib/cloud/seed/nocloud/user-data", "#cloud-config\n{}\n")
    InstanceStore(live).activate(InstanceData(datasource="NoCloud", instance_id=iid))


def provisioned(rig: Rig, img: BuiltImage) -> None:
    rig.install(img)
    rig.boot()
    with rig.running() as live:
        assert commit(rig.env(live)).code == 0


def test_metadata_change_stages_finalizes_and_reboots(loopdisk: LoopDisk, kimages: dict[str, BuiltImage],
                                                      tmp_path: Path) -> None:
    rig = Rig(loopdisk, tmp_path)
    provisioned(rig, kimages["v1"])
    host = Host(sysroot=rig.mroot, runner=rig.runner)
    with rig.running() as live:
        seed(live, config(loopdisk.device, kimages["v1"]))  # the installed configuration: nothing to do
        out = from_metadata(rig.env(live), parse_policy("now"), host=host)
        assert (out.code, out.action) == (0, "none") and out.reason.startswith("up to date")

        seed(live, config(loopdisk.device, kimages["v2"], "node-2"))
        # outside the maintenance window: staged (disturbs nothing), not finalized
        out = from_metadata(rig.env(live), parse_policy(["window", "02:00-04:00"]), host=host,
                            now=lambda: dt.datetime(2026, 1, 1, 12, 0))
        assert out.action == "staged" and "outside the maintenance window 02:00-04:00" in out.reason
        assert rig.status(live)["servicingState"] == "ab-update-staged"
        assert rig.runner.reboots == 0
        # inside the window (crossing midnight): finalized and rebooted; a reporting: webhook hears of the reboot
        # before it is asked for (after it, the event could die with the host)
        hook = Hook()
        seen_at_reboot: list[list[str]] = []
        real_run = rig.runner.run

        def run(argv: Any, **kw: Any) -> Any:
            if list(argv)[:2] == ["systemctl", "reboot"]:
                seen_at_reboot.append(hook.names())
            return real_run(argv, **kw)

        live.write("/var/lib/tether/instances/iid-1/cloud-config.json",
                   json.dumps({"reporting": {"hook": {"type": "webhook", "endpoint": hook.url}}}))
        rig.runner.run = run  # type: ignore[method-assign]
        try:
            out = from_metadata(rig.env(live), parse_policy(["window", "23:00-04:00"]), host=host,
                                now=lambda: dt.datetime(2026, 1, 2, 1, 30))
        finally:
            del rig.runner.run
            hook.server.shutdown()
            hook.server.server_close()
        assert (out.code, out.action) == (0, "rebooting"), out.reason
        assert rig.runner.reboots == 1
        assert seen_at_reboot == [["servicing/rebooting"]]
        st = rig.status(live)
        assert st["servicingState"] == "ab-update-finalized" and st["spec"]["os"]["hostname"] == "node-2"
        check = read_check(datastore_location(live))
        assert check is not None
        assert check["source"] == "datasource NoCloud host-configuration"
        assert check["seen"]["imageUrl"] == f"file://{kimages['v2'].zst}"
        assert check["action"] == "rebooting" and check["servicingState"] == "ab-update-finalized"
    rig.boot()
    with rig.running() as live:
        assert commit(rig.env(live)).code == 0
        seed(live, config(loopdisk.device, kimages["v2"], "node-2"))
        out = from_metadata(rig.env(live), parse_policy("now"), host=host)
        assert out.action == "none" and "up to date" in out.reason
        assert rig.status(live)["abActiveVolume"] == "volume-b"


def test_metadata_unreachable_only_delays(loopdisk: LoopDisk, kimages: dict[str, BuiltImage],
                                          tmp_path: Path) -> None:
    rig = Rig(loopdisk, tmp_path)
    provisioned(rig, kimages["v1"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    a_before = sha(loopdisk.part(ROOT_A))
    with rig.running() as live:
        events = rig.history(live)
        seed(live, f"http://127.0.0.1:{port}/host-configuration.yaml")
        out = from_metadata(rig.env(live), parse_policy("now"), host=Host(sysroot=rig.mroot), timeout=3)
        assert out.code == 0 and out.action == "none"
        assert out.reason.startswith("metadata unavailable, nothing changed; the next check tries again")
        assert f"127.0.0.1:{port}" in out.reason
        assert rig.history(live) == events
        assert json.loads((datastore_location(live).parent / "update-check.json").read_text())["action"] == "none"
    assert sha(loopdisk.part(ROOT_A)) == a_before and rig.runner.reboots == 0


def test_cloud_config_host_configuration_and_policy_never(loopdisk: LoopDisk, kimages: dict[str, BuiltImage],
                                                          tmp_path: Path) -> None:
    rig = Rig(loopdisk, tmp_path)
    provisioned(rig, kimages["v1"])
    with rig.running() as live:
        seed(live, None)  # the metadata has no host-configuration; first boot's cloud-config does
        InstanceStore(live).save_config("iid-1", {"host_configuration": config(loopdisk.device, kimages["v2"],
                                                                               "node-3")})
        out = from_metadata(rig.env(live), parse_policy("never"), host=Host(sysroot=rig.mroot))
        assert (out.code, out.action) == (0, "finalized"), out.reason
        assert "reboot policy 'never'" in out.reason
        assert out.record["source"] == "cloud-config host_configuration (instance iid-1)"
        assert rig.runner.reboots == 0
        assert rig.status(live)["servicingState"] == "ab-update-finalized"


def test_reboot_policy_parsing() -> None:
    assert parse_policy(None).kind == "now"
    assert parse_policy(["window", "22:00-04:00"]).describe() == "window 22:00-04:00"
    assert parse_policy("window=08:15-09:00").inside(dt.datetime(2026, 1, 1, 8, 59))
    assert not parse_policy("window=08:15-09:00").inside(dt.datetime(2026, 1, 1, 9, 0))
    for bad in (["window", "25:00-01:00"], ["sometimes"], ["window", "01:00-01:00"]):
        with pytest.raises(PolicyError):
            parse_policy(bad)
