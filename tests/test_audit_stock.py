"""audit on stock vcsim (govmomi's simulator with nothing in front, tests/fixtures_stock.py): its search of
``ConfigDrive/``, its inventory (children repeated once per host) and its wrong ``Datastore.host`` (one host of
the cluster for the shared datastore) still give the right states, since the audit judges each host from its own
``HostSystem.datastore`` list. Stock vcsim is shared by the session's tests: only this test's VMs are looked at."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
from pyVmomi import vim
from vsphere_harness import cdroms, create_local_datastore, datastore_mounts, destroy_vm, find_datastore, reconfigure

from esxi_configdrive import VmData
from esxi_configdrive.vsphere_values import DatastorePath

pytestmark = pytest.mark.live


def vmdata() -> VmData:
    return VmData.from_dict({"metadata": {"vm-id": str(uuid.uuid4())}, "userdata": "#stock\n"})


def our_cdrom(vm: vim.VirtualMachine) -> vim.vm.device.VirtualCdrom | None:
    return next((c for c in cdroms(vm) if "ConfigDrive/" in (getattr(c.backing, "fileName", "") or "")), None)


def test_audit_states_and_fix_on_stock_vcsim(stock_tool, stock_si, stock_make_vm):
    tag = uuid.uuid4().hex[:6]
    local = f"StockLocal-{tag}"
    create_local_datastore(stock_si, "DC0_C0_H0", local)
    shared, alone, removed, gone = (
        stock_make_vm(f"{n}-{tag}", host="DC0_C0_H0") for n in ("shared", "alone", "removed", "gone")
    )
    stock_tool.attach(shared, vmdata())
    stock_tool.attach(alone, vmdata(), datastore=local)
    stock_tool.attach(removed, vmdata())
    folder = DatastorePath.parse(stock_tool.attach(gone, vmdata()).iso).folder
    reconfigure(stock_si, removed, vim.vm.ConfigSpec(deviceChange=[vim.vm.device.VirtualDeviceSpec(
        operation="remove", device=our_cdrom(removed))]))  # fmt: skip
    destroy_vm(stock_si, gone)
    orphan_dir = Path(find_datastore(stock_si, folder.datastore).info.url) / folder.path
    old = time.time() - 2 * 86400
    for item in [*orphan_dir.iterdir(), orphan_dir]:
        os.utime(item, (old, old))
    assert len(datastore_mounts(stock_si)["LocalDS_0"]) == 1  # stock's Datastore.host: one host of four

    def found(report) -> dict[str, object]:
        mine = (shared.name, alone.name, removed.name)
        return {f.vm if f.vm in mine else f.path: f for f in report.findings if f.vm in mine or f.path == f"{folder}/"}

    before = found(stock_tool.audit())
    assert {k: f.state for k, f in before.items()} == {
        shared.name: "ok", alone.name: "not-shared", removed.name: "device-removed", f"{folder}/": "orphan",
    }  # fmt: skip
    assert before[f"{folder}/"].fix == "delete-folder" and before[removed.name].fix == "reattach"

    stock_tool.audit(fix=True)
    after = found(stock_tool.audit())
    assert {k: f.state for k, f in after.items()} == {shared.name: "ok", alone.name: "not-shared", removed.name: "ok"}
    assert our_cdrom(removed).backing.fileName == before[removed.name].path
    assert not orphan_dir.exists()
