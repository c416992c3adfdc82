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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-guest-image"
REQUIRED_TOOLS = ("qemu-system-x86_64", "qemu-img", "debootstrap", "mkfs.ext4", "systemctl")
REQUIRE_ENV = "ESXI_CONFIGDRIVE_REQUIRE_GUEST"
ACCEL_ENV = "ESXI_CONFIGDRIVE_GUEST_ACCEL"  # kvm | tcg; unset: probe KVM once, else TCG
RELEASES_ENV = "ESXI_CONFIGDRIVE_GUEST_RELEASES"  # comma-separated subset of RELEASES; unset: all of them

# The Debian suites the guest tests boot (scripts/build-guest-image builds each): the stable release most
# guests run today and the newest, whose cloud-init is three years younger.
RELEASES = {"bookworm": "Debian 12, cloud-init 22.4", "trixie": "Debian 13, cloud-init 25.1"}

# The guest's one NIC: virtio on QEMU's user network with restrict=on, so nothing leaves the QEMU process.
# QEMU's built-in DHCP server leases 10.0.2.15/24 with gateway 10.0.2.2 and DNS server 10.0.2.3.
GUEST_MAC = "52:54:00:c0:f1:9d"
NIC_ARGS = ("-nic", f"user,restrict=on,model=virtio-net-pci,mac={GUEST_MAC}")

# A VMware VM as ds-identify and cloud-init's DataSourceVMware recognise one (REFERENCE.md §10): VMware's SMBIOS
# system strings (DMI product name "VMware Virtual Platform"), and QEMU's hypervisor CPUID bit hidden, so that
# systemd-detect-virt goes by the SMBIOS and says "vmware" instead of "qemu". Configuration, not a stand-in.
VMWARE_PLATFORM_ARGS = (
    "-smbios", "type=1,manufacturer=VMware,, Inc.,product=VMware Virtual Platform",  # ",," is a comma to QEMU
    "-cpu", "qemu64,-hypervisor",  # qemu64: QEMU's default CPU model, as in the other boots
)  # fmt: skip
# Where the image's STAND-IN vmware-rpctool (scripts/build-guest-image) finds guestinfo.<key>: the fw_cfg entry
# opt/guestinfo/guestinfo.<key>, i.e. /sys/firmware/qemu_fw_cfg/by_name/opt/guestinfo/guestinfo.<key>/raw.
GUESTINFO_FW_CFG = "opt/guestinfo/"
FW_CFG_MAX_NAME = 55  # QEMU's FW_CFG_MAX_FILE_PATH (56) with its terminating NUL

IMAGE_BUILD_TIMEOUT = 900.0  # a fresh debootstrap took ~2 min here; the slack is for slow mirrors
BOOT_TIMEOUT = 900.0  # a TCG boot to power-off with one vCPU: 160-240 s on the 2-core machine, two at once
KVM_PROBE_TIMEOUT = 10.0  # a working KVM reaches the probe's kernel panic in ~2 s
# Guests under TCG get one vCPU (_qemu_base). With two, QEMU 7.2's multi-threaded TCG broke the guest kernel
# when it patched its own code while the other vCPU ran it (jump labels via int3): seen as "Oops: int3" and a
# kernel panic 29 s into a Debian 13 boot, and in CI as both vCPUs in soft lockup for 900 s (1 boot in 18 each).
# Any boot that still goes that way is stopped early, its disk put back as it was before the boot, and run again,
# once (a fault that comes back is reported): a kernel panic, or a CPU reported stuck LOCKUP_GIVE_UP seconds
# (a whole healthy boot takes 160-240 s; short lockup reports on a busy host come and go).
LOCKUP_GIVE_UP = 120
BOOT_ATTEMPTS = 2
WATCH_INTERVAL = 5.0
_LOCKUP = re.compile(r"soft lockup - CPU#\d+ stuck for (\d+)s")
_PANIC = re.compile(r"Kernel panic - not syncing: (.*?)\s*$", re.M)

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


def guest_releases() -> list[str]:
    """The suites to boot: all of RELEASES unless the environment names fewer (for a quicker local run)."""
    wanted = [r.strip() for r in os.environ.get(RELEASES_ENV, "").split(",") if r.strip()]
    unknown = sorted(set(wanted) - set(RELEASES))
    if unknown:
        raise ValueError(f"{RELEASES_ENV}: unknown release {', '.join(unknown)} (known: {', '.join(RELEASES)})")
    return wanted or list(RELEASES)


@dataclass(frozen=True)
class GuestImage:
    """The cached root image (read-only base for overlays), the kernel and initrd booted from outside it."""

    directory: Path
    suite: str

    @property
    def root(self) -> Path:
        return self.directory / "image.raw"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"


def build_image(suite: str, timeout: float = IMAGE_BUILD_TIMEOUT) -> GuestImage:
    """Run the (idempotent, cached) build script for ``suite``; its last stdout line is the image folder."""
    proc = subprocess.run(
        [str(BUILD_SCRIPT), suite], capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO
    )
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/build-guest-image {suite} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    image = GuestImage(Path(proc.stdout.strip().splitlines()[-1]), suite)
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
        "-nic", "none",
        "-kernel", str(image.kernel),
        "-append", "console=ttyS0 panic=-1 root=/dev/null",
    ]  # fmt: skip
    try:
        subprocess.run(cmd, capture_output=True, timeout=KVM_PROBE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return "tcg"
    text = _read_console(console)
    return "kvm" if "Kernel panic" in text else "tcg"


def _read_console(console: Path) -> str:
    """The serial console so far (QEMU creates the file when the guest first writes to it)."""
    return console.read_text(errors="replace") if console.exists() else ""


def _qemu_base(accel: str, console: Path) -> list[str]:
    return [
        "qemu-system-x86_64",
        "-accel", accel,
        "-nodefaults",            # no floppy, VGA, NIC or default CD-ROM: only what a test adds
        "-m", "1024",
        "-smp", "1" if accel == "tcg" else "2",  # see BOOT_ATTEMPTS: two TCG vCPUs broke the guest kernel
        "-display", "none",
        "-no-reboot",             # a guest reboot ends QEMU instead of looping
        "-serial", f"file:{console}",
    ]  # fmt: skip


def guestinfo_args(keys: Mapping[str, str], folder: Path) -> tuple[str, ...]:
    """QEMU arguments for a VMware-like VM whose guestinfo holds ``keys`` (extraConfig: key -> value): one fw_cfg
    entry per guestinfo key, written to a file in ``folder``. A key set to "" is left out, as vSphere removes it;
    keys outside guestinfo.* too: VMware Tools' info-get reads only guestinfo.*."""
    args = list(VMWARE_PLATFORM_ARGS)
    for key, value in sorted(keys.items()):
        if not key.startswith("guestinfo.") or value == "":
            continue
        name = GUESTINFO_FW_CFG + key
        if len(name) > FW_CFG_MAX_NAME or "," in name:
            raise ValueError(f"{key}: no fw_cfg name for it ({name!r})")
        path = folder / key
        path.write_text(value, encoding="utf-8")
        args += ["-fw_cfg", f"name={name},file={path}"]
    return tuple(args)


@dataclass(frozen=True)
class Nic:
    """A guest NIC as the probe saw it after cloud-init finished."""

    name: str
    mac: str
    operstate: str  # the kernel's: up, down, ...
    setup: str  # networkd's: configured, unmanaged, failed, ...
    ipv4: list[str] = field(default_factory=list)  # address/prefix
    leased: list[str] = field(default_factory=list)  # those of ipv4 that are DHCP leases (flag "dynamic")
    dns: str = ""  # resolvectl dns NIC: space-separated servers
    domains: str = ""  # resolvectl domain NIC: space-separated search domains


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

    def nic(self, mac: str = GUEST_MAC) -> Nic:
        """The NIC with MAC address ``mac`` (the probe reports every NIC but lo)."""
        for line in self.values("nic"):
            name, *pairs = line.split()
            fields = dict(pair.split("=", 1) for pair in pairs)
            if fields.get("mac", "").lower() == mac.lower():
                return Nic(
                    name,
                    fields["mac"],
                    fields.get("operstate", ""),
                    fields.get("setup", ""),
                    [v.split()[1] for v in self.values("ipv4") if v.split()[0] == name],
                    [v.split()[1] for v in self.values("ipv4") if v.split()[0] == name and v.endswith(" dynamic")],
                    self._per_nic("resolvectl-dns", name),
                    self._per_nic("resolvectl-domain", name),
                )
        raise AssertionError(f"the guest has no NIC with MAC {mac}: {self.values('nic')!r}\n{self.tail()}")

    def _per_nic(self, key: str, name: str) -> str:
        """The values of ``key`` lines about NIC ``name`` (``GUESTCHECK key: name value...``; value may be empty)."""
        return " ".join(" ".join(v.split()[1:]) for v in self.values(key) if v.split()[:1] == [name]).strip()

    @property
    def routes(self) -> list[str]:
        """``ip -4 route`` in the guest, one route a line."""
        return self.values("route")

    @property
    def default_gateways(self) -> list[str]:
        return [r.split()[2] for r in self.routes if r.startswith("default via ")]

    def resolv_conf(self, keyword: str) -> list[str]:
        """The values of /etc/resolv.conf's ``nameserver`` or ``search`` lines."""
        found = [line.split()[1:] for line in self.values("resolv.conf") if line.split()[0] == keyword]
        return [value for line in found for value in line]


# What the fixtures in conftest.py hand the tests: a VM disk by name; a drive by name from VM data (DESIGN.md's
# file format); the same with network_data.json set to the given bytes, or absent for None; QEMU's arguments
# for a VM with guestinfo keys.
DiskMaker = Callable[[str], "GuestDisk"]
DriveMaker = Callable[[str, dict[str, Any]], Path]
NetworkDriveMaker = Callable[[str, dict[str, Any], bytes | None], Path]
# The QEMU arguments (guestinfo_args) for a VM by name with the given guestinfo keys.
GuestinfoMaker = Callable[[str, Mapping[str, str]], tuple[str, ...]]


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
        cmd = [
            "-kernel", str(self.image.kernel),
            "-initrd", str(self.image.initrd),
            "-append", f"root=/dev/vda rw console=ttyS0 quiet {kernel_args}".strip(),
            "-drive", f"file={self.path},if=virtio,format=qcow2",
        ]  # fmt: skip
        if drive is not None:
            cmd += ["-drive", f"file={drive},media=cdrom,if=none,id=cd,readonly=on,format=raw"]
            cmd += CONTROLLERS[controller]
        cmd += [*NIC_ARGS, *qemu_args]
        what = f"{self.image.suite}: {self.path.stem} VM, boot {self.boots} ({controller}, {self.accel})"
        before = self.path.with_name(f"{self.path.stem}-before-boot.qcow2")
        shutil.copyfile(self.path, before)  # the overlay only: what this boot may change
        for attempt in range(1, BOOT_ATTEMPTS + 1):
            console = self.path.with_name(f"{self.path.stem}-boot{self.boots}-try{attempt}.log")
            started = time.monotonic()
            run = _run_watched([*_qemu_base(self.accel, console), *cmd], console, timeout)
            if run.stopped is None:
                break
            REPORT[f"{what}, try {attempt}"] = f"stopped after {time.monotonic() - started:.1f} s: {run.stopped}"
            if not run.emulator_fault or attempt == BOOT_ATTEMPTS:
                raise AssertionError(f"guest {run.stopped}; console tail:\n{run.tail()}")
            shutil.copyfile(before, self.path)
        before.unlink()
        result = Boot(run.console, time.monotonic() - started)
        REPORT[what] = f"{result.seconds:.1f} s"
        if run.returncode != 0:
            raise AssertionError(f"qemu exited with {run.returncode}: {run.stderr}\n{result.tail()}")
        assert "GUESTCHECK done" in result.console, f"the guest probe did not finish\n{result.tail()}"
        return result


@dataclass(frozen=True)
class QemuRun:
    """How one QEMU run ended: by itself (``stopped`` None), or stopped by the watcher, and why."""

    returncode: int
    console: str
    stderr: str
    stopped: str | None = None
    emulator_fault: bool = False  # a kernel panic or lockup: worth one more try from the same disk

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.console.splitlines()[-lines:])


def _run_watched(cmd: list[str], console: Path, timeout: float) -> QemuRun:
    """Run QEMU to its end; stop it early on a kernel panic, a lockup past LOCKUP_GIVE_UP, or the timeout."""
    errors = console.with_suffix(".stderr")
    with errors.open("w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + timeout
    stopped, fault = None, False
    while stopped is None:
        try:
            proc.wait(timeout=WATCH_INTERVAL)
            break
        except subprocess.TimeoutExpired:
            pass
        text = _read_console(console)
        stuck = max((int(n) for n in _LOCKUP.findall(text)), default=0)
        panic = _PANIC.search(text)
        if panic:
            stopped, fault = f"crashed: kernel panic ({panic.group(1)})", True
        elif stuck >= LOCKUP_GIVE_UP:
            stopped, fault = f"hung: the kernel reports a CPU stuck for {stuck} s (soft lockup)", True
        elif time.monotonic() > deadline:
            stopped = f"did not power off within {timeout:.0f} s"
    if stopped is not None:
        proc.kill()
    proc.wait()
    text = _read_console(console)
    return QemuRun(proc.returncode, text, errors.read_text(errors="replace"), stopped, fault)
