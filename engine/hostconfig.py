"""Typed model of Trident's Host Configuration (camelCase keys), as far as tether implements it.

Loading is three passes: features tether does not implement are cut out and reported as "not supported" with
their key path (``engine.unsupported``); the rest is converted strictly (unknown keys are errors); then the
cross-references are checked (``engine.hostcheck``). ``load_host_config`` runs all three.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from tether import yamlsafe
from tether.convert import convert, meta
from tether.errors import ConfigError, ConfigErrors

ServicingType = Literal["clean-install", "runtime-update", "ab-update", "all"]
FsType = Literal["ext4", "xfs", "vfat", "ntfs", "tmpfs", "auto"]
FsSource = Literal["image", "new", "adopted"]

_HEX = re.compile(r"^[0-9a-fA-F]+$")


@dataclass(frozen=True)
class OsImage:
    """The OS image: a raw, compressed raw or COSI file, with the hash that pins it."""

    CASE = "camel"
    url: str = field(metadata=meta(doc="file://, http://, https:// URL of the image, or an OCI registry reference "
                                       "(oci://registry/repository:tag or @sha256:...)"))
    sha384: str | None = field(default=None, metadata=meta(
        doc="SHA-384 of the file (for COSI: of metadata.json), or 'ignored'"))
    sha256: str | None = field(default=None, metadata=meta(doc="SHA-256 of the file, or 'ignored'"))

    def __post_init__(self) -> None:
        if (self.sha384 is None) == (self.sha256 is None):
            raise ValueError("give exactly one of sha384 or sha256 (the value may be 'ignored')")
        for name, length in (("sha384", 96), ("sha256", 64)):
            v = getattr(self, name)
            if v is not None and v != "ignored" and (len(v) != length or not _HEX.match(v)):
                raise ValueError(f"{name}: expected {length} hex digits or 'ignored', got {v!r}")
        if self.url.startswith("oci://"):
            from tether.engine.oci import OciError, parse_reference
            try:
                parse_reference(self.url)
            except OciError as e:
                raise ValueError(f"url: {e}") from None
        elif not self.url.startswith(("file://", "http://", "https://")):
            from tether.http.urls import redact_url  # the URL may carry user:password or a token
            raise ValueError("url: only file://, http://, https:// and oci:// images are supported, got "
                             f"{redact_url(self.url)!r}")

    @property
    def algorithm(self) -> str:
        return "sha384" if self.sha384 is not None else "sha256"

    @property
    def digest(self) -> str | None:
        """Expected hex digest, lower case, or None when verification is 'ignored'."""
        v = self.sha384 if self.sha384 is not None else self.sha256
        return None if v in (None, "ignored") else str(v).lower()


@dataclass(frozen=True)
class Partition:
    CASE = "camel"
    id: str
    size: str | int = field(metadata=meta(doc="bytes, with optional K/M/G/T suffix, or 'grow'"))
    type: str = field(default="linux-generic", metadata=meta(doc="discoverable partition type name or a GUID"))
    label: str | None = None
    uuid: str | None = None


@dataclass(frozen=True)
class Disk:
    CASE = "camel"
    id: str
    device: str
    partition_table_type: Literal["gpt"] = "gpt"
    partitions: tuple[Partition, ...] = ()


@dataclass(frozen=True)
class AbVolumePair:
    CASE = "camel"
    id: str
    volume_a_id: str
    volume_b_id: str


@dataclass(frozen=True)
class AbUpdate:
    CASE = "camel"
    volume_pairs: tuple[AbVolumePair, ...]


@dataclass(frozen=True)
class MountPoint:
    CASE = "camel"
    path: str
    options: str = "defaults"


@dataclass(frozen=True)
class FileSystem:
    CASE = "camel"
    device_id: str | None = None
    source: FsSource = "image"
    type: FsType | None = None
    mount_point: MountPoint | str | None = None

    @property
    def mount(self) -> MountPoint | None:
        if isinstance(self.mount_point, str):
            return MountPoint(self.mount_point)
        return self.mount_point


@dataclass(frozen=True)
class Swap:
    CASE = "camel"
    device_id: str

    @classmethod
    def normalize(cls, value: Any) -> Any:
        return {"deviceId": value} if isinstance(value, str) else value


@dataclass(frozen=True)
class Storage:
    CASE = "camel"
    disks: tuple[Disk, ...] = ()
    ab_update: AbUpdate | None = None
    filesystems: tuple[FileSystem, ...] = ()
    swap: tuple[Swap, ...] = ()


@dataclass(frozen=True)
class Password:
    CASE = "camel"
    type: Literal["locked"]


@dataclass(frozen=True)
class User:
    CASE = "camel"
    name: str
    password: Password | None = None
    primary_group: str | None = None
    secondary_groups: tuple[str, ...] = ()
    ssh_mode: Literal["block", "key-only"] = "block"
    ssh_public_keys: tuple[str, ...] = ()
    startup_command: str | None = None
    uid: int | None = None
    home_directory: str | None = None


@dataclass(frozen=True)
class KernelCommandLine:
    CASE = "camel"
    extra_command_line: tuple[str, ...] = ()


@dataclass(frozen=True)
class Services:
    CASE = "camel"
    enable: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()


@dataclass(frozen=True)
class AdditionalFile:
    CASE = "camel"
    destination: str
    content: str | None = None
    source: str | None = None
    permissions: str | None = None

    def __post_init__(self) -> None:
        if (self.content is None) == (self.source is None):
            raise ValueError("give exactly one of content or source")
        if not self.destination.startswith("/"):
            raise ValueError(f"destination: {self.destination!r} is not an absolute path")
        if self.permissions is not None and not re.fullmatch(r"0?[0-7]{3,4}", self.permissions):
            raise ValueError(f"permissions: {self.permissions!r} is not an octal mode such as 0644")

    @property
    def mode(self) -> int | None:
        return int(self.permissions, 8) if self.permissions else None


SelinuxMode = Literal["disabled", "permissive", "enforcing"]
UefiFallbackMode = Literal["conservative", "optimistic", "disabled"]
# Earlier Trident releases named the fallback modes after what the fallback path boots; same meanings.
_UEFI_FALLBACK_ALIASES = {"rollback": "conservative", "rollforward": "optimistic", "none": "disabled"}


@dataclass(frozen=True)
class Selinux:
    CASE = "camel"
    mode: SelinuxMode | None = field(default=None, metadata=meta(
        doc="None: leave the image's SELinux configuration as it is"))


@dataclass(frozen=True)
class KernelModule:
    """``os.modules[]``: how a kernel module loads in the new OS (modules-load.d / modprobe.d)."""

    CASE = "camel"
    name: str
    load_mode: Literal["always", "auto", "disable", "inherit"] = "inherit"
    options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.name):
            raise ValueError(f"name: {self.name!r} is not a kernel module name (letters, digits, '_', '-')")
        for k, v in self.options.items():
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", k):
                raise ValueError(f"options: {k!r} is not a module parameter name")
            if any(c.isspace() for c in str(v)) or not str(v):
                raise ValueError(f"options.{k}: {v!r} must be a non-empty value without white space")


@dataclass(frozen=True)
class Os:
    CASE = "camel"
    hostname: str | None = None
    users: tuple[User, ...] = ()
    kernel_command_line: KernelCommandLine | None = None
    services: Services | None = None
    additional_files: tuple[AdditionalFile, ...] = ()
    netplan: dict[str, Any] | None = None
    selinux: Selinux | None = None
    modules: tuple[KernelModule, ...] = ()
    uefi_fallback: UefiFallbackMode = field(default="conservative", metadata=meta(
        doc="when the removable-media boot path EFI/BOOT/BOOTX64.EFI is written (docs/engine.md)"))

    @classmethod
    def normalize(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("uefiFallback"), str) \
                and value["uefiFallback"] in _UEFI_FALLBACK_ALIASES:
            value = {**value, "uefiFallback": _UEFI_FALLBACK_ALIASES[value["uefiFallback"]]}
        return value


@dataclass(frozen=True)
class Script:
    CASE = "camel"
    name: str = ""
    run_on: tuple[ServicingType, ...] = ("all",)
    content: str | None = None
    path: str | None = None
    interpreter: str | None = None
    arguments: tuple[str, ...] = ()
    environment_variables: dict[str, str] = field(default_factory=dict)
    log_file_path: str | None = field(default=None, metadata=meta(
        doc="tether extension (not in Trident's schema): file the script's output is appended to, in the root "
            "the script configures; default /var/log/tether/scripts/<stage>-<n>-<name>.log"))

    def __post_init__(self) -> None:
        if (self.content is None) == (self.path is None):
            raise ValueError("give exactly one of content or path")
        if self.log_file_path is not None and not self.log_file_path.startswith("/"):
            raise ValueError(f"logFilePath: {self.log_file_path!r} is not an absolute path")


@dataclass(frozen=True)
class Scripts:
    CASE = "camel"
    pre_servicing: tuple[Script, ...] = ()
    post_provision: tuple[Script, ...] = ()
    post_configure: tuple[Script, ...] = ()


@dataclass(frozen=True)
class HealthCheck:
    """A script check (content or path) or a systemd check (systemdServices), in either of Trident's spellings."""

    CASE = "camel"
    name: str = ""
    run_on: tuple[ServicingType, ...] = ("all",)
    content: str | None = None
    path: str | None = None
    interpreter: str | None = None
    arguments: tuple[str, ...] = ()
    environment_variables: dict[str, str] = field(default_factory=dict)
    systemd_services: tuple[str, ...] | None = None
    timeout_seconds: int = 30

    @classmethod
    def normalize(cls, value: Any) -> Any:
        # The schema tags the variant ({Script: {...}}); Trident's samples write it flat. Accept both.
        if isinstance(value, dict) and len(value) == 1:
            (tag, inner), = value.items()
            if tag in ("Script", "SystemdCheck"):
                if not isinstance(inner, dict):
                    raise ValueError(f"{tag}: expected a mapping")
                return inner
        return value

    def __post_init__(self) -> None:
        kinds = [k for k in ("content", "path", "systemd_services") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of content, path or systemdServices")
        if self.systemd_services is not None and (self.content or self.path or self.interpreter or self.arguments):
            raise ValueError("a systemd check takes no script fields")
        if self.timeout_seconds < 0:
            raise ValueError("timeoutSeconds: must not be negative")


@dataclass(frozen=True)
class Health:
    CASE = "camel"
    checks: tuple[HealthCheck, ...] = ()


@dataclass(frozen=True)
class Trident:
    """Only the datastore location is honoured; the other agent settings are rejected as not supported."""

    CASE = "camel"
    datastore_path: str | None = None


@dataclass(frozen=True)
class HostConfiguration:
    CASE = "camel"
    image: OsImage | None = None
    storage: Storage = field(default_factory=Storage)
    os: Os = field(default_factory=Os)
    scripts: Scripts = field(default_factory=Scripts)
    health: Health = field(default_factory=Health)
    trident: Trident = field(default_factory=Trident)
    internal_params: dict[str, Any] | None = field(default=None, metadata=meta(
        doc="Trident's internal tuning parameters: accepted and ignored (a note says so)"))


def to_data(obj: Any) -> Any:
    """The model back to plain camelCase data (tuples as lists), for storing and comparing."""
    from tether.convert import _fields  # the converter's own key mapping, so round trips match

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for attr, key, _tp, _f in _fields(type(obj)):
            v = getattr(obj, attr)
            if v is None:
                continue
            out[key] = to_data(v)
        return out
    if isinstance(obj, tuple | list):
        return [to_data(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_data(v) for k, v in obj.items()}
    return obj


def load_host_config(text: str | bytes, source: str = "host configuration") -> HostConfiguration:
    data = yamlsafe.load(text, source)
    if data is None:
        data = {}
    return parse_host_config(data, source)


def _prefix(errors: list[ConfigError], source: str) -> list[ConfigError]:
    return [ConfigError(e.path, e.message, source) for e in errors]


def parse_host_config(data: Any, source: str = "host configuration") -> HostConfiguration:
    """Data (already loaded YAML/JSON) to a validated model; ``ConfigErrors`` lists every problem with its path."""
    from tether.engine.hostcheck import check_logic
    from tether.engine.unsupported import strip_unsupported

    if not isinstance(data, dict):
        raise ConfigErrors([ConfigError("", "a host configuration must be a mapping", source)])
    work = copy.deepcopy(data)
    cut = strip_unsupported(work)
    try:
        hc = convert(HostConfiguration, work)
    except ConfigErrors as e:
        raise ConfigErrors(_prefix(cut.errors + e.errors, source)) from None
    # The cross-reference checks run even when a feature was cut out, so one run reports every problem; the ids
    # the cut-out sections defined count as known, so they are not echoed as unknown references.
    errors = cut.errors + check_logic(hc, known_ids=cut.ids)
    if errors:
        raise ConfigErrors(_prefix(errors, source))
    return hc

