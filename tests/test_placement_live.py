"""Where the drive goes and who may write there (issue 18), against a harness of this module's own (its datastores,
datastore clusters and datastore states are inventory changes no reset undoes): datastores that cannot take a
file, datastore clusters, NFS root squash, the free ESXi licence and a user without the /folder privileges.
What each emulates, and the source of the real behaviour: docs/testing.md "Hosts, licences, privileges and
datastore kinds"."""

from __future__ import annotations

import hashlib
import json
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVmomi import vim
from tool_fixtures import record_of
from vsphere_harness import (
    Vcsim,
    cdroms,
    connect,
    create_local_datastore,
    create_vm,
    disconnect,
    find_datacenter,
    find_datastore,
    get_property,
    make_directory,
    wait_for_task,
)

from esxi_configdrive.cli import main

pytestmark = pytest.mark.live

GIB = 2**30
CLUSTER_HOSTS = ("DC0_C0_H0", "DC0_C0_H1", "DC0_C0_H2")


@pytest.fixture(scope="module")
def sim(vcsim_binary: Path) -> Iterator[Vcsim]:
    with Vcsim(vcsim_binary) as harness:
        yield harness


@pytest.fixture
def si(sim: Vcsim) -> Iterator[vim.ServiceInstance]:
    sim.reset_faults()
    si = connect(sim)
    yield si
    sim.reset_faults()
    disconnect(si)


@pytest.fixture
def cli(sim: Vcsim, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """``cli(*args)`` -> (exit status, the JSON it printed: the result, or {"error": ...})."""
    for key, value in {"GOVC_URL": sim.url, "GOVC_USERNAME": sim.username, "GOVC_PASSWORD": sim.password,
                       "GOVC_TLS_CA_CERTS": sim.ca_file}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("GOVC_DATASTORE", raising=False)

    def run(*args: str) -> tuple[int, dict[str, Any]]:
        status = main([*args, "--json"])
        captured = capsys.readouterr()
        text = (captured.out.strip() or captured.err.strip()).splitlines()
        return status, json.loads(text[-1]) if text else {}

    return run


@pytest.fixture
def vmdata_file(tmp_path: Path) -> str:
    path = tmp_path / "vm.json"
    path.write_text(json.dumps({"metadata": {"vm-id": str(uuid.uuid4())}, "userdata": "#cloud-config\n"}))
    return str(path)


def shared_datastore(si: vim.ServiceInstance, name: str, hosts: tuple[str, ...] = CLUSTER_HOSTS) -> vim.Datastore:
    """A datastore every host of ``hosts`` mounts (one directory, mounted by each)."""
    directory = tempfile.mkdtemp(prefix=f"vcsim-{name}-")
    for host in hosts:
        create_local_datastore(si, host, name, directory)
    return find_datastore(si, name)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def datastore_tree(si: vim.ServiceInstance, name: str) -> dict[str, str]:
    """Every folder and file on the datastore (its directory on this machine), files with their SHA-256."""
    # Datacenter.datastore lists members of datastore clusters too (vcsim's ContainerView does not descend into them)
    [store] = [d for d in find_datacenter(si).datastore if d.name == name]
    root = Path(store.info.url)
    tree = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        tree[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return tree


def vm_state(si: vim.ServiceInstance, vm: vim.VirtualMachine) -> tuple:
    """What the tool could change on a VM: its CD-ROMs (with backings and connection) and its extraConfig."""
    drives = tuple(
        (d.key, d.controllerKey, d.unitNumber, type(d.backing).__name__, getattr(d.backing, "fileName", None),
         d.connectable.connected, d.connectable.startConnected)
        for d in cdroms(vm)
    )  # fmt: skip
    extra = tuple(sorted((o.key, str(o.value)) for o in get_property(si, vm, "config.extraConfig") or []))
    return drives, extra


def config_drive_isos(vm: vim.VirtualMachine) -> list[str]:
    return [d.backing.fileName for d in cdroms(vm) if "ConfigDrive/" in (getattr(d.backing, "fileName", "") or "")]


# ---- unusable datastores ----------------------------------------------------------------------------------------

UNUSABLE = {
    "read-only": ({"access_mode": "readOnly"}, "mounted read-only"),
    "inaccessible": ({"accessible": False}, "not accessible"),
    "maintenance": ({"maintenance_mode": "inMaintenance"}, "in maintenance mode (inMaintenance)"),
}


@pytest.mark.parametrize("kind", sorted(UNUSABLE))
def test_a_named_datastore_that_cannot_take_a_file_is_refused_before_any_change(sim, si, cli, vmdata_file, kind):
    state, reason = UNUSABLE[kind]
    name = unique("Bad")
    shared_datastore(si, name, ("DC0_H0",))
    sim.set_datastore(name, **state)
    vm = create_vm(si)
    before = vm_state(si, vm), datastore_tree(si, name)
    sim.reset_faults()  # count from here

    status, out = cli("attach", vm.name, "--vmdata", vmdata_file, "--datastore", name)

    assert status == 2, out
    assert f"datastore {name} cannot take the config drive: {reason}" in out["error"]
    assert (vm_state(si, vm), datastore_tree(si, name)) == before
    calls = sim.counters()
    assert not {"MakeDirectory", "ReconfigVM_Task"} & set(calls["soap_by_method"])
    assert "PUT" not in calls["folder_requests"]


def test_the_vms_own_datastore_in_maintenance_is_not_chosen(sim, si, cli, vmdata_file):
    name = unique("Own")
    shared_datastore(si, name, ("DC0_H0",))
    vm = create_vm(si, datastore=name)
    sim.set_datastore(name, maintenance_mode="inMaintenance")
    before = vm_state(si, vm), datastore_tree(si, name)

    status, out = cli("attach", vm.name, "--vmdata", vmdata_file)

    assert status == 2, out
    assert f"{name}: in maintenance mode (inMaintenance)" in out["error"] and "pass --datastore" in out["error"]
    assert (vm_state(si, vm), datastore_tree(si, name)) == before


def test_root_squash_shows_at_the_first_write_and_nothing_stays(sim, si, cli, vmdata_file):
    """Mounted read-write and healthy by every property; the first file creation is refused."""
    name = unique("Squash")
    shared_datastore(si, name, ("DC0_H0",))
    vm = create_vm(si)
    sim.set_faults(root_squash=[name])
    before = vm_state(si, vm), datastore_tree(si, name)

    status, out = cli("attach", vm.name, "--vmdata", vmdata_file, "--datastore", name)

    assert status == 1, out
    assert f"datastore {name} refused to create" in out["error"]
    assert "Permission denied" in out["error"] and "no_root_squash" in out["error"]
    assert (vm_state(si, vm), datastore_tree(si, name)) == before
    assert sim.counters()["faults"]["datastore_refused"] >= 1


# ---- datastore clusters ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pod(sim: Vcsim) -> dict[str, str]:
    """A datastore cluster of four members: the most free space on one mounted read-only, then on one only one host
    of the cluster mounts, then two that every host mounts read-write (40 GiB and 20 GiB free)."""
    si = connect(sim)
    try:
        names = {k: unique(k) for k in ("ReadOnly", "OneHost", "Big", "Small")}
        stores = [
            shared_datastore(si, names["ReadOnly"]),
            shared_datastore(si, names["OneHost"], ("DC0_C0_H0",)),
            shared_datastore(si, names["Big"]),
            shared_datastore(si, names["Small"]),
        ]
        for key, free in (("ReadOnly", 90), ("OneHost", 80), ("Big", 40), ("Small", 20)):
            sim.set_datastore(names[key], free_space=free * GIB)
        sim.set_datastore(names["ReadOnly"], access_mode="readOnly")
        pod_name = unique("Pod")
        storage_pod = find_datacenter(si).datastoreFolder.CreateStoragePod(name=pod_name)
        wait_for_task(si, storage_pod.MoveIntoFolder_Task(stores))
        return {**names, "pod": pod_name}
    finally:
        disconnect(si)


def test_a_datastore_cluster_puts_the_drive_on_the_usable_member_with_most_free_space(sim, si, cli, vmdata_file, pod):
    vm = create_vm(si, host="DC0_C0_H1")

    status, out = cli("attach", vm.name, "--vmdata", vmdata_file, "--datastore", pod["pod"])

    assert status == 0, out
    [iso] = config_drive_isos(vm)
    assert iso.startswith(f"[{pod['Big']}] ConfigDrive/")
    [shown] = [a for a in out["actions"] if a.startswith("datastore cluster")]
    assert f"datastore cluster {pod['pod']}: chose member {pod['Big']} (40.0 GiB free" in shown
    assert f"{pod['ReadOnly']} (mounted read-only)" in shown
    assert f"{pod['OneHost']} (not mounted on host DC0_C0_H1, DC0_C0_H2)" in shown
    assert record_of(si, vm)["cluster"] == pod["pod"]

    status, again = cli("attach", vm.name, "--vmdata", vmdata_file, "--datastore", pod["pod"])
    assert (status, again["changed"], config_drive_isos(vm)) == (0, False, [iso])  # where it is, it stays

    status, updated = cli("update", vm.name, "--hostname", "a")
    assert status == 0 and updated["changed"], updated
    [iso] = config_drive_isos(vm)
    assert iso.startswith(f"[{pod['Big']}] ")  # the member is still usable: the drive stays there

    sim.set_datastore(pod["Big"], maintenance_mode="inMaintenance")
    try:
        status, moved = cli("update", vm.name, "--hostname", "b")
    finally:
        sim.set_datastore(pod["Big"], maintenance_mode="normal")
    assert status == 0, moved
    [iso] = config_drive_isos(vm)
    assert iso.startswith(f"[{pod['Small']}] ConfigDrive/")  # the next member that can take it
    chosen = f"datastore cluster {pod['pod']}: chose member {pod['Small']}"
    assert any(a.startswith(chosen) for a in moved["actions"]), moved["actions"]
    assert not [p for p in datastore_tree(si, pod["Big"]) if p.startswith(f"ConfigDrive/{vm.name}/")]
    assert record_of(si, vm)["cluster"] == pod["pod"]


def test_a_datastore_cluster_with_no_usable_member_is_refused(sim, si, cli, vmdata_file):
    name = unique("Lone")
    store = shared_datastore(si, name)
    sim.set_datastore(name, accessible=False)
    pod_name = unique("Pod")
    wait_for_task(si, find_datacenter(si).datastoreFolder.CreateStoragePod(name=pod_name).MoveIntoFolder_Task([store]))
    vm = create_vm(si, host="DC0_C0_H0")
    before = vm_state(si, vm)

    status, out = cli("attach", vm.name, "--vmdata", vmdata_file, "--datastore", pod_name)

    assert status == 2, out
    assert f"no member of datastore cluster {pod_name} can take the drive ({name}: not accessible)" in out["error"]
    assert vm_state(si, vm) == before


# ---- the free ESXi licence ------------------------------------------------------------------------------------


@pytest.fixture
def licensed_drive(sim, si, cli, vmdata_file) -> vim.VirtualMachine:
    """A VM with a drive, attached while the licence allowed it."""
    vm = create_vm(si)
    status, out = cli("attach", vm.name, "--vmdata", vmdata_file)
    assert status == 0, out
    return vm


def free_licence(sim: Vcsim, calls: list[str]) -> None:
    sim.set_faults(restricted_version={"enabled": True, "calls": calls})


@pytest.mark.parametrize("calls", [[], ["ReconfigVM_Task"]], ids=["every-write", "reconfigure-only"])
def test_the_free_licence_refuses_attach_and_nothing_stays(sim, si, cli, vmdata_file, calls):
    vm = create_vm(si)
    _ensure_config_drive_folder(si)
    before = vm_state(si, vm), datastore_tree(si, "LocalDS_0")
    free_licence(sim, calls)

    status, out = cli("attach", vm.name, "--vmdata", vmdata_file)

    assert status == 1, out
    assert out["error"].startswith("the host's licence does not allow changes through the vSphere API")
    assert "RestrictedVersion" in out["error"] and "\n" not in out["error"]
    assert (vm_state(si, vm), datastore_tree(si, "LocalDS_0")) == before
    assert sim.counters()["faults"]["restricted_version"] >= 1


@pytest.mark.parametrize("calls", [[], ["ReconfigVM_Task"]], ids=["every-write", "reconfigure-only"])
@pytest.mark.parametrize("command", ["update", "detach", "remove"])
def test_the_free_licence_refuses_changes_to_a_drive_and_nothing_moves(sim, si, cli, licensed_drive, command, calls):
    vm = licensed_drive
    before = vm_state(si, vm), datastore_tree(si, "LocalDS_0")
    free_licence(sim, calls)
    args = ["--hostname", "x"] if command == "update" else []

    status, out = cli(command, vm.name, *args)

    assert status == 1, out
    assert "the host's licence does not allow changes through the vSphere API" in out["error"], out
    assert (vm_state(si, vm), datastore_tree(si, "LocalDS_0")) == before


def _ensure_config_drive_folder(si: vim.ServiceInstance) -> None:
    """ConfigDrive/ as on any datastore that already holds a drive: the tool never deletes that shared folder
    (another run may be making its VM's folder in it), only the VM's own folder it made."""
    if "ConfigDrive" not in datastore_tree(si, "LocalDS_0"):
        make_directory(si, "[LocalDS_0] ConfigDrive")


# ---- /folder privileges ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status_code", [401, 403])
def test_folder_refused_for_lack_of_privileges_names_them_and_where(sim, si, cli, vmdata_file, status_code):
    vm = create_vm(si)
    _ensure_config_drive_folder(si)
    before = vm_state(si, vm), datastore_tree(si, "LocalDS_0")
    sim.set_faults(folder_forbidden={"status": status_code})

    status, out = cli("attach", vm.name, "--vmdata", vmdata_file)

    assert status == 1, out
    error = out["error"]
    assert f"HTTP {status_code}" in error
    for needed in ("System.View on the root folder", "Datastore.Browse and Datastore.FileManagement",
                   "on datacenter DC0 and on datastore LocalDS_0", "docs/privileges.md"):  # fmt: skip
        assert needed in error, error
    assert (vm_state(si, vm), datastore_tree(si, "LocalDS_0")) == before


def test_prepare_migration_never_copies_to_a_datastore_that_cannot_take_it(sim, si, cli, vmdata_file):
    local = unique("Local")
    shared_datastore(si, local, ("DC0_C0_H0",))
    read_only = unique("A0ReadOnly")  # first by name among the datastores the target host mounts
    shared_datastore(si, read_only)
    sim.set_datastore(read_only, access_mode="readOnly")
    vm = create_vm(si, host="DC0_C0_H0", datastore=local)
    assert cli("attach", vm.name, "--vmdata", vmdata_file)[0] == 0
    before = vm_state(si, vm)

    status, out = cli("prepare-migration", vm.name, "--host", "DC0_C0_H1", "--datastore", read_only)
    assert status == 2, out
    assert f"datastore {read_only} cannot take the config drive: mounted read-only" in out["error"]
    assert vm_state(si, vm) == before

    status, moved = cli("prepare-migration", vm.name, "--host", "DC0_C0_H1")
    assert status == 0, moved
    [iso] = config_drive_isos(vm)
    assert not iso.startswith(f"[{read_only}]") and not iso.startswith(f"[{local}]")
