"""Boot the cached Debian guest (scripts/build-guest-image) under QEMU with a config drive, read the console.

The guest image carries a per-boot probe (``guest-check``, written by the build script) that waits for
cloud-init, prints ``GUESTCHECK key=value`` lines and ``PASSWORD-CHECK: <verdict>`` to the serial console and
powers the VM off. A boot therefore ends by itself; every wait here is still bounded by a timeout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-guest-image"
REQUIRED_TOOLS = ("qemu-system-x86_64", "qemu-img", "debootstrap", "mkfs.ext4")
REQUIRE_ENV = "ESXI_CONFIGDRIVE_REQUIRE_GUEST"
ACCEL_ENV = "ESXI_CONFIGDRIVE_GUEST_ACCEL"  # kvm | tcg; unset: probe KVM once, else TCG

IMAGE_BUILD_TIMEOUT = 900.0  # a fresh debootstrap took ~2 min here; the slack is for slow mirrors
BOOT_TIMEOUT = 300.0  # a TCG boot to power-off took ~45 s here
KVM_PROBE_TIMEOUT = 10.0  # a working KVM reaches the probe's kernel panic in ~2 s

# What the session measured ("what": "how much"), printed by the conftest at the end of the session.
REPORT: dict[str, str] = {}

CONTROLLERS = {
    # Powered-off attach in vSphere: the IDE CD-ROM on the second channel, as a VM's first CD-ROM takes ide.0.
    "ide": ["-device", "ide-cd,drive=cd,bus=ide.1"],
    # Powered-on attach: a SATA CD-ROM on an AHCI controller.
    "ahci": ["-device", "ahci,id=ahci", "-device", "ide-cd,drive=cd,bus=ahci.0"],
}


def missing_tools() -> list[str]:
    # debootstrap and mkfs.ext4 live in /usr/sbin, often not on a non-root user's PATH (the build uses sudo).
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [tool for tool in REQUIRED_TOOLS if shutil.which(tool, path=path) is None]


def guest_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


@dataclass(frozen=True)
class GuestImage:
    """The cached root image (read-only base for overlays), the kernel and initrd booted from outside it."""

    directory: Path

    @property
    def root(self) -> Path:
        return self.directory / "image.raw"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"


def build_image(timeout: float = IMAGE_BUILD_TIMEOUT) -> GuestImage:
    """Run the (idempotent, cached) build script; its last stdout line is the image folder."""
    proc = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/build-guest-image failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    image = GuestImage(Path(proc.stdout.strip().splitlines()[-1]))
    for path in (image.root, image.kernel, image.initrd):
        if not path.is_file():
            raise RuntimeError(f"scripts/build-guest-image did not produce {path}")
    return image


def choose_accel(image: GuestImage, scratch: Path) -> str:
    """``kvm`` only if a KVM guest demonstrably runs: /dev/kvm can exist and still hang QEMU (nested setups)."""
    wanted = os.environ.get(ACCEL_ENV)
    if wanted:
        return wanted
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    console = scratch / "kvm-probe.log"
    # No root disk: the kernel panics right after starting, and panic=-1 + -no-reboot ends QEMU.
    cmd = [
        *_qemu_base("kvm", console),
        "-kernel", str(image.kernel),
        "-append", "console=ttyS0 panic=-1 root=/dev/null",
    ]  # fmt: skip
    try:
        subprocess.run(cmd, capture_output=True, timeout=KVM_PROBE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return "tcg"
    text = console.read_text(errors="replace") if console.exists() else ""
    return "kvm" if "Kernel panic" in text else "tcg"


def _qemu_base(accel: str, console: Path) -> list[str]:
    return [
        "qemu-system-x86_64",
        "-accel", accel,
        "-nodefaults",            # no floppy, VGA, NIC or default CD-ROM: only what a test adds
        "-m", "1024",
        "-smp", "2",
        "-nic", "none",
        "-display", "none",
        "-no-reboot",             # a guest reboot ends QEMU instead of looping
        "-serial", f"file:{console}",
    ]  # fmt: skip


@dataclass
class Boot:
    """One boot's serial console, parsed."""

    console: str
    seconds: float

    def values(self, key: str) -> list[str]:
        """Every ``GUESTCHECK key=value`` (or ``GUESTCHECK key: value``) the probe printed for ``key``."""
        # Not anchored at the line start: another writer (a login prompt, the kernel) may share the line.
        pattern = re.compile(rf"GUESTCHECK {re.escape(key)}[=:] ?(.*?)\r?$", re.M)
        return pattern.findall(self.console)

    def value(self, key: str) -> str:
        found = self.values(key)
        assert len(found) == 1, f"expected one GUESTCHECK {key}, got {found!r}\n{self.tail()}"
        return found[0]

    def verdict(self, name: str = "PASSWORD-CHECK") -> str:
        found = re.findall(rf"(?<![\w-]){re.escape(name)}: (\S+)", self.console)
        assert len(found) == 1, f"expected one {name} line, got {found!r}\n{self.tail()}"
        return found[0]

    @property
    def datasource(self) -> str:
        """cloud-init's own summary line from its final stage."""
        found = re.findall(r"Cloud-init v\. \S+ finished at .*?Datasource (.*?)\.\s+Up ", self.console)
        assert len(found) == 1, f"expected one cloud-init 'finished' line, got {found!r}\n{self.tail()}"
        return found[0]

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.console.splitlines()[-lines:])


class GuestDisk:
    """A VM's disk: a copy-on-write overlay on the cached image, so the base stays clean and boots can repeat."""

    def __init__(self, image: GuestImage, path: Path, accel: str) -> None:
        self.image = image
        self.path = path
        self.accel = accel
        self.boots = 0
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.root), "-F", "raw", str(path)],
            check=True,
            timeout=60,
        )

    def boot(
        self,
        drive: Path | None,
        controller: str = "ide",
        kernel_args: str = "",
        qemu_args: tuple[str, ...] = (),
        timeout: float = BOOT_TIMEOUT,
    ) -> Boot:
        """Boot until the guest powers itself off; fail (with the console's tail) if it does not in time."""
        self.boots += 1
        console = self.path.with_name(f"{self.path.stem}-boot{self.boots}.log")
        cmd = [
            *_qemu_base(self.accel, console),
            "-kernel", str(self.image.kernel),
            "-initrd", str(self.image.initrd),
            "-append", f"root=/dev/vda rw console=ttyS0 quiet {kernel_args}".strip(),
            "-drive", f"file={self.path},if=virtio,format=qcow2",
        ]  # fmt: skip
        if drive is not None:
            cmd += ["-drive", f"file={drive},media=cdrom,if=none,id=cd,readonly=on,format=raw"]
            cmd += CONTROLLERS[controller]
        cmd += qemu_args
        started = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            text = console.read_text(errors="replace") if console.exists() else ""
            raise AssertionError(
                f"guest did not power off within {timeout:.0f} s; console tail:\n" + "\n".join(text.splitlines()[-60:])
            ) from None
        result = Boot(console.read_text(errors="replace"), time.monotonic() - started)
        REPORT[f"{self.path.stem} VM, boot {self.boots} ({controller}, {self.accel})"] = f"{result.seconds:.1f} s"
        if proc.returncode != 0:
            raise AssertionError(f"qemu exited with {proc.returncode}: {proc.stderr}\n{result.tail()}")
        assert "GUESTCHECK done" in result.console, f"the guest probe did not finish\n{result.tail()}"
        return result
