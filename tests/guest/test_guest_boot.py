"""A real Debian guest boots with the drive and cloud-init applies it; a password reset applies at the next boot.

Everything is read from the serial console: cloud-init's own lines, and the image's per-boot probe
(``GUESTCHECK ...``, ``PASSWORD-CHECK: match|mismatch``, see scripts/build-guest-image).

Boots (about 40-70 s each under TCG), on each Debian release: one VM per CD-ROM controller, IDE (what a
powered-off attach adds) and AHCI/SATA (powered-on attach); the IDE VM then goes on to a password reset and a
drive update. Every VM has a NIC on QEMU's isolated user network.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from guest_data import (
    QEMU_DHCP_LEASE,
    QEMU_SUBNET,
    builder_writes_network_data,
    expect_vendor_data_list_crash,
    ran_marker,
    ssh_key,
    vm_data,
)
from guest_harness import Boot, DiskMaker, DriveMaker, GuestDisk

pytestmark = pytest.mark.guest


@dataclass
class Vm:
    """A test VM: its disk, the VM data of its current drive, and the boots so far."""

    disk: GuestDisk
    vmdata: dict[str, Any]
    nonce: str
    boots: list[Boot] = field(default_factory=list)

    @property
    def password(self) -> str:
        return str(self.vmdata["password"])


def first_boot(name: str, controller: str, new_disk: DiskMaker, make_drive: DriveMaker) -> Vm:
    nonce = secrets.token_hex(4)
    vm = Vm(new_disk(name), vm_data(str(uuid.uuid4()), f"P1-{secrets.token_hex(6)}", nonce), nonce)
    vm.boots.append(vm.disk.boot(make_drive(f"{name}-a", vm.vmdata), controller))
    return vm


@pytest.fixture(scope="module")
def ide_vm(new_disk: DiskMaker, make_drive: DriveMaker) -> Vm:
    return first_boot("ide", "ide", new_disk, make_drive)


@pytest.fixture(scope="module")
def ahci_vm(new_disk: DiskMaker, make_drive: DriveMaker) -> Vm:
    return first_boot("ahci", "ahci", new_disk, make_drive)


# ---- first boot, on IDE and on AHCI ------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["ide_vm", "ahci_vm"])
def first_vm(request: pytest.FixtureRequest, new_disk: DiskMaker) -> Vm:
    """Each controller's VM after its first boot (new_disk ties it to the release being booted)."""
    return request.getfixturevalue(request.param)


def test_cloud_init_reads_the_drive_from_the_cdrom(first_vm: Vm) -> None:
    vm = first_vm
    boot = vm.boots[0]
    assert boot.datasource.startswith("DataSourceConfigDrive"), boot.tail()
    assert "[source=/dev/sr0]" in boot.datasource
    assert boot.value("instance-id") == vm.vmdata["metadata"]["vm-id"]


def test_cloud_init_finishes_without_errors(first_vm: Vm, request: pytest.FixtureRequest) -> None:
    boot = first_vm.boots[0]
    expect_vendor_data_list_crash(request, boot, first_vm.vmdata)
    assert "status: done" in boot.values("cloud-init"), boot.tail()  # no stage or module failed


def test_hostname_comes_from_the_drive(first_vm: Vm) -> None:
    vm = first_vm
    assert vm.boots[0].value("hostname") == "web-1"  # the image's own /etc/hostname says unconfigured-guest


def test_ssh_keys_land_in_the_default_users_authorized_keys(first_vm: Vm) -> None:
    vm = first_vm
    assert sorted(vm.boots[0].values("authorized-key")) == sorted(vm.vmdata["metadata"]["public-keys"])


def test_user_data_runs(first_vm: Vm) -> None:
    vm = first_vm
    assert ran_marker(vm.nonce) in vm.boots[0].console, vm.boots[0].tail()


def test_the_drives_password_works(first_vm: Vm) -> None:
    vm = first_vm
    assert vm.boots[0].verdict() == "match", vm.boots[0].tail()
    assert vm.boots[0].value("shadow-status") == "P"  # usable, not locked as the image's default user starts


def test_shadow_hash_is_debians_default_yescrypt(first_vm: Vm) -> None:
    """The probe's verdicts come from libxcrypt hashing with the stored hash's method: show that method."""
    vm = first_vm
    assert vm.boots[0].value("shadow-method") == "y", vm.boots[0].tail()


def test_the_nic_gets_dhcp_from_a_drive_built_without_network_data(first_vm: Vm) -> None:
    """cloud-init's fallback (DHCP on the first NIC) applies because the builder writes no network_data.json when
    the VM data has no network data. QEMU's restricted DHCP leases an address and a netmask, no router or DNS
    server (guest_data.QEMU_SUBNET): the subnet's route is all there is to see besides the lease."""
    vm = first_vm
    boot = vm.boots[0]
    assert "network_data" not in vm.vmdata
    assert not builder_writes_network_data(vm.vmdata)
    nic = boot.nic()
    assert nic.ipv4 == [QEMU_DHCP_LEASE], boot.tail()
    assert nic.leased == [QEMU_DHCP_LEASE]  # a DHCP lease, not an address configured statically
    assert nic.operstate == "up"
    assert nic.setup == "configured"
    assert any(route.startswith(f"{QEMU_SUBNET} dev {nic.name} ") for route in boot.routes), boot.routes


def test_cloud_init_renders_the_network_with_netplan(first_vm: Vm) -> None:
    """The renderer is picked from what is installed (cloudinit/net/renderers.py: eni, sysconfig, netplan, ...,
    networkd): the image installs netplan.io and no ifupdown, as Debian's cloud images do, on both releases."""
    boot = first_vm.boots[0]
    assert boot.value("network-renderer") == "netplan", boot.tail()
    assert "/etc/netplan/50-cloud-init.yaml" in boot.values("network-file")
    assert f"/run/systemd/network/10-netplan-{boot.nic().name}.network" in boot.values("network-file")


def test_password_is_not_on_the_console_nor_in_world_readable_files(first_vm: Vm) -> None:
    vm = first_vm
    boot = vm.boots[0]
    assert vm.password not in boot.console
    found = [line.rsplit(" ", 1) for line in boot.values("password-found-in")]
    assert found, "the probe found the password nowhere: is it reading the drive?"
    readable = [path for path, mode in found if int(mode, 8) & 0o004]
    assert not readable, f"the drive's password is readable by every local user in {readable}"


# ---- the same VM later: password reset, then a drive update that keeps the password ------------------------


@dataclass
class ResetFlow:
    vm: Vm
    reset_boot: Boot  # drive B: same VM data, new password (what `reset-password` produces)
    update_boot: Boot  # drive C: B with a new hostname, one more key, new user data; password unchanged
    guest_password: str  # set inside the guest at the end of the reset boot, as a user would
    update_nonce: str  # in drive C's user data


@pytest.fixture(scope="module")
def reset_flow(ide_vm: Vm, make_drive: DriveMaker) -> ResetFlow:
    vm = ide_vm
    reset = {**vm.vmdata, "password": f"P2-{secrets.token_hex(6)}"}
    guest_password = f"P3-{secrets.token_hex(6)}"
    reset_boot = vm.disk.boot(make_drive("ide-b", reset), "ide", kernel_args=f"guesttest.setpw={guest_password}")
    update_nonce = secrets.token_hex(4)
    update = vm_data(
        reset["metadata"]["vm-id"],
        reset["password"],
        nonce=update_nonce,
        hostname="web-2",
        keys=[*reset["metadata"]["public-keys"], ssh_key("bob@example")],
    )
    update_boot = vm.disk.boot(make_drive("ide-c", update), "ide", kernel_args=f"guesttest.expect={guest_password}")
    return ResetFlow(vm, reset_boot, update_boot, guest_password, update_nonce)


def test_reset_password_applies_at_the_next_boot(reset_flow: ResetFlow) -> None:
    boot = reset_flow.reset_boot
    assert boot.value("boot") == "2"  # the same disk, booted again: not a new VM
    assert boot.value("instance-id") == reset_flow.vm.vmdata["metadata"]["vm-id"]  # not a new instance either
    assert boot.verdict() == "match", boot.tail()
    assert reset_flow.vm.password not in boot.console


def test_password_changed_in_the_guest_survives_a_drive_update(reset_flow: ResetFlow) -> None:
    """The drive's password applies when it changes, not at every boot: a user's own change is kept."""
    boot = reset_flow.update_boot
    assert boot.value("boot") == "3"
    assert boot.verdict("PASSWORD-CHECK-EXPECTED") == "match", boot.tail()
    assert boot.verdict() == "mismatch"


def test_user_data_runs_once_per_instance(reset_flow: ResetFlow) -> None:
    assert ran_marker(reset_flow.vm.nonce) not in reset_flow.reset_boot.console  # same user data, same instance
    assert ran_marker(reset_flow.update_nonce) not in reset_flow.update_boot.console  # new user data, same instance


def test_hostname_follows_the_drive_at_every_boot(reset_flow: ResetFlow) -> None:
    assert reset_flow.update_boot.value("hostname") == "web-2"


def test_ssh_keys_are_installed_once_per_instance(reset_flow: ResetFlow) -> None:
    installed = reset_flow.update_boot.values("authorized-key")
    assert sorted(installed) == sorted(reset_flow.vm.vmdata["metadata"]["public-keys"])
    assert ssh_key("bob@example") not in installed
