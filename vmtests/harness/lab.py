"""Running a declarative scenario: disk overlay + seeds + plan disk -> QEMU run -> parsed guest verdicts."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vmtests.harness import qemu, verdict
from vmtests.harness.imds import ImdsServer
from vmtests.harness.verdict import BootVerdict, Step

# Seconds per boot before the VM is killed. A boot takes 20-25 s on an idle 2-core host and up to ~70 s when
# other work competes for the cores; the limit only has to catch hangs.
BOOT_TIMEOUT = 300.0

# SMBIOS tables that make the guest look like an EC2 Nitro instance (what DMI-based detection reads).
EC2_SMBIOS = [
    "type=1,manufacturer=Amazon EC2,product=t3.micro,uuid=ec2d6a8e-1f0b-4c4e-9d55-0123456789ab,"
    "serial=ec2d6a8e-1f0b-4c4e-9d55-0123456789ab",
    "type=3,manufacturer=Amazon EC2,asset=Amazon EC2",
]


@dataclass
class Outcome:
    result: qemu.RunResult
    verdicts: list[BootVerdict]
    plan: Sequence[Sequence[Step]]

    def boot(self, n: int) -> BootVerdict:
        for v in self.verdicts:
            if v.index == n:
                return v
        raise AssertionError(f"boot {n} never happened ({len(self.verdicts)} boots; serial log {self.result.log})")

    def problems(self) -> list[str]:
        out = []
        if self.result.status != "poweroff":
            out.append(f"VM ended with {self.result.status} after {self.result.wall:.0f} s, not a guest poweroff")
        if len(self.verdicts) != len(self.plan):
            out.append(f"{len(self.verdicts)} boots, plan has {len(self.plan)}")
        for v in self.verdicts:
            if not v.reached:
                out.append(f"boot {v.index}: the guest agent never started (multi-user.target not reached?)")
            elif not v.ended:
                out.append(f"boot {v.index}: the guest agent did not finish its checks")
        failures = verdict.describe_failures(self.verdicts, self.plan)
        if failures:
            out.append(failures)
        return out

    def assert_ok(self) -> None:
        problems = self.problems()
        assert not problems, "\n".join(problems)


@dataclass
class Lab:
    """Per-test workspace: builds overlays and small disks in ``work``, remembers serial logs for failure reports."""

    work: Path
    logs: list[Path] = field(default_factory=list)
    smp: int = 2
    mem: int = 1024

    def __post_init__(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)

    def run(self, disk: Path, plan: Sequence[Sequence[Step]], *, name: str = "vm",
            seed_iso: Path | None = None, imds: ImdsServer | None = None, smbios: Sequence[str] = (),
            on_reboot: Callable[[int], None] | None = None, plan_files: dict[str, str | bytes] | None = None,
            ssh_port: int | None = None, boot_timeout: float = BOOT_TIMEOUT,
            extra_drives: Sequence[qemu.Drive] = (), max_boots: int | None = None,
            grow_disk_bytes: int = 0, firmware_boot_order: bool = False) -> Outcome:
        """``max_boots`` counts QEMU launches (default: one per plan boot); boots that never reach the guest agent
        (a panicking slot) need more launches than the plan has boots. ``grow_disk_bytes`` enlarges the boot
        disk's overlay before the first boot (an image booted on a bigger disk)."""
        self.work.mkdir(parents=True, exist_ok=True)
        top = qemu.overlay(disk, self.work / f"{name}.qcow2")
        if grow_disk_bytes:
            qemu.grow(top, grow_disk_bytes)
        drives = [qemu.Drive(verdict.plan_disk(self.work / f"{name}-plan.img", plan, plan_files))]
        if seed_iso is not None:
            drives.append(qemu.Drive(seed_iso, readonly=True))
        drives.extend(extra_drives)
        log = self.work / f"{name}.serial.log"
        self.logs.append(log)
        vm = qemu.VM(disk=top, log=log, drives=drives, smp=self.smp, mem=self.mem,
                     net=qemu.Network(meta_port=imds.port if imds else None, ssh_port=ssh_port),
                     smbios=list(smbios), boot_timeout=boot_timeout, max_boots=max_boots or max(1, len(plan)),
                     firmware_boot_order=firmware_boot_order)
        try:
            result = vm.run(on_reboot=on_reboot)
        finally:
            top.unlink(missing_ok=True)
        return Outcome(result, verdict.parse(result), plan)

    def cleanup(self, keep_logs: bool) -> None:
        if not keep_logs:
            shutil.rmtree(self.work, ignore_errors=True)


def log_tail(path: Path, lines: int = 80) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text[-lines:])


def ssh_keypair(directory: Path) -> tuple[str, bytes]:
    """A throwaway ed25519 key pair for one test session: (public key line, private key bytes)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "id_vmtest"
    key.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vmtest", "-f", str(key)], check=True,
                   capture_output=True, timeout=60)
    return key.with_suffix(".pub").read_text().strip(), key.read_bytes()
