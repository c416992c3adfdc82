"""The device planning: which slot, which specs, which CD-ROM is ours. No server involved: pyVmomi device lists
as vSphere returns them are read into plain values (vsphere/devices.py), decided on (drive/devices.py), and the
planned changes turned back into the specs a ReconfigVM sends."""

from __future__ import annotations

import pytest
from facts_reference import extra_config_dict, raw_by_key, read_devices
from pyVmomi import vim

from esxi_configdrive.drive import devices as dev
from esxi_configdrive.record import PREFIX, DriveRecord
from esxi_configdrive.vsphere.devices import device_specs

ISO = "[LocalDS_0] ConfigDrive/web-1/configdrive.iso"


def ide(key: int, bus: int) -> vim.vm.device.VirtualIDEController:
    return vim.vm.device.VirtualIDEController(key=key, busNumber=bus)


def sata(key: int, bus: int) -> vim.vm.device.VirtualAHCIController:
    return vim.vm.device.VirtualAHCIController(key=key, busNumber=bus, controllerKey=100)


def cdrom(key: int, controller: int, unit: int, iso: str | None = None) -> vim.vm.device.VirtualCdrom:
    backing = (
        vim.vm.device.VirtualCdrom.IsoBackingInfo(fileName=iso)
        if iso
        else vim.vm.device.VirtualCdrom.RemotePassthroughBackingInfo(deviceName="", exclusive=False)
    )
    return vim.vm.device.VirtualCdrom(
        key=key,
        controllerKey=controller,
        unitNumber=unit,
        backing=backing,
        connectable=vim.vm.device.VirtualDevice.ConnectInfo(connected=False, startConnected=False),
    )


def disk(key: int, controller: int, unit: int) -> vim.vm.device.VirtualDisk:
    return vim.vm.device.VirtualDisk(key=key, controllerKey=controller, unitNumber=unit)


def typical_vm() -> list[vim.vm.device.VirtualDevice]:
    """Two IDE controllers, the VM's own CD-ROM at ide1:0, a disk on ide0:0."""
    return [ide(200, 0), ide(201, 1), disk(2000, 200, 0), cdrom(3002, 201, 0, "[ds] os.iso")]


def plan_attach(raw: list[vim.vm.device.VirtualDevice], powered_on: bool) -> list[vim.vm.device.VirtualDeviceSpec]:
    return device_specs(dev.plan_attach(read_devices(raw), ISO, powered_on), raw_by_key(raw))


def ours_in(raw: list[vim.vm.device.VirtualDevice], key: int):
    return next(c for c in read_devices(raw).cdroms if c.key == key)


def test_powered_off_vm_gets_a_free_ide_slot_and_the_first_cdrom_is_untouched():
    devices = typical_vm()
    changes = plan_attach(devices, powered_on=False)
    assert len(changes) == 1
    spec = changes[0]
    assert spec.operation == "add"
    new = spec.device
    assert isinstance(new, vim.vm.device.VirtualCdrom)
    assert (new.controllerKey, new.unitNumber) == (200, 1)  # ide0:1, the first free slot
    assert new.key < 0  # a temporary key: vSphere assigns the real one
    assert new.backing.fileName == ISO
    assert new.connectable.startConnected is True
    assert new.connectable.connected is False  # the VM is off
    # the VM's own CD-ROM is not in the change at all
    assert all(c.device.key != 3002 for c in changes)


def test_powered_on_vm_gets_sata_with_a_new_controller_when_there_is_none():
    controller, drive = (c.device for c in plan_attach(typical_vm(), powered_on=True))
    assert isinstance(controller, vim.vm.device.VirtualAHCIController)
    assert controller.key < 0 and controller.busNumber == 0
    assert drive.controllerKey == controller.key  # refers to the controller added in the same reconfigure
    assert drive.unitNumber == 0
    assert drive.connectable.connected is True and drive.connectable.startConnected is True


def test_existing_sata_controller_is_reused():
    devices = [*typical_vm(), sata(15000, 0), cdrom(16000, 15000, 0, "[ds] other.iso")]
    changes = plan_attach(devices, powered_on=True)
    assert len(changes) == 1
    assert (changes[0].device.controllerKey, changes[0].device.unitNumber) == (15000, 1)


def test_full_ide_falls_back_to_sata_even_when_off():
    devices = [ide(200, 0), ide(201, 1)] + [disk(2000 + i, 200 + i // 2, i % 2) for i in range(4)]
    slot = dev.pick_slot(read_devices(devices), powered_on=False)
    assert slot.kind == "sata" and slot.new_controller


def test_controller_preference_overrides_and_refuses_ide_hot_add():
    typical = read_devices(typical_vm())
    assert dev.pick_slot(typical, powered_on=False, preference="sata").kind == "sata"
    with pytest.raises(dev.DevicePlanError, match="powered-on"):
        dev.pick_slot(typical, powered_on=True, preference="ide")
    full = read_devices([ide(200, 0), ide(201, 1)] + [disk(2000 + i, 200 + i // 2, i % 2) for i in range(4)])
    with pytest.raises(dev.DevicePlanError, match="no free IDE"):
        dev.pick_slot(full, powered_on=False, preference="ide")
    with pytest.raises(dev.DevicePlanError):
        dev.pick_slot(full, powered_on=False, preference="scsi")


def test_no_room_anywhere_is_an_error():
    devices: list[vim.vm.device.VirtualDevice] = []
    for bus in range(4):
        devices.append(sata(15000 + bus, bus))
        devices += [disk(16000 + bus * 100 + u, 15000 + bus, u) for u in range(30)]
    with pytest.raises(dev.DevicePlanError, match="no free SATA"):
        dev.pick_slot(read_devices(devices), powered_on=True)


def test_find_config_drive_by_recorded_path_then_key_never_by_guess():
    devices = read_devices([*typical_vm(), cdrom(3003, 200, 1, ISO)])
    assert dev.find_config_drive(devices, ISO, None).key == 3003
    emptied = read_devices([*typical_vm(), cdrom(3003, 200, 1)])
    found = dev.find_config_drive(emptied, "", 3003)
    assert found.key == 3003 and found.iso is None
    # a CD-ROM we have no record of is never taken for ours, even one holding a config-drive-looking ISO
    assert dev.find_config_drive(devices, None, None) is None
    assert dev.find_config_drive(read_devices(typical_vm()), ISO, None) is None


def test_swap_clear_and_remove_specs_keep_the_device_identity():
    raw = [*typical_vm(), cdrom(3003, 200, 1, ISO)]
    ours = ours_in(raw, 3003)
    (swap,) = device_specs(dev.plan_swap(ours, "[ds] new.iso", powered_on=True), raw_by_key(raw))
    assert swap.operation == "edit" and swap.device.key == 3003
    assert (swap.device.controllerKey, swap.device.unitNumber) == (200, 1)
    assert swap.device.backing.fileName == "[ds] new.iso"
    assert swap.device.connectable.startConnected and swap.device.connectable.connected
    assert raw[-1].backing.fileName == ISO  # the input is not modified
    (clear,) = device_specs(dev.plan_empty(ours), raw_by_key(raw))
    assert clear.operation == "edit"
    assert not isinstance(clear.device.backing, vim.vm.device.VirtualCdrom.IsoBackingInfo)
    assert not clear.device.connectable.connected and not clear.device.connectable.startConnected
    (remove,) = device_specs(dev.plan_remove(ours), raw_by_key(raw))
    assert remove.operation == "remove" and remove.device is raw[-1]  # sent back as vSphere gave it


def test_hot_remove_only_off_ide():
    raw = [*typical_vm(), sata(15000, 0), cdrom(16000, 15000, 0, ISO)]
    devices = read_devices(raw)
    assert dev.can_hot_remove(devices, ours_in(raw, 16000))
    assert not dev.can_hot_remove(devices, ours_in(raw, 3002))


def test_describe_device():
    raw = [*typical_vm(), cdrom(3003, 200, 1, ISO)]
    d = dev.describe_device(read_devices(raw), ours_in(raw, 3003))
    assert d == {
        "key": 3003,
        "controller": "ide",
        "bus": 0,
        "unit": 1,
        "label": None,
        "connected": False,
        "start_connected": False,
        "iso": ISO,
    }


def test_nic_macs_in_device_order():
    nic0 = vim.vm.device.VirtualVmxnet3(key=4000, macAddress="00:50:56:aa:bb:01")
    nic1 = vim.vm.device.VirtualE1000(key=4001, macAddress="00:50:56:aa:bb:02")
    assert dev.nic_macs(read_devices([*typical_vm(), nic0, nic1])) == ["00:50:56:aa:bb:01", "00:50:56:aa:bb:02"]


def test_record_round_trip_through_extra_config_with_vcsim_append_semantics():
    record = DriveRecord(iso=ISO, digest="d1", sha256="s1", owner="u1", folder="[ds] ConfigDrive/web-1")
    changes = record.changes_from(DriveRecord())
    assert changes == {
        PREFIX + "iso": ISO,
        PREFIX + "digest": "d1",
        PREFIX + "sha256": "s1",
        PREFIX + "owner": "u1",
        PREFIX + "folder": "[ds] ConfigDrive/web-1",
    }
    # vcsim 0.24 appends options instead of replacing them; the last value wins and "" deletes
    options = [vim.option.OptionValue(key=k, value=v) for k, v in changes.items()]
    newer = record.replace(iso="", digest="d2", device=3003)
    options += [vim.option.OptionValue(key=k, value=v) for k, v in newer.changes_from(record).items()]
    back = DriveRecord.from_extra_config(extra_config_dict(options))
    assert back == newer
    assert back.iso == "" and back.device_key == 3003
