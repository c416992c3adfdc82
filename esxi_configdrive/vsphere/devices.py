"""Pure functions over a VM's device list: find the config-drive CD-ROM, pick a free slot, build device specs.

Nothing here talks to vSphere; the inputs are pyVmomi data objects as the PropertyCollector returns them, so
every decision can be tested on a hand-made device list. Modelled on govmomi's ``object.VirtualDeviceList``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim

IDE_CONTROLLERS, IDE_UNITS = 2, 2
SATA_CONTROLLERS, SATA_UNITS = 4, 30
PCI_CONTROLLER_KEY = 100  # where vSphere puts SATA controllers
CONTROLLER_CHOICES = ("auto", "ide", "sata")


class DevicePlanError(ValueError):
    """The requested device change cannot be made (no free slot, IDE on a powered-on VM …)."""


@dataclass(frozen=True)
class Slot:
    """A place for a CD-ROM: a controller (existing, or one to add in the same reconfigure) and a unit."""

    kind: str  # "ide" or "sata"
    controller_key: int
    bus: int
    unit: int
    new_controller: bool = False

    def __str__(self) -> str:
        return f"{self.kind}{self.bus}:{self.unit}" + (" (new SATA controller)" if self.new_controller else "")


@dataclass
class DevicePlan:
    """The device part of one ReconfigVM, plus a description of it for --dry-run and results."""

    changes: list[vim.vm.device.VirtualDeviceSpec] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.changes)


# ---- finding ----------------------------------------------------------------------------------------------


def cdroms(devices: Iterable[vim.vm.device.VirtualDevice]) -> list[vim.vm.device.VirtualCdrom]:
    return [d for d in devices if isinstance(d, vim.vm.device.VirtualCdrom)]


def iso_path_of(device: vim.vm.device.VirtualDevice) -> str | None:
    """The ``[ds] path`` of an ISO-backed CD-ROM, else None."""
    backing = getattr(device, "backing", None)
    if isinstance(backing, vim.vm.device.VirtualCdrom.IsoBackingInfo):
        return backing.fileName or None
    return None


def find_config_drive(
    devices: Sequence[vim.vm.device.VirtualDevice], recorded_path: str | None, recorded_key: int | None
) -> vim.vm.device.VirtualCdrom | None:
    """The CD-ROM this tool attached: the one whose ISO is the path recorded in extraConfig, else the one with
    the recorded device key (its backing may have been cleared by a detach). Never a CD-ROM we have no record
    of: the VM's own drives are not ours to touch."""
    drives = cdroms(devices)
    if recorded_path:
        for d in drives:
            if iso_path_of(d) == recorded_path:
                return d
    if recorded_key is not None:
        for d in drives:
            if d.key == recorded_key:
                return d
    return None


def controller_of(devices: Sequence[vim.vm.device.VirtualDevice], device: vim.vm.device.VirtualDevice):
    for d in devices:
        if d.key == device.controllerKey:
            return d
    return None


def describe_device(devices: Sequence[vim.vm.device.VirtualDevice], device: vim.vm.device.VirtualDevice) -> dict:
    """Controller kind, bus and unit, connection state and backing of a device, for status output."""
    controller = controller_of(devices, device)
    kind = "ide" if isinstance(controller, vim.vm.device.VirtualIDEController) else "sata"
    if not isinstance(controller, (vim.vm.device.VirtualIDEController, vim.vm.device.VirtualSATAController)):
        kind = type(controller).__name__ if controller is not None else "unknown"
    conn = device.connectable
    return {
        "key": device.key,
        "controller": kind,
        "bus": getattr(controller, "busNumber", None),
        "unit": device.unitNumber,
        "label": getattr(device.deviceInfo, "label", None),
        "connected": bool(conn and conn.connected),
        "start_connected": bool(conn and conn.startConnected),
        "iso": iso_path_of(device),
    }


# ---- choosing a slot --------------------------------------------------------------------------------------


def pick_slot(devices: Sequence[vim.vm.device.VirtualDevice], powered_on: bool, preference: str = "auto") -> Slot:
    """Where to put a new CD-ROM. IDE when the VM is off and a slot is free; SATA when it is on (IDE devices
    cannot be hot-added) or IDE is full, adding an AHCI controller when no SATA controller has room."""
    if preference not in CONTROLLER_CHOICES:
        raise DevicePlanError(f"controller must be one of {', '.join(CONTROLLER_CHOICES)}")
    if preference == "ide" and powered_on:
        raise DevicePlanError("an IDE CD-ROM cannot be added to a powered-on VM; use --controller sata or auto")
    if preference in ("auto", "ide") and not powered_on:
        slot = _free_slot(devices, vim.vm.device.VirtualIDEController, "ide", IDE_UNITS)
        if slot:
            return slot
        if preference == "ide":
            raise DevicePlanError("no free IDE slot (2 controllers x 2 units are in use)")
    slot = _free_slot(devices, vim.vm.device.VirtualSATAController, "sata", SATA_UNITS)
    if slot:
        return slot
    buses = {c.busNumber for c in devices if isinstance(c, vim.vm.device.VirtualSATAController)}
    free_bus = next((b for b in range(SATA_CONTROLLERS) if b not in buses), None)
    if free_bus is None:
        raise DevicePlanError("no free SATA slot and no room for another SATA controller")
    return Slot("sata", new_temporary_key(devices), free_bus, 0, new_controller=True)


def _free_slot(devices: Sequence[vim.vm.device.VirtualDevice], controller_type: type, kind: str, units: int):
    used = {(d.controllerKey, d.unitNumber) for d in devices if getattr(d, "controllerKey", None) is not None}
    controllers = sorted((d for d in devices if isinstance(d, controller_type)), key=lambda c: c.busNumber)
    for c in controllers:
        for unit in range(units):
            if (c.key, unit) not in used:
                return Slot(kind, c.key, c.busNumber, unit)
    return None


def new_temporary_key(devices: Sequence[vim.vm.device.VirtualDevice], taken: Iterable[int] = ()) -> int:
    """A negative key for a device added in this reconfigure (vSphere assigns the real one)."""
    used = {d.key for d in devices} | set(taken)
    key = -100
    while key in used:
        key -= 1
    return key


# ---- building specs ---------------------------------------------------------------------------------------


def iso_backing(iso_path: str) -> vim.vm.device.VirtualCdrom.IsoBackingInfo:
    return vim.vm.device.VirtualCdrom.IsoBackingInfo(fileName=iso_path)


def connect_info(connected: bool, start_connected: bool) -> vim.vm.device.VirtualDevice.ConnectInfo:
    return vim.vm.device.VirtualDevice.ConnectInfo(
        connected=connected, startConnected=start_connected, allowGuestControl=True
    )


def plan_attach(
    devices: Sequence[vim.vm.device.VirtualDevice], iso_path: str, powered_on: bool, preference: str = "auto"
) -> DevicePlan:
    """Add a CD-ROM holding ``iso_path``, connected at power-on (and now, when the VM runs)."""
    slot = pick_slot(devices, powered_on, preference)
    plan = DevicePlan()
    add = vim.vm.device.VirtualDeviceSpec.Operation.add
    if slot.new_controller:
        controller = vim.vm.device.VirtualAHCIController(
            key=slot.controller_key, busNumber=slot.bus, controllerKey=PCI_CONTROLLER_KEY
        )
        plan.changes.append(vim.vm.device.VirtualDeviceSpec(operation=add, device=controller))
        plan.summary.append(f"add SATA (AHCI) controller {slot.bus}")
    cdrom = vim.vm.device.VirtualCdrom(
        key=new_temporary_key(devices, taken=[slot.controller_key]),
        controllerKey=slot.controller_key,
        unitNumber=slot.unit,
        backing=iso_backing(iso_path),
        connectable=connect_info(connected=powered_on, start_connected=True),
    )
    plan.changes.append(vim.vm.device.VirtualDeviceSpec(operation=add, device=cdrom))
    plan.summary.append(f"add CD-ROM at {slot.kind}{slot.bus}:{slot.unit} with {iso_path}, connected at power-on")
    return plan


def plan_swap_backing(cdrom: vim.vm.device.VirtualCdrom, iso_path: str, powered_on: bool) -> DevicePlan:
    """Point the existing config-drive CD-ROM at another ISO (the detach + reattach of an update, in one step)."""
    return _plan_edit(
        cdrom,
        iso_backing(iso_path),
        connect_info(connected=powered_on, start_connected=True),
        f"point CD-ROM {cdrom.key} at {iso_path}",
    )


def plan_clear_backing(cdrom: vim.vm.device.VirtualCdrom) -> DevicePlan:
    """Leave the drive in place but empty and disconnected: no backing that could point at a deleted file."""
    return _plan_edit(
        cdrom,
        vim.vm.device.VirtualCdrom.RemotePassthroughBackingInfo(deviceName="", exclusive=False),
        connect_info(connected=False, start_connected=False),
        f"empty and disconnect CD-ROM {cdrom.key}",
    )


def _plan_edit(cdrom: vim.vm.device.VirtualCdrom, backing: Any, connectable: Any, summary: str) -> DevicePlan:
    device = _edited_copy(cdrom)
    device.backing = backing
    device.connectable = connectable
    edit = vim.vm.device.VirtualDeviceSpec.Operation.edit
    return DevicePlan([vim.vm.device.VirtualDeviceSpec(operation=edit, device=device)], [summary])


def plan_remove(cdrom: vim.vm.device.VirtualCdrom) -> DevicePlan:
    remove = vim.vm.device.VirtualDeviceSpec.Operation.remove
    return DevicePlan([vim.vm.device.VirtualDeviceSpec(operation=remove, device=cdrom)], [f"remove CD-ROM {cdrom.key}"])


def can_hot_remove(devices: Sequence[vim.vm.device.VirtualDevice], device: vim.vm.device.VirtualDevice) -> bool:
    """IDE devices cannot be removed from a running VM; SATA ones can."""
    return not isinstance(controller_of(devices, device), vim.vm.device.VirtualIDEController)


def _edited_copy(cdrom: vim.vm.device.VirtualCdrom) -> vim.vm.device.VirtualCdrom:
    return vim.vm.device.VirtualCdrom(
        key=cdrom.key,
        controllerKey=cdrom.controllerKey,
        unitNumber=cdrom.unitNumber,
        deviceInfo=cdrom.deviceInfo,
        backing=cdrom.backing,
        connectable=cdrom.connectable,
    )


# ---- NICs, for --network-data auto ------------------------------------------------------------------------


def nic_macs(devices: Iterable[vim.vm.device.VirtualDevice]) -> list[tuple[int, str]]:
    """(device key, MAC) of each virtual NIC, in device order."""
    return [
        (d.key, d.macAddress)
        for d in devices
        if isinstance(d, vim.vm.device.VirtualEthernetCard) and getattr(d, "macAddress", None)
    ]
