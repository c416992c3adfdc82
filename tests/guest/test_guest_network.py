"""What a guest's NIC gets from the drive: DHCP without network data, nothing from an empty network_data.json,
exactly the static address asked for.

Each VM has one virtio NIC (guest_harness.GUEST_MAC) on QEMU's user network with restrict=on: QEMU's own DHCP
server answers inside the QEMU process, nothing reaches any other network. The image runs systemd-networkd and
systemd-resolved with netplan, as Debian's cloud images do, and has no network configuration of its own, so
whatever the NIC gets comes from cloud-init. Read from the probe's report after cloud-init finished
(``ip -4 addr``, ``ip -4 route``, /etc/resolv.conf, ``resolvectl``; see scripts/build-guest-image).

The drives are built with the project's builder, then network_data.json is set or removed explicitly, so
these tests do not depend on the builder's default (test_guest_boot.py checks that default).
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from guest_data import QEMU_DHCP_LEASE, QEMU_SUBNET, IPv4Settings, static_network_vmdata, vm_data
from guest_harness import GUEST_MAC, Boot, GuestDisk, GuestImage

pytestmark = pytest.mark.guest

NetworkDriveMaker = Callable[[str, dict[str, Any], bytes | None], Path]
DiskMaker = Callable[[str], GuestDisk]

# Any address works on QEMU's user network: it answers whatever the guest takes in 10.0.2.0/24.
STATIC = IPv4Settings("10.0.2.50/24", gateway="10.0.2.2", dns=("10.0.2.3",), search=("example.test",))

# cloud-init's renderer is chosen from what is installed (cloudinit/net/renderers.py); the image installs
# netplan.io like Debian's cloud images, and this is what each release's cloud-init then picks.
EXPECTED_RENDERER = {"bookworm": "netplan", "trixie": "netplan"}


def boot_once(name: str, vmdata: dict[str, Any], network_file: bytes | None, new_disk: DiskMaker,
              make_drive: NetworkDriveMaker) -> Boot:  # fmt: skip
    return new_disk(name).boot(make_drive(name, vmdata, network_file))


def plain_vmdata(hostname: str) -> dict[str, Any]:
    """VM data without a password: these drives need no vendor data (test_guest_boot covers the password)."""
    vmdata = vm_data(str(uuid.uuid4()), "unused", secrets.token_hex(4), hostname=hostname)
    del vmdata["password"]
    return vmdata


@pytest.fixture(scope="module")
def no_network_file_boot(new_disk: DiskMaker, make_drive_with_network_file: NetworkDriveMaker) -> Boot:
    return boot_once("netnone", plain_vmdata("net-none"), None, new_disk, make_drive_with_network_file)


@pytest.fixture(scope="module")
def empty_network_file_boot(new_disk: DiskMaker, make_drive_with_network_file: NetworkDriveMaker) -> Boot:
    return boot_once("netempty", plain_vmdata("net-empty"), b"{}", new_disk, make_drive_with_network_file)


@pytest.fixture(scope="module")
def static_boot(new_disk: DiskMaker, make_drive_with_network_file: NetworkDriveMaker) -> Boot:
    vmdata = {**plain_vmdata("net-static"), **static_network_vmdata(STATIC, GUEST_MAC)}
    network_file = json.dumps(vmdata["network_data"]).encode()  # what the builder writes for it, set explicitly
    return boot_once("netstatic", vmdata, network_file, new_disk, make_drive_with_network_file)


def assert_booted_cleanly(boot: Boot) -> None:
    assert boot.datasource.startswith("DataSourceConfigDrive"), boot.tail()
    assert "status: done" in boot.values("cloud-init"), boot.tail()


def test_without_network_data_json_the_nic_gets_a_dhcp_lease(no_network_file_boot: Boot) -> None:
    """cloud-init's fallback: DHCP on the first NIC. QEMU's restricted DHCP leases an address and a netmask, no
    router or DNS server (guest_data.QEMU_SUBNET): the subnet's route is all there is to see besides the lease."""
    boot = no_network_file_boot
    assert_booted_cleanly(boot)
    nic = boot.nic()
    assert nic.ipv4 == [QEMU_DHCP_LEASE], boot.tail()
    assert nic.leased == [QEMU_DHCP_LEASE]  # a DHCP lease, not an address configured statically
    assert nic.operstate == "up"
    assert nic.setup == "configured"
    assert any(route.startswith(f"{QEMU_SUBNET} dev {nic.name} ") for route in boot.routes), boot.routes


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
    boot = static_boot
    assert_booted_cleanly(boot)
    nic = boot.nic()
    assert nic.ipv4 == [STATIC.interface], boot.tail()
    assert nic.leased == []  # no DHCP besides
    assert nic.setup == "configured"
    assert boot.default_gateways == [STATIC.gateway]
    assert boot.resolv_conf("nameserver") == list(STATIC.dns)
    assert boot.resolv_conf("search") == list(STATIC.search)
    assert nic.dns.split() == list(STATIC.dns)
    assert nic.domains.split() == list(STATIC.search)


def test_cloud_init_renders_the_network_with_netplan(guest_image: GuestImage, no_network_file_boot: Boot) -> None:
    """The renderer is picked from what is installed: the image's choice is deliberate, and holds."""
    boot = no_network_file_boot
    assert boot.value("network-renderer") == EXPECTED_RENDERER[guest_image.suite], boot.tail()
    assert "network-file: /etc/netplan/50-cloud-init.yaml" in boot.console
