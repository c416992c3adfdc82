"""pytest fixtures for the vSphere test bed (loaded from tests/conftest.py via ``pytest_plugins``).

Live fixtures (``vcsim``, ``vcsim_faults``, ``vsphere``, ``make_vm``, ``fresh_vm``) need the Go harness:
without it they skip, or fail when ``ESXI_CONFIGDRIVE_REQUIRE_VCSIM=1`` (CI). Replay fixtures
(``vsphere_cassettes``) need neither Go nor vcsim in replay mode, and tests marked ``replay`` run with
the network blocked unless ``CASSETTE_MODE=record``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from cassette import RECORD, REPLAY, Recording, ReplayTarget, block_network, cassette_mode, use_cassette
from pyVmomi import vim
from vsphere_harness import (
    HarnessUnavailable,
    Vcsim,
    build_harness,
    connect,
    create_vm,
    destroy_vm,
    disconnect,
)

REQUIRE_ENV = "ESXI_CONFIGDRIVE_REQUIRE_VCSIM"


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"vcsim harness required ({REQUIRE_ENV}=1) but unavailable: {reason}", pytrace=False)
    pytest.skip(f"vcsim harness unavailable: {reason}")


# ---------------------------------------------------------------------------------------------------------
# Live harness


@pytest.fixture(scope="session")
def vcsim_binary() -> Path:
    """Path of the built harness (scripts/build-vcsim, cached in .cache/vcsim/), or ``$VCSIM_HARNESS_BIN``
    (e.g. a ``go build -race`` binary)."""
    if os.environ.get("VCSIM_HARNESS_BIN"):
        return Path(os.environ["VCSIM_HARNESS_BIN"])
    try:
        return build_harness()
    except HarnessUnavailable as exc:
        _unavailable(str(exc))


@pytest.fixture(scope="session")
def vcsim(vcsim_binary: Path) -> Iterator[Vcsim]:
    """One harness for the test session (TLS, free loopback port), stopped at the end."""
    sim = Vcsim(vcsim_binary)
    try:
        sim.start()
    except HarnessUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def vcsim_faults(vcsim: Vcsim) -> Iterator[Vcsim]:
    """The session harness with faults and counters reset before and after the test."""
    vcsim.reset_faults()
    yield vcsim
    vcsim.reset_faults()


@pytest.fixture
def vsphere(vcsim_faults: Vcsim) -> Iterator[vim.ServiceInstance]:
    """A fresh pyvmomi login to the harness (faults reset), logged out afterwards."""
    si = connect(vcsim_faults)
    yield si
    disconnect(si)


@pytest.fixture
def make_vm(vcsim_faults: Vcsim, vsphere: vim.ServiceInstance) -> Iterator[Callable[..., vim.VirtualMachine]]:
    """Factory: ``make_vm(name=None, **create_vm_options)`` -> a VM of the test's own, destroyed after
    the test (with a new login, in case the test expired the session)."""
    made: list[str] = []

    def factory(name: str | None = None, **kwargs: Any) -> vim.VirtualMachine:
        vm = create_vm(vsphere, name, **kwargs)
        made.append(vm._moId)
        return vm

    yield factory
    if made:
        vcsim_faults.reset_faults()
        si = connect(vcsim_faults)
        try:
            for moid in made:
                destroy_vm(si, vim.VirtualMachine(moid, si._stub))
        finally:
            disconnect(si)


@pytest.fixture
def fresh_vm(make_vm: Callable[..., vim.VirtualMachine]) -> vim.VirtualMachine:
    """A new powered-off VM: IDE 200/201 (empty CD-ROM on IDE 0:0), SATA controller, PVSCSI disk, NIC."""
    return make_vm()


# ---------------------------------------------------------------------------------------------------------
# Cassettes


@dataclass
class VsphereCassettes:
    """What ``vsphere_cassettes`` gives: ``target`` to connect to, and ``cassette(name)``."""

    mode: str
    target: Any  # Vcsim when recording, ReplayTarget when replaying
    vcsim: Vcsim | None

    @property
    def recording(self) -> bool:
        return self.mode == RECORD

    def cassette(self, name: str, *, secrets: Iterable[str] = ()) -> contextlib.AbstractContextManager[Recording]:
        extra = [self.vcsim.password] if self.vcsim else []
        return use_cassette(name, self.mode, secrets=[*extra, *secrets])


@pytest.fixture
def vsphere_cassettes(request: pytest.FixtureRequest) -> VsphereCassettes:
    """Record (``CASSETTE_MODE=record``, live harness, faults reset) or replay (no harness)."""
    mode = cassette_mode()
    if mode == RECORD:
        sim = request.getfixturevalue("vcsim_faults")
        return VsphereCassettes(mode=RECORD, target=sim, vcsim=sim)
    return VsphereCassettes(mode=REPLAY, target=ReplayTarget(), vcsim=None)


@pytest.fixture(autouse=True)
def _replay_network_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests marked ``replay`` run with sockets blocked unless recording."""
    if request.node.get_closest_marker("replay") is None or cassette_mode() == RECORD:
        yield
        return
    with block_network():
        yield
