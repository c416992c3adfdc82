"""The pure device planning: which slot, which specs, which CD-ROM is ours. No server involved."""

from __future__ import annotations

import pytest
from pyVmomi import vim

from esxi_configdrive.record import PREFIX, DriveRecord
from esxi_configdrive.vsphere import devices as dev
from esxi_configdrive.vsphere.inventory import extra_config_dict

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


def test_powered_off_vm_gets_a_free_ide_slot_and_the_first_cdrom_is_untouched():
    devices = typical_vm()
    plan = dev.plan_attach(devices, ISO, powered_on=False)
    assert len(plan.changes) == 1
    spec = plan.changes[0]
    assert spec.operation == "add"
    new = spec.device
    assert isinstance(new, vim.vm.device.VirtualCdrom)
    assert (new.controllerKey, new.unitNumber) == (200, 1)  # ide0:1, the first free slot
    assert new.key < 0  # a temporary key: vSphere assigns the real one
    assert new.backing.fileName == ISO
    assert new.connectable.startConnected is True
    assert new.connectable.connected is False  # the VM is off
    # the VM's own CD-ROM is not in the change at all
    assert all(c.device.key != 3002 for c in plan.changes)


def test_powered_on_vm_gets_sata_with_a_new_controller_when_there_is_none():
    plan = dev.plan_attach(typical_vm(), ISO, powered_on=True)
    controller, drive = (c.device for c in plan.changes)
    assert isinstance(controller, vim.vm.device.VirtualAHCIController)
    assert controller.key < 0 and controller.busNumber == 0
    assert drive.controllerKey == controller.key  # refers to the controller added in the same reconfigure
    assert drive.unitNumber == 0
    assert drive.connectable.connected is True and drive.connectable.startConnected is True


def test_existing_sata_controller_is_reused():
    devices = [*typical_vm(), sata(15000, 0), cdrom(16000, 15000, 0, "[ds] other.iso")]
    plan = dev.plan_attach(devices, ISO, powered_on=True)
    assert len(plan.changes) == 1
    assert (plan.changes[0].device.controllerKey, plan.changes[0].device.unitNumber) == (15000, 1)


def test_full_ide_falls_back_to_sata_even_when_off():
    devices = [ide(200, 0), ide(201, 1)] + [disk(2000 + i, 200 + i // 2, i % 2) for i in range(4)]
    slot = dev.pick_slot(devices, powered_on=False)
    assert slot.kind == "sata" and slot.new_controller


def test_controller_preference_overrides_and_refuses_ide_hot_add():
    assert dev.pick_slot(typical_vm(), powered_on=False, preference="sata").kind == "sata"
    with pytest.raises(dev.DevicePlanError, match="powered-on"):
        dev.pick_slot(typical_vm(), powered_on=True, preference="ide")
    full = [ide(200, 0), ide(201, 1)] + [disk(2000 + i, 200 + i // 2, i % 2) for i in range(4)]
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
        dev.pick_slot(devices, powered_on=True)


def test_find_config_drive_by_recorded_path_then_key_never_by_guess():
    ours = cdrom(3003, 200, 1, ISO)
    devices = [*typical_vm(), ours]
    assert dev.find_config_drive(devices, ISO, None) is ours
    emptied = cdrom(3003, 200, 1)
    assert dev.find_config_drive([*typical_vm(), emptied], "", 3003) is emptied
    # a CD-ROM we have no record of is never taken for ours, even one holding a config-drive-looking ISO
    assert dev.find_config_drive(devices, None, None) is None
    assert dev.find_config_drive(typical_vm(), ISO, None) is None


def test_swap_clear_and_remove_specs_keep_the_device_identity():
    ours = cdrom(3003, 200, 1, ISO)
    swap = dev.plan_swap_backing(ours, "[ds] new.iso", powered_on=True).changes[0]
    assert swap.operation == "edit" and swap.device.key == 3003
    assert swap.device.backing.fileName == "[ds] new.iso"
    assert swap.device.connectable.startConnected and swap.device.connectable.connected
    assert ours.backing.fileName == ISO  # the input is not modified
    clear = dev.plan_clear_backing(ours).changes[0]
    assert clear.operation == "edit"
    assert dev.iso_path_of(clear.device) is None
    assert not clear.device.connectable.connected and not clear.device.connectable.startConnected
    assert dev.plan_remove(ours).changes[0].operation == "remove"


def test_hot_remove_only_off_ide():
    devices = [*typical_vm(), sata(15000, 0), cdrom(16000, 15000, 0, ISO)]
    assert dev.can_hot_remove(devices, devices[-1])
    assert not dev.can_hot_remove(devices, devices[3])


def test_describe_device():
    devices = [*typical_vm(), cdrom(3003, 200, 1, ISO)]
    d = dev.describe_device(devices, devices[-1])
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
    assert dev.nic_macs([*typical_vm(), nic0, nic1]) == [(4000, "00:50:56:aa:bb:01"), (4001, "00:50:56:aa:bb:02")]


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
