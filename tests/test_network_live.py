"""Static addressing and fresh identities against the live vcsim harness: a `network` section's interfaces take
the VM's real NICs' MACs in device order, a wrong MAC is refused with nothing changed, the vm-id defaults to the
VM's instance UUID, and the clone recipe of docs/operations.md (a real CloneVM_Task) gives the clone a drive of
its own in its own folder while the parent's ISO stays untouched. The drives are read by cloud-init's reader."""

from __future__ import annotations

import pytest
from pyVmomi import vim
from tool_fixtures import cloud_init_read, fetch_file, folder_listing, iso_paths, record_of
from vsphere_harness import destroy_vm, get_property, reconfigure, wait_for_task

from esxi_configdrive import VmData
from esxi_configdrive.errors import ValidationError

pytestmark = pytest.mark.live

STATIC = {
    "interfaces": [
        {"addresses": ["10.1.2.3/24"], "gateway4": "10.1.2.1", "mtu": 9000},
        {"addresses": ["192.168.50.3/24", "2001:db8::3/64"]},
    ],
    "dns": ["10.1.0.2"],
    "dns_search": ["example.com"],
}


def content(**changes) -> VmData:
    obj = {"metadata": {"local-hostname": "db-1"}, "userdata": "#cloud-config\n"}
    obj.update(changes)
    return VmData.from_dict(obj)


def nic_macs(vm: vim.VirtualMachine) -> list[str]:
    return [d.macAddress.lower() for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)]


def add_nic(si: vim.ServiceInstance, vm: vim.VirtualMachine) -> None:
    nic = vim.vm.device.VirtualE1000(
        key=-1,
        backing=vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName="VM Network"),
        connectable=vim.vm.device.VirtualDevice.ConnectInfo(startConnected=True, allowGuestControl=True),
    )
    spec = vim.vm.ConfigSpec(deviceChange=[vim.vm.device.VirtualDeviceSpec(operation="add", device=nic)])
    reconfigure(si, vm, spec)


def drive_read(sim, si, vm, tmp_path) -> dict:
    paths = [p for p in iso_paths(si, vm) if "ConfigDrive/" in p]
    assert len(paths) == 1, paths
    return cloud_init_read(fetch_file(sim, si, paths[0]), tmp_path)


def test_interfaces_take_the_vms_nics_in_device_order(tool, vcsim_faults, vsphere, make_vm, tmp_path):
    vm = make_vm()
    add_nic(vsphere, vm)
    macs = nic_macs(vm)
    assert len(macs) == 2 and len(set(macs)) == 2
    tool.attach(vm.name, content(network=STATIC))
    net = drive_read(vcsim_faults, vsphere, vm, tmp_path)["networkdata"]
    assert [(link["id"], link["ethernet_mac_address"]) for link in net["links"]] == [
        ("eth0", macs[0]),
        ("eth1", macs[1]),
    ]
    assert net["links"][0]["mtu"] == 9000
    assert [(n["link"], n["ip_address"]) for n in net["networks"]] == [
        ("eth0", "10.1.2.3"),
        ("eth1", "192.168.50.3"),
        ("eth1", "2001:db8::3"),
    ]
    # the same again changes nothing: the MACs and the instance UUID are the VM's, stable
    assert tool.attach(vm.name, content(network=STATIC)).changed is False


def test_a_mac_that_is_not_the_vms_nic_is_refused_and_nothing_changes(tool, vcsim_faults, vsphere, make_vm):
    vm = make_vm()
    before = (get_property(vsphere, vm, "config.changeVersion"), iso_paths(vsphere, vm))
    wrong = {"interfaces": [{"mac": "00:50:56:ff:ff:fe", "dhcp4": True}]}
    with pytest.raises(ValidationError) as info:
        tool.attach(vm.name, content(network=wrong))
    assert info.value.field == "network.interfaces[0].mac" and nic_macs(vm)[0] in info.value.message
    with pytest.raises(ValidationError) as info:
        tool.attach(vm.name, content(network={"interfaces": [{"dhcp4": True}, {"dhcp4": True}]}))
    assert info.value.field == "network.interfaces" and "has 1 network adapter" in info.value.message
    assert (get_property(vsphere, vm, "config.changeVersion"), iso_paths(vsphere, vm)) == before
    assert folder_listing(vsphere, f"[LocalDS_0] ConfigDrive/{vm.name}") is None


def test_the_vm_id_defaults_to_the_instance_uuid_not_the_bios_uuid(tool, vcsim_faults, vsphere, make_vm, tmp_path):
    vm = make_vm()
    result = tool.attach(vm.name, content())
    instance_uuid, bios_uuid = vm.config.instanceUuid, vm.config.uuid
    assert instance_uuid != bios_uuid
    assert drive_read(vcsim_faults, vsphere, vm, tmp_path)["uuid"] == instance_uuid
    assert "warnings" not in result.extra  # the BIOS-UUID warning is not triggered
    # an update with data that has no vm-id keeps it; --new-instance-id would set the same one: no change
    assert tool.update(vm.name, data=content()).changed is False
    assert tool.update(vm.name, new_instance_id=True).changed is False


def clone(si: vim.ServiceInstance, vm: vim.VirtualMachine, name: str) -> vim.VirtualMachine:
    """CloneVM_Task, carrying the parent's extraConfig as vSphere does (vcsim 0.24 copies only what the spec
    names), so the clone inherits the drive's record along with its CD-ROM."""
    extra = [vim.option.OptionValue(key=o.key, value=o.value) for o in vm.config.extraConfig or []]
    spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(), powerOn=False, config=vim.vm.ConfigSpec(extraConfig=extra))
    return wait_for_task(si, vm.CloneVM_Task(folder=vm.parent, name=name, spec=spec))


def test_the_clone_recipe_gives_the_clone_its_own_drive_and_leaves_the_parents(
    tool, vcsim_faults, vsphere, make_vm, tmp_path
):
    parent = make_vm()
    given = content(metadata={"vm-id": "0f6a8b52-4c55-4d2e-8d2e-0d6b9d1f3a10", "local-hostname": "web-1"})
    tool.attach(parent.name, given)
    parent_iso = iso_paths(vsphere, parent)[-1]
    parent_bytes = fetch_file(vcsim_faults, vsphere, parent_iso)
    parent_record = record_of(vsphere, parent)
    twin = clone(vsphere, parent, f"{parent.name}-clone")
    try:
        assert parent_iso in iso_paths(vsphere, twin)  # the clone's CD-ROM names the parent's file
        assert record_of(vsphere, twin)["owner"] == parent.config.instanceUuid
        # the recipe: attach the clone with its own instance id (and, in real life, its own addresses)
        result = tool.attach(twin.name, given, new_instance_id=True)
        assert result.changed
        own = [p for p in iso_paths(vsphere, twin) if "ConfigDrive/" in p]
        assert own == [result.iso] and result.iso.startswith(f"[LocalDS_0] ConfigDrive/{twin.name}/")
        assert drive_read(vcsim_faults, vsphere, twin, tmp_path)["uuid"] == twin.config.instanceUuid
        assert record_of(vsphere, twin)["owner"] == twin.config.instanceUuid
        # the parent's drive is as it was: its file, its bytes, its record
        assert fetch_file(vcsim_faults, vsphere, parent_iso) == parent_bytes
        assert iso_paths(vsphere, parent)[-1] == parent_iso and record_of(vsphere, parent) == parent_record
        assert tool.attach(twin.name, given, new_instance_id=True).changed is False  # idempotent
    finally:
        destroy_vm(vsphere, twin)
