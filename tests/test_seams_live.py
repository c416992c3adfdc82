"""Where issues 16 (lost answers), 17 (namespace datastores) and 18 (placement, licence, /folder privileges) meet:
a lost MakeDirectory answer before a refused attach, the free licence on a namespace datastore, a /folder 401 in a
batch, a cluster member that is a namespace datastore, lost answers on a namespace datastore and in a migration.
Written by a review of the merge; four of them failed on ea6931b (the merge before the fixes)."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path

import pytest
from lossy_proxy import ANSWER_LOST, FORWARDED, LossyProxy
from pyVmomi import vim
from reliability_fixtures import cli_env, cli_in_process
from vsphere_harness import cdroms, create_local_datastore, find_datastore, make_directory

pytestmark = pytest.mark.live


def _vmdata(tmp_path: Path) -> str:
    path = tmp_path / "vm.json"
    path.write_text(json.dumps({"metadata": {"vm-id": str(uuid.uuid4())}, "userdata": "#cloud-config\n"}))
    return str(path)


def _tree(directory: str) -> list[str]:
    root = Path(directory)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_free_licence_switch_refuses_create_directory(vcsim_faults, vsphere):
    """issue 18: 'the harness's switch refuses every write call'; issue 17 added CreateDirectory, a write."""
    name = f"vsanlic{os.getpid()}"
    ds = create_local_datastore(vsphere, "DC0_H0", name)
    vcsim_faults.set_faults(namespace={"datastores": [name]}, restricted_version={"enabled": True, "calls": []})
    manager = vsphere.content.datastoreNamespaceManager
    with pytest.raises(vim.fault.RestrictedVersion):
        manager.CreateDirectory(datastore=ds, displayName="ConfigDrive")


def test_free_licence_attach_on_namespace_datastore_leaves_nothing(vcsim_faults, vsphere, make_vm, tmp_path):
    """issue 18 item 4 on an issue-17 datastore: refused attach, exit 1, the datastore exactly as before."""
    name = f"vsanlic2{os.getpid()}"
    directory = tempfile.mkdtemp(prefix=f"vcsim-{name}-")
    create_local_datastore(vsphere, "DC0_H0", name, directory)
    vm = make_vm(host="DC0_H0")
    before = _tree(directory)
    vcsim_faults.set_faults(namespace={"datastores": [name]}, restricted_version={"enabled": True, "calls": []})
    run = cli_in_process(
        ["attach", vm.name, "--vmdata", _vmdata(tmp_path), "--datastore", name, "--json"], cli_env(vcsim_faults)
    )
    assert run.status == 1, (run.out, run.err)
    assert _tree(directory) == before, (run.out, run.err)


class _LoseFirstMakeDirectoryAnswer(LossyProxy):
    """Forwards everything; throws away the answer of the first MakeDirectory only (when ``lose``)."""

    lose = True

    def fate(self, kind: str) -> str:
        with self._lock:
            nth = self._seen[kind]
            self._seen[kind] += 1
            fate = ANSWER_LOST if self.lose and kind == "MakeDirectory" and nth == 0 else FORWARDED
            self._counts[(kind, fate)] += 1
            return fate


@pytest.mark.parametrize("lose", [False, True], ids=["control-no-loss", "makedirectory-answer-lost"])
def test_lost_makedirectory_answer_then_refused_attach_leaves_no_folder(vcsim_faults, vsphere, make_vm, tmp_path, lose):
    """issue 16 x 18: the re-sent MakeDirectory gets FileAlreadyExists -> created=False -> the refused attach
    (licence refuses ReconfigVM only) does not remove the folder this very run made."""
    vm = make_vm()
    make_directory(vsphere, "[LocalDS_0] ConfigDrive")  # as test_placement_live does: only the VM's folder matters
    root = find_datastore(vsphere, "LocalDS_0").info.url
    before = [p for p in _tree(root) if p.startswith("ConfigDrive")]
    vcsim_faults.set_faults(restricted_version={"enabled": True, "calls": ["ReconfigVM_Task"]})
    with _LoseFirstMakeDirectoryAnswer(vcsim_faults, rate=0.0, seed=0) as proxy:
        proxy.lose = lose
        env = cli_env(vcsim_faults)
        env.pop("GOVC_TLS_CA_CERTS", None)
        env["GOVC_URL"] = proxy.url
        run = cli_in_process(["attach", vm.name, "--vmdata", _vmdata(tmp_path), "--json"], env)
        lost = proxy.tally().of("MakeDirectory", ANSWER_LOST)
    assert lost == int(lose)
    assert run.status == 1, (run.out, run.err)
    assert not [c for c in cdroms(vm) if "ConfigDrive/" in (getattr(c.backing, "fileName", "") or "")]
    assert [p for p in _tree(root) if p.startswith("ConfigDrive")] == before, (run.out, run.err)


def test_a_datastore_cluster_whose_member_is_a_namespace_datastore(vcsim_faults, vsphere, make_vm, tmp_path):
    """issue 17 x 18: the member chosen from a pod is vSAN-like. attach, unchanged re-run, update, audit, remove."""
    from vsphere_harness import find_datacenter, wait_for_task

    name = f"podvsan{uuid.uuid4().hex[:6]}"
    directory = tempfile.mkdtemp(prefix=f"vcsim-{name}-")
    for host in ("DC0_C0_H0", "DC0_C0_H1", "DC0_C0_H2"):
        create_local_datastore(vsphere, host, name, directory)
    [store] = [d for d in find_datacenter(vsphere).datastore if d.name == name]
    pod = f"Pod{uuid.uuid4().hex[:6]}"
    storage_pod = find_datacenter(vsphere).datastoreFolder.CreateStoragePod(name=pod)
    wait_for_task(vsphere, storage_pod.MoveIntoFolder_Task([store]))
    vm = make_vm(host="DC0_C0_H1")
    vcsim_faults.set_faults(namespace={"datastores": [name], "backings": "keep"})
    env = cli_env(vcsim_faults)
    vmdata = _vmdata(tmp_path)

    def cli(*args: str) -> dict:
        run = cli_in_process([*args, "--json"], env)
        assert run.status == 0, (args, run.out, run.err)
        return json.loads(run.out.strip().splitlines()[-1])

    out = cli("attach", vm.name, "--vmdata", vmdata, "--datastore", pod)
    isos = [c.backing.fileName for c in cdroms(vm) if name in (getattr(c.backing, "fileName", "") or "")]
    assert len(isos) == 1, (out, isos)
    again = cli("attach", vm.name, "--vmdata", vmdata, "--datastore", pod)
    assert again["changed"] is False, again
    cli("update", vm.name, "--hostname", "x")
    isos = [c.backing.fileName for c in cdroms(vm) if name in (getattr(c.backing, "fileName", "") or "")]
    assert len(isos) == 1, isos
    audit = cli_in_process(["audit", "--json"], env)
    ours = [json.loads(line) for line in audit.out.splitlines() if name in line]
    assert ours and all(r["state"] == "ok" for r in ours), ours
    cli("remove", vm.name)
    leftovers = [p for p in _tree(directory) if p.count("/") >= 1]
    assert leftovers == [], leftovers


class _LoseFirstAnswerOf(LossyProxy):
    method = "CreateDirectory"

    def fate(self, kind: str) -> str:
        with self._lock:
            nth = self._seen[kind]
            self._seen[kind] += 1
            fate = ANSWER_LOST if kind == self.method and nth == 0 else FORWARDED
            self._counts[(kind, fate)] += 1
            return fate


@pytest.mark.parametrize("method", ["CreateDirectory", "ConvertNamespacePathToUuidPath", "MakeDirectory"])
def test_a_lost_answer_on_a_namespace_datastore(vcsim_faults, vsphere, make_vm, tmp_path, method):
    """issue 16 x 17: one lost answer during the first attach on a new namespace datastore."""
    name = f"vsanlost{uuid.uuid4().hex[:6]}"
    directory = tempfile.mkdtemp(prefix=f"vcsim-{name}-")
    create_local_datastore(vsphere, "DC0_H0", name, directory)
    vm = make_vm(host="DC0_H0")
    vcsim_faults.set_faults(namespace={"datastores": [name], "backings": "keep"})
    with _LoseFirstAnswerOf(vcsim_faults, rate=0.0, seed=0) as proxy:
        proxy.method = method
        env = cli_env(vcsim_faults)
        env.pop("GOVC_TLS_CA_CERTS", None)
        env["GOVC_URL"] = proxy.url
        run = cli_in_process(["attach", vm.name, "--vmdata", _vmdata(tmp_path), "--datastore", name, "--json"], env)
        lost = proxy.tally().of(method, ANSWER_LOST)
    assert lost == 1
    assert run.status == 0, (run.out, run.err)
    isos = [c.backing.fileName for c in cdroms(vm) if name in (getattr(c.backing, "fileName", "") or "")]
    assert len(isos) == 1, isos
    tops = [p for p in _tree(directory) if "/" not in p]
    assert len(tops) == 2, tops  # one namespace (uuid dir) and its friendly symlink, not two namespaces
    files = [p for p in _tree(directory) if p.endswith(".iso")]
    assert len(files) == 1, files  # no stray ISO


@pytest.fixture(scope="module")
def esx_harness(vcsim_binary):
    from vsphere_harness import Vcsim

    with Vcsim(vcsim_binary, extra_args=["-esx"]) as sim:
        yield sim


def test_namespace_datastore_on_a_standalone_host(esx_harness, tmp_path):
    """issue 17 x 18: a vSAN-like datastore seen through a standalone host (hostd has a DatastoreNamespaceManager)."""
    from vsphere_harness import connect, disconnect

    si = connect(esx_harness)
    try:
        print("namespace manager:", si.content.datastoreNamespaceManager)
        esx_harness.set_faults(namespace={"datastores": ["LocalDS_0"], "backings": "keep"})
        env = cli_env(esx_harness)
        run = cli_in_process(["attach", "ha-host_VM0", "--vmdata", _vmdata(tmp_path), "--json"], env)
        print(run.out, run.err)
        assert run.status == 0, (run.out, run.err)
        counters = esx_harness.counters()
        print({k: v for k, v in counters["soap_by_method"].items() if "Director" in k or "Namespace" in k})
        from vsphere_harness import find_datastore

        print("capability:", find_datastore(si, "LocalDS_0").capability.topLevelDirectoryCreateSupported)
        run = cli_in_process(["remove", "ha-host_VM0", "--json"], env)
        assert run.status == 0, (run.out, run.err)
    finally:
        esx_harness.reset_faults()
        disconnect(si)


@pytest.mark.parametrize("status_code", [401, 403])
def test_folder_refused_in_a_batch_logs_in_once(vcsim_faults, vsphere, make_vm, tmp_path, status_code):
    """issue 16 x 18: a user lacking /folder privileges (401) must not make each VM of a batch log in again."""
    vms = [make_vm() for _ in range(4)]
    make_directory(vsphere, "[LocalDS_0] ConfigDrive")
    batch = tmp_path / "b.jsonl"
    batch.write_text("".join(json.dumps({"vm": v.name, "vmdata_file": _vmdata(tmp_path)}) + "\n" for v in vms))
    vcsim_faults.set_faults(folder_forbidden={"status": status_code})
    before = vcsim_faults.counters()["soap_by_method"].get("Login", 0)
    run = cli_in_process(["attach", "--batch", str(batch), "--concurrency", "2", "--json"], cli_env(vcsim_faults))
    logins = vcsim_faults.counters()["soap_by_method"].get("Login", 0) - before
    print("status", run.status, "logins", logins, run.out[-600:], run.err[-600:])
    assert run.status == 1
    assert logins == 1, logins


@pytest.mark.parametrize("method", ["CopyDatastoreFile_Task", "DeleteDatastoreFile_Task", "RelocateVM_Task"])
def test_prepare_migration_with_a_lost_answer(vcsim_faults, vsphere, make_vm, tmp_path, method):
    """issue 16 x 18: prepare-migration copies the ISO (CopyDatastoreFile without force: re-sent) and deletes the
    old one; one lost answer must not fail it nor leave two ISOs."""
    local = f"Loc{uuid.uuid4().hex[:6]}"
    create_local_datastore(vsphere, "DC0_C0_H0", local)
    vm = make_vm(host="DC0_C0_H0", datastore=local)
    env = cli_env(vcsim_faults)
    run = cli_in_process(["attach", vm.name, "--vmdata", _vmdata(tmp_path), "--json"], env)
    assert run.status == 0, run.out
    with _LoseFirstAnswerOf(vcsim_faults, rate=0.0, seed=0) as proxy:
        proxy.method = method
        lossy = cli_env(vcsim_faults)
        lossy.pop("GOVC_TLS_CA_CERTS", None)
        lossy["GOVC_URL"] = proxy.url
        run = cli_in_process(["prepare-migration", vm.name, "--host", "DC0_C0_H1", "--json"], lossy)
        lost = proxy.tally().of(method, ANSWER_LOST)
    print(method, lost, run.status, run.out[-400:])
    assert lost == 1 or method == "RelocateVM_Task"
    assert run.status == 0, (run.out, run.err)
    isos = [c.backing.fileName for c in cdroms(vm) if "ConfigDrive/" in (getattr(c.backing, "fileName", "") or "")]
    assert len(isos) == 1 and not isos[0].startswith(f"[{local}]"), isos
