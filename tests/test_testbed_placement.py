"""The harness's placement switches (tests/vcsim/placement.go) driven through pyVmomi and HTTP, without the tool:
each answers as docs/testing.md "Hosts, licences, privileges and datastore kinds" says, and only what it names."""

from __future__ import annotations

import tempfile
import uuid

import pytest
from pyVmomi import vim
from vsphere_harness import (
    create_local_datastore,
    download,
    find_datacenter,
    find_datastore,
    reconfigure,
    upload,
    wait_for_task,
)

pytestmark = pytest.mark.live


def mkdir(si: vim.ServiceInstance, path: str) -> None:
    si.content.fileManager.MakeDirectory(name=path, datacenter=find_datacenter(si), createParentDirectories=True)


def test_restricted_version_refuses_write_calls_only(vcsim_faults, vsphere, fresh_vm):
    vcsim_faults.set_faults(restricted_version={"enabled": True, "calls": []})
    with pytest.raises(vim.fault.RestrictedVersion) as refused:
        mkdir(vsphere, f"[LocalDS_0] rv-{uuid.uuid4().hex[:6]}")
    assert refused.value.msg == "Current license or ESXi version prohibits execution of the requested operation."
    assert fresh_vm.name  # reads still answer
    put = upload(vcsim_faults, vsphere, "LocalDS_0", "rv.iso", b"x")
    assert put.status_code == 403 and "RestrictedVersion" in put.text
    with pytest.raises(vim.fault.RestrictedVersion):
        reconfigure(vsphere, fresh_vm, vim.vm.ConfigSpec(annotation="x"))
    vcsim_faults.set_faults(restricted_version={"calls": ["ReconfigVM_Task"]})
    mkdir(vsphere, f"[LocalDS_0] rv-{uuid.uuid4().hex[:6]}")  # only the reconfigure is refused now
    with pytest.raises(vim.fault.RestrictedVersion):
        reconfigure(vsphere, fresh_vm, vim.vm.ConfigSpec(annotation="x"))
    assert vcsim_faults.counters()["faults"]["restricted_version"] == 4
    with pytest.raises(ValueError, match=r"restricted_version\.calls"):
        vcsim_faults.set_faults(restricted_version={"calls": ["PowerOnVM_Task"]})


@pytest.mark.parametrize("status", [401, 403])
def test_folder_forbidden_answers_every_folder_request(vcsim_faults, vsphere, status):
    assert upload(vcsim_faults, vsphere, "LocalDS_0", "ff.txt", b"x").status_code in (200, 201)
    vcsim_faults.set_faults(folder_forbidden={"status": status})
    assert download(vcsim_faults, vsphere, "LocalDS_0", "ff.txt").status_code == status
    assert upload(vcsim_faults, vsphere, "LocalDS_0", "ff.txt", b"y").status_code == status
    with pytest.raises(ValueError, match=r"folder_forbidden\.status"):
        vcsim_faults.set_faults(folder_forbidden={"status": 500})


def test_a_read_only_datastore_refuses_writes_and_says_so_in_its_properties(vcsim_faults, vsphere):
    name = f"TbRO{uuid.uuid4().hex[:6]}"
    create_local_datastore(vsphere, "DC0_H0", name)
    vcsim_faults.set_datastore(name, access_mode="readOnly", maintenance_mode="inMaintenance", free_space=7 * 2**30)
    ds = find_datastore(vsphere, name)
    assert {m.mountInfo.accessMode for m in ds.host} == {"readOnly"}
    assert (ds.summary.maintenanceMode, ds.summary.freeSpace) == ("inMaintenance", 7 * 2**30)
    with pytest.raises(vim.fault.CannotCreateFile, match="Read-only file system"):
        mkdir(vsphere, f"[{name}] x")
    assert upload(vcsim_faults, vsphere, name, "x.iso", b"x").status_code == 403
    vcsim_faults.set_datastore(name, access_mode="readWrite", maintenance_mode="normal")  # the session's harness
    mkdir(vsphere, f"[{name}] x")


def test_root_squash_refuses_creation_only(vcsim_faults, vsphere):
    name = f"TbRS{uuid.uuid4().hex[:6]}"
    create_local_datastore(vsphere, "DC0_H0", name)
    mkdir(vsphere, f"[{name}] before")
    vcsim_faults.set_faults(root_squash=[name])
    assert {m.mountInfo.accessMode for m in find_datastore(vsphere, name).host} == {"readWrite"}  # looks healthy
    with pytest.raises(vim.fault.CannotCreateFile, match="Permission denied"):
        mkdir(vsphere, f"[{name}] after")
    fm = vsphere.content.fileManager
    wait_for_task(vsphere, fm.DeleteDatastoreFile_Task(name=f"[{name}] before", datacenter=find_datacenter(vsphere)))


def test_a_datastore_in_a_storage_pod_is_found_by_folder(vcsim_faults, vsphere):
    name = f"TbPod{uuid.uuid4().hex[:6]}"
    store = create_local_datastore(vsphere, "DC0_H0", name, tempfile.mkdtemp())
    pod = find_datacenter(vsphere).datastoreFolder.CreateStoragePod(name=f"P{name}")
    wait_for_task(vsphere, pod.MoveIntoFolder_Task([store]))
    assert upload(vcsim_faults, vsphere, name, "in-pod.txt", b"pod").status_code in (200, 201)
    assert download(vcsim_faults, vsphere, name, "in-pod.txt").content == b"pod"
