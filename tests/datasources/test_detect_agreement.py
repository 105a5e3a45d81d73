"""The generator's verdict and the stages' choice agree, for every datasource and every kind of evidence it
declares (DMI values, sysfs files, filesystem labels, seed directories, seedfrom, system-config settings), for
``ds=`` with each alias, and for a datasource_list of one entry.

Each case is built from the declarations themselves (tether.detect.DECLARED), so a new datasource or a new piece
of evidence is covered without editing this file. For each case the real generator runs on a fake root, then the
real local and network stages' datasource search (``find_datasource``) runs against loopback metadata servers,
and the test checks what a user would: tether is enabled, the datasource the evidence points at is the one the
stages fetch from, and when that fetch cannot succeed (a named datasource with nothing behind it) the reason is in
the stage's status, never a silent skip.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.datasources.fakeserver import (
    Ec2Server,
    MetadataServer,
    Reply,
    azure_routes,
    gce_routes,
    openstack_routes,
)
from tests.fakes import FakeRunner
from tether import sysconfig
from tether.datasource import DsContext
from tether.datasources import load
from tether.detect import DECLARED, DEFAULT_LIST, FALLBACK, PARTS, entry_of, read_detection
from tether.generator import main as generator
from tether.host import Host
from tether.paths import PATHS
from tether.stages import Env, find_datasource
from tether.status import StageStatus
from tether.target import Target

NOCLOUD_MD = "instance-id: iid-agree\n"
SEED_HOME = "/srv/seed"      # a local seedfrom path, in the target root
# a seedfrom for each prefix a declaration may accept ({seed}: the loopback seed server's host:port)
SEEDFROM_EXAMPLES = {"/": SEED_HOME + "/", "file://": f"file://{SEED_HOME}/", "http://": "http://{seed}/seed/",
                     "https://": "https://{seed}/seed/"}


class Servers:
    def __init__(self) -> None:
        self.ec2 = Ec2Server()
        self.openstack = MetadataServer(openstack_routes())
        self.gce = MetadataServer(gce_routes())
        self.azure = MetadataServer(azure_routes())
        self.seed = MetadataServer({"/seed/meta-data": Reply(200, NOCLOUD_MD),
                                    "/seed/user-data": Reply(200, "#cloud-config\n{}\n")})
        self.all = (self.ec2, self.openstack, self.gce, self.azure, self.seed)

    def settings(self) -> dict[str, Any]:
        bounds = {"max_wait": 2, "timeout": 1}
        return {"Ec2": {"metadata_urls": [self.ec2.url], **bounds},
                "OpenStack": {"metadata_urls": [self.openstack.url], **bounds},
                "GCE": {"metadata_url": self.gce.url + "/computeMetadata/v1", **bounds},
                "Azure": {"imds_url": self.azure.url, "report_ready": False, **bounds},
                "NoCloud": {"retries": 0, **bounds}}


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    s = Servers()
    for srv in s.all:
        srv.__enter__()
    yield s
    for srv in s.all:
        srv.__exit__(None, None, None)


class Case:
    """One piece of evidence for one plugin, and what the stages must then do: fetch from ``plugin``
    (``reason`` None) or try it and record why its fetch failed (``reason`` in the status)."""

    def __init__(self, ident: str, plugin: str, *, files: dict[str, str] | None = None, cmdline: str = "",
                 label: str | None = None, seed_dir: str | None = None, settings: dict[str, Any] | None = None,
                 only: str | None = None, reason: str | None = None) -> None:
        self.ident, self.plugin, self.files, self.cmdline = ident, plugin, files or {}, cmdline
        self.label, self.seed_dir, self.settings, self.only, self.reason = label, seed_dir, settings, only, reason

    @property
    def needs_config(self) -> bool:
        """Whether the evidence is in the system configuration, which the generator does not read (no YAML on
        its path): then it only enables tether, and the local stage detects with the configuration."""
        return self.settings is not None or self.only is not None


def _value(pattern: str) -> str:
    """A host value a declared pattern matches: the prefix itself for ``prefix*``."""
    return pattern[:-1] if pattern.endswith("*") else pattern


def _nothing_behind(plugin: str) -> str | None:
    """The fetch error of a local plugin named with no seed: what a user reads in status."""
    return {"NoCloud": "no NoCloud seed found", "ConfigDrive": "no config drive found"}.get(plugin)


def cases() -> list[Case]:
    out: list[Case] = []
    for name, decl in DECLARED.items():
        if decl.get("fallback"):
            continue
        for i, rule in enumerate((*decl.get("dmi", ()), *decl.get("files", ()))):
            conds = (rule,) if isinstance(rule, str) else rule
            files = {}
            for cond in conds:
                key, pattern = cond.split("=", 1)
                files[key if "/" in key else f"sys/class/dmi/id/{key}"] = _value(pattern) + "\n"
            out.append(Case(f"{name}-host-fact-{i}", name, files=files, reason=_nothing_behind(name)))
        for lab in decl.get("labels", ()):
            out.append(Case(f"{name}-label-{lab}", name, label=lab))
            out.append(Case(f"{name}-label-{lab.upper()}", name, label=lab.upper()))
        for d in decl.get("seed_dirs", ()):
            out.append(Case(f"{name}-seed-dir-{d}", name, seed_dir=d))
        for prefix in decl.get("seedfrom", ()):
            url = SEEDFROM_EXAMPLES[prefix]
            reason = "SSL" if prefix == "https://" else None   # the loopback seed server speaks plain HTTP
            for alias in dict.fromkeys((entry_of(name).lower(), *DECLARED[entry_of(name)].get("aliases", ()))):
                out.append(Case(f"{name}-seedfrom-{prefix}-kernel-ds={alias}", name, cmdline=f"ds={alias};s={url}",
                                reason=reason))
            out.append(Case(f"{name}-seedfrom-{prefix}-smbios", name,
                            files={"sys/class/dmi/id/product_serial": f"ds={entry_of(name).lower()};s={url}\n"},
                            reason=reason))
            out.append(Case(f"{name}-seedfrom-{prefix}-system-config", name, settings={"seedfrom": url},
                            reason=reason))
        for key in decl.get("settings", ()):
            value: Any = {"instance-id": "iid-agree"} if key == "meta-data" else "#cloud-config\n{}\n"
            out.append(Case(f"{name}-setting-{key}", name, settings={key: value}))
    for entry in DEFAULT_LIST:
        if entry == FALLBACK:
            continue
        first = PARTS[entry][0]
        for alias in DECLARED[entry].get("aliases", ()):
            out.append(Case(f"{entry}-kernel-ds={alias}", first, cmdline=f"ds={alias}", reason=_nothing_behind(first)))
        out.append(Case(f"{entry}-ci.ds", first, cmdline=f"ci.ds={entry}", reason=_nothing_behind(first)))
        # the first case: the only entry of datasource_list, on a machine whose DMI says nothing of it
        out.append(Case(f"{entry}-only-entry", first, only=entry, reason=_nothing_behind(first),
                        files={"sys/class/dmi/id/sys_vendor": "QEMU\n"}))
    return out


CASES = cases()


def _seed(root: Path, plugin: str, where: Path) -> None:
    """The plugin's seed content in ``where`` (a seed directory, a label's stand-in directory)."""
    where.mkdir(parents=True, exist_ok=True)
    if plugin == "ConfigDrive":
        (where / "openstack/latest").mkdir(parents=True)
        (where / "openstack/latest/meta_data.json").write_text(json.dumps({"uuid": "iid-agree"}))
    else:
        (where / "meta-data").write_text(NOCLOUD_MD)
        (where / "user-data").write_text("#cloud-config\n{}\n")


def build(tmp: Path, case: Case, servers: Servers) -> Path:
    root = tmp / "root"
    for d in ("proc", "etc", "run", "var/lib", "sys/class/dmi/id"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "proc/cmdline").write_text(case.cmdline.replace("{seed}", servers.seed.hostport) + "\n")
    for rel, text in case.files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text.replace("{seed}", servers.seed.hostport))
    if case.label:   # a label's device: a directory stands in for the filesystem (tether.seedmount reads it)
        _seed(root, case.plugin, root / "dev/disk/by-label" / case.label)
    if case.seed_dir:
        _seed(root, case.plugin, root / case.seed_dir.lstrip("/"))
    if "seedfrom" in case.ident and DECLARED[case.plugin].get("network") is False:
        _seed(root, case.plugin, root / SEED_HOME.lstrip("/"))
    if case.needs_config or DECLARED[case.plugin]["network"]:
        cfg: dict[str, Any] = {"datasource": servers.settings()}
        if case.settings is not None:
            cfg["datasource"][entry_of(case.plugin)].update(
                {k: v.replace("{seed}", servers.seed.hostport) if isinstance(v, str) else v
                 for k, v in case.settings.items()})
        if case.only:
            cfg["datasource_list"] = [case.only]
        (root / "etc/tether").mkdir(parents=True, exist_ok=True)
        (root / "etc/tether/tether.cfg").write_text(json.dumps(cfg))
    return root


def run_stages(root: Path) -> tuple[str | None, StageStatus, StageStatus]:
    """The local stage's search, then the network stage's when the local one found nothing, as a boot runs them
    (the network stage reads the local stage's detect.json). Returns the plugin fetched from, if any."""
    target = Target.at(root)
    errors: list[str] = []
    env = Env(target, Host(sysroot=root, runner=FakeRunner()), FakeRunner(), PATHS, sysconfig.load(target, errors),
              errors)
    assert not errors
    local, net = StageStatus(target, "init-local"), StageStatus(target, "init")
    found = find_datasource(env, False, local) or find_datasource(env, True, net)
    if found is None:
        return None, local, net
    ds, inst = found
    assert inst.instance_id
    return ds.DECLARED_AS or ds.NAME, local, net


@pytest.mark.parametrize("case", CASES, ids=[c.ident for c in CASES])
def test_generator_and_stages_agree(tmp_path: Path, servers: Servers, case: Case) -> None:
    root = build(tmp_path, case, servers)
    generator([str(tmp_path / "gen")], root=str(root), sysroot=str(root))
    assert (root / "run/tether/enabled").exists(), (root / "run/tether/disabled").read_text()
    verdict = read_detection(Target.at(root))
    assert verdict is not None
    shutil.move(root / "run/tether/detect.json", tmp_path / "generator-detect.json")

    fetched, local, net = run_stages(root)
    stage = read_detection(Target.at(root))
    assert stage is not None and case.plugin in stage.candidates, stage
    if not case.needs_config:
        # same facts, same verdict: what the generator wrote is what the stages tried
        assert verdict.candidates == stage.candidates
        assert verdict.evidence == stage.evidence
    errors = [m for s in (local, net) for msgs in s.recoverable.values() for m in msgs]
    if case.reason is None:
        assert fetched == case.plugin, errors
        assert errors == []
    else:
        # named, or its platform recognised, with nothing behind it: tried, and the status says why it failed
        assert fetched is None
        assert any(m.startswith(f"datasource {case.plugin}: ") and case.reason in m for m in errors), errors
    # and the plugin's own detect() says yes too (the engine's metadata watch asks it)
    settings = sysconfig.load(Target.at(root)).get("datasource", {}).get(entry_of(case.plugin), {})
    ds = load(case.plugin)(DsContext(Host(sysroot=root, runner=FakeRunner()), Target.at(root), FakeRunner(),
                                     settings))
    assert ds.detect()


def test_every_datasource_and_kind_is_covered() -> None:
    """The enumeration reaches every plugin and each kind of evidence the declarations use."""
    covered = {c.plugin for c in CASES}
    assert covered == {n for n, d in DECLARED.items() if not d.get("fallback")}
    kinds = {k for d in DECLARED.values() for k in ("dmi", "files", "labels", "seed_dirs", "seedfrom", "settings")
             if d.get(k)}
    assert kinds == {"dmi", "files", "labels", "seed_dirs", "seedfrom", "settings"}
    idents = " ".join(c.ident for c in CASES)
    for bug in ("Ec2-only-entry", "ConfigDrive-seed-dir-/var/lib/tether/seed/config_drive",
                "NoCloud-seed-dir-/var/lib/tether/seed/nocloud-net", "NoCloud-seedfrom-/-system-config"):
        assert bug in idents


def test_refusals_are_logged_with_their_reason(tmp_path: Path, servers: Servers,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """Two datasources listed, no evidence for either: the local stage says why each one is not tried."""
    case = Case("refused", "Ec2", files={"sys/class/dmi/id/sys_vendor": "QEMU\n"})
    root = build(tmp_path, case, servers)
    (root / "etc/tether/tether.cfg").write_text(json.dumps({"datasource_list": ["Ec2", "ConfigDrive", "None"],
                                                            "datasource": servers.settings()}))
    with caplog.at_level(logging.INFO):
        fetched, _, _ = run_stages(root)
    assert fetched is None
    text = caplog.text
    assert "datasource Ec2 not tried: not its platform (DMI sys_vendor=QEMU" in text
    assert "datasource ConfigDrive not tried: no filesystem labelled config-2; no seed in " \
           "/var/lib/tether/seed/config_drive" in text
