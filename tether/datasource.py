"""The datasource plugin interface. Each datasource is one file in ``datasources/``."""

from __future__ import annotations

import time

from tether import log

TYPE_CHECKING = False  # the boot's first stage does not import typing; mypy reads the block below
if TYPE_CHECKING:
    from typing import Any, ClassVar, Required, TypedDict

    from tether.host import Host
    from tether.instance import InstanceData
    from tether.runner import Runner
    from tether.target import Target

    class Evidence(TypedDict, total=False):
        """A datasource's declaration, ``EVIDENCE`` at the top of its file: plain strings, tuples and bools, so
        scripts/detect-table can compile every declaration into tether/detect_table.py for the generator."""

        name: Required[str]         # the plugin's registry name (cloud-init's: "Ec2"; "NoCloudNet" for a part)
        network: Required[bool]     # runs in the network stage
        module: str                 # its file in datasources/ (filled in by scripts/detect-table)
        part_of: str                # the datasource_list entry it runs under, when it is a part of one
        aliases: tuple[str, ...]    # lower-case names it also answers to in ds= and datasource_list
        fallback: bool              # always present, tried last (None)
        # platform facts: "key=value" or "key=prefix*" (case-insensitive); a tuple of them must all hold.
        # A key with a "/" is a file under the sysroot, else a DMI key (/sys/class/dmi/id/<key>).
        dmi: tuple[str | tuple[str, ...], ...]
        files: tuple[str, ...]
        # seed evidence: where the data is
        labels: tuple[str, ...]     # filesystem labels (any case)
        label_setting: str          # datasource.<NAME> key that replaces them
        seed_dirs: tuple[str, ...]  # directories in the target root, first found wins
        seed_files: tuple[str, ...]  # what makes one of those a seed (any of them)
        seedfrom: tuple[str, ...]   # prefixes of ds=...;s=<seedfrom> or datasource.<NAME>.seedfrom it reads
        settings: tuple[str, ...]   # datasource.<NAME> keys that carry the data themselves

LOG = log.get(__name__)


class DsContext:
    """What a datasource works with: ``settings`` is the system config's ``datasource.<NAME>``, ``deadline`` a
    ``time.monotonic()`` bound for ``fetch()``."""

    def __init__(self, host: Host, target: Target, runner: Runner, settings: dict[str, Any] | None = None,
                 deadline: float | None = None) -> None:
        self.host = host
        self.target = target
        self.runner = runner
        self.settings: dict[str, Any] = {} if settings is None else settings
        self.deadline = deadline

    def time_left(self, default: float) -> float:
        if self.deadline is None:
            return default
        return max(0.0, min(default, self.deadline - time.monotonic()))


class Datasource:
    NAME: ClassVar[str] = ""
    NEEDS_NETWORK: ClassVar[bool] = False   # its EVIDENCE["network"]
    DECLARED_AS: ClassVar[str] = ""         # its EVIDENCE["name"] when that differs from NAME (NoCloudNet)

    def __init__(self, ctx: DsContext) -> None:
        self.ctx = ctx

    def detect(self) -> bool:
        """Cheap, local and free of side effects: could this datasource be present?

        Yes when this boot's detector chose it (/run/tether/detect.json: evidence, ``ds=`` or the only entry of
        datasource_list), or when its declared evidence is there now (tether/detect.py), never by a rule of its
        own. The stages do not ask: they try what the detector chose.
        """
        from tether.detect import evidence, read_detection
        name = self.DECLARED_AS or self.NAME
        det = read_detection(self.ctx.target)
        if det is not None and name in det.candidates:
            return True
        return evidence(name, self.ctx.host, self.ctx.target, self.ctx.settings) is not None

    def fetch(self) -> InstanceData:
        """Read the instance data; raise DatasourceError with a clear message when it cannot."""
        raise NotImplementedError

    def desired_host_config(self) -> Any:
        """The host configuration the metadata asks for (engine's metadata watch), or None."""
        return None

    def describe(self) -> str:
        """cloud-init's result.json datasource string, e.g. ``DataSourceNoCloud [seed=/dev/vdb]``."""
        return f"DataSource{self.NAME}"
