"""What one read of a VM says about its config drive: the facts, the extraConfig record, our CD-ROM and its ISO,
which files are ours to delete, and every folder and ISO name the operations use."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ..record import DriveRecord
from ..vsphere_values import DRIVE_ROOT, Cdrom, DatastoreInfo, DatastorePath, VmFacts, safe_path_component
from .devices import find_config_drive
from .storage import stable, stable_devices, stable_record

FIRST_ISO_NAME = "configdrive.iso"


# Every name attach_name/content_name/FIRST_ISO_NAME give: what audit --fix may take for a file of this tool's.
_DRIVE_NAME = re.compile(r"^configdrive(?:-[0-9a-f]{12}(?:-[0-9a-f]{6})?)?\.iso$")


def is_drive_name(name: str) -> bool:
    """A file name this tool writes (``configdrive.iso``, ``configdrive-<digest12>[-<version6>].iso``)."""
    return bool(_DRIVE_NAME.match(name))


def drive_folder(datastore: DatastoreInfo | str, facts: VmFacts) -> DatastorePath:
    """``[ds] ConfigDrive/<vm name made safe>``, by its stable path where ConfigDrive/ is a namespace."""
    name = datastore if isinstance(datastore, str) else datastore.name
    known = dict(facts.datastores) if isinstance(datastore, str) else {**facts.datastores, name: datastore}
    return stable(DatastorePath(name, f"{DRIVE_ROOT}/{safe_path_component(facts.name, facts.id)}"), known)


def attach_name(digest: str, change_version: str | None) -> str:
    """The ISO name of an attach into an existing folder: the content, and the VM version it was planned on. A
    re-run after a crash (nothing changed the VM) writes the same name again; any other run writes another."""
    version = hashlib.sha256((change_version or "").encode()).hexdigest()[:6]
    return f"configdrive-{digest[:12]}-{version}.iso"


def content_name(digest: str) -> str:
    """The ISO name of an update or a move: the content alone (reproducible bytes, so a re-run after a crash
    writes the very same file again)."""
    return f"configdrive-{digest[:12]}.iso"


@dataclass(frozen=True)
class DriveState:
    facts: VmFacts
    record: DriveRecord
    cdrom: Cdrom | None

    @classmethod
    def of(cls, facts: VmFacts) -> DriveState:
        """Every path (the devices', the record's) in its stable form, so that comparing them is comparing files."""
        record = stable_record(DriveRecord.from_extra_config(dict(facts.extra_config)), facts.datastores)
        devices = stable_devices(facts.devices, facts.datastores)
        return cls(facts, record, find_config_drive(devices, record.iso, record.device_key))

    @property
    def current(self) -> str | None:
        """The ISO our CD-ROM holds now, if any."""
        return self.cdrom.iso if self.cdrom is not None else None

    @property
    def made_for_this_vm(self) -> bool:
        """A clone inherits its parent's extraConfig and devices, but not the right to delete its files."""
        return self.record.owner == self.facts.instance_uuid

    def folder(self, datastore: DatastoreInfo | str) -> DatastorePath:
        return drive_folder(datastore, self.facts)

    def is_ours(self, path: DatastorePath) -> bool:
        """A file this tool may delete: made for this very VM, in a folder of its own: the one its current name
        gives, or the one its record names (the VM may have been renamed since)."""
        if not self.made_for_this_vm:
            return False
        folders = {self.folder(path.datastore).path}
        if self.record.folder:
            folders.add(DatastorePath.parse(self.record.folder).path)
        return stable(path, self.facts.datastores).folder.path in folders

    def own_folder(self) -> DatastorePath | None:
        if not self.record.folder or not self.made_for_this_vm:
            return None
        return DatastorePath.parse(self.record.folder)

    @property
    def connected_as_it_should_be(self) -> bool:
        """Connected at power-on, and now when the VM runs."""
        c = self.cdrom
        return c is not None and c.start_connected and (not self.facts.powered_on or c.connected)
