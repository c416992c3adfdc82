"""The tool against stock vcsim: govmomi's own simulator with nothing in front (``-stock``, docs/testing.md).

The harness emulates a stricter vCenter; these tests make sure nothing the tool does works only thanks to it.
Stock vcsim is laxer (no locked door, no changeVersion, /folder unchecked) and models some things wrongly: it
appends extraConfig entries instead of replacing them, and lists a single host in the shared datastore's
``Datastore.host`` while every ``HostSystem.datastore`` lists it. The tool judges which hosts see a datastore from
each host's own list (issue 11 item 4), so the migration and datastore tests below pass on both beds; judged from
``Datastore.host`` they failed on stock vcsim ("no datastore is mounted both by host …", "… is not mounted on the
VM's host").
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from pyVmomi import vim, vmodl
from tool_fixtures import fetch_file, folder_listing, record_of, settings_for
from vsphere_harness import (
    cdroms,
    create_local_datastore,
    datastore_mounts,
    find_host,
    get_property,
    host_datastores,
    hosts_seeing,
)

from esxi_configdrive import VmData, read_iso
from esxi_configdrive.cli import main
from esxi_configdrive.controller import ConfigDriveController
from esxi_configdrive.errors import ValidationError, VsphereFault
from esxi_configdrive.guestinfo import read_keys as read_guestinfo
from esxi_configdrive.record import PREFIX
from esxi_configdrive.vsphere.connection import Session
from esxi_configdrive.vsphere_values import DatastorePath

pytestmark = pytest.mark.live

VM_ID = "6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f"
USERDATA = "#cloud-config\nruncmd:\n  - [sh, -c, 'echo stock']\n"
CLUSTER_HOSTS = ("DC0_C0_H0", "DC0_C0_H1", "DC0_C0_H2")


def vmdata(**changes: Any) -> VmData:
    obj: dict[str, Any] = {
        "metadata": {"vm-id": VM_ID, "local-hostname": "stock-1"},
        "userdata": USERDATA,
        "password": "stock-Passw0rd",
    }
    obj.update(changes)
    return VmData.from_dict(obj)


def our_drives(vm: vim.VirtualMachine) -> list[vim.vm.device.VirtualCdrom]:
    return [c for c in cdroms(vm) if "ConfigDrive/" in (getattr(c.backing, "fileName", "") or "")]


def controller_kind(vm: vim.VirtualMachine, drive: vim.vm.device.VirtualCdrom) -> str:
    ctrl = next(d for d in vm.config.hardware.device if d.key == drive.controllerKey)
    return "ide" if isinstance(ctrl, vim.vm.device.VirtualIDEController) else "sata"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---- what stock vcsim reports (the figures docs/testing.md quotes) ------------------------------------------


def test_stock_lists_one_host_in_the_shared_datastores_mount_list(stock_si):
    mounts = datastore_mounts(stock_si)
    lists = host_datastores(stock_si)
    seeing = {host for host, names in lists.items() if "LocalDS_0" in names}
    assert seeing == set(lists) and len(seeing) == 4  # every host's own list has LocalDS_0...
    assert len(mounts["LocalDS_0"]) == 1 and mounts["LocalDS_0"] < seeing  # ...its own mount list one of them


def test_the_harness_mount_lists_agree_with_the_host_lists(vsphere):
    lists = host_datastores(vsphere)
    for datastore, hosts in datastore_mounts(vsphere).items():
        assert hosts == {h for h, names in lists.items() if datastore in names}, datastore


def test_stock_has_no_control_api_and_no_change_version(stock_vcsim, stock_si, stock_make_vm):
    with pytest.raises(ValueError, match="stock"):
        stock_vcsim.set_faults(locked_door={"enabled": True})
    with pytest.raises(ValueError, match="stock"):
        stock_vcsim.counters()
    assert get_property(stock_si, stock_make_vm(), "config.changeVersion") is None


# ---- the operations, through the public API ---------------------------------------------------------------


@pytest.mark.parametrize("powered_on", [False, True], ids=["off", "on"])
def test_attach_and_status(stock_tool, stock_vcsim, stock_si, stock_make_vm, powered_on):
    vm = stock_make_vm(powered_on=powered_on)
    result = stock_tool.attach(vm.name, vmdata())
    assert result.changed
    [drive] = our_drives(vm)
    assert drive.backing.fileName == result.iso == f"[LocalDS_0] ConfigDrive/{vm.name}/configdrive.iso"
    assert controller_kind(vm, drive) == ("sata" if powered_on else "ide")
    assert drive.connectable.startConnected and drive.connectable.connected is powered_on
    data = read_iso(fetch_file(stock_vcsim, stock_si, result.iso))
    assert (data.vm_id, data.hostname, data.userdata) == (VM_ID, "stock-1", USERDATA.encode())
    assert record_of(stock_si, vm)["iso"] == result.iso

    status = stock_tool.status(vm.name).to_dict()
    assert status["attached"] and status["file_exists"] and status["matches_record"]
    assert status["device"]["controller"] == controller_kind(vm, drive)
    assert status["content"]["hostname"] == "stock-1"
    assert stock_tool.attach(vm.name, vmdata()).changed is False


@pytest.mark.parametrize("powered_on", [False, True], ids=["off", "on"])
def test_update_puts_the_new_user_data_on_the_datastore(stock_tool, stock_vcsim, stock_si, stock_make_vm, powered_on):
    vm = stock_make_vm(powered_on=powered_on)
    first = stock_tool.attach(vm.name, vmdata()).iso
    result = stock_tool.update(vm.name, overrides={"userdata": b"#cloud-config\n# second\n"})
    assert result.changed and result.iso != first
    assert [d.backing.fileName for d in our_drives(vm)] == [result.iso]
    data = read_iso(fetch_file(stock_vcsim, stock_si, result.iso))
    assert data.userdata == b"#cloud-config\n# second\n" and data.password == "stock-Passw0rd"
    assert fetch_file(stock_vcsim, stock_si, first) is None
    folder = DatastorePath.parse(result.iso).folder
    assert folder_listing(stock_si, str(folder)) == [DatastorePath.parse(result.iso).name]


def test_the_record_survives_stock_appending_extra_config(stock_tool, stock_si, stock_make_vm):
    """Stock vcsim appends extraConfig entries instead of replacing them (vCenter replaces): the record must be
    read last-wins, and an emptied key must read as unset."""
    vm = stock_make_vm()
    stock_tool.attach(vm.name, vmdata())
    updated = stock_tool.update(vm.name, overrides={"hostname": "stock-2"})
    raw = [o for o in get_property(stock_si, vm, "config.extraConfig") if o.key == PREFIX + "iso"]
    assert len(raw) > 1  # the appended copies are really there: this test exercises the stock semantics
    assert stock_tool.status(vm.name).extra["record"]["iso"] == updated.iso
    stock_tool.detach(vm.name)
    status = stock_tool.status(vm.name).extra
    assert status["attached"] is False and "iso" not in status["record"]


def test_detach_powered_off_removes_the_device_and_the_iso(stock_tool, stock_vcsim, stock_si, stock_make_vm):
    vm = stock_make_vm()
    iso = stock_tool.attach(vm.name, vmdata()).iso
    assert stock_tool.detach(vm.name).changed
    assert our_drives(vm) == [] and len(cdroms(vm)) == 1  # the VM's own CD-ROM stays
    assert fetch_file(stock_vcsim, stock_si, iso) is None
    assert folder_listing(stock_si, str(DatastorePath.parse(iso).folder)) == []
    assert stock_tool.detach(vm.name).changed is False


def test_detach_powered_on_empties_the_drive_and_attach_reuses_it(stock_tool, stock_vcsim, stock_si, stock_make_vm):
    vm = stock_make_vm(powered_on=True)
    iso = stock_tool.attach(vm.name, vmdata()).iso
    key = our_drives(vm)[0].key
    stock_tool.detach(vm.name)
    drive = next(c for c in cdroms(vm) if c.key == key)
    assert not isinstance(drive.backing, vim.vm.device.VirtualCdrom.IsoBackingInfo)
    assert not drive.connectable.connected
    assert fetch_file(stock_vcsim, stock_si, iso) is None
    again = stock_tool.attach(vm.name, vmdata())
    assert [c.key for c in our_drives(vm)] == [key]
    assert fetch_file(stock_vcsim, stock_si, again.iso) is not None


@pytest.mark.parametrize("powered_on", [False, True], ids=["off", "on"])
def test_remove_takes_the_device_the_iso_and_the_folder(stock_tool, stock_si, stock_make_vm, powered_on):
    vm = stock_make_vm(powered_on=powered_on)
    iso = stock_tool.attach(vm.name, vmdata()).iso
    assert stock_tool.remove(vm.name).changed
    assert our_drives(vm) == [] and len(cdroms(vm)) == 1
    assert folder_listing(stock_si, str(DatastorePath.parse(iso).folder)) is None
    assert stock_tool.remove(vm.name).changed is False


def test_concurrent_attaches_without_change_version_still_make_one_drive(stock_vcsim, stock_si, stock_make_vm):
    """Stock vcsim has no changeVersion, so the tool's optimistic locking has nothing to compare: a run that loses
    is refused by vSphere's own device check (the unit is taken) instead of reading again. What must hold all the
    same: one drive, its file there, the record pointing at it, and only vSphere faults as errors. (Not checked: that
    no other file is left. A run that starts after another finished swaps the backing, and without changeVersion
    two such swaps can both apply, leaving the first one's upload behind; vCenter's changeVersion prevents that.)"""
    vm = stock_make_vm()
    errors: list[BaseException] = []
    done: list[str] = []
    barrier = threading.Barrier(4)

    def run(i: int) -> None:
        s = Session(settings_for(stock_vcsim)).connect()
        try:
            barrier.wait()
            tool = ConfigDriveController(s, task_timeout=20)
            done.append(tool.attach(vm.name, vmdata(userdata=f"#cloud-config\n# {i}\n")).iso)
        except BaseException as e:  # collected and asserted on below
            errors.append(e)
        finally:
            s.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert done and all(isinstance(e, VsphereFault) and isinstance(e.fault, vmodl.MethodFault) for e in errors), errors
    [drive] = our_drives(vm)
    path = DatastorePath.parse(drive.backing.fileName)
    assert path.name in (folder_listing(stock_si, str(path.folder)) or [])
    assert record_of(stock_si, vm)["iso"] == drive.backing.fileName


# ---- the CLI, with GOVC_* settings --------------------------------------------------------------------------


def run_cli(sim: Any, args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> dict:
    monkeypatch.setenv("GOVC_URL", sim.url)
    monkeypatch.setenv("GOVC_USERNAME", sim.username)
    monkeypatch.setenv("GOVC_PASSWORD", sim.password)
    monkeypatch.setenv("GOVC_TLS_CA_CERTS", sim.ca_file)
    status = main([*args, "--json"])
    out = capsys.readouterr().out
    assert status == 0, out
    return json.loads(out)


def test_cli_lifecycle_on_a_running_vm(stock_vcsim, stock_si, stock_make_vm, tmp_path, monkeypatch, capsys):
    vm = stock_make_vm(powered_on=True)
    (tmp_path / "vm.json").write_text(json.dumps({"metadata": {"vm-id": VM_ID, "local-hostname": "cli-1"}}))
    (tmp_path / "user-data").write_text("#cloud-config\n# from the cli\n")

    attached = run_cli(stock_vcsim, ["attach", vm.name, "--vmdata", str(tmp_path / "vm.json")], monkeypatch, capsys)
    assert attached["changed"] and our_drives(vm)[0].backing.fileName == attached["iso"]
    status = run_cli(stock_vcsim, ["status", vm.name], monkeypatch, capsys)
    assert status["attached"] and status["content"]["hostname"] == "cli-1"

    args = ["update", vm.name, "--userdata-file", str(tmp_path / "user-data")]
    updated = run_cli(stock_vcsim, args, monkeypatch, capsys)
    assert read_iso(fetch_file(stock_vcsim, stock_si, updated["iso"])).userdata == b"#cloud-config\n# from the cli\n"

    assert run_cli(stock_vcsim, ["detach", vm.name], monkeypatch, capsys)["changed"]
    assert fetch_file(stock_vcsim, stock_si, updated["iso"]) is None
    assert run_cli(stock_vcsim, ["remove", vm.name], monkeypatch, capsys)["changed"]
    assert our_drives(vm) == []


def test_nocloud_lifecycle_on_a_running_vm(stock_vcsim, stock_si, stock_make_vm, tmp_path, monkeypatch, capsys):
    """The NoCloud seed (issue 21) on stock vcsim: the config drive's path with the seed's label and files."""
    vm = stock_make_vm(powered_on=True)
    (tmp_path / "vm.json").write_text(json.dumps({"metadata": {"vm-id": VM_ID, "local-hostname": "seed-1"}}))
    attach = ["attach", vm.name, "--vmdata", str(tmp_path / "vm.json"), "--transport", "nocloud"]

    attached = run_cli(stock_vcsim, attach, monkeypatch, capsys)
    assert attached["changed"] and attached["transport"] == "nocloud"
    assert [d.backing.fileName for d in our_drives(vm)] == [attached["iso"]]
    assert read_iso(fetch_file(stock_vcsim, stock_si, attached["iso"])).hostname == "seed-1"
    assert record_of(stock_si, vm)["transport"] == "nocloud"
    assert run_cli(stock_vcsim, attach, monkeypatch, capsys)["changed"] is False  # unchanged: no write
    assert (
        run_cli(stock_vcsim, ["attach", vm.name, "--vmdata", str(tmp_path / "vm.json")], monkeypatch, capsys)["changed"]
        is False
    )  # no --transport: the drive's own stays

    updated = run_cli(stock_vcsim, ["update", vm.name, "--hostname", "seed-2"], monkeypatch, capsys)
    assert read_iso(fetch_file(stock_vcsim, stock_si, updated["iso"])).hostname == "seed-2"
    assert run_cli(stock_vcsim, ["status", vm.name], monkeypatch, capsys)["transport"] == "nocloud"

    assert run_cli(stock_vcsim, ["remove", vm.name], monkeypatch, capsys)["changed"]
    assert our_drives(vm) == [] and fetch_file(stock_vcsim, stock_si, updated["iso"]) is None


def test_guestinfo_lifecycle_on_stock_appending_extra_config(
    stock_vcsim, stock_si, stock_make_vm, tmp_path, monkeypatch, capsys
):
    """Guestinfo (issue 22) on stock vcsim, which appends extraConfig entries instead of replacing them: the tool
    reads each key's last entry, so an unchanged re-run writes nothing and remove leaves every key empty."""
    vm = stock_make_vm(powered_on=True)
    (tmp_path / "vm.json").write_text(json.dumps({"metadata": {"vm-id": VM_ID, "local-hostname": "gi-1"}}))
    attach = ["attach", vm.name, "--vmdata", str(tmp_path / "vm.json"), "--transport", "guestinfo"]

    def last_values() -> dict[str, str]:
        values: dict[str, str] = {}
        for option in get_property(stock_si, vm, "config.extraConfig") or []:
            if option.key.startswith("guestinfo."):
                values[option.key] = option.value
        return {k: v for k, v in values.items() if v}

    attached = run_cli(stock_vcsim, attach, monkeypatch, capsys)
    assert attached["changed"] and attached["transport"] == "guestinfo" and our_drives(vm) == []
    assert read_guestinfo(last_values()).hostname == "gi-1"
    assert run_cli(stock_vcsim, attach, monkeypatch, capsys)["changed"] is False  # the last entries compared

    run_cli(stock_vcsim, ["update", vm.name, "--hostname", "gi-2"], monkeypatch, capsys)
    assert read_guestinfo(last_values()).hostname == "gi-2"
    assert run_cli(stock_vcsim, ["update", vm.name, "--hostname", "gi-2"], monkeypatch, capsys)["changed"] is False

    assert run_cli(stock_vcsim, ["remove", vm.name], monkeypatch, capsys)["changed"]
    assert last_values() == {} and record_of(stock_si, vm) == {}


# ---- migration: the same scenario on the harness and on stock vcsim ---------------------------------------


@dataclass
class Bed:
    name: str
    sim: Any
    si: vim.ServiceInstance
    tool: Any
    make_vm: Any


@pytest.fixture
def bed(request: pytest.FixtureRequest) -> Bed:
    if request.param == "harness":
        names = ("vcsim_faults", "vsphere", "tool", "make_vm")
    else:
        names = ("stock_vcsim", "stock_si", "stock_tool", "stock_make_vm")
    return Bed(request.param, *(request.getfixturevalue(n) for n in names))


BEDS = ["harness", "stock"]


@pytest.mark.parametrize("bed", BEDS, indirect=True)
def test_prepare_migration_off_a_local_datastore(bed):
    local = unique("OnlyH0")
    create_local_datastore(bed.si, "DC0_C0_H0", local)
    assert hosts_seeing(bed.si, local) == {"DC0_C0_H0"}
    vm = bed.make_vm(host="DC0_C0_H0")
    old = bed.tool.attach(vm.name, vmdata(), datastore=local).iso
    assert DatastorePath.parse(old).datastore == local
    content = fetch_file(bed.sim, bed.si, old)

    result = bed.tool.prepare_migration(vm.name, "DC0_C0_H1")
    assert result.changed and [d.backing.fileName for d in our_drives(vm)] == [result.iso]
    assert "DC0_C0_H1" in hosts_seeing(bed.si, DatastorePath.parse(result.iso).datastore)
    assert fetch_file(bed.sim, bed.si, result.iso) == content
    assert fetch_file(bed.sim, bed.si, old) is None
    assert bed.tool.prepare_migration(vm.name, "DC0_C0_H1").changed is False

    migrated = bed.tool.prepare_migration(vm.name, "DC0_C0_H1", migrate=True)
    assert any("migrated" in a for a in migrated.actions)
    assert get_property(bed.si, vm, "runtime.host")._moId == find_host(bed.si, "DC0_C0_H1")._moId


@pytest.mark.parametrize("bed", BEDS, indirect=True)
def test_attach_to_a_shared_datastore_the_vm_does_not_use_yet(bed):
    local = unique("VmOnH0")
    create_local_datastore(bed.si, "DC0_C0_H0", local)
    vm = bed.make_vm(host="DC0_C0_H0", datastore=local)  # every file of the VM on the local datastore
    result = bed.tool.attach(vm.name, vmdata(), datastore="LocalDS_0")
    assert DatastorePath.parse(result.iso).datastore == "LocalDS_0"
    assert fetch_file(bed.sim, bed.si, result.iso) is not None


@pytest.mark.parametrize("bed", ["harness", "stock"], indirect=True)
def test_attach_to_a_datastore_the_vms_host_does_not_mount_is_refused(bed):
    local = unique("OnlyH0")
    create_local_datastore(bed.si, "DC0_C0_H0", local)
    vm = bed.make_vm(host="DC0_C0_H2")
    with pytest.raises(ValidationError, match="not mounted on the VM's host"):
        bed.tool.attach(vm.name, vmdata(), datastore=local)
    assert our_drives(vm) == []
