"""drive/storage.py: a datastore's kind decided by its capability, and paths compared in their stable form."""

from __future__ import annotations

from esxi_configdrive.drive.storage import (
    drive_root,
    namespace_id,
    needs_namespace,
    same_file,
    stable,
    stable_devices,
    stable_record,
    uses_namespaces,
)
from esxi_configdrive.record import DriveRecord
from esxi_configdrive.vsphere_values import Cdrom, DatastoreInfo, DatastorePath, DeviceList

UUID = "52c4f1a0-6f8e-4a3b-9d2e-0a1b2c3d4e5f"
VSAN = DatastoreInfo("vsanDatastore", top_level_create=False, namespaces=(("ConfigDrive", UUID),))
NEW_VSAN = DatastoreInfo("vsan2", top_level_create=False)
VMFS = DatastoreInfo("LocalDS_0")
STORES = {d.name: d for d in (VSAN, NEW_VSAN, VMFS)}


def test_the_kind_is_the_capability_not_the_name():
    assert uses_namespaces(VSAN) and uses_namespaces(DatastoreInfo("LocalDS_0", top_level_create=False))
    assert not uses_namespaces(DatastoreInfo("vsanDatastore"))


def test_paths_are_compared_by_their_stable_form_both_ways():
    by_name, by_uuid = "[vsanDatastore] ConfigDrive/web/a.iso", f"[vsanDatastore] {UUID}/web/a.iso"
    assert str(stable(DatastorePath.parse(by_name), STORES)) == by_uuid
    assert same_file(by_name, by_uuid, STORES) and same_file(by_uuid, by_name, STORES)
    assert not same_file(by_name, f"[vsanDatastore] {UUID}/web/b.iso", STORES)
    assert not same_file("[LocalDS_0] ConfigDrive/web/a.iso", by_name, STORES)  # another datastore
    assert same_file("[LocalDS_0] ConfigDrive/web/a.iso", "[LocalDS_0] ConfigDrive/web/a.iso", STORES)
    assert stable(DatastorePath.parse("[vsanDatastore] ConfigDriveX/a.iso"), STORES).path == "ConfigDriveX/a.iso"


def test_devices_and_records_are_put_in_stable_form():
    devices = DeviceList(cdroms=(Cdrom(1, 200, 0, "[vsanDatastore] ConfigDrive/web/a.iso", True, True),
                                 Cdrom(2, 200, 1, None, False, False)))  # fmt: skip
    assert [c.iso for c in stable_devices(devices, STORES).cdroms] == [f"[vsanDatastore] {UUID}/web/a.iso", None]
    record = DriveRecord(iso="[vsanDatastore] ConfigDrive/web/a.iso", folder="[vsanDatastore] ConfigDrive/web")
    out = stable_record(record, STORES)
    assert (out.iso, out.folder, out.previous) == (
        f"[vsanDatastore] {UUID}/web/a.iso",
        f"[vsanDatastore] {UUID}/web",
        "",
    )
    assert stable_record(record, {"LocalDS_0": VMFS}) is record  # no namespace anywhere: untouched


def test_which_top_level_folder_must_be_made_as_a_namespace():
    assert needs_namespace(DatastorePath("vsan2", "ConfigDrive/web"), NEW_VSAN) == "ConfigDrive"
    assert needs_namespace(DatastorePath("vsanDatastore", "ConfigDrive/web"), VSAN) is None  # known
    assert needs_namespace(DatastorePath("vsan2", f"{UUID}/web"), NEW_VSAN) is None  # a stable path already
    assert needs_namespace(DatastorePath("LocalDS_0", "ConfigDrive/web"), VMFS) is None


def test_the_root_searched_and_the_name_in_an_answer():
    assert drive_root(VSAN) == DatastorePath("vsanDatastore", UUID)
    assert drive_root(NEW_VSAN) == DatastorePath("vsan2", "ConfigDrive")  # not made yet
    assert namespace_id(f"ds:///vmfs/volumes/vsan:52e0/{UUID}") == UUID == namespace_id(f"/tmp/ds/{UUID}/")
