"""Fixtures for the guest boot tests: the cached Debian images, the accelerator, VM disks and config drives.

``guest_image`` is parametrized by Debian release (guest_harness.RELEASES), so every guest test runs on each:
test ids end in ``[bookworm]`` or ``[trixie]``. Without QEMU/debootstrap the tests skip, unless
ESXI_CONFIGDRIVE_REQUIRE_GUEST is set (CI sets it): then a missing tool is a failure, so the suite cannot pass
by skipping what it is meant to prove.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from guest_data import NETWORK_DATA
from guest_harness import (
    REPORT,
    REQUIRE_ENV,
    DiskMaker,
    DriveMaker,
    GuestDisk,
    GuestImage,
    GuestinfoMaker,
    NetworkDriveMaker,
    build_image,
    choose_accel,
    guest_releases,
    guest_required,
    guestinfo_args,
    missing_tools,
)

from esxi_configdrive import VmData, build_iso
from esxi_configdrive.iso import tree_to_iso
from esxi_configdrive.layout import FileTree, build_tree


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the measured image and boot durations (the issue asks for them)."""
    if REPORT:
        terminalreporter.section("guest timings")
        for what, measured in REPORT.items():
            terminalreporter.write_line(f"{what}: {measured}")


@pytest.fixture(scope="session", params=guest_releases())
def guest_image(request: pytest.FixtureRequest) -> GuestImage:
    suite: str = request.param
    missing = missing_tools()
    if missing:
        apt = "qemu-system-x86 qemu-utils debootstrap e2fsprogs systemd"
        message = f"guest tests need {', '.join(missing)} (apt: {apt})"
        if guest_required():
            pytest.fail(f"{message}; {REQUIRE_ENV} is set, so this is a failure")
        pytest.skip(message)
    started = time.monotonic()
    image = build_image(suite)
    # The first call is the one that may build; pytest calls again (cached: about a second) when it switches back.
    REPORT.setdefault(
        f"{suite}: image (scripts/build-guest-image, cached or built)", f"{time.monotonic() - started:.1f} s"
    )
    return image


@pytest.fixture(scope="session")
def guest_accel(guest_image: GuestImage, tmp_path_factory: pytest.TempPathFactory) -> str:
    started = time.monotonic()
    accel = choose_accel(guest_image, tmp_path_factory.mktemp("accel"))
    REPORT[f"{guest_image.suite}: accelerator choice ({accel})"] = f"{time.monotonic() - started:.1f} s"
    return accel


@pytest.fixture(scope="module")
def new_disk(guest_image: GuestImage, guest_accel: str, tmp_path_factory: pytest.TempPathFactory) -> DiskMaker:
    """A fresh VM disk (overlay on the cached image) per call."""

    def make(name: str) -> GuestDisk:
        folder = tmp_path_factory.mktemp(f"{guest_image.suite}-{name}")
        return GuestDisk(guest_image, folder / f"{name}.qcow2", guest_accel)

    return make


@pytest.fixture(scope="module")
def make_drive(guest_image: GuestImage, tmp_path_factory: pytest.TempPathFactory) -> DriveMaker:
    """Build a config drive with the project's builder, from a VM data mapping (DESIGN.md's file format)."""
    folder = tmp_path_factory.mktemp(f"{guest_image.suite}-drives")

    def make(name: str, vmdata: dict[str, Any]) -> Path:
        path = folder / f"{name}.iso"
        data = VmData.from_dict(vmdata)
        # What attach puts on a Linux guest's drive: no meta_data.json admin_pass (cloud-init would copy it into
        # the world-readable instance-data.json; only cloudbase-init on Windows needs it).
        data.admin_pass = False
        path.write_bytes(build_iso(data, label="config-2"))
        return path

    return make


@pytest.fixture(scope="module")
def make_drive_with_network_file(
    guest_image: GuestImage, tmp_path_factory: pytest.TempPathFactory
) -> NetworkDriveMaker:
    """Like ``make_drive``, but with ``openstack/latest/network_data.json`` set to the given bytes, or absent for
    None, whatever the builder's default is: the network tests must not depend on that default."""
    folder = tmp_path_factory.mktemp(f"{guest_image.suite}-network-drives")

    def make(name: str, vmdata: dict[str, Any], network_data_json: bytes | None) -> Path:
        data = VmData.from_dict(vmdata)
        data.admin_pass = False
        tree = build_tree(data)
        set_network_data_file(tree, network_data_json)
        path = folder / f"{name}.iso"
        path.write_bytes(tree_to_iso(tree))
        return path

    return make


@pytest.fixture(scope="module")
def make_guestinfo(guest_image: GuestImage, tmp_path_factory: pytest.TempPathFactory) -> GuestinfoMaker:
    """QEMU's arguments for a VM by name whose extraConfig holds the given guestinfo keys (guest_harness)."""

    def make(name: str, keys: Mapping[str, str]) -> tuple[str, ...]:
        return guestinfo_args(keys, tmp_path_factory.mktemp(f"{guest_image.suite}-{name}-guestinfo"))

    return make


def set_network_data_file(tree: FileTree, content: bytes | None) -> None:
    """Replace (or, for None, remove) the latest network_data.json and every dated folder's link to it."""
    tree.files.pop(NETWORK_DATA, None)
    dated = [path for path, target in tree.links.items() if target == NETWORK_DATA]
    for path in dated:
        del tree.links[path]
    if content is not None:
        tree.files[NETWORK_DATA] = content
        tree.links.update(dict.fromkeys(dated, NETWORK_DATA))
