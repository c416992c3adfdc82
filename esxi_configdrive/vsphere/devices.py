"""A VM's devices between vSphere's answer and the plain values the operations decide on:
``read_device_elements`` reads a DeviceList from the answer's ``config.hardware.device`` XML (collector_xml.py),
without a pyVmomi object per device; ``device_specs`` turns planned changes back into the ``VirtualDeviceSpec``
list of one ReconfigVM. Edits and removals send back the device as vSphere gave it, with only the backing and
connection changed. Decisions (which CD-ROM, which slot) live in drive/devices.py."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from typing import Any
from xml.etree.ElementTree import Element

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
from .collector_xml import XSI_TYPE, Reader, as_bool

PCI_CONTROLLER_KEY = 100  # where vSphere puts SATA controllers


# ---- reading ----------------------------------------------------------------------------------------------


def read_device_elements(reader: Reader, array: Element | None) -> tuple[DeviceList, Mapping[int, Any]]:
    """The DeviceList of a ``config.hardware.device`` element of an answer, and the CD-ROMs as vSphere gave
    them (the only devices the tool edits or removes: drive/devices.py), each made a pyVmomi object when first
    asked for."""
    q = reader.q
    key_tag, controller_tag, unit_tag = f"{q}key", f"{q}controllerKey", f"{q}unitNumber"
    controllers, cdroms, nics, slots, keys = [], [], [], set(), set()
    as_given: dict[int, Element] = {}
    for e in array if array is not None else ():
        role, kind = _role(reader.type_of(e.get(XSI_TYPE, "")))
        key = int(e.findtext(key_tag) or 0)
        keys.add(key)
        controller_key, unit = _int_or_none(e.findtext(controller_tag)), _int_or_none(e.findtext(unit_tag))
        if controller_key is not None and unit is not None:
            slots.add((controller_key, unit))
        if role is CONTROLLER:
            controllers.append(Controller(key, kind, _int_or_none(e.findtext(f"{q}busNumber"))))
        elif role is CDROM:
            cdroms.append(_cdrom_element(reader, e, key, controller_key, unit))
            as_given[key] = e
        elif role is NIC:
            mac = e.findtext(f"{q}macAddress")
            if mac:
                nics.append(Nic(key, mac))
    devices = DeviceList(tuple(controllers), tuple(cdroms), tuple(nics), frozenset(slots), frozenset(keys))
    return devices, DevicesAsGiven(reader, as_given)


CONTROLLER, CDROM, NIC = "controller", "CD-ROM", "NIC"


@cache
def _role(cls: type | None) -> tuple[str | None, str]:
    """What a device class is to ``read_device_elements`` (asked once a class: ``issubclass`` of pyVmomi's lazy types is
    slow), and a controller's kind."""
    cls = cls or vim.vm.device.VirtualDevice  # a type pyVmomi does not know: a device of no interest
    if issubclass(cls, vim.vm.device.VirtualController):
        return CONTROLLER, _controller_kind(cls)
    if issubclass(cls, vim.vm.device.VirtualCdrom):
        return CDROM, ""
    if issubclass(cls, vim.vm.device.VirtualEthernetCard):
        return NIC, ""
    return None, ""


def _int_or_none(text: str | None) -> int | None:
    return None if text is None else int(text)


def _controller_kind(cls: type) -> str:
    if issubclass(cls, vim.vm.device.VirtualIDEController):
        return IDE
    if issubclass(cls, vim.vm.device.VirtualSATAController):
        return SATA
    return cls.__name__


def _cdrom_element(reader: Reader, e: Element, key: int, controller_key: int | None, unit: int | None) -> Cdrom:
    q = reader.q
    backing = e.find(f"{q}backing")
    iso = None
    if backing is not None:
        backing_cls = reader.type_of(backing.get(XSI_TYPE, ""))
        if backing_cls is not None and issubclass(backing_cls, vim.vm.device.VirtualCdrom.IsoBackingInfo):
            iso = backing.findtext(f"{q}fileName") or None
    conn = e.find(f"{q}connectable")
    info = e.find(f"{q}deviceInfo")
    return Cdrom(
        key=key,
        controller_key=controller_key,
        unit=unit,
        iso=iso,
        connected=conn is not None and as_bool(conn.findtext(f"{q}connected") or "false"),
        start_connected=conn is not None and as_bool(conn.findtext(f"{q}startConnected") or "false"),
        label=info.findtext(f"{q}label") if info is not None else None,
    )


class DevicesAsGiven(Mapping[int, Any]):
    """Devices by key as pyVmomi objects, each deserialized by pyVmomi from its own element of the answer when
    first asked for (an attach or a removal of the drive never needs it, an update one)."""

    def __init__(self, reader: Reader, elements: Mapping[int, Element]) -> None:
        self._reader, self._elements = reader, elements
        self._made: dict[int, Any] = {}

    def __getitem__(self, key: int) -> Any:
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = self._reader.pyvmomi_value(self._elements[key], vim.vm.device.VirtualDevice)
        return made

    def __iter__(self) -> Iterator[int]:
        return iter(self._elements)

    def __len__(self) -> int:
        return len(self._elements)


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
