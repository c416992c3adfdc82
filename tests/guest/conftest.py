"""Fixtures for the guest boot tests: the cached Debian image, the accelerator, VM disks and config drives.

Without QEMU/debootstrap the tests skip, unless ESXI_CONFIGDRIVE_REQUIRE_GUEST is set (CI sets it): then a
missing tool is a failure, so the suite cannot pass by skipping what it is meant to prove.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from guest_harness import (
    REPORT,
    REQUIRE_ENV,
    GuestDisk,
    GuestImage,
    build_image,
    choose_accel,
    guest_required,
    missing_tools,
)

from esxi_configdrive import VmData, build_iso


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the measured image and boot durations (the issue asks for them)."""
    if REPORT:
        terminalreporter.section("guest timings")
        for what, measured in REPORT.items():
            terminalreporter.write_line(f"{what}: {measured}")


@pytest.fixture(scope="session")
def guest_image() -> GuestImage:
    missing = missing_tools()
    if missing:
        message = f"guest tests need {', '.join(missing)} (apt: qemu-system-x86 qemu-utils debootstrap e2fsprogs)"
        if guest_required():
            pytest.fail(f"{message}; {REQUIRE_ENV} is set, so this is a failure")
        pytest.skip(message)
    started = time.monotonic()
    image = build_image()
    REPORT["image (scripts/build-guest-image, cached or built)"] = f"{time.monotonic() - started:.1f} s"
    return image


@pytest.fixture(scope="session")
def guest_accel(guest_image: GuestImage, tmp_path_factory: pytest.TempPathFactory) -> str:
    started = time.monotonic()
    accel = choose_accel(guest_image, tmp_path_factory.mktemp("accel"))
    REPORT[f"accelerator choice ({accel})"] = f"{time.monotonic() - started:.1f} s"
    return accel


@pytest.fixture(scope="module")
def new_disk(
    guest_image: GuestImage, guest_accel: str, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], GuestDisk]:
    """A fresh VM disk (overlay on the cached image) per call."""

    def make(name: str) -> GuestDisk:
        return GuestDisk(guest_image, tmp_path_factory.mktemp(name) / f"{name}.qcow2", guest_accel)

    return make


@pytest.fixture(scope="module")
def make_drive(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, dict[str, Any]], Path]:
    """Build a config drive with the project's builder, from a VM data mapping (DESIGN.md's file format)."""
    folder = tmp_path_factory.mktemp("drives")

    def make(name: str, vmdata: dict[str, Any]) -> Path:
        path = folder / f"{name}.iso"
        data = VmData.from_dict(vmdata)
        # What attach puts on a Linux guest's drive: no meta_data.json admin_pass (cloud-init would copy it into
        # the world-readable instance-data.json; only cloudbase-init on Windows needs it).
        data.admin_pass = False
        path.write_bytes(build_iso(data, label="config-2"))
        return path

    return make
