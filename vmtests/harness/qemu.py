"""One test VM: QEMU under TCG with OVMF, serial console captured with host timestamps, hard timeouts.

Guest reboots always restart QEMU (``-no-reboot``, then a fresh process on the same disk and the same OVMF variable
store): in-place resets get several times slower under TCG, while EFI variables such as ``LoaderEntryOneShot``
survive in the VARS file (vm-notes §4). Networking is either no NIC at all or a user-mode NIC with ``restrict=on``
whose only openings are a guestfwd to the loopback metadata server and an optional hostfwd to 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vmtests.harness.hosttools import OVMF_CODE, OVMF_VARS

RELAY = Path(__file__).with_name("relay.py")
GUEST_MAC = "52:54:00:12:34:56"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")
# milestone -> pattern on a serial line; the first hit in each boot is kept (seconds since that QEMU started)
MILESTONES = (
    ("firmware_done", re.compile(r"BdsDxe: (loading|starting) Boot")),
    ("kernel", re.compile(r"Linux version \d")),
    ("initramfs", re.compile(r"Run /init as init process")),
    ("systemd", re.compile(r"systemd\[1\]: systemd \d+|Welcome to .*Debian")),
    ("multi_user", re.compile(r"Reached target .*(Multi-User System|multi-user)")),
    ("verdict_start", re.compile(r"VMTEST-BOOT n=")),
    ("agent_done", re.compile(r"VMTEST-AGENT n=")),
    ("cloud_init_done", re.compile(r"Cloud-init v\. .* finished at")),
    ("verdict_end", re.compile(r"VMTEST-END n=")),
    ("shutdown", re.compile(r"reboot: (Restarting system|Power down)|Kernel panic")),
)


@dataclass(frozen=True)
class Drive:
    path: Path
    readonly: bool = False
    serial: str = ""  # virtio-blk serial (max 20 chars): the guest's udev names /dev/disk/by-id/virtio-<serial>

    @property
    def fmt(self) -> str:
        return "qcow2" if self.path.suffix == ".qcow2" else "raw"


@dataclass(frozen=True)
class Network:
    meta_port: int | None = None  # loopback port of the metadata server, reached as 169.254.169.254:80
    ssh_port: int | None = None  # host 127.0.0.1:ssh_port -> guest :22
    mac: str = GUEST_MAC


@dataclass
class Boot:
    index: int
    lines: list[tuple[float, str]] = field(default_factory=list)
    milestones: dict[str, float] = field(default_factory=dict)
    end: str = "running"  # poweroff | reboot | panic | timeout | exited | cut


@dataclass
class RunResult:
    status: str  # poweroff | timeout | exited | max-boots | cut
    boots: list[Boot]
    wall: float
    log: Path

    @property
    def text(self) -> str:
        return "\n".join(line for boot in self.boots for _, line in boot.lines)


@dataclass
class VM:
    disk: Path
    log: Path
    vars: Path | None = None
    drives: list[Drive] = field(default_factory=list)
    net: Network | None = Network()
    smp: int = 2
    mem: int = 1024
    smbios: list[str] = field(default_factory=list)
    boot_timeout: float = 180.0
    max_boots: int = 1
    # False: the boot disk gets bootindex=0, and OVMF rewrites BootOrder from QEMU's order at every boot (dropping
    # entries the guest registered). True: no bootindex at all, so the firmware's own BootOrder variable decides,
    # as on a physical machine (the clean-install scenario boots the disk whose entry the installer registered).
    firmware_boot_order: bool = False
    # QEMU cache mode of the boot disk (the others stay "unsafe": read-only or scratch). The power-cut scenario
    # uses "writeback": the guest sees a volatile write cache and its flushes reach the image file.
    disk_cache: str = "unsafe"
    # Power cut (vmtests/powercut.py): asked with the boot so far after every serial line and every idle 0.2 s;
    # True kills this QEMU at once (SIGKILL to its process group) and the boot ends "cut".
    cut: Callable[[Boot], bool] | None = None

    def __post_init__(self) -> None:
        if self.vars is None:
            self.vars = self.log.with_suffix(".vars.fd")
        if not self.vars.exists():
            shutil.copyfile(OVMF_VARS, self.vars)  # a fresh variable store per VM, reused across its reboots

    def command(self) -> list[str]:
        accel = "tcg,thread=multi" if self.smp > 1 else "tcg"
        cmd = ["qemu-system-x86_64", "-machine", "q35", "-accel", accel, "-cpu", "max", "-smp", str(self.smp),
               "-m", str(self.mem),
               # -nodefaults: no implicit unrestricted NIC, no empty CD-ROM for OVMF to try first
               "-nodefaults", "-nographic", "-serial", "stdio", "-no-reboot",
               "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
               "-drive", f"if=pflash,format=raw,unit=1,file={self.vars}",
               "-device", "virtio-rng-pci"]
        for i, drive in enumerate([Drive(self.disk), *self.drives]):
            _no_commas(drive.path)
            ro = ",readonly=on" if drive.readonly else ""
            if drive.serial and not re.fullmatch(r"[A-Za-z0-9_.-]{1,20}", drive.serial):
                raise ValueError(f"drive serial {drive.serial!r}: 1-20 letters, digits, '_', '.', '-'")
            serial = f",serial={drive.serial}" if drive.serial else ""
            boot = ",bootindex=0" if i == 0 and not self.firmware_boot_order else ""
            cache = self.disk_cache if i == 0 else "unsafe"
            cmd += ["-drive", f"id=d{i},file={drive.path},format={drive.fmt},if=none,cache={cache}{ro}",
                    "-device", f"virtio-blk-pci,drive=d{i}" + boot + serial]
        if self.net is None:
            cmd += ["-nic", "none"]
        else:
            netdev = "user,id=n0,restrict=on,net=169.254.0.0/16,host=169.254.0.2"
            if self.net.meta_port:
                _no_commas(RELAY)
                netdev += (f",guestfwd=tcp:169.254.169.254:80-cmd:/usr/bin/python3 {RELAY} "
                           f"127.0.0.1 {self.net.meta_port}")
            if self.net.ssh_port:
                netdev += f",hostfwd=tcp:127.0.0.1:{self.net.ssh_port}-:22"
            cmd += ["-netdev", netdev, "-device", f"virtio-net-pci,netdev=n0,mac={self.net.mac}"]
        for table in self.smbios:
            cmd += ["-smbios", table]
        return cmd

    def run(self, on_reboot: Callable[[int], None] | None = None) -> RunResult:
        """Boot until the guest powers off (or ``max_boots`` boots ended, or a boot exceeds its timeout).
        ``on_reboot(n)`` runs before boot ``n`` (n >= 2) starts, e.g. to swap a seed or change metadata."""
        boots: list[Boot] = []
        start = time.monotonic()
        status = "exited"
        with open(self.log, "w") as log:
            log.write("# " + " ".join(self.command()) + "\n")
            while True:
                boot = Boot(len(boots) + 1)
                boots.append(boot)
                if boot.index > 1 and on_reboot is not None:
                    on_reboot(boot.index)
                boot.end = self._one_boot(boot, log, start)
                if boot.end == "timeout":
                    status = "timeout"
                    break
                if boot.end in ("poweroff", "cut"):
                    status = boot.end
                    break
                if boot.end not in ("reboot", "panic"):
                    status = "exited"
                    break
                if len(boots) >= self.max_boots:
                    status = "max-boots"
                    break
                log.write(f"[{time.monotonic() - start:8.3f}] # guest rebooted: starting a fresh QEMU\n")
            wall = time.monotonic() - start
            log.write(f"# RESULT status={status} boots={len(boots)} wall={wall:.1f}s\n")
        return RunResult(status, boots, wall, self.log)

    def _one_boot(self, boot: Boot, log, start: float) -> str:  # type: ignore[no-untyped-def]
        launched = time.monotonic()
        proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        buf = b""
        end = "exited"

        def handle(raw: bytes) -> None:
            nonlocal end
            now = time.monotonic()
            text = ANSI.sub("", raw.decode("utf-8", "replace"))
            boot.lines.append((now - launched, text))
            log.write(f"[{now - start:8.3f}] {text}\n")
            for name, rx in MILESTONES:
                if name not in boot.milestones and rx.search(text):
                    boot.milestones[name] = round(now - launched, 3)
            if "reboot: Power down" in text:
                end = "poweroff"
            elif "reboot: Restarting system" in text:
                end = "reboot"
            elif "Kernel panic" in text:
                end = "panic"

        try:
            while True:
                if time.monotonic() - launched > self.boot_timeout:
                    return "timeout"
                ready, _, _ = select.select([fd], [], [], 0.2 if self.cut else 0.5)
                if self.cut is not None and self.cut(boot):
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
                    log.write(f"[{time.monotonic() - start:8.3f}] # POWER CUT: QEMU killed (SIGKILL)\n")
                    return "cut"
                if not ready:
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    handle(line)
                log.flush()
            if buf:
                handle(buf)
            proc.wait(timeout=30)
            return end
        finally:
            _stop(proc)
            log.flush()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop our own QEMU (and the relays it spawned: same session), by process group id, never by name."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
    if proc.stdout is not None:
        proc.stdout.close()


def _no_commas(path: Path) -> None:
    if "," in str(path):
        raise ValueError(f"{path}: QEMU option values cannot contain ',' here; use a path without commas")


def grow(image: Path, by_bytes: int) -> None:
    """Enlarge a disk image (e.g. a test's overlay) by ``by_bytes``: the guest sees a bigger disk."""
    proc = subprocess.run(["qemu-img", "resize", "-q", "-f", "qcow2" if image.suffix == ".qcow2" else "raw",
                           str(image), f"+{by_bytes}"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"qemu-img resize {image} +{by_bytes} failed: {proc.stderr.strip()}")


def overlay(base: Path, out: Path) -> Path:
    """A qcow2 copy-on-write overlay of ``base`` (0.01 s): tests never write the cached disk."""
    out.unlink(missing_ok=True)
    fmt = "qcow2" if base.suffix == ".qcow2" else "raw"
    proc = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", fmt, str(out)],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"qemu-img create {out} failed: {proc.stderr.strip()}")
    return out
