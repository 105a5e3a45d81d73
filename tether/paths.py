"""Where tether keeps things, always relative to a target root. Documented in docs/state.md."""

from __future__ import annotations

from tether.record import Record

LIB = "/var/lib/tether"
RUN = "/run/tether"


class Paths(Record):
    """The state directories (``lib``, ``run``, ``etc``) and log files; read-only by convention (hashable)."""

    __slots__ = ("lib", "run", "log", "output_log", "etc")

    def __init__(self, lib: str = LIB, run: str = RUN, log: str = "/var/log/tether.log",
                 output_log: str = "/var/log/tether-output.log", etc: str = "/etc/tether") -> None:
        self.lib = lib
        self.run = run
        self.log = log
        self.output_log = output_log
        self.etc = etc

    def __hash__(self) -> int:
        return hash(self._values())

    @property
    def instance_link(self) -> str:
        return f"{self.lib}/instance"

    def instance_dir(self, iid: str) -> str:
        return f"{self.lib}/instances/{safe_name(iid)}"

    def instance_sem(self, iid: str) -> str:
        return f"{self.instance_dir(iid)}/sem"

    @property
    def once_sem(self) -> str:
        return f"{self.lib}/sem"

    @property
    def data(self) -> str:
        return f"{self.lib}/data"

    @property
    def boot_imports(self) -> str:
        """What the network stage ran on the last boot (tether/bootimports.py)."""
        return f"{self.data}/boot-imports.json"

    @property
    def status_json(self) -> str:
        return f"{self.run}/status.json"

    @property
    def result_json(self) -> str:
        return f"{self.run}/result.json"

    @property
    def boot_finished(self) -> str:
        return f"{self.lib}/instance/boot-finished"

    @property
    def instance_data(self) -> str:
        return f"{self.run}/instance-data.json"

    @property
    def instance_data_sensitive(self) -> str:
        return f"{self.run}/instance-data-sensitive.json"

    def scripts(self, kind: str) -> str:
        """per-boot, per-instance, per-once, vendor (system-wide dirs, as cloud-init)."""
        return f"{self.lib}/scripts/{kind}"

    def instance_scripts(self, iid: str) -> str:
        return f"{self.instance_dir(iid)}/scripts"


def safe_name(iid: str) -> str:
    """An instance-id as a single path component (cloud-init does the same replacement)."""
    out = iid.replace("/", "_").strip()
    return out if out not in ("", ".", "..") else "iid-invalid"


PATHS = Paths()
