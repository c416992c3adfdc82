"""A VM's devices between pyVmomi and the plain values the operations decide on: ``read_devices`` turns
``config.hardware.device`` into a DeviceList, ``device_specs`` turns planned changes back into the
``VirtualDeviceSpec`` list of one ReconfigVM. Edits and removals send back the device as vSphere gave it, with
only the backing and connection changed. Decisions (which CD-ROM, which slot) live in drive/devices.py."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pyVmomi import vim

from ..vsphere_values import (
    IDE,
    SATA,
    AddCdrom,
    AddSataController,
    Cdrom,
    Controller,
    DeviceChange,
    DeviceList,
    Nic,
    RemoveDevice,
    SetMedia,
)

PCI_CONTROLLER_KEY = 100  # where vSphere puts SATA controllers


# ---- reading ----------------------------------------------------------------------------------------------


def read_devices(devices: Iterable[vim.vm.device.VirtualDevice]) -> DeviceList:
    devices = list(devices)
    return DeviceList(
        controllers=tuple(_controller(d) for d in devices if isinstance(d, vim.vm.device.VirtualController)),
        cdroms=tuple(_cdrom(d) for d in devices if isinstance(d, vim.vm.device.VirtualCdrom)),
        nics=tuple(
            Nic(d.key, d.macAddress)
            for d in devices
            if isinstance(d, vim.vm.device.VirtualEthernetCard) and d.macAddress
        ),
        slots_in_use=frozenset(
            (d.controllerKey, d.unitNumber) for d in devices if d.controllerKey is not None and d.unitNumber is not None
        ),
        keys=frozenset(d.key for d in devices),
    )


def _controller(d: vim.vm.device.VirtualController) -> Controller:
    if isinstance(d, vim.vm.device.VirtualIDEController):
        kind = IDE
    elif isinstance(d, vim.vm.device.VirtualSATAController):
        kind = SATA
    else:
        kind = type(d).__name__
    return Controller(d.key, kind, getattr(d, "busNumber", None))


def _cdrom(d: vim.vm.device.VirtualCdrom) -> Cdrom:
    backing = getattr(d, "backing", None)
    iso = backing.fileName or None if isinstance(backing, vim.vm.device.VirtualCdrom.IsoBackingInfo) else None
    conn = d.connectable
    return Cdrom(
        key=d.key,
        controller_key=d.controllerKey,
        unit=d.unitNumber,
        iso=iso,
        connected=bool(conn and conn.connected),
        start_connected=bool(conn and conn.startConnected),
        label=getattr(d.deviceInfo, "label", None),
    )


def raw_by_key(devices: Iterable[vim.vm.device.VirtualDevice]) -> dict[int, vim.vm.device.VirtualDevice]:
    return {d.key: d for d in devices}


# ---- building specs ---------------------------------------------------------------------------------------


def device_specs(
    changes: Sequence[DeviceChange], raw: Mapping[int, vim.vm.device.VirtualDevice]
) -> list[vim.vm.device.VirtualDeviceSpec]:
    return [_spec(change, raw) for change in changes]


def _spec(change: DeviceChange, raw: Mapping[int, Any]) -> vim.vm.device.VirtualDeviceSpec:
    op = vim.vm.device.VirtualDeviceSpec.Operation
    if isinstance(change, AddSataController):
        controller = vim.vm.device.VirtualAHCIController(
            key=change.key, busNumber=change.bus, controllerKey=PCI_CONTROLLER_KEY
        )
        return vim.vm.device.VirtualDeviceSpec(operation=op.add, device=controller)
    if isinstance(change, AddCdrom):
        cdrom = vim.vm.device.VirtualCdrom(
            key=change.key,
            controllerKey=change.controller_key,
            unitNumber=change.unit,
            backing=_iso_backing(change.iso),
            connectable=_connect_info(connected=change.connected, start_connected=True),
        )
        return vim.vm.device.VirtualDeviceSpec(operation=op.add, device=cdrom)
    if isinstance(change, SetMedia):
        device = _edited_copy(raw[change.key])
        if change.iso is None:
            device.backing = vim.vm.device.VirtualCdrom.RemotePassthroughBackingInfo(deviceName="", exclusive=False)
            device.connectable = _connect_info(connected=False, start_connected=False)
        else:
            device.backing = _iso_backing(change.iso)
            device.connectable = _connect_info(connected=change.connected, start_connected=True)
        return vim.vm.device.VirtualDeviceSpec(operation=op.edit, device=device)
    if isinstance(change, RemoveDevice):
        return vim.vm.device.VirtualDeviceSpec(operation=op.remove, device=raw[change.key])
    raise TypeError(f"not a device change: {change!r}")


def _iso_backing(iso_path: str) -> vim.vm.device.VirtualCdrom.IsoBackingInfo:
    return vim.vm.device.VirtualCdrom.IsoBackingInfo(fileName=iso_path)


def _connect_info(connected: bool, start_connected: bool) -> vim.vm.device.VirtualDevice.ConnectInfo:
    return vim.vm.device.VirtualDevice.ConnectInfo(
        connected=connected, startConnected=start_connected, allowGuestControl=True
    )


# What an edit of a CD-ROM sends back as vSphere gave it (the edit then replaces the backing and connectable).
_KEPT_BY_AN_EDIT = ("key", "controllerKey", "unitNumber", "deviceInfo", "backing", "connectable")


def _edited_copy(cdrom: vim.vm.device.VirtualCdrom) -> vim.vm.device.VirtualCdrom:
    """A new CD-ROM object to edit, with the device's key, place, backing and state as vSphere gave them (the
    object read is left as it was)."""
    return vim.vm.device.VirtualCdrom(**{name: getattr(cdrom, name) for name in _KEPT_BY_AN_EDIT})
