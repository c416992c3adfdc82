"""vSAN/vVol-like datastores against the harness's namespace emulation (tests/vcsim/namespace.go,
docs/testing.md "Storage"): top-level folders are namespace objects with a stable UUID path, device backings come
back as given or as the UUID path, listings name top-level folders by UUID, a concurrent creator makes the folder
first, and a powered-on VM's ISO is locked. Every operation must leave the drive readable, or gone, as it should."""

from __future__ import annotations

import itertools
import json
import os
import re

import pytest
from sample_data import ED25519_KEY
from tool_fixtures import fetch_file, folder_listing, iso_paths
from vsphere_harness import connect, create_local_datastore, disconnect

from esxi_configdrive import VmData, read_iso
from esxi_configdrive.cli import main

pytestmark = pytest.mark.live

_names = itertools.count()
UUID_DIR = re.compile(r"^\[[^\]]+\] [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/")


def vmdata(hostname: str = "web-1", vm_id: str = "0f6a8b52-4c55-4d2e-8d2e-0d6b9d1f3a10") -> VmData:
    return VmData.from_dict(
        {"metadata": {"vm-id": vm_id, "local-hostname": hostname, "public-keys": [ED25519_KEY]},
         "userdata": "#cloud-config\n"}
    )  # fmt: skip


@pytest.fixture
def namespace_datastore(vcsim_faults, vsphere):
    """A new datastore on DC0_H0 that behaves as vSAN; its ConfigDrive/ does not exist yet."""

    def make(backings: str = "keep", **namespace) -> str:
        name = f"vsan{os.getpid()}-{next(_names)}"
        create_local_datastore(vsphere, "DC0_H0", name)
        vcsim_faults.set_faults(namespace={"datastores": [name], "backings": backings, **namespace})
        return name

    return make


def top_level(vcsim, si, datastore: str) -> list[tuple[str, str]]:
    """The datastore root as its browser lists it: (path, friendlyName) of each entry."""
    from vsphere_harness import find_datastore, wait_for_task

    ds = find_datastore(si, datastore)
    spec = __import__("pyVmomi").vim.host.DatastoreBrowser.SearchSpec(matchPattern=["*"])
    result = wait_for_task(si, ds.browser.SearchDatastore_Task(f"[{datastore}]", spec))
    return sorted((f.path, f.friendlyName or "") for f in result.file or [])


def readable(vcsim, si, path: str) -> VmData:
    return read_iso(fetch_file(vcsim, si, path))


@pytest.mark.parametrize("backings", ["keep", "uuid"])
def test_every_operation_on_a_namespace_datastore(tool, vcsim_faults, vsphere, make_vm, namespace_datastore, backings):
    ds = namespace_datastore(backings)
    vm = make_vm(powered_on=True)
    first = tool.attach(vm.name, vmdata(), datastore=ds)
    assert first.changed
    [path] = iso_paths(vsphere, vm)
    assert readable(vcsim_faults, vsphere, path).hostname == "web-1"
    assert vcsim_faults.counters()["soap_by_method"].get("CreateDirectory") == 1
    [(root, friendly)] = top_level(vcsim_faults, vsphere, ds)  # the one namespace, by UUID, named ConfigDrive
    assert friendly == "ConfigDrive"
    if backings == "uuid":
        assert path.startswith(f"[{ds}] {root}/{vm.name}/")

    vcsim_faults.reset_faults()  # counters to zero, namespace still on
    vcsim_faults.set_faults(namespace={"datastores": [ds], "backings": backings})
    again = tool.attach(vm.name, vmdata(), datastore=ds)
    counters = vcsim_faults.counters()
    assert again.changed is False, again.actions
    assert counters["folder_requests"].get("PUT", 0) == 0 and "ReconfigVM_Task" not in counters["soap_by_method"]

    status = tool.status(vm.name).extra
    assert status["attached"] and status["matches_record"], status

    updated = tool.update(vm.name, overrides={"hostname": "web-2"})
    assert updated.changed
    [new_path] = iso_paths(vsphere, vm)
    assert readable(vcsim_faults, vsphere, new_path).hostname == "web-2"
    assert fetch_file(vcsim_faults, vsphere, path) is None  # the old ISO went

    detached = tool.detach(vm.name)
    assert detached.changed and iso_paths(vsphere, vm) == []
    assert fetch_file(vcsim_faults, vsphere, new_path) is None

    tool.attach(vm.name, vmdata(), datastore=ds)
    [last] = iso_paths(vsphere, vm)
    removed = tool.remove(vm.name)
    assert removed.changed and iso_paths(vsphere, vm) == []
    assert fetch_file(vcsim_faults, vsphere, last) is None
    assert folder_listing(vsphere, f"[{ds}] {root}") == []  # the VM's folder went too (contents first)
    assert vcsim_faults.counters()["faults"]["namespace_refused"] == 0


def test_folder_creation_tolerates_a_concurrent_creator(tool, vcsim_faults, vsphere, make_vm, namespace_datastore):
    """vSphere 8.0.1 answers "Invalid fault" to the loser of a race to create the same top-level folder
    (terraform-provider-vsphere #2309): the folder is there, made by the other; the attach goes on."""
    ds = namespace_datastore("keep", concurrent_create=1)
    vm = make_vm()
    assert tool.attach(vm.name, vmdata(), datastore=ds).changed
    assert vcsim_faults.counters()["faults"]["namespace_race"] == 1
    [path] = iso_paths(vsphere, vm)
    assert readable(vcsim_faults, vsphere, path).hostname == "web-1"


@pytest.mark.parametrize(("kind", "finish_with"), [("vsan", "audit"), ("vsan", "next-run"), ("vmfs", "audit")])
def test_a_locked_old_iso_does_not_fail_the_update(
    tool, vcsim_faults, vsphere, make_vm, namespace_datastore, kind, finish_with
):
    """A running VM may still hold the ISO it was switched away from: the update is done, the file kept with a
    warning, and the next run deletes it once unlocked."""
    ds = namespace_datastore("uuid") if kind == "vsan" else "LocalDS_0"
    vm = make_vm(powered_on=True)
    tool.attach(vm.name, vmdata(), datastore=ds)
    [old] = iso_paths(vsphere, vm)
    vcsim_faults.set_faults(file_locks={"files": [old]})
    result = tool.update(vm.name, overrides={"hostname": "web-2"})
    assert result.changed and any("locked" in w for w in result.to_dict().get("warnings", [])), result.to_dict()
    [new] = iso_paths(vsphere, vm)
    assert readable(vcsim_faults, vsphere, new).hostname == "web-2"
    assert fetch_file(vcsim_faults, vsphere, old) is not None  # kept
    row = next(f for f in tool.audit().findings if f.vm == vm.name)  # audit shows it
    assert row.state == "ok" and row.fix == "finish" and any("still there" in n for n in row.notes), row
    locked = tool.audit(fix=True)
    assert fetch_file(vcsim_faults, vsphere, old) is not None
    assert any("locked" in w for r in locked.fixes.values() for w in r.extra.get("warnings", [])), locked.fixes
    vcsim_faults.set_faults(file_locks={"files": []})
    if finish_with == "audit":
        tool.audit(fix=True)
    else:
        again = tool.attach(vm.name, vmdata("web-2"), datastore=ds)  # the same content: only the clean-up is left
        assert again.changed and iso_paths(vsphere, vm) == [new]
    assert fetch_file(vcsim_faults, vsphere, old) is None  # deleted once unlocked
    assert readable(vcsim_faults, vsphere, new).hostname == "web-2"
    assert next(f for f in tool.audit().findings if f.vm == vm.name).fix == ""


@pytest.mark.parametrize("backings", ["keep", "uuid"])
def test_a_batch_of_first_drives_on_a_new_namespace_datastore(
    tool, vcsim_faults, vsphere, make_vm, namespace_datastore, tmp_path, monkeypatch, capsys, backings
):
    """50 VMs at concurrency 8, every one the first drive on a datastore whose ConfigDrive/ does not exist yet: one
    CreateDirectory, every drive readable, and each then seen as attached by status (either path form)."""
    from test_batch_live import env_for

    ds = namespace_datastore(backings)
    vms = [make_vm() for _ in range(50)]
    lines = [json.dumps({"vm": vm.name, "vmdata": {"metadata": {"vm-id": f"00000000-0000-4000-8000-{i:012d}",
             "local-hostname": f"node-{i}"}}}) for i, vm in enumerate(vms)]  # fmt: skip
    batch = tmp_path / "attach.jsonl"
    batch.write_text("\n".join(lines) + "\n")
    for k, v in env_for(vcsim_faults).items():
        if k.startswith("GOVC_"):
            monkeypatch.setenv(k, v)
    status = main(["attach", "--batch", str(batch), "--concurrency", "8", "--datastore", ds])
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert status == 0, [r for r in results if r.get("exit_status")]
    assert len(results) == 50 and all(r["changed"] for r in results)
    counters = vcsim_faults.counters()
    assert counters["faults"]["namespace_refused"] == 0 and counters["soap_by_method"]["CreateDirectory"] == 1
    for i, vm in enumerate(vms):
        [path] = iso_paths(vsphere, vm)
        # by the stable path once ConfigDrive/ exists; the drives planned before, by the friendly name: kept as
        # given, or rewritten by vSphere
        assert UUID_DIR.match(path) or (backings == "keep" and f"[{ds}] ConfigDrive/{vm.name}/" in path), path
        assert readable(vcsim_faults, vsphere, path).hostname == f"node-{i}"
        seen = tool.status(vm.name).extra
        assert seen["attached"] and seen["matches_record"], seen
    assert [f for _, f in top_level(vcsim_faults, vsphere, ds)] == ["ConfigDrive"]


def test_audit_matches_paths_by_their_stable_form(tool, vcsim_faults, vsphere, make_vm, namespace_datastore):
    """Devices by UUID listed by name, devices by name listed by UUID: no live drive is an orphan; --fix deletes
    the true orphan (older than the grace period), keeps the locked one until it is unlocked."""
    from test_audit_live import age

    ds = namespace_datastore("uuid")
    _make_namespace(vsphere, ds)  # ConfigDrive/ made by another client, as an earlier run or version may have
    by_uuid, by_name = make_vm(powered_on=True), make_vm()
    tool.attach(by_uuid.name, vmdata(), datastore=ds)  # its backing comes back by UUID
    vcsim_faults.set_faults(namespace={"datastores": [ds], "backings": "keep"})
    tool.attach(by_name.name, vmdata(vm_id="1f6a8b52-4c55-4d2e-8d2e-0d6b9d1f3a10"), datastore=ds)
    [uuid_path], [stable_path] = iso_paths(vsphere, by_uuid), iso_paths(vsphere, by_name)
    name_path = f"[{ds}] ConfigDrive/" + stable_path.split("/", 1)[1]  # as another client (or vSphere) may give it
    _repoint(vsphere, by_name, stable_path, name_path)
    assert UUID_DIR.match(uuid_path) and iso_paths(vsphere, by_name) == [name_path]
    iso = fetch_file(vcsim_faults, vsphere, name_path)
    orphan, locked = f"[{ds}] ConfigDrive/gone-vm/configdrive.iso", f"[{ds}] ConfigDrive/gone-too/configdrive.iso"
    for path in (orphan, locked):
        _put(vcsim_faults, vsphere, path, iso)
        age(vsphere, path.rsplit("/", 1)[0], 3 * 86400)
    for path in (uuid_path, name_path):  # live drives, as old: only the references keep them
        age(vsphere, path, 3 * 86400)
    vcsim_faults.set_faults(file_locks={"files": [locked]})
    for listing in ("uuid", "name"):
        vcsim_faults.set_faults(namespace={"datastores": [ds], "listing": listing})
        report = tool.audit()
        rows = {f.path: f for f in report.findings}
        live = [
            f.path
            for f in report.findings
            if f.state == "orphan" and (by_uuid.name in f.path or by_name.name in f.path)
        ]
        assert live == [], live
        assert {f.vm: f.state for f in report.findings if f.vm in (by_uuid.name, by_name.name)} == {
            by_uuid.name: "ok",
            by_name.name: "ok",
        }, rows
        here = [f.path for f in report.findings if f.state == "orphan" and f.path.startswith(f"[{ds}]")]
        assert len(here) == 2 and all("/gone-" in p for p in here), here
    fixed = tool.audit(fix=True)
    assert fetch_file(vcsim_faults, vsphere, orphan) is None
    assert fetch_file(vcsim_faults, vsphere, locked) is not None
    warnings = [w for v in fixed.fixes.values() for w in v.extra.get("warnings", [])]
    assert any("locked" in w and "gone-too/configdrive.iso" in w for w in warnings), fixed.fixes
    for path in (uuid_path, name_path):
        assert read_iso(fetch_file(vcsim_faults, vsphere, path)).hostname == "web-1"
    vcsim_faults.set_faults(file_locks={"files": []})
    final = tool.audit(fix=True)
    mine = [i for i, f in enumerate(final.findings) if f.state == "orphan" and f.path.startswith(f"[{ds}]")]
    assert len(mine) == 1 and final.resolved(mine[0]), final.fixes  # the other tests' young orphans may wait
    assert fetch_file(vcsim_faults, vsphere, locked) is None
    for path in (uuid_path, name_path):
        assert read_iso(fetch_file(vcsim_faults, vsphere, path)).hostname == "web-1"


def _make_namespace(si, datastore: str) -> None:
    from vsphere_harness import find_datastore

    si.content.datastoreNamespaceManager.CreateDirectory(
        datastore=find_datastore(si, datastore), displayName="ConfigDrive"
    )


def _repoint(si, vm, old: str, new: str) -> None:
    from pyVmomi import vim
    from vsphere_harness import cdroms, iso_backing, reconfigure

    [cdrom] = [c for c in cdroms(vm) if getattr(c.backing, "fileName", None) == old]
    cdrom.backing = iso_backing(new)
    change = vim.vm.device.VirtualDeviceSpec(operation="edit", device=cdrom)
    reconfigure(si, vm, vim.vm.ConfigSpec(deviceChange=[change]))


def _put(vcsim, si, path: str, content: bytes) -> None:
    """Another client's file, made by the friendly path (a sub-folder of a namespace is an ordinary folder)."""
    from vsphere_harness import make_directory, upload

    folder, _ = path.rsplit("/", 1)
    make_directory(si, folder)
    ds, rel = path[1:].split("] ", 1)
    assert upload(vcsim, si, ds, rel, content).status_code in (200, 201)


def test_stock_behaviour_is_unchanged_without_the_switch(vcsim_faults, vsphere):
    """Off by default: every datastore may create top-level folders, as vcsim has it."""
    from vsphere_harness import get_property

    session = connect(vcsim_faults)
    try:
        from vsphere_harness import find_datastore

        cap = get_property(session, find_datastore(session, "LocalDS_0"), "capability")
        assert cap.topLevelDirectoryCreateSupported is True
    finally:
        disconnect(session)


def test_a_batch_update_with_a_locked_old_iso_succeeds_with_a_warning(
    tool, vcsim_faults, vsphere, make_vm, namespace_datastore, tmp_path, monkeypatch, capsys
):
    """In batch mode the old ISO's delete is confirmed after the operation: a locked one is a warning there too."""
    from test_batch_live import env_for

    ds = namespace_datastore("uuid")
    vms = [make_vm(powered_on=True) for _ in range(3)]
    for vm in vms:
        tool.attach(vm.name, vmdata(), datastore=ds)
    [locked] = iso_paths(vsphere, vms[1])
    vcsim_faults.set_faults(file_locks={"files": [locked]})
    batch = tmp_path / "update.jsonl"
    batch.write_text("\n".join(json.dumps({"vm": vm.name, "hostname": f"node-{i}"}) for i, vm in enumerate(vms)))
    for k, v in env_for(vcsim_faults).items():
        if k.startswith("GOVC_"):
            monkeypatch.setenv(k, v)
    status = main(["update", "--batch", str(batch), "--concurrency", "3"])
    results = {r["vm"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert status == 0 and all(r["changed"] for r in results.values()), results
    assert (
        [w for r in results.values() for w in r.get("warnings", [])]
        == [w for w in results[vms[1].name]["warnings"] if "locked" in w]
        != []
    )
    assert fetch_file(vcsim_faults, vsphere, locked) is not None  # kept, named by the record for the next run
    for i, vm in enumerate(vms):
        assert readable(vcsim_faults, vsphere, iso_paths(vsphere, vm)[0]).hostname == f"node-{i}"
