"""The fallback datasource: no instance configuration, so a host with no datasource still boots cleanly."""

from __future__ import annotations

from tether.datasource import Datasource
from tether.instance import InstanceData

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tether.datasource import Evidence

EVIDENCE: Evidence = {"name": "None", "network": False, "aliases": ("none",), "fallback": True}


class NoneDatasource(Datasource):
    NAME = "None"
    NEEDS_NETWORK = EVIDENCE["network"]

    def fetch(self) -> InstanceData:
        return InstanceData(datasource="None", instance_id="iid-datasource-none", platform="none",
                            cloud_name="none", subplatform="config")


DATASOURCE = NoneDatasource
