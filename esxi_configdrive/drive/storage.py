"""How files and folders are made, named, compared and deleted on a datastore: the one place that knows a
datastore's kind. Plain decisions on ``DatastoreInfo`` values; vsphere/namespaces.py makes the calls.

A datastore whose ``capability.topLevelDirectoryCreateSupported`` is false (vSAN, vVol) keeps top-level folders
as namespace objects (../shared/REFERENCE.md §9): ``ConfigDrive`` is made with
``DatastoreNamespaceManager.CreateDirectory``, which gives it a stable path (a UUID); its friendly name is a
symlink that "may not be relied upon", devices may hold either form, and the browser lists it by UUID. So:

- every path is compared in its stable form: the top-level folder's friendly name replaced by its UUID where
  the datastore's ``namespaces`` know it (``stable``); both sides, never plain strings;
- folders inside ``ConfigDrive`` are ordinary folders on every kind (``MakeDirectory``), and a folder is deleted
  only when a listing shows it empty (its files first: vSAN may refuse a non-empty one);
- ``ConfigDrive`` itself is never deleted (every VM's drive folder is in it, and a namespace costs one vSAN
  object only); where one must go, it is ``DeleteDirectory`` with the stable path, not a file delete.

The operations ask here and never look at a datastore's type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace

from ..errors import ValidationError
from ..record import DriveRecord
from ..vsphere_values import DRIVE_ROOT, DatastoreInfo, DatastorePath, DeviceList

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)


def uses_namespaces(ds: DatastoreInfo) -> bool:
    """Top-level folders are namespace objects: decided by the capability, never by the type or the name."""
    return not ds.top_level_create


def top_level(path: DatastorePath) -> str:
    """The first folder of ``path`` below the datastore: the one that may be a namespace."""
    return path.path.split("/", 1)[0]


def needs_namespace(path: DatastorePath, ds: DatastoreInfo) -> str | None:
    """The top-level folder ``path`` is in, when on this datastore it must be made as a namespace (and is not
    known yet); None when ordinary folders will do."""
    top = top_level(path)
    if not uses_namespaces(ds) or not top or top in dict(ds.namespaces).values() or _UUID.match(top):
        return None
    return top if top not in dict(ds.namespaces) else None


def stable(path: DatastorePath, datastores: Mapping[str, DatastoreInfo]) -> DatastorePath:
    """``path`` with its top-level folder by the stable name where that is known; unchanged elsewhere."""
    ds = datastores.get(path.datastore)
    if ds is None or not ds.namespaces:
        return path
    top, sep, rest = path.path.partition("/")
    uuid = dict(ds.namespaces).get(top)
    return path if uuid is None else DatastorePath(path.datastore, f"{uuid}{sep}{rest}")


def stable_text(text: str, datastores: Mapping[str, DatastoreInfo]) -> str:
    """A path as recorded or as a device holds it, stable; text that is no datastore path stays as it is."""
    if not text:
        return text
    try:
        return str(stable(DatastorePath.parse(text), datastores))
    except ValidationError:
        return text


def same_file(a: str, b: str, datastores: Mapping[str, DatastoreInfo]) -> bool:
    """Whether two datastore paths (as recorded or as a device holds them) name one file, each in its stable form."""
    return stable_text(a, datastores) == stable_text(b, datastores)


def stable_devices(devices: DeviceList, datastores: Mapping[str, DatastoreInfo]) -> DeviceList:
    """The CD-ROMs' ISO paths in their stable form: compared with a record or a listing, like with like."""
    if not any(ds.namespaces for ds in datastores.values()):
        return devices
    cdroms = tuple(replace(c, iso=stable_text(c.iso, datastores) if c.iso else c.iso) for c in devices.cdroms)
    return replace(devices, cdroms=cdroms)


def stable_record(record: DriveRecord, datastores: Mapping[str, DatastoreInfo]) -> DriveRecord:
    """The record's paths (iso, previous, folder) in their stable form."""
    if not any(ds.namespaces for ds in datastores.values()):
        return record
    return record.replace(
        iso=stable_text(record.iso, datastores),
        previous=stable_text(record.previous, datastores),
        folder=stable_text(record.folder, datastores),
    )


def drive_root(ds: DatastoreInfo) -> DatastorePath:
    """``[ds] ConfigDrive``, by its stable path where it is a namespace that exists: what the audit searches."""
    return stable(DatastorePath(ds.name, DRIVE_ROOT), {ds.name: ds})


def may_be_ours(path: DatastorePath) -> bool:
    """A path in ``ConfigDrive/`` by either name: the ones worth resolving."""
    top = top_level(path)
    return top == DRIVE_ROOT or bool(_UUID.match(top))


def namespace_id(answer: str) -> str:
    """The stable name in what ``CreateDirectory``/``ConvertNamespacePathToUuidPath`` return (a URL or a path
    ending in it; vmware/vic takes its base name too)."""
    return answer.rstrip("/").rsplit("/", 1)[-1]
