"""The harness's namespace datastore and locked files (tests/vcsim/namespace.go), driven through pyVmomi: each
behaviour docs/testing.md's storage table promises, and stock vcsim beside it (live: needs the harness)."""

from __future__ import annotations

import itertools
import os

import pytest
from pyVmomi import vim, vmodl
from vsphere_harness import (
    TaskFailed,
    create_local_datastore,
    find_datacenter,
    find_datastore,
    get_property,
    iso_backing,
    make_directory,
    reconfigure,
    upload,
    wait_for_task,
)

pytestmark = pytest.mark.live
_names = itertools.count()


@pytest.fixture
def vsan(vcsim_faults, vsphere) -> str:
    name = f"nsbed{os.getpid()}-{next(_names)}"
    create_local_datastore(vsphere, "DC0_H0", name)
    vcsim_faults.set_faults(namespace={"datastores": [name]})
    return name


def manager(si):
    return si.content.datastoreNamespaceManager


def url(si, datastore: str) -> str:
    return find_datastore(si, datastore).summary.url.rstrip("/")


def root_listing(si, datastore: str) -> list[tuple[str, str]]:
    spec = vim.host.DatastoreBrowser.SearchSpec(matchPattern=["*"])
    result = wait_for_task(si, find_datastore(si, datastore).browser.SearchDatastore_Task(f"[{datastore}]", spec))
    return sorted((f.path, f.friendlyName or "") for f in result.file or [])


def point_cdrom(si, vm, path: str) -> int:
    """The VM's first CD-ROM given the ISO ``path``; its key."""
    cdrom = next(c for c in vm.config.hardware.device if isinstance(c, vim.vm.device.VirtualCdrom))
    cdrom.backing = iso_backing(path)
    edit = vim.vm.device.VirtualDeviceSpec(operation="edit", device=cdrom)
    reconfigure(si, vm, vim.vm.ConfigSpec(deviceChange=[edit]))
    return cdrom.key


def test_namespace_datastore_capability_create_convert_list_delete(vcsim_faults, vsphere, vsan):
    ds = find_datastore(vsphere, vsan)
    assert get_property(vsphere, ds, "capability").topLevelDirectoryCreateSupported is False
    assert get_property(vsphere, find_datastore(vsphere, "LocalDS_0"), "capability").topLevelDirectoryCreateSupported

    stable = manager(vsphere).CreateDirectory(datastore=ds, displayName="ConfigDrive")
    uuid = stable.rsplit("/", 1)[1]
    assert stable == f"{url(vsphere, vsan)}/{uuid}" and len(uuid) == 36
    with pytest.raises(vim.fault.FileAlreadyExists) as exists:  # no UUID in it
        manager(vsphere).CreateDirectory(datastore=ds, displayName="ConfigDrive")
    assert uuid not in str(exists.value)
    dc = find_datacenter(vsphere)
    assert manager(vsphere).ConvertNamespacePathToUuidPath(dc, f"{url(vsphere, vsan)}/ConfigDrive") == stable
    with pytest.raises(vim.fault.FileNotFound):
        manager(vsphere).ConvertNamespacePathToUuidPath(dc, f"{url(vsphere, vsan)}/Nothing")
    assert root_listing(vsphere, vsan) == [(uuid, "ConfigDrive")]  # by UUID, the name in friendlyName

    make_directory(vsphere, f"[{vsan}] ConfigDrive/inside")  # sub-folders are ordinary
    with pytest.raises(vim.fault.CannotDeleteFile):  # not empty
        manager(vsphere).DeleteDirectory(dc, f"[{vsan}] {uuid}")
    with pytest.raises(vim.fault.InvalidDatastorePath):  # the friendly name will not do
        manager(vsphere).DeleteDirectory(dc, f"[{vsan}] ConfigDrive")
    fm = vsphere.content.fileManager
    with pytest.raises(TaskFailed):  # a top-level namespace is not a file
        wait_for_task(vsphere, fm.DeleteDatastoreFile_Task(f"[{vsan}] {uuid}", dc))
    wait_for_task(vsphere, fm.DeleteDatastoreFile_Task(f"[{vsan}] {uuid}/inside", dc))
    manager(vsphere).DeleteDirectory(dc, f"[{vsan}] {uuid}")
    assert root_listing(vsphere, vsan) == []


def test_top_level_folders_and_files_are_refused(vcsim_faults, vsphere, vsan):
    dc = find_datacenter(vsphere)
    for name in (f"[{vsan}] ConfigDrive", f"[{vsan}] ConfigDrive/web-1"):
        with pytest.raises(vim.fault.CannotCreateFile):
            vsphere.content.fileManager.MakeDirectory(name=name, datacenter=dc, createParentDirectories=True)
    assert upload(vcsim_faults, vsphere, vsan, "root.iso", b"x").status_code == 403
    assert upload(vcsim_faults, vsphere, vsan, "ConfigDrive/a.iso", b"x").status_code == 404
    assert vcsim_faults.counters()["faults"]["namespace_refused"] == 4


def test_a_concurrent_creator_wins_the_race(vcsim_faults, vsphere, vsan):
    vcsim_faults.set_faults(namespace={"datastores": [vsan], "concurrent_create": 1})
    with pytest.raises(vmodl.fault.SystemError) as lost:
        manager(vsphere).CreateDirectory(datastore=find_datastore(vsphere, vsan), displayName="ConfigDrive")
    assert "Invalid fault" in str(lost.value)
    assert [name for _, name in root_listing(vsphere, vsan)] == ["ConfigDrive"]  # the other client made it


@pytest.mark.parametrize("backings", ["keep", "uuid"])
def test_iso_backings_as_given_or_by_uuid_and_listings_either_way(vcsim_faults, vsphere, vsan, make_vm, backings):
    uuid = manager(vsphere).CreateDirectory(datastore=find_datastore(vsphere, vsan), displayName="ConfigDrive")
    uuid = uuid.rsplit("/", 1)[1]
    make_directory(vsphere, f"[{vsan}] ConfigDrive/vm")
    assert upload(vcsim_faults, vsphere, vsan, "ConfigDrive/vm/x.iso", b"iso").status_code in (200, 201)
    vcsim_faults.set_faults(namespace={"datastores": [vsan], "backings": backings})
    vm = make_vm()
    key = point_cdrom(vsphere, vm, f"[{vsan}] ConfigDrive/vm/x.iso")
    held = next(c.backing.fileName for c in vm.config.hardware.device if c.key == key)
    assert held == (f"[{vsan}] ConfigDrive/vm/x.iso" if backings == "keep" else f"[{vsan}] {uuid}/vm/x.iso")

    browser = find_datastore(vsphere, vsan).browser
    spec = vim.host.DatastoreBrowser.SearchSpec(matchPattern=["*.iso"])
    for listing, folder in (("", "ConfigDrive"), ("uuid", uuid), ("name", "ConfigDrive")):
        vcsim_faults.set_faults(namespace={"datastores": [vsan], "listing": listing})
        for asked in ("ConfigDrive", uuid):
            result = wait_for_task(vsphere, browser.SearchDatastoreSubFolders_Task(f"[{vsan}] {asked}", spec))
            paths = {r.folderPath.rstrip("/") for r in result if r.file}
            assert paths == {f"[{vsan}] {(folder if listing else asked)}/vm"}, (listing, asked, paths)


def test_a_powered_on_vms_iso_is_locked_until_switched_off(vcsim_faults, vsphere, make_vm):
    path = "[LocalDS_0] locked-test/x.iso"
    make_directory(vsphere, "[LocalDS_0] locked-test")
    upload(vcsim_faults, vsphere, "LocalDS_0", "locked-test/x.iso", b"iso")
    vm = make_vm(powered_on=True)
    point_cdrom(vsphere, vm, path)
    fm, dc = vsphere.content.fileManager, find_datacenter(vsphere)
    vcsim_faults.set_faults(file_locks={"powered_on_isos": True})
    for to_delete in (path, "[LocalDS_0] locked-test"):  # the file, and the folder holding it
        with pytest.raises(TaskFailed) as failed:
            wait_for_task(vsphere, fm.DeleteDatastoreFile_Task(to_delete, dc))
        assert isinstance(failed.value.fault, vim.fault.FileLocked) and "locked or in use" in failed.value.message
    assert vcsim_faults.counters()["faults"]["file_locked"] == 2
    vcsim_faults.set_faults(file_locks={"powered_on_isos": False})  # as if it were released
    wait_for_task(vsphere, fm.DeleteDatastoreFile_Task("[LocalDS_0] locked-test", dc))


def test_stock_vcsim_has_no_namespace_manager_methods_and_no_locks(stock_si, stock_make_vm):
    """What the harness adds: stock vcsim 0.24 answers MethodNotFound, lists no friendlyName, deletes in use."""
    ds = find_datastore(stock_si, "LocalDS_0")
    assert get_property(stock_si, ds, "capability").topLevelDirectoryCreateSupported is True
    with pytest.raises(vmodl.fault.MethodNotFound):
        manager(stock_si).CreateDirectory(datastore=ds, displayName="ConfigDrive")
    make_directory(stock_si, "[LocalDS_0] stock-top")  # a top-level folder is an ordinary one
    fm = stock_si.content.fileManager
    wait_for_task(stock_si, fm.DeleteDatastoreFile_Task("[LocalDS_0] stock-top", find_datacenter(stock_si)))
