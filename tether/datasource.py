"""The datasource plugin interface. Each datasource is one file in ``datasources/``."""

from __future__ import annotations

import time

from tether import log

TYPE_CHECKING = False  # the boot's first stage does not import typing; mypy reads the block below
if TYPE_CHECKING:
    from typing import Any, ClassVar

    from tether.host import Host
    from tether.instance import InstanceData
    from tether.runner import Runner
    from tether.target import Target

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
    NEEDS_NETWORK: ClassVar[bool] = False
    # Lower-case names this datasource also answers to in datasource_list / ds= (e.g. "nocloud-net").
    ALIASES: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ctx: DsContext) -> None:
        self.ctx = ctx

    def detect(self) -> bool:
        """Cheap, local and free of side effects: could this datasource be present?

        By default the one detector's evidence (tether/detect.py), so generator, stages and datasource agree.
        """
        from tether.detect import evidence
        return evidence(self.NAME, self.ctx.host, self.ctx.target) is not None

    def fetch(self) -> InstanceData:
        """Read the instance data; raise DatasourceError with a clear message when it cannot."""
        raise NotImplementedError

    def desired_host_config(self) -> Any:
        """The host configuration the metadata asks for (engine's metadata watch), or None."""
        return None

    def describe(self) -> str:
        """cloud-init's result.json datasource string, e.g. ``DataSourceNoCloud [seed=/dev/vdb]``."""
        return f"DataSource{self.NAME}"
