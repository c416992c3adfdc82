"""cloud-init finds a NoCloud seed the tool built and delivered through vcsim (issue 21), and the VM moves to a
config drive. One boot per release (about 3 minutes under TCG: the added time is kept small).

The seed is what ``attach --transport nocloud`` uploaded to a vcsim VM whose NIC has the guest's MAC: the network
section names no MAC, the tool fills it in from the VM's NIC, as on vSphere. The file is downloaded from vcsim's
datastore and booted as the CD-ROM. cloud-init is left to find it (the image's datasource_list is cloud-init's
default order, NoCloud first: scripts/build-guest-image). Then ``update --transport configdrive`` swaps the seed
for a config drive (one reconfigure) on vcsim, read back; that drive's boots are test_guest_boot.py's.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from guest_data import IPv4Settings, assert_static_ipv4, ran_marker, ssh_key, static_network_vmdata, vm_data
from guest_harness import GUEST_MAC, Boot, DiskMaker
from pyVmomi import vim
from tool_fixtures import fetch_file, settings_for
from vsphere_harness import Vcsim, connect, create_vm, destroy_vm, wait_for_task

from esxi_configdrive import VmData
from esxi_configdrive.controller import ConfigDriveController
from esxi_configdrive.iso import read_drive
from esxi_configdrive.network import section_of_network_data
from esxi_configdrive.transport import Transport
from esxi_configdrive.vsphere.connection import Session

pytestmark = pytest.mark.guest

# Not the other guest tests' addresses: what the NIC gets must come from this seed.
STATIC = IPv4Settings("10.0.2.70/24", gateway="10.0.2.2", dns=("10.0.2.3",), search=("nocloud.test",))


@dataclass(frozen=True)
class NocloudVm:
    vmdata: dict[str, Any]
    nonce: str
    seed: bytes  # as downloaded from vcsim
    first: Boot  # from the seed
    moved_drive: bytes  # what the move to a config drive put in the seed's place


def vcsim_vm_with_the_guests_nic(si: vim.ServiceInstance, name: str) -> vim.VirtualMachine:
    """A vcsim VM whose (only) NIC has the QEMU guest's MAC, so the seed's network config matches the guest."""
    vm = create_vm(si, name, nic=False)
    nic = vim.vm.device.VirtualVmxnet3(
        key=-1,
        addressType="manual",
        macAddress=GUEST_MAC,
        backing=vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName="VM Network"),
        connectable=vim.vm.device.VirtualDevice.ConnectInfo(startConnected=True, connected=False),
    )
    change = vim.vm.device.VirtualDeviceSpec(operation="add", device=nic)
    wait_for_task(si, vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[change])))
    return vm


@pytest.fixture(scope="module")
def nocloud_vm(vcsim: Vcsim, new_disk: DiskMaker) -> Iterator[NocloudVm]:
    nonce = secrets.token_hex(4)
    password = f"NC-{secrets.token_hex(6)}"
    vmdata = vm_data(str(uuid.uuid4()), password, nonce, hostname="nc-web-1", keys=[ssh_key("nc@example")])
    network = static_network_vmdata(STATIC, GUEST_MAC)
    del network["network"]["interfaces"][0]["mac"]  # the tool takes it from the VM's NIC
    vmdata.update(network)
    si = connect(vcsim)
    name = f"guest-nocloud-{nonce}"
    vm = vcsim_vm_with_the_guests_nic(si, name)
    disk = new_disk("nocloud")
    folder = disk.path.parent
    try:
        with Session(settings_for(vcsim)) as session:
            tool = ConfigDriveController(session)
            attached = tool.attach(name, VmData.from_dict(vmdata), transport="nocloud")
            seed = fetch_file(vcsim, si, attached.iso or "") or b""
            (folder / "seed.iso").write_bytes(seed)
            first = disk.boot(folder / "seed.iso", "ide", kernel_args=f"guesttest.expect={password}")
            moved = tool.update(name, transport="configdrive")
            assert moved.changed and attached.iso is not None and fetch_file(vcsim, si, attached.iso) is None
            drive = fetch_file(vcsim, si, moved.iso or "") or b""
            tool.remove(name)
        yield NocloudVm(vmdata, nonce, seed, first, drive)
    finally:
        si = connect(vcsim)  # a fresh login: the first one may have idled out during the boot
        destroy_vm(si, vim.VirtualMachine(vm._moId, si._stub))


def test_the_seed_is_the_tools_nocloud_seed(nocloud_vm: NocloudVm) -> None:
    transport, data = read_drive(nocloud_vm.seed)
    assert transport is Transport.NOCLOUD
    assert data.network is not None and data.network["interfaces"][0]["mac"] == GUEST_MAC  # filled in from vcsim
    transport, moved = read_drive(nocloud_vm.moved_drive)
    assert transport is Transport.CONFIGDRIVE and moved.vm_id == data.vm_id
    assert section_of_network_data(moved.network_data) == data.network  # the same address, in nova's form


def test_cloud_init_finds_the_seed_itself(nocloud_vm: NocloudVm) -> None:
    boot = nocloud_vm.first
    assert boot.datasource.startswith("DataSourceNoCloud"), boot.tail()
    assert "NoCloud" in boot.value("ds-identify")  # ds-identify's own choice, no datasource forced
    assert "status: done" in boot.values("cloud-init"), boot.tail()
    assert boot.value("instance-id") == nocloud_vm.vmdata["metadata"]["vm-id"]


def test_the_seed_is_applied(nocloud_vm: NocloudVm) -> None:
    boot = nocloud_vm.first
    assert boot.value("hostname") == "nc-web-1"
    assert boot.values("authorized-key") == nocloud_vm.vmdata["metadata"]["public-keys"]
    assert ran_marker(nocloud_vm.nonce) in boot.console, boot.tail()
    assert boot.verdict("PASSWORD-CHECK-EXPECTED") == "match", boot.tail()  # the vendor data's password
    assert boot.value("shadow-status") == "P"
    assert_static_ipv4(boot, STATIC, GUEST_MAC)
