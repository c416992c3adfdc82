"""audit against the vcsim harness: every state produced for real (a CD-ROM removed and a drive emptied through
the API, a file deleted or overwritten, an ISO on a datastore one host of the cluster mounts, a VM deleted leaving
its folder) and found through the real command line; --fix repairs what is safe, and once the admin has dealt
with the rest a second audit is clean; the audit's requests are the same (paging aside) for 20 and 200 VMs,
counted by the harness.

An audit sees the whole inventory, so these tests run on simulators of their own: no other test's drives count.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fixtures_vsphere import _unavailable
from pyVmomi import vim
from tool_fixtures import fetch_file, folder_listing, settings_for
from vsphere_harness import (
    HarnessUnavailable,
    Vcsim,
    cdroms,
    connect,
    create_local_datastore,
    create_vm,
    destroy_vm,
    disconnect,
    find_datacenter,
    find_datastore,
    reconfigure,
    retrieve,
    upload,
    wait_for_task,
)

from esxi_configdrive import VmData
from esxi_configdrive.cli import main
from esxi_configdrive.controller import ConfigDriveController
from esxi_configdrive.vsphere.connection import Session
from esxi_configdrive.vsphere.fleet import PAGE
from esxi_configdrive.vsphere_values import DatastorePath

pytestmark = pytest.mark.live
DAY = 86400


def started(binary: Path, **options: Any) -> Vcsim:
    sim = Vcsim(binary, **options)
    try:
        return sim.start()
    except HarnessUnavailable as exc:
        _unavailable(str(exc))


@pytest.fixture(scope="module")
def sim(vcsim_binary: Path) -> Iterator[Vcsim]:
    s = started(vcsim_binary)
    yield s
    s.stop()


@pytest.fixture
def si(sim: Vcsim) -> Iterator[vim.ServiceInstance]:
    sim.reset_faults()
    conn = connect(sim)
    yield conn
    disconnect(conn)


@pytest.fixture
def tool(sim: Vcsim) -> Iterator[ConfigDriveController]:
    session = Session(settings_for(sim)).connect()
    yield ConfigDriveController(session, task_timeout=20)
    session.close()


def vmdata(name: str) -> VmData:
    hostname = name.replace("_", "-").lower()
    return VmData.from_dict({"metadata": {"vm-id": str(uuid.uuid4()), "local-hostname": hostname}, "userdata": "#x\n"})


def cli(sim: Vcsim, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    for key, value in {"GOVC_URL": sim.url, "GOVC_USERNAME": sim.username, "GOVC_PASSWORD": sim.password,
                       "GOVC_TLS_CA_CERTS": sim.ca_file}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    status = main(["audit", *args])
    return status, capsys.readouterr().out


def audit_rows(sim, monkeypatch, capsys, *args: str) -> tuple[int, dict[str, dict]]:
    """``audit --json``: its exit status and rows, VMs by name, orphans by path."""
    status, out = cli(sim, monkeypatch, capsys, "--json", *args)
    rows = [json.loads(line) for line in out.splitlines()]
    return status, {(r["path"] if r["state"] == "orphan" else r["vm"]): r for r in rows}


def our_cdrom(vm: vim.VirtualMachine) -> vim.vm.device.VirtualCdrom | None:
    return next((c for c in cdroms(vm) if "ConfigDrive/" in (getattr(c.backing, "fileName", "") or "")), None)


def local_file(si: vim.ServiceInstance, path: str) -> Path:
    """Where a datastore file lives on this machine (vcsim's datastores are folders here)."""
    p = DatastorePath.parse(path)
    return Path(find_datastore(si, p.datastore).info.url) / p.path


def age(si: vim.ServiceInstance, path: str, seconds: float) -> None:
    """Make a file (or folder, and what is in it) look as old as that to the datastore search."""
    target = local_file(si, path.rstrip("/"))
    when = time.time() - seconds
    for item in [*target.rglob("*"), target] if target.is_dir() else [target]:
        os.utime(item, (when, when))


def targets(actions: list[str]) -> list[str]:
    return [m for action in actions for m in re.findall(r"\[[^\]]+\] \S+", action)]


def delete_file(si: vim.ServiceInstance, path: str) -> None:
    dc = find_datacenter(si, "DC0")
    wait_for_task(si, si.content.fileManager.DeleteDatastoreFile_Task(path, dc))


def overwrite(sim: Vcsim, si: vim.ServiceInstance, path: str, content: bytes) -> None:
    p = DatastorePath.parse(path)
    assert upload(sim, si, p.datastore, p.path, content).status_code in (200, 201)


# ---- every state, found, fixed ------------------------------------------------------------------------------------


def test_every_state_is_found_and_fix_repairs_what_is_safe(sim, si, tool, monkeypatch, capsys, tmp_path):
    local = f"Local-{uuid.uuid4().hex[:6]}"
    create_local_datastore(si, "DC0_C0_H0", local)
    names = ["ok", "removed", "emptied", "missing", "overwritten", "same-size", "local", "detached", "gone", "young"]
    vms = {n: create_vm(si, f"audit-{n}", host="DC0_C0_H0" if n in ("ok", "local") else "DC0_H0",
                        powered_on=n == "emptied") for n in names}  # fmt: skip
    isos = {}
    for n, vm in vms.items():
        isos[n] = tool.attach(vm, vmdata(n), datastore=local if n == "local" else None).iso
    isos["emptied"] = tool.update(vms["emptied"], overrides={"hostname": "e2"}).iso  # now the record knows its key
    tool.detach(vms["detached"])

    # what other tools and people do behind the tool's back
    removed = our_cdrom(vms["removed"])  # Terraform's vsphere provider removes the CD-ROMs it does not manage
    reconfigure(si, vms["removed"], vim.vm.ConfigSpec(deviceChange=[vim.vm.device.VirtualDeviceSpec(
        operation="remove", device=removed)]))  # fmt: skip
    emptied = our_cdrom(vms["emptied"])
    emptied.backing = vim.vm.device.VirtualCdrom.RemotePassthroughBackingInfo(deviceName="", exclusive=False)
    emptied.connectable.connected = False
    reconfigure(si, vms["emptied"], vim.vm.ConfigSpec(deviceChange=[vim.vm.device.VirtualDeviceSpec(
        operation="edit", device=emptied)]))  # fmt: skip
    delete_file(si, isos["missing"])
    overwrite(sim, si, isos["overwritten"], b"not a drive")
    overwrite(sim, si, isos["same-size"], bytes(len(fetch_file(sim, si, isos["same-size"]))))
    for n in ("gone", "young"):
        destroy_vm(si, vms[n])  # deleted without remove: the folder stays
    gone, young = (str(DatastorePath.parse(isos[n]).folder) + "/" for n in ("gone", "young"))
    age(si, gone, 2 * DAY)

    status, rows = audit_rows(sim, monkeypatch, capsys)
    states = {n: rows[f"audit-{n}"]["state"] for n in names if f"audit-{n}" in rows}
    assert states == {
        "ok": "ok", "removed": "device-removed", "emptied": "detached", "missing": "missing-file",
        "overwritten": "foreign-change", "same-size": "ok", "local": "not-shared", "detached": "detached",
    }  # fmt: skip
    assert rows["audit-emptied"]["attention"] and not rows["audit-detached"]["attention"]
    assert "DC0_C0_H1" in " ".join(rows["audit-local"]["notes"])  # judged from each host's own list
    assert rows[gone]["fix"] == "delete-folder" and rows[young]["fix"] is None  # a young orphan waits
    assert {r["fix"] for r in rows.values()} == {None, "reattach", "reconnect", "delete-folder"}
    assert status == 1
    assert audit_rows(sim, monkeypatch, capsys, "--verify")[1]["audit-same-size"]["state"] == "foreign-change"

    sim.reset_faults()
    status, dry = audit_rows(sim, monkeypatch, capsys, "--fix", "--dry-run")
    changes = sim.counters()["soap_by_method"]
    assert "ReconfigVM_Task" not in changes and "DeleteDatastoreFile_Task" not in changes  # nothing changed
    assert status == 1 and dry[gone]["fixed"]["dry_run"] and dry["audit-removed"]["fixed"]["actions"]
    assert folder_listing(si, gone.rstrip("/")) is not None and our_cdrom(vms["removed"]) is None

    status, fixed = audit_rows(sim, monkeypatch, capsys, "--fix")
    assert status == 1  # the missing, overwritten and not-shared drives need the admin
    for key in (gone, "audit-removed"):  # the dry run said what the fix did, on the same files and devices
        assert targets(fixed[key]["fixed"]["actions"]) == targets(dry[key]["fixed"]["actions"]) != []
    assert our_cdrom(vms["removed"]).backing.fileName == isos["removed"]
    back = our_cdrom(vms["emptied"])
    assert back.backing.fileName == isos["emptied"] and back.connectable.connected and back.connectable.startConnected
    assert folder_listing(si, gone.rstrip("/")) is None and folder_listing(si, young.rstrip("/")) is not None

    # the admin deals with the rest: rebuild the drives, move the ISO where the cluster sees it, wait a day
    for n in ("missing", "overwritten", "same-size"):
        tool.attach(vms[n], vmdata(n))
    tool.prepare_migration(vms["local"], "DC0_C0_H1")
    age(si, young, 2 * DAY)
    assert audit_rows(sim, monkeypatch, capsys, "--fix")[0] == 0  # deletes the young orphan, now old
    status, clean = audit_rows(sim, monkeypatch, capsys, "--verify")
    assert status == 0 and {r["state"] for r in clean.values()} == {"ok", "detached"}
    assert folder_listing(si, young.rstrip("/")) is None


def test_human_output_is_a_table_with_a_summary_and_escapes_names(sim, si, tool, monkeypatch, capsys):
    hostile = f"evil\u202e-{uuid.uuid4().hex[:4]}\x9b2J"  # a bidi override and a C1 CSI (XML carries both)
    vm = create_vm(si, hostile)
    tool.attach(vm, vmdata("evil"))
    reconfigure(si, vm, vim.vm.ConfigSpec(deviceChange=[vim.vm.device.VirtualDeviceSpec(
        operation="remove", device=our_cdrom(vm))]))  # fmt: skip
    status, out = cli(sim, monkeypatch, capsys)
    lines = out.splitlines()
    assert lines[0].split() == ["VM", "STATE", "PATH", "NOTES"]
    row = next(line for line in lines if "\\u202e" in line)
    assert "device-removed" in row and "\u202e" not in out and "\x9b" not in out and "\\x9b2J" in row
    assert lines[-1].startswith(f"{len(retrieve(si, vim.VirtualMachine, ['name']))} VMs read, ")
    assert "attention (" in lines[-1] and status == 1
    state_column = lines[0].index("STATE")
    assert all(line[state_column - 2 : state_column] == "  " for line in lines[1:-1] if line)  # aligned
    tool.remove(vm)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_only(sim, monkeypatch, capsys):
    cli(sim, monkeypatch, capsys)
    assert capsys.readouterr().err == ""  # stderr is no terminal: quiet
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    cli(sim, monkeypatch, capsys)
    shown = terminal.getvalue()
    assert shown.startswith("\r") and " done (" in shown and " VMs in " in shown.splitlines()[-1]


# ---- cost: the same for 20 and for 200 VMs ------------------------------------------------------------------------


def fleet_audit_cost(binary: Path, vms_per_host: int) -> tuple[dict[str, int], dict[str, int], int, int]:
    """A simulator of 2 x ``vms_per_host`` VMs, each with a drive; one audit's SOAP calls by method, /folder
    requests, VMs read and rows that are ok."""
    sim = started(binary, vms=vms_per_host)
    try:
        session = Session(settings_for(sim)).connect()
        session.per_thread_collectors = True
        tool = ConfigDriveController(session, task_timeout=30)
        names = [vm.name for vm in _vms(sim)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: tool.attach(n, vmdata(n)), names))
        session.close()
        session = Session(settings_for(sim)).connect()
        sim.reset_faults()  # count the audit only
        report = ConfigDriveController(session).audit()
        counters = sim.counters()
        session.close()
        ok = sum(1 for f in report.findings if f.state == "ok")
        return counters["soap_by_method"], counters["folder_requests"], report.vms, ok
    finally:
        sim.stop()


def _vms(sim: Vcsim) -> list[Any]:
    si = connect(sim)
    try:
        return [type("Vm", (), {"name": r["name"]}) for r in retrieve(si, vim.VirtualMachine, ["name"])]
    finally:
        disconnect(si)


def test_the_audits_requests_do_not_grow_with_the_fleet(vcsim_binary: Path) -> None:
    small, small_http, small_vms, small_ok = fleet_audit_cost(vcsim_binary, 10)
    large, large_http, large_vms, large_ok = fleet_audit_cost(vcsim_binary, 100)
    assert (small_vms, small_ok, large_vms, large_ok) == (20, 20, 200, 200)  # every drive was read, and is fine
    pages = math.ceil(200 / PAGE) - math.ceil(20 / PAGE)  # the facts of PAGE VMs a call
    assert large.pop("RetrievePropertiesEx") == small.pop("RetrievePropertiesEx") + pages
    assert large == small  # CurrentTime, the login's calls, one search per datastore: the same
    assert small_http == large_http == {}  # no file is downloaded without --verify
    assert small["SearchDatastoreSubFolders_Task"] == 1  # one datastore, one search


# ---- scope and bad input ------------------------------------------------------------------------------------------


def test_a_folder_audit_sees_only_its_vms_and_judges_no_orphans(sim, si, tool, monkeypatch, capsys):
    folder = find_datacenter(si, "DC0").vmFolder.CreateFolder(f"team-{uuid.uuid4().hex[:6]}")
    inside, outside = create_vm(si, f"in-{folder.name}"), create_vm(si, f"out-{folder.name}")
    wait_for_task(si, folder.MoveIntoFolder_Task([inside]))
    for vm in (inside, outside):
        tool.attach(vm, vmdata("scoped"))
        reconfigure(si, vm, vim.vm.ConfigSpec(deviceChange=[vim.vm.device.VirtualDeviceSpec(
            operation="remove", device=our_cdrom(vm))]))  # fmt: skip
    for scope in (f"DC0/vm/{folder.name}", folder.name):  # by inventory path, or relative to the datacenter
        status, rows = audit_rows(sim, monkeypatch, capsys, "--folder", scope, "--datacenter", "DC0")
        assert list(rows) == [inside.name] and rows[inside.name]["state"] == "device-removed" and status == 1
    status, out = cli(sim, monkeypatch, capsys, "--folder", f"DC0/vm/{folder.name}", "--fix")
    assert status == 0 and "note: orphans in DC0 not judged" in out
    assert our_cdrom(inside) is not None and our_cdrom(outside) is None  # --fix stayed in the folder
    tool.remove(inside)
    tool.remove(outside)


@pytest.mark.parametrize(
    "args, field, connects",
    [
        (["--datacenter", "NoSuchDC"], "NoSuchDC", True),
        (["--folder", "DC0/vm/no-such-folder"], "no-such-folder", True),
        (["--dry-run"], "dry-run", False),
        (["--folder", "a\x00b"], "folder", False),
    ],
)
def test_bad_scope_is_bad_input_and_changes_nothing(sim, monkeypatch, capsys, args, field, connects):
    for key, value in {"GOVC_URL": sim.url, "GOVC_USERNAME": sim.username, "GOVC_PASSWORD": sim.password,
                       "GOVC_TLS_CA_CERTS": sim.ca_file}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    sim.reset_faults()
    assert main(["audit", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("esxi-configdrive: error:") and field in err
    calls = sim.counters()["soap_by_method"]
    assert not {"ReconfigVM_Task", "DeleteDatastoreFile_Task"} & set(calls)
    assert bool(calls) == connects  # what the command line can check, it checks before connecting
