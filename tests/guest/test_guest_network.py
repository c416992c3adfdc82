"""What a guest's NIC gets from the drive: nothing from an empty network_data.json, exactly the static address
asked for (DHCP without network data: test_guest_boot.py, on the builder's own drives).

Each VM has one virtio NIC (guest_harness.GUEST_MAC) on QEMU's user network with restrict=on: QEMU's own DHCP
server answers inside the QEMU process, nothing reaches any other network. The image runs systemd-networkd and
systemd-resolved with netplan, as Debian's cloud images do, and has no network configuration of its own, so
whatever the NIC gets comes from cloud-init. Read from the probe's report after cloud-init finished
(``ip -4 addr``, ``ip -4 route``, /etc/resolv.conf, ``resolvectl``; see scripts/build-guest-image).

The {} drive is built with the project's builder, then network_data.json is set explicitly (the builder writes
none without network data); the static drive is the builder's own, from the VM data file's ``network`` section.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import pytest
from guest_data import IPv4Settings, assert_static_ipv4, static_network_vmdata, vm_data
from guest_harness import GUEST_MAC, Boot, DiskMaker, DriveMaker, NetworkDriveMaker

pytestmark = pytest.mark.guest


# Any address works on QEMU's user network: it answers whatever the guest takes in 10.0.2.0/24.
STATIC = IPv4Settings("10.0.2.50/24", gateway="10.0.2.2", dns=("10.0.2.3",), search=("example.test",))


def boot_once(name: str, vmdata: dict[str, Any], network_file: bytes | None, new_disk: DiskMaker,
              make_drive: NetworkDriveMaker) -> Boot:  # fmt: skip
    return new_disk(name).boot(make_drive(name, vmdata, network_file))


def plain_vmdata(hostname: str) -> dict[str, Any]:
    """VM data without a password: these drives need no vendor data (test_guest_boot covers the password)."""
    vmdata = vm_data(str(uuid.uuid4()), "unused", secrets.token_hex(4), hostname=hostname)
    del vmdata["password"]
    return vmdata


@pytest.fixture(scope="module")
def empty_network_file_boot(new_disk: DiskMaker, make_drive_with_network_file: NetworkDriveMaker) -> Boot:
    return boot_once("netempty", plain_vmdata("net-empty"), b"{}", new_disk, make_drive_with_network_file)


@pytest.fixture(scope="module")
def static_boot(new_disk: DiskMaker, make_drive: DriveMaker) -> Boot:
    """The builder's own drive for a VM data file whose ``network`` section asks for a static address."""
    vmdata = {**plain_vmdata("net-static"), **static_network_vmdata(STATIC, GUEST_MAC)}
    return new_disk("netstatic").boot(make_drive("netstatic", vmdata))


def assert_booted_cleanly(boot: Boot) -> None:
    assert boot.datasource.startswith("DataSourceConfigDrive"), boot.tail()
    assert "status: done" in boot.values("cloud-init"), boot.tail()


def test_an_empty_network_data_json_leaves_the_nic_without_ipv4(empty_network_file_boot: Boot) -> None:
    """cloud-init turns {} into a network config with no entries and uses it instead of its DHCP fallback."""
    boot = empty_network_file_boot
    assert_booted_cleanly(boot)
    nic = boot.nic()
    assert nic.ipv4 == [], boot.tail()
    assert nic.setup == "unmanaged"  # no networkd configuration matches the NIC
    assert boot.default_gateways == []
    assert boot.resolv_conf("nameserver") == []


def test_static_network_data_gives_exactly_that_address_gateway_and_dns(static_boot: Boot) -> None:
    assert_booted_cleanly(static_boot)
    assert_static_ipv4(static_boot, STATIC, GUEST_MAC)
