"""cloud-init's own VMware datasource in a booted guest, fed through guestinfo keys: the first, deciding step of
the guestinfo transport (issue 22). One boot per release.

The keys are the package's layout (esxi_configdrive/guestinfo.py) of a VM data file with a static address, user
data, vendor data and ``redact``. The VM presents VMware's SMBIOS strings and hides QEMU's hypervisor CPUID bit
(guest_harness.VMWARE_PLATFORM_ARGS), so ds-identify's and DataSourceVMware's platform checks pass as on vSphere;
the datasource list names VMware after ConfigDrive (scripts/build-guest-image). Only VMware Tools' channel is
stood in: the harness hands the keys to QEMU as fw_cfg entries, and the image's STAND-IN ``vmware-rpctool``
answers ``info-get`` from them and logs every call, which the probe prints (``GUESTCHECK rpctool:``).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from guest_data import IPv4Settings, assert_static_ipv4, ran_marker, ssh_key, static_network_vmdata, vm_data
from guest_harness import GUEST_MAC, Boot, DiskMaker, GuestinfoMaker

from esxi_configdrive import VmData
from esxi_configdrive.guestinfo import BASE64, GZIP_BASE64, NAMES, PLAIN, encoding_key, guestinfo_keys, key

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
