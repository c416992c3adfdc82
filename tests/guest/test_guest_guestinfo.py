"""cloud-init's own VMware datasource in a booted guest, fed through guestinfo keys (issue 22). Two boots per
release: the package's layout of a VM data file (the first, deciding step), and the keys the tool itself wrote into
a running vcsim VM's extraConfig (attach --transport guestinfo --guestinfo-password), read back from vcsim.

The keys are the package's layout (esxi_configdrive/guestinfo.py) of a VM data file with a static address, user
data, vendor data and ``redact``. The VM presents VMware's SMBIOS strings and hides QEMU's hypervisor CPUID bit
(guest_harness.VMWARE_PLATFORM_ARGS), so ds-identify's and DataSourceVMware's platform checks pass as on vSphere;
the datasource list names VMware after ConfigDrive (scripts/build-guest-image). Only VMware Tools' channel is
stood in: the harness hands the keys to QEMU as fw_cfg entries, and the image's STAND-IN ``vmware-rpctool``
answers ``info-get`` from them and logs every call, which the probe prints (``GUESTCHECK rpctool:``).
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from guest_data import IPv4Settings, assert_static_ipv4, ran_marker, ssh_key, static_network_vmdata, vm_data
from guest_harness import GUEST_MAC, Boot, DiskMaker, GuestinfoMaker
from pyVmomi import vim
from tool_fixtures import settings_for
from vsphere_harness import Vcsim, connect, create_vm, disconnect, get_property, reconfigure

from esxi_configdrive import VmData
from esxi_configdrive.controller import ConfigDriveController
from esxi_configdrive.guestinfo import BASE64, GZIP_BASE64, NAMES, PLAIN, decode, encoding_key, guestinfo_keys, key
from esxi_configdrive.vsphere.connection import Session

pytestmark = pytest.mark.guest

# Not the config drive test's address: what the NIC gets must come from this metadata.
STATIC = IPv4Settings("10.0.2.60/24", gateway="10.0.2.2", dns=("10.0.2.3",), search=("guestinfo.test",))
REDACT = ["userdata", "vendordata"]
# Vendor data that shows it ran (bootcmd's output reaches the console, as runcmd's does for the user data). The
# comment makes it compress well, so that it goes as gzip+base64 while the user data goes as base64.
VENDORDATA = (
    "#cloud-config\n"
    + "# vendor data of esxi-configdrive's guest test, long enough to be worth compressing\n" * 8
    + 'bootcmd:\n  - echo "VENDORDATA-RAN $((6 * 7)) {nonce}"\n'
)


def vendor_marker(nonce: str) -> str:
    return f"VENDORDATA-RAN 42 {nonce}"


@dataclass(frozen=True)
class GuestinfoVm:
    vmdata: dict[str, Any]
    nonce: str  # in the markers the user data and the vendor data print
    keys: dict[str, str]  # the guestinfo keys it booted with
    boot: Boot


@pytest.fixture(scope="module")
def guestinfo_vm(new_disk: DiskMaker, make_guestinfo: GuestinfoMaker) -> GuestinfoVm:
    nonce = secrets.token_hex(4)
    vmdata = vm_data(str(uuid.uuid4()), "unused", nonce, hostname="gi-web-1", keys=[ssh_key("gi@example")])
    del vmdata["password"]
    vmdata.update(static_network_vmdata(STATIC, GUEST_MAC))
    vmdata["vendor_data"] = {"cloud-init": VENDORDATA.format(nonce=nonce)}
    keys = guestinfo_keys(VmData.from_dict(vmdata), redact=REDACT)
    boot = new_disk("guestinfo").boot(None, qemu_args=make_guestinfo("guestinfo", keys))
    return GuestinfoVm(vmdata, nonce, keys, boot)


def rpctool_calls(boot: Boot) -> list[str]:
    """The stand-in vmware-rpctool's log, in order: ``[caller] info-get|info-set guestinfo.<key> [value]``."""
    return [line.rstrip() for line in boot.values("rpctool")]


def test_the_keys_use_both_encodings(guestinfo_vm: GuestinfoVm) -> None:
    """What the boot was given: user data base64 (or plain), vendor data gzip+base64."""
    keys = guestinfo_vm.keys
    assert keys[encoding_key("vendordata")] == GZIP_BASE64
    assert keys[encoding_key("userdata")] in (BASE64, PLAIN)
    assert all(keys[key(name)] for name in NAMES)


def test_cloud_init_uses_the_vmware_datasource(guestinfo_vm: GuestinfoVm) -> None:
    boot = guestinfo_vm.boot
    assert boot.value("detect-virt") == "vmware", boot.tail()
    assert boot.value("dmi-product") == "VMware Virtual Platform"
    assert boot.value("ds-identify").replace(" ", "") == "datasource_list:[VMware,None]", boot.tail()
    assert "[ds-identify] info-get guestinfo.metadata" in rpctool_calls(boot)  # it asked VMware Tools (stood in)
    assert boot.datasource.startswith("DataSourceVMware"), boot.tail()
    assert "status: done" in boot.values("cloud-init"), boot.tail()
    assert "PASSWORD-CHECK: no-drive" in boot.console  # no config drive: the data came through guestinfo


def test_hostname_instance_and_keys_apply(guestinfo_vm: GuestinfoVm) -> None:
    boot, metadata = guestinfo_vm.boot, guestinfo_vm.vmdata["metadata"]
    assert boot.value("hostname") == "gi-web-1"
    assert boot.value("instance-id") == metadata["vm-id"]  # the config drive's instance id too (meta_data uuid)
    assert boot.values("authorized-key") == metadata["public-keys"]


def test_user_data_and_vendor_data_run(guestinfo_vm: GuestinfoVm) -> None:
    boot = guestinfo_vm.boot
    assert ran_marker(guestinfo_vm.nonce) in boot.console, boot.tail()
    assert vendor_marker(guestinfo_vm.nonce) in boot.console, boot.tail()


def test_the_static_address_applies(guestinfo_vm: GuestinfoVm) -> None:
    assert_static_ipv4(guestinfo_vm.boot, STATIC, GUEST_MAC)


def test_cloud_init_redacts_each_key_after_reading_it(guestinfo_vm: GuestinfoVm) -> None:
    """cloud-init overwrites each key in ``redact`` with ``---`` (keys cannot be removed from inside the guest),
    after it read it."""
    calls = [call.split("] ", 1)[1] for call in rpctool_calls(guestinfo_vm.boot)]
    for name in REDACT:
        read, redacted = f"info-get {key(name)}", f"info-set {key(name)} ---"
        assert redacted in calls, calls
        assert read in calls[: calls.index(redacted)], calls
    assert f"info-set {key('metadata')} ---" not in calls  # only what redact names


# ---- through the tool: the keys it wrote into a VM's extraConfig on vcsim ------------------------------------

TOOL_STATIC = IPv4Settings("10.0.2.61/24", gateway="10.0.2.2", dns=("10.0.2.3",), search=("tool.guestinfo.test",))


@dataclass(frozen=True)
class ToolVm:
    vmdata: dict[str, Any]
    nonce: str
    password: str
    keys: dict[str, str]  # the VM's guestinfo keys as vcsim holds them after the tool's attach
    result: dict[str, Any]  # what the attach said
    boot: Boot


def nic_with_mac(si: vim.ServiceInstance, vm: vim.VirtualMachine, mac: str) -> None:
    """Give the vcsim VM's NIC the MAC QEMU's NIC has (a manual address, as an admin may set one)."""
    nic = next(d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard))
    nic.addressType, nic.macAddress = "manual", mac
    spec = vim.vm.ConfigSpec(deviceChange=[vim.vm.device.VirtualDeviceSpec(operation="edit", device=nic)])
    reconfigure(si, vm, spec)


def guestinfo_on(si: vim.ServiceInstance, vm: vim.VirtualMachine) -> dict[str, str]:
    """The VM's guestinfo keys read back from vcsim: each key's last extraConfig entry (stock vcsim 0.24 appends
    entries instead of replacing them; a key set to "" is gone, as on vSphere)."""
    values: dict[str, str] = {}
    for option in get_property(si, vm, "config.extraConfig") or []:
        if option.key.startswith("guestinfo."):
            values[option.key] = option.value
    return {k: v for k, v in values.items() if v}


@pytest.fixture(scope="module")
def tool_vm(new_disk: DiskMaker, make_guestinfo: GuestinfoMaker, vcsim: Vcsim) -> ToolVm:
    """One running vcsim VM given its data by the tool (attach --transport guestinfo --guestinfo-password), the
    keys read back from vcsim's extraConfig, and one boot with them."""
    nonce, password = secrets.token_hex(4), f"Gi-{secrets.token_hex(6)}"
    vmdata = vm_data(str(uuid.uuid4()), password, nonce, hostname="gi-tool-1", keys=[ssh_key("tool@example")])
    network = static_network_vmdata(TOOL_STATIC, GUEST_MAC)
    del network["network"]["interfaces"][0]["mac"]  # the tool takes it from the VM's NIC
    vmdata.update(network)
    si = connect(vcsim)
    try:
        vm = create_vm(si, powered_on=True)
        nic_with_mac(si, vm, GUEST_MAC)
        with Session(settings_for(vcsim)) as session:
            result = ConfigDriveController(session, task_timeout=30).attach(
                vm.name, VmData.from_dict(vmdata), transport="guestinfo", guestinfo_password=True
            )
        keys = guestinfo_on(si, vm)
        assert get_property(si, vm, "runtime.powerState") == "poweredOn"  # no reboot, no CD-ROM
    finally:
        disconnect(si)
    boot = new_disk("guestinfo-tool").boot(
        None, kernel_args=f"guesttest.expect={password}", qemu_args=make_guestinfo("guestinfo-tool", keys)
    )
    return ToolVm(vmdata, nonce, password, keys, result.to_dict(), boot)


def test_the_tool_wrote_the_keys_in_one_reconfigure(tool_vm: ToolVm) -> None:
    assert tool_vm.result["transport"] == "guestinfo" and tool_vm.result["changed"] is True
    assert tool_vm.result["actions"] == [
        "wrote guestinfo keys guestinfo.metadata, guestinfo.userdata, guestinfo.vendordata"
    ]
    assert {key(n) for n in NAMES} <= set(tool_vm.keys)
    assert "vCenter" in tool_vm.result["warnings"][0]  # who can read the password until cloud-init blanks it


def test_the_tools_keys_are_read_by_the_vmware_datasource(tool_vm: ToolVm) -> None:
    boot, metadata = tool_vm.boot, tool_vm.vmdata["metadata"]
    assert boot.datasource.startswith("DataSourceVMware"), boot.tail()
    assert "status: done" in boot.values("cloud-init"), boot.tail()
    assert "PASSWORD-CHECK: no-drive" in boot.console  # no ISO: it came through guestinfo
    assert boot.value("hostname") == "gi-tool-1"
    assert boot.value("instance-id") == metadata["vm-id"]
    assert boot.values("authorized-key") == metadata["public-keys"]
    assert ran_marker(tool_vm.nonce) in boot.console, boot.tail()  # the user data ran
    assert_static_ipv4(boot, TOOL_STATIC, GUEST_MAC)


def test_the_password_applies_and_every_redacted_key_is_blanked(tool_vm: ToolVm) -> None:
    boot = tool_vm.boot
    assert boot.verdict("PASSWORD-CHECK-EXPECTED") == "match", boot.tail()
    meta = json.loads(decode(tool_vm.keys[key("metadata")], tool_vm.keys.get(encoding_key("metadata"), "")))
    assert meta["redact"] == ["vendordata"]
    calls = [call.split("] ", 1)[1] for call in rpctool_calls(boot)]
    for name in meta["redact"]:
        assert f"info-set {key(name)} ---" in calls, calls
        assert f"info-get {key(name)}" in calls[: calls.index(f"info-set {key(name)} ---")], calls
    assert tool_vm.password not in boot.console
