"""What the operations make of the content for one VM (drive/steps.py ``content_for_vm``), on the recording stand-in:
the vm-id from the VM's instance UUID, a clone's fresh id, a `network` section's interfaces on the VM's NICs in
device order, and the refusals that come before anything is changed. Live on vcsim: test_network_live.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from drive_fake import DS, FakeVsphereVm
from test_drive_operations import attach_op, attached, run, update_op

from esxi_configdrive import VmData, read_iso
from esxi_configdrive.errors import ValidationError
from esxi_configdrive.iso import iso_to_tree
from esxi_configdrive.vsphere_values import Nic

MACS = ("00:50:56:aa:bb:01", "00:50:56:aa:bb:02")
CLONE_UUID = "5001aaaa-0000-4000-8000-0000000000c1"


def content(**changes: Any) -> VmData:
    obj: dict[str, Any] = {"metadata": {"local-hostname": "web-1"}, "userdata": "#cloud-config\n"}
    obj.update(changes)
    return VmData.from_dict(obj)


def drive_of(vm: FakeVsphereVm) -> VmData:
    cdrom = vm.our_cdrom()
    assert cdrom is not None and cdrom.iso
    return read_iso(vm.files[cdrom.iso])


def network_json(vm: FakeVsphereVm) -> dict:
    cdrom = vm.our_cdrom()
    assert cdrom is not None and cdrom.iso
    return json.loads(iso_to_tree(vm.files[cdrom.iso]).read("openstack/latest/network_data.json"))


def two_nics() -> FakeVsphereVm:
    return FakeVsphereVm(nics=[Nic(4000, MACS[0].upper()), Nic(4001, MACS[1])])


# ---- the vm-id ------------------------------------------------------------------------------------------------


def test_without_a_vm_id_the_drive_gets_the_vms_instance_uuid_and_a_rerun_changes_nothing():
    vm = FakeVsphereVm()
    first = run(vm, attach_op(content()))
    assert first.changed and drive_of(vm).vm_id == vm.instance_uuid
    again = run(vm, attach_op(content()))
    assert again.changed is False


def test_new_instance_id_replaces_the_datas_vm_id_and_is_idempotent():
    vm = FakeVsphereVm()
    given = content(metadata={"vm-id": "parent-id", "local-hostname": "web-1"})
    run(vm, attach_op(given))
    assert drive_of(vm).vm_id == "parent-id"
    changed = run(vm, attach_op(given, new_instance_id=True))
    assert changed.changed and drive_of(vm).vm_id == vm.instance_uuid
    assert run(vm, attach_op(given, new_instance_id=True)).changed is False


def test_an_update_keeps_the_drives_vm_id_unless_asked_for_a_new_one():
    vm = attached()
    kept = drive_of(vm).vm_id
    assert kept != vm.instance_uuid
    run(vm, update_op(data=content(userdata="#cloud-config\n# v2\n")))  # the new data has no vm-id
    assert drive_of(vm).vm_id == kept and drive_of(vm).userdata == b"#cloud-config\n# v2\n"
    run(vm, update_op(new_instance_id=True))
    assert drive_of(vm).vm_id == vm.instance_uuid


def test_a_clones_new_instance_id_writes_its_own_drive_and_leaves_the_parents_file():
    parent = attached()
    parent_iso = parent.our_cdrom().iso
    parent_bytes = parent.files[parent_iso]
    # a clone: the same devices and extraConfig record, another name and instance UUID, the same datastore files
    clone = FakeVsphereVm(
        name="web-1-clone",
        instance_uuid=CLONE_UUID,
        cdroms=list(parent.cdroms),
        extra_config=dict(parent.extra_config),
        files=parent.files,
        folders=parent.folders,
    )
    result = run(
        clone, attach_op(content(metadata={"vm-id": "5d7e9c10-1b2a-4c3d-8e4f-5a6b7c8d9e0f"}), new_instance_id=True)
    )
    assert result.iso.startswith(f"[{DS}] ConfigDrive/web-1-clone/")
    assert drive_of(clone).vm_id == CLONE_UUID
    assert clone.files[parent_iso] == parent_bytes  # the parent's ISO is untouched
    assert not [v for k, v in clone.calls("delete")]


# ---- a network section on the VM's NICs ---------------------------------------------------------------------


def test_interfaces_get_the_vms_nic_macs_in_device_order():
    vm = two_nics()
    section = {"interfaces": [{"addresses": ["10.1.2.3/24"], "gateway4": "10.1.2.1"}, {"dhcp4": True}]}
    run(vm, attach_op(content(network=section)))
    links = network_json(vm)["links"]
    assert [(link["id"], link["ethernet_mac_address"]) for link in links] == [("eth0", MACS[0]), ("eth1", MACS[1])]


@pytest.mark.parametrize(
    "section, field",
    [
        ({"interfaces": [{"dhcp4": True}, {"dhcp4": True}, {"dhcp4": True}]}, "network.interfaces"),
        ({"interfaces": [{"mac": MACS[1], "dhcp4": True}]}, "network.interfaces[0].mac"),
    ],
    ids=["more interfaces than NICs", "another NIC's MAC"],
)
def test_a_section_that_does_not_fit_the_vm_changes_nothing(section, field):
    vm = two_nics()
    with pytest.raises(ValidationError) as info:
        run(vm, attach_op(content(network=section)))
    assert info.value.field == field
    assert vm.calls() == []


def test_nova_links_given_by_hand_must_be_the_vms_nics():
    vm = two_nics()
    wrong = {"links": [{"id": "eth0", "type": "phy", "ethernet_mac_address": "00:50:56:ff:ff:ff"}]}
    with pytest.raises(ValidationError) as info:
        run(vm, attach_op(content(network_data=wrong)))
    assert info.value.field == "network_data.links[0].ethernet_mac_address"
    assert "cloud-init would fail" in info.value.message and vm.calls() == []
    right = {"links": [{"id": "eth0", "type": "phy", "ethernet_mac_address": MACS[1]}]}
    assert run(vm, attach_op(content(network_data=right))).changed


def test_network_data_auto_with_a_section_is_refused_before_any_change():
    vm = two_nics()
    with pytest.raises(ValidationError) as info:
        run(vm, attach_op(content(network={"interfaces": [{"dhcp4": True}]}), network_data_auto=True))
    assert info.value.field == "network-data" and vm.calls() == []


def test_an_update_with_a_network_override_replaces_the_drives_network_data():
    vm = attached(nics=[Nic(4000, MACS[0])])
    run(vm, update_op(network_data="auto"))
    assert network_json(vm)["networks"][0]["type"] == "ipv4_dhcp"
    section = {"interfaces": [{"addresses": ["10.1.2.3/24"]}], "dns": ["10.1.0.2"]}
    run(vm, update_op(network=section))
    written = network_json(vm)
    assert written["networks"][0]["ip_address"] == "10.1.2.3"
    assert written["links"][0]["ethernet_mac_address"] == MACS[0]
    assert written["services"] == [{"type": "dns", "address": "10.1.0.2"}]
