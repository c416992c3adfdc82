"""The vSphere side of drive/storage.py: a namespace datastore's ``ConfigDrive`` resolved to its stable path
(``ConvertNamespacePathToUuidPath``) or made (``CreateDirectory``), once per session, and a VM's facts completed
with what their paths need to be compared (the datastores the drive's paths name, with their namespaces).

Datastores whose top-level folders are ordinary (VMFS, NFS) cost no request here.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from pyVmomi import vim, vmodl

from ..drive.storage import (
    may_be_ours,
    namespace_id,
    stable_devices,
    uses_namespaces,
)
from ..errors import ValidationError
from ..record import DriveRecord
from ..vsphere_values import DRIVE_ROOT, DatastoreInfo, DatastorePath, VmFacts
from .changes import send_change
from .connection import Session, present

log = logging.getLogger(__name__)

# What ConvertNamespacePathToUuidPath answers for a name that is no namespace (yet).
_MISSING = (vim.fault.FileNotFound, vim.fault.InvalidDatastore, vmodl.fault.InvalidArgument)
# What CreateDirectory answers when another client made the folder first: FileAlreadyExists, or on vSphere 8.0.1
# "A general system error occurred: Invalid fault" (terraform-provider-vsphere #2309). Then it must be there.
_LOST_RACE = (vim.fault.FileAlreadyExists, vmodl.fault.SystemError)


@dataclass
class _Known:
    lock: threading.Lock = field(default_factory=threading.Lock)
    stable: dict[tuple[str, str], str] = field(default_factory=dict)  # (datastore url, friendly) -> stable name
    datastores: dict[tuple[str, str], DatastoreInfo] = field(default_factory=dict)  # (datacenter path, name)


_known: weakref.WeakKeyDictionary[Session, _Known] = weakref.WeakKeyDictionary()
_known_lock = threading.Lock()


def _of(session: Session) -> _Known:
    with _known_lock:
        return _known.setdefault(session, _Known())


def resolve(session: Session, datacenter: Any, ds: DatastoreInfo, name: str = DRIVE_ROOT) -> str | None:
    """The stable name of the top-level namespace ``name``; None when there is none."""
    known = _of(session)
    key = (ds.url, name)
    if key in known.stable:
        return known.stable[key]
    manager = present(session.content.datastoreNamespaceManager, "DatastoreNamespaceManager")
    url = f"{ds.url.rstrip('/')}/{name}"
    try:
        answer = session.call(
            lambda: manager.ConvertNamespacePathToUuidPath(datacenter=datacenter, namespaceUrl=url),
            "ConvertNamespacePathToUuidPath",
        )
    except _MISSING:
        return None
    known.stable[key] = namespace_id(answer)
    return known.stable[key]


def ensure(session: Session, datacenter: Any, ds: DatastoreInfo, name: str) -> str:
    """The stable name of the top-level namespace ``name``, made when missing. A concurrent creator may win:
    then its folder is the one (verified by resolving it)."""
    known = _of(session)
    with known.lock:  # the workers of a batch: one makes it, the others find it
        found = resolve(session, datacenter, ds, name)
        if found is not None:
            return found
        manager = present(session.content.datastoreNamespaceManager, "DatastoreNamespaceManager")
        try:
            # a copy sent again after a lost answer is refused (FileAlreadyExists): resolved below, as a race lost
            # policy and size are optional in the API (vSphere's reference), required in pyVmomi 9's stubs
            create = lambda: manager.CreateDirectory(datastore=ds.ref, displayName=name)  # type: ignore[call-arg]  # noqa: E731
            answer = send_change(session, create, "CreateDirectory", duplicate_refused=True)
        except _LOST_RACE:
            found = resolve(session, datacenter, ds, name)
            if found is None:
                raise
            log.info("%s/ on %s was made by another client meanwhile", name, ds.name)
            return found
        known.stable[(ds.url, name)] = namespace_id(answer)
        return known.stable[(ds.url, name)]


def with_namespaces(session: Session, datacenter: Any, ds: DatastoreInfo) -> DatastoreInfo:
    """``ds`` knowing the stable name of its ``ConfigDrive`` when that is a namespace (one request per session)."""
    if not uses_namespaces(ds) or ds.namespaces:
        return ds
    found = resolve(session, datacenter, ds)
    return ds if found is None else replace(ds, namespaces=((DRIVE_ROOT, found),))


def complete(session: Session, facts: VmFacts, lookup: Callable[[str], DatastoreInfo | None] | None = None) -> VmFacts:
    """``facts`` with the datastores the drive's paths name (vm.datastore may omit an ISO's; ``lookup`` finds
    them, once per session) and their namespaces, and the devices' paths stable."""
    missing = sorted({p.datastore for p in _drive_paths(facts) if may_be_ours(p)} - set(facts.datastores))
    extra: dict[str, DatastoreInfo] = {}
    for name in missing:
        info = datastore_named(session, facts, name, lookup)
        if info is not None:
            extra[name] = info
    stores = {**facts.datastores, **extra}
    if not any(uses_namespaces(d) for d in stores.values()) and not extra:
        return facts
    stores = {n: with_namespaces(session, facts.datacenter, d) for n, d in stores.items()}
    return replace(facts, datastores=stores, devices=stable_devices(facts.devices, stores))


def datastore_named(
    session: Session, facts: VmFacts, name: str, lookup: Callable[[str], DatastoreInfo | None] | None
) -> DatastoreInfo | None:
    """A datastore of the VM's datacenter by name, looked up once per session (to name paths, not to judge
    whether a host mounts it: that is find_datastore's, each time)."""
    key = (facts.datacenter_path, name)
    if key not in _of(session).datastores and lookup is not None:
        info = lookup(name)
        if info is not None:
            remember(session, facts, info)
    return _of(session).datastores.get(key)


def remember(session: Session, facts: VmFacts, info: DatastoreInfo) -> None:
    """Keep a datastore found by name for the session, so that later look-ups of its namespaces need no read."""
    _of(session).datastores[(facts.datacenter_path, info.name)] = info


def _drive_paths(facts: VmFacts) -> Iterable[DatastorePath]:
    record = DriveRecord.from_extra_config(dict(facts.extra_config))
    for text in [c.iso for c in facts.devices.cdroms] + [record.iso, record.previous, record.folder]:
        if text:
            try:
                yield DatastorePath.parse(text)
            except ValidationError:
                continue
