"""The local stage's network step: choose the config, parse it, render it, record what was done.

Called by ``tether.stages`` before systemd-networkd starts. A config that cannot be decoded or parsed does
not leave the machine unreachable: tether renders the DHCP fallback instead, then raises so the stage records
the error (the message says what was written in its place).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tether import log
from tether.errors import CommandError, ConfigError, ConfigErrors, TetherError
from tether.host import Host
from tether.network import netplan, networkd
from tether.network.filesync import SyncReport
from tether.network.live import Iface, sysfs_interfaces
from tether.network.model import NetworkModel
from tether.network.parse import parse_config
from tether.network.select import choose_renderer, fallback_config, has_nm_profiles, select_config
from tether.paths import PATHS
from tether.runner import Runner
from tether.target import Target

LOG = log.get(__name__)
APPLIED_MARKER = f"{PATHS.run}/network-applied"


class NetworkConfigError(TetherError):
    """The chosen network config was unusable; the fallback was rendered instead."""


@dataclass
class NetworkResult:
    source: str                       # why this config (the reason from select_config)
    renderer: str                     # "networkd", "netplan", "network-manager" or "none"
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        if self.renderer == "none":
            return f"{self.source}; nothing written"
        parts = [f"{self.source}; {self.renderer}: {len(self.written)} written, {len(self.unchanged)} unchanged, "
                 f"{len(self.removed)} removed"]
        if self.renamed:
            parts.append("renamed " + ", ".join(f"{a}->{b}" for a, b in self.renamed))
        if self.warnings:
            parts.append(f"{len(self.warnings)} warning(s)")
        return "; ".join(parts)


def apply_network(target: Target, host: Host, system_config: dict[str, Any],
                  datasource_config: dict[str, Any] | None, runner: Runner, live: bool,
                  ifaces: list[Iface] | None = None) -> NetworkResult:
    """Render this boot's network config into ``target``; ``ifaces`` overrides the sysfs view (tests)."""
    ifaces = sysfs_interfaces(host.sysroot) if ifaces is None else ifaces
    failure: str | None = None
    try:
        cfg, reason = select_config(cmdline=host.cmdline, system_config=system_config,
                                    datasource_config=datasource_config, fallback_ifaces=ifaces)
    except (ConfigError, ConfigErrors) as e:
        failure = str(e)
        cfg, reason = fallback_config(ifaces)
    model: NetworkModel | None = None
    if cfg is not None:
        try:
            model = parse_config(cfg, reason)
        except ConfigErrors as e:
            if reason.startswith("fallback"):
                raise
            failure = str(e)
            cfg, reason = fallback_config(ifaces)
            model = parse_config(cfg, reason) if cfg is not None else None
    if failure:
        reason += " (after an unusable config)"
    if cfg is None or model is None:
        LOG.info("network: %s", reason)
        result = NetworkResult(reason, "none")
    else:
        result = _render(target, system_config, cfg, model, reason)
        if live:
            result.renamed = rename_interfaces(model, ifaces, runner)
            if result.renderer == "netplan":
                _netplan_generate(runner, result)
    for w in result.warnings:
        LOG.warning("network config: %s", w)
    target.write(APPLIED_MARKER, json.dumps({"source": result.source, "renderer": result.renderer,
                                             "files": sorted(result.written + result.unchanged)}) + "\n")
    if failure:
        raise NetworkConfigError(f"{failure}; rendered instead: {result.summary}")
    return result


def _render(target: Target, system_config: dict[str, Any], cfg: dict[str, Any], model: NetworkModel,
            reason: str) -> NetworkResult:
    renderer = choose_renderer(target, system_config)
    rep, warnings = render(target, renderer, cfg, model)
    return NetworkResult(reason, renderer, rep.written, rep.unchanged, rep.removed,
                         warnings=list(model.warnings) + warnings)


def render(target: Target, renderer: str, cfg: dict[str, Any], model: NetworkModel) -> tuple[SyncReport, list[str]]:
    """Write ``model`` with ``renderer`` and remove what the other renderers wrote earlier; (report, warnings)."""
    warnings: list[str] = []
    if renderer == "netplan":
        # v2 goes through untouched: netplan knows keys the model does not carry
        doc = cfg if cfg.get("version") == 2 else netplan.to_netplan(model)
        rep = netplan.write_netplan(target, doc).merge(_only_removed(networkd.remove_networkd(target)))
    elif renderer == "network-manager":
        from tether.network import nm  # only on images that use it
        rep, warnings = nm.sync_nm(model, target)
        rep = rep.merge(_only_removed(netplan.remove_netplan(target)))
    else:
        rep = networkd.sync_networkd(model, target).merge(_only_removed(netplan.remove_netplan(target)))
    if renderer != "network-manager" and has_nm_profiles(target):  # nm loads only when it wrote something
        from tether.network import nm
        rep = rep.merge(_only_removed(nm.remove_nm(target)))
    return rep, warnings


def _only_removed(rep: SyncReport) -> SyncReport:
    return SyncReport(removed=rep.removed)


def activate(target: Target, runner: Runner) -> None:
    """Make the running network service take the files the last ``apply_network`` wrote. For the network stage
    when it replaced the fallback: cloud-init brings interfaces up outside its local stage only (in the local
    stage NetworkManager has not started yet and reads the profiles when it does)."""
    try:
        applied = json.loads(target.read_text(APPLIED_MARKER, default="{}"))
    except ValueError:
        applied = {}
    commands = [["networkctl", "reload"]]
    if applied.get("renderer") == "network-manager":
        from tether.network import nm
        commands = nm.activation_commands(target, applied.get("files", []))
    for argv in commands:
        if not _activate_step(runner, argv) and argv[-1] == "reload":
            return   # the service is not running: it reads the files when it starts


def _activate_step(runner: Runner, argv: list[str]) -> bool:
    """Run one activation command; a failure is a warning (the files are in place for the next start)."""
    try:
        res = runner.run(argv, check=False, timeout=120)   # above nmcli's own 90 s wait
    except CommandError as e:
        LOG.warning("network: %s", e)
        return False
    if res.code != 0:
        LOG.warning("network: %s exited %d: %s", " ".join(argv), res.code, res.stderr.strip())
    return res.code == 0


def _netplan_generate(runner: Runner, result: NetworkResult) -> None:
    try:
        runner.run([netplan.NETPLAN_BIN, "generate"], timeout=60)
    except CommandError as e:
        result.warnings.append(f"netplan generate: {e}")


def rename_interfaces(model: NetworkModel, ifaces: list[Iface], runner: Runner) -> list[tuple[str, str]]:
    """Give NICs matched by MAC their ``set-name`` now: in the local stage udev has already named them, so
    a ``.link`` file alone would only take effect next boot."""
    by_mac = {i.mac: i for i in ifaces if i.mac and i.physical}
    taken = {i.name for i in ifaces}
    done: list[tuple[str, str]] = []
    for iface in model.interfaces:
        if iface.kind != "physical" or not iface.set_name or iface.match is None or not iface.match.mac:
            continue
        cur = by_mac.get(iface.match.mac)
        new = iface.set_name
        if cur is None or cur.name == new:
            continue
        if new in taken:
            LOG.warning("network: cannot rename %s to %s: the name is in use", cur.name, new)
            continue
        try:
            if cur.up:
                runner.run(["ip", "link", "set", "dev", cur.name, "down"], timeout=10)
            runner.run(["ip", "link", "set", "dev", cur.name, "name", new], timeout=10)
            if cur.up:
                runner.run(["ip", "link", "set", "dev", new, "up"], timeout=10)
        except CommandError as e:
            LOG.warning("network: renaming %s to %s failed: %s", cur.name, new, e)
            continue
        taken.discard(cur.name)
        taken.add(new)
        done.append((cur.name, new))
    return done
