"""Decisions over a VM's device list: which CD-ROM is the config drive, where a new one goes, and the device
changes that attach, repoint, empty or remove it. Pure functions over plain values (vsphere_values.py)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..defaults import CONTROLLER_CHOICES
from ..vsphere_values import (
    IDE,
    SATA,
    AddCdrom,
    AddSataController,
    Cdrom,
    DeviceChange,
    DeviceList,
    RemoveDevice,
    SetMedia,
)

IDE_CONTROLLERS, IDE_UNITS = 2, 2
SATA_CONTROLLERS, SATA_UNITS = 4, 30


class DevicePlanError(ValueError):
    """The requested device change cannot be made (no free slot, IDE on a powered-on VM …)."""


@dataclass(frozen=True)
class Slot:
    """A place for a CD-ROM: a controller (existing, or one to add in the same reconfigure) and a unit."""

    kind: str
    controller_key: int
    bus: int | None
    unit: int
    new_controller: bool = False

    def __str__(self) -> str:
        return f"{self.kind}{self.bus}:{self.unit}" + (" (new SATA controller)" if self.new_controller else "")


# ---- finding ----------------------------------------------------------------------------------------------


def find_config_drive(devices: DeviceList, recorded_path: str | None, recorded_key: int | None) -> Cdrom | None:
    """The CD-ROM this tool attached: the one whose ISO is the path recorded in extraConfig, else the one with
    the recorded device key (its backing may have been cleared by a detach). Never a CD-ROM we have no record
    of: the VM's own drives are not ours to touch."""
    if recorded_path:
        for d in devices.cdroms:
            if d.iso == recorded_path:
                return d
    if recorded_key is not None:
        for d in devices.cdroms:
            if d.key == recorded_key:
                return d
    return None


def describe_device(devices: DeviceList, cdrom: Cdrom) -> dict[str, Any]:
    """Controller kind, bus and unit, connection state and backing of a CD-ROM, for status output."""
    controller = devices.controller(cdrom.controller_key)
    return {
        "key": cdrom.key,
        "controller": controller.kind if controller is not None else "unknown",
        "bus": controller.bus if controller is not None else None,
        "unit": cdrom.unit,
        "label": cdrom.label,
        "connected": cdrom.connected,
        "start_connected": cdrom.start_connected,
        "iso": cdrom.iso,
    }


def can_hot_remove(devices: DeviceList, cdrom: Cdrom) -> bool:
    """IDE devices cannot be removed from a running VM; SATA ones can."""
    controller = devices.controller(cdrom.controller_key)
    return controller is None or controller.kind != IDE


def nic_macs(devices: DeviceList) -> list[str]:
    """The MAC of each virtual NIC, in device order (the order the guest names them in)."""
    return [nic.mac for nic in devices.nics]


# ---- choosing a slot --------------------------------------------------------------------------------------


def pick_slot(devices: DeviceList, powered_on: bool, preference: str = "auto") -> Slot:
    """Where to put a new CD-ROM. IDE when the VM is off and a slot is free; SATA when it is on (IDE devices
    cannot be hot-added) or IDE is full, adding an AHCI controller when no SATA controller has room."""
    if preference not in CONTROLLER_CHOICES:
        raise DevicePlanError(f"controller must be one of {', '.join(CONTROLLER_CHOICES)}")
    if preference == IDE and powered_on:
        raise DevicePlanError("an IDE CD-ROM cannot be added to a powered-on VM; use --controller sata or auto")
    if preference in ("auto", IDE) and not powered_on:
        slot = _free_slot(devices, IDE, IDE_UNITS)
        if slot:
            return slot
        if preference == IDE:
            raise DevicePlanError("no free IDE slot (2 controllers x 2 units are in use)")
    slot = _free_slot(devices, SATA, SATA_UNITS)
    if slot:
        return slot
    buses = {c.bus for c in devices.controllers if c.kind == SATA}
    free_bus = next((b for b in range(SATA_CONTROLLERS) if b not in buses), None)
    if free_bus is None:
        raise DevicePlanError("no free SATA slot and no room for another SATA controller")
    return Slot(SATA, new_temporary_key(devices), free_bus, 0, new_controller=True)


def _free_slot(devices: DeviceList, kind: str, units: int) -> Slot | None:
    controllers = sorted((c for c in devices.controllers if c.kind == kind), key=lambda c: c.bus or 0)
    for c in controllers:
        for unit in range(units):
            if (c.key, unit) not in devices.slots_in_use:
                return Slot(kind, c.key, c.bus, unit)
    return None


def new_temporary_key(devices: DeviceList, taken: Iterable[int] = ()) -> int:
    """A negative key for a device added in this reconfigure (vSphere assigns the real one)."""
    used = set(devices.keys) | set(taken)
    key = -100
    while key in used:
        key -= 1
    return key


# ---- planning changes -------------------------------------------------------------------------------------


def plan_attach(devices: DeviceList, iso_path: str, powered_on: bool, preference: str = "auto") -> list[DeviceChange]:
    """Add a CD-ROM holding ``iso_path``, connected at power-on (and now, when the VM runs)."""
    slot = pick_slot(devices, powered_on, preference)
    changes: list[DeviceChange] = []
    if slot.new_controller:
        changes.append(AddSataController(key=slot.controller_key, bus=slot.bus or 0))
    key = new_temporary_key(devices, taken=[slot.controller_key])
    changes.append(AddCdrom(key, slot.controller_key, slot.kind, slot.bus, slot.unit, iso_path, connected=powered_on))
    return changes


def plan_swap(cdrom: Cdrom, iso_path: str, powered_on: bool) -> list[DeviceChange]:
    """Point the config-drive CD-ROM at another ISO (the detach + reattach of an update, in one step)."""
    return [SetMedia(cdrom.key, iso_path, connected=powered_on)]


def plan_empty(cdrom: Cdrom) -> list[DeviceChange]:
    """Leave the drive in place but empty and disconnected: no backing that could point at a deleted file."""
    return [SetMedia(cdrom.key, None, connected=False)]


def plan_remove(cdrom: Cdrom) -> list[DeviceChange]:
    return [RemoveDevice(cdrom.key)]
