"""A new instance id makes cloud-init provision the same disk again: the clone recipe (cloud-init #3977).

One disk, two boots: first with vm-id A and hostname h1 (DHCP), then (the disk as a clone would have it) with a
drive carrying vm-id B, hostname h2, the same user data, one more SSH key, a new password and a static address.
cloud-init keys everything per-instance on the id, so the second boot is a first boot again: new instance id and
hostname, the user data run again, the new key and password applied, new SSH host keys, the new network.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from guest_data import (
    QEMU_DHCP_LEASE,
    IPv4Settings,
    expect_vendor_data_list_crash,
    ran_marker,
    ssh_key,
    static_network_vmdata,
    vm_data,
)
from guest_harness import GUEST_MAC, Boot, DiskMaker, DriveMaker

pytestmark = pytest.mark.guest


CLONE_NET = IPv4Settings("10.0.2.60/24", gateway="10.0.2.2", dns=("10.0.2.3",), search=("clone.test",))


@dataclass
class Clone:
    parent: dict[str, Any]  # VM data of boot 1
    clone: dict[str, Any]  # VM data of boot 2: new vm-id, hostname, password, one more key, a static address
    nonce: str
    parent_boot: Boot
    clone_boot: Boot


def cloned(parent: dict[str, Any]) -> dict[str, Any]:
    """The clone's VM data: what an admin changes for a clone (identity, address, credentials), same user data."""
    metadata = parent["metadata"]
    return {
        **parent,
        "metadata": {
            **metadata,
            "vm-id": str(uuid.uuid4()),
            "local-hostname": "h2",
            "public-keys": [*metadata["public-keys"], ssh_key("clone-admin@example")],
        },
        "password": f"P2-{secrets.token_hex(6)}",
        **static_network_vmdata(CLONE_NET, GUEST_MAC),
    }


@pytest.fixture(scope="module")
def clone(new_disk: DiskMaker, make_drive: DriveMaker) -> Clone:
    nonce = secrets.token_hex(4)
    parent = vm_data(str(uuid.uuid4()), f"P-{secrets.token_hex(6)}", nonce, hostname="h1")
    disk = new_disk("clone")
    parent_boot = disk.boot(make_drive("clone-a", parent))
    child = cloned(parent)
    clone_boot = disk.boot(make_drive("clone-b", child))
    return Clone(parent, child, nonce, parent_boot, clone_boot)


def test_the_parent_boot_is_provisioned(clone: Clone) -> None:
    boot = clone.parent_boot
    assert boot.value("instance-id") == clone.parent["metadata"]["vm-id"]
    assert boot.value("hostname") == "h1"
    assert ran_marker(clone.nonce) in boot.console, boot.tail()


def test_a_new_vm_id_is_a_new_instance_on_the_same_disk(clone: Clone) -> None:
    boot = clone.clone_boot
    assert boot.value("boot") == "2", boot.tail()  # the same disk, not a fresh one
    assert boot.value("instance-id") == clone.clone["metadata"]["vm-id"]
    assert boot.datasource.startswith("DataSourceConfigDrive"), boot.tail()


def test_the_clone_boot_finishes_without_errors(clone: Clone, request: pytest.FixtureRequest) -> None:
    expect_vendor_data_list_crash(request, clone.clone_boot, clone.clone)
    assert "status: done" in clone.clone_boot.values("cloud-init"), clone.clone_boot.tail()


def test_the_clone_gets_its_new_hostname(clone: Clone) -> None:
    assert clone.clone_boot.value("hostname") == "h2"


def test_the_user_data_runs_again_on_the_clone(clone: Clone) -> None:
    """The same user data: on the same instance it would not run again (test_guest_boot), here it does."""
    assert ran_marker(clone.nonce) in clone.clone_boot.console, clone.clone_boot.tail()


def test_the_clone_gets_its_new_key_and_password(clone: Clone) -> None:
    """On the same instance neither would apply without help: keys are per instance, and a new password needs the
    drive's reset part (test_guest_boot). Here cloud-init applies both itself."""
    boot = clone.clone_boot
    assert ssh_key("clone-admin@example") in boot.values("authorized-key")
    assert boot.verdict() == "match", boot.tail()  # the clone drive's (new) password


def test_the_clone_gets_new_ssh_host_keys(clone: Clone) -> None:
    assert clone.clone_boot.value("host-key") != clone.parent_boot.value("host-key")


def test_the_clone_gets_the_network_of_its_new_drive(clone: Clone) -> None:
    """Network configuration is applied per instance: the parent's DHCP, the clone's static address."""
    assert clone.parent_boot.nic().leased == [QEMU_DHCP_LEASE]
    nic = clone.clone_boot.nic()
    assert nic.ipv4 == [CLONE_NET.interface], clone.clone_boot.tail()
    assert clone.clone_boot.default_gateways == [CLONE_NET.gateway]
