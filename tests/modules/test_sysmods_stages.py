"""The system modules through the real stage runner: one cloud-config using all of them applies to a
temporary root with no errors, and running every stage again (frequencies forced) changes nothing."""

from __future__ import annotations

from tests.modules.treesnap import diff, snapshot
from tether import sysconfig
from tether.modrunner import run_modules
from tether.status import StageStatus

MINE = {"timezone", "locale", "keyboard", "ntp", "ca_certs", "package_update_upgrade_install", "apt_configure",
        "mounts", "seed_random", "rsyslog", "phone_home", "power_state_change", "scripts_per_boot",
        "scripts_per_instance", "scripts_per_once", "scripts_vendor", "disable_ec2_metadata",
        "write_files_deferred"}
CERT = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
CLOUD_CONFIG = {
    "timezone": "Europe/Berlin", "locale": "de_DE.UTF-8", "keyboard": {"layout": "de"},
    "ntp": {"servers": ["ntp.example"]}, "ca_certs": {"trusted": [CERT]},
    "apt": {"primary": [{"arches": ["default"], "uri": "http://mirror.example/debian"}],
            "conf": 'APT::Get::Assume-Yes "true";'},
    "mounts": [["vdb", "/data"]], "random_seed": {"file": "/var/lib/seed", "data": "abc"},
    "rsyslog": {"remotes": {"central": "@@logs.example:6514"}},
    "write_files": [{"path": "/etc/late.conf", "content": "late\n", "defer": True}],
    "packages": ["htop"], "disable_ec2_metadata": True, "power_state": {"mode": "reboot"}, "phone_home": {"url": "http://127.0.0.1:9/"},
}


def _stages(ctx, root, force):
    events = []
    status = StageStatus(ctx.target, "modules")
    for stage in ("init", "config", "final"):
        names = [(n, f) for n, f in sysconfig.module_list(sysconfig.DEFAULTS, stage) if n in MINE]
        events += run_modules(ctx, stage, names, status, force=force).events
    return events, status


def test_all_system_modules_apply_and_rerun_changes_nothing(make_ctx, root):
    zone = root / "usr/share/zoneinfo/Europe/Berlin"
    zone.parent.mkdir(parents=True)
    zone.write_bytes(b"TZif2")
    (root / "etc/locale.gen").write_text("# de_DE.UTF-8 UTF-8\n")
    ctx = make_ctx(cloud_config=CLOUD_CONFIG)
    events, status = _stages(ctx, root, force=False)
    assert status.errors == []
    ran = {e.name for e in events if e.result == "ran"}
    assert ran == MINE
    for path in ("/etc/timezone", "/etc/default/locale", "/etc/default/keyboard",
                 "/etc/systemd/timesyncd.conf.d/tether.conf", "/usr/local/share/ca-certificates/tether-ca-cert-1.crt",
                 "/etc/apt/apt.conf.d/94tether-config", "/etc/fstab", "/var/lib/seed",
                 "/etc/rsyslog.d/20-cloud-config.conf", "/etc/late.conf"):
        assert ctx.target.exists(path), path
    before = snapshot(root)
    events, status = _stages(make_ctx(cloud_config=CLOUD_CONFIG), root, force=True)
    assert status.errors == []
    changed = {p: c for p, c in diff(before, snapshot(root)).items() if not p.startswith("/var/lib/tether/")}
    assert changed == {}
