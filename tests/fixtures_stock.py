"""pytest fixtures for stock vcsim: govmomi's simulator with nothing in front (the harness binary with ``-stock``;
docs/testing.md "Stock vcsim"). Loaded from tests/conftest.py via ``pytest_plugins``.

The process starts only when a test asks for it (``stock_vcsim`` is session-scoped, separate from ``vcsim``) and
has no control API: nothing is reset between tests, so each test makes its own VMs and datastores, with unique
names. Without the Go toolchain the fixtures skip, or fail when ``ESXI_CONFIGDRIVE_REQUIRE_VCSIM=1`` (CI).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures_vsphere import _unavailable
from pyVmomi import vim
from tool_fixtures import settings_for
from vsphere_harness import HarnessUnavailable, StockVcsim, connect, create_vm, destroy_vm, disconnect

from esxi_configdrive.controller import ConfigDriveController
from esxi_configdrive.vsphere.connection import Session


@pytest.fixture(scope="session")
def stock_vcsim(vcsim_binary: Path) -> Iterator[StockVcsim]:
    """Stock vcsim for the test session (TLS with the harness's certificate, free loopback port)."""
    sim = StockVcsim(vcsim_binary)
    try:
        sim.start()
    except HarnessUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def stock_si(stock_vcsim: StockVcsim) -> Iterator[vim.ServiceInstance]:
    """A pyVmomi login to stock vcsim, logged out afterwards."""
    si = connect(stock_vcsim)
    yield si
    disconnect(si)


@pytest.fixture
def stock_make_vm(
    stock_vcsim: StockVcsim, stock_si: vim.ServiceInstance
) -> Iterator[Callable[..., vim.VirtualMachine]]:
    """Factory: ``stock_make_vm(name=None, **create_vm_options)``; the VMs are destroyed after the test."""
    made: list[str] = []

    def factory(name: str | None = None, **kwargs: Any) -> vim.VirtualMachine:
        vm = create_vm(stock_si, name, **kwargs)
        made.append(vm._moId)
        return vm

    yield factory
    if made:
        si = connect(stock_vcsim)
        try:
            for moid in made:
                destroy_vm(si, vim.VirtualMachine(moid, si._stub))
        finally:
            disconnect(si)


@pytest.fixture
def stock_session(stock_vcsim: StockVcsim) -> Iterator[Session]:
    """The tool's own session to stock vcsim, from GOVC_* settings as an admin gives them."""
    s = Session(settings_for(stock_vcsim)).connect()
    yield s
    s.close()


@pytest.fixture
def stock_tool(stock_session: Session) -> ConfigDriveController:
    """The controller on stock vcsim, with a short task timeout so a hang fails fast."""
    return ConfigDriveController(stock_session, task_timeout=20)
