"""The facts of VMs read as main read them before collector_xml.py: pyVmomi deserializes the whole answer, then
read_devices, extra_config_dict (kept here, no longer in the package) and datastore_info. The reference the
XML reading is held to (tests) and measured against (benchmarks/bench_facts_page.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pyVmomi import vim

from esxi_configdrive.vsphere import inventory
from esxi_configdrive.vsphere.connection import Session
from esxi_configdrive.vsphere_values import IDE, SATA, Cdrom, Controller, DeviceList, Nic, VmFacts


def pyvmomi_facts_page(session: Session, vms: list[vim.VirtualMachine]) -> dict[str, VmFacts]:
    by_id = {obj._moId: (obj, props) for obj, props in inventory.retrieve(session, inventory._facts_spec(vms))}
    return {vm._moId: _facts(vm, by_id) for vm in vms if vm._moId in by_id}


def _facts(vm: vim.VirtualMachine, by_id: dict[str, tuple[Any, dict[str, Any]]]) -> VmFacts:
    props = by_id[vm._moId][1]
    datacenter, dc_path = inventory._datacenter_of(props.get("parent"), by_id)
    stores = [by_id[d._moId] for d in props.get("datastore") or [] if d._moId in by_id]
    raw_devices = list(props.get("config.hardware.device") or [])
    host = props.get("runtime.host")
    return VmFacts(
        ref=vm,
        name=props.get("name", vm._moId),
        instance_uuid=props.get("config.instanceUuid") or "",
        change_version=props.get("config.changeVersion"),
        power_state=str(props.get("runtime.powerState", "poweredOff")),
        devices=read_devices(raw_devices),
        extra_config=extra_config_dict(props.get("config.extraConfig") or []),
        vmx_path=props.get("config.files.vmPathName"),
        host_id=host._moId if host is not None else None,
        datacenter_path=dc_path,
        datastores={p["name"]: inventory.datastore_info(obj, p) for obj, p in stores},
        guest_id=props.get("config.guestId") or "",
        bios_uuid=props.get("config.uuid") or "",
        host=host,
        datacenter=datacenter,
        raw_devices=raw_by_key(raw_devices),
    )


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


def extra_config_dict(options: Iterable[Any]) -> dict[str, str]:
    """extraConfig's OptionValue objects as a dict (``extra_config_of``)."""
    return inventory.extra_config_of((option.key, option.value) for option in options)
