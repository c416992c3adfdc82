"""``VmAccess`` (drive/effects.py) over a pyVmomi session: what one operation on one VM reads from and changes in
vSphere, each a call into the modules beside this one."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import replace
from functools import partial
from typing import Any

from ..defaults import DEFAULT_TASK_TIMEOUT, MAX_ISO_BYTES
from ..drive.storage import needs_namespace, stable
from ..errors import ConfigDriveError, ValidationError
from ..vsphere_values import DatastoreCluster, DatastoreInfo, DatastorePath, HostInfo, Hosts, VmFacts
from .connection import Session
from .datastore import DatastoreFiles
from .inventory import fetch_vm_facts, find_datastore, find_hosts
from .namespaces import complete, datastore_named, ensure, remember, with_namespaces
from .reconfigure import relocate, send_config_change
from .refusals import creating


class VsphereVm:
    def __init__(
        self,
        session: Session,
        ref: Any,
        *,
        force_eject: bool = False,
        task_timeout: float = DEFAULT_TASK_TIMEOUT,
        prefetched: VmFacts | None = None,
    ) -> None:
        self.session = session
        self.ref = ref
        self.force_eject = force_eject
        self.task_timeout = task_timeout
        self._prefetched = prefetched  # read with other VMs' (batch mode): serves the first read only
        self._facts: VmFacts | None = prefetched  # the last read: its datacenter and datastores serve file calls
        # bound, not a method that forwards: one frame less between an operation and its ReconfigVM
        self.send_config_change = partial(send_config_change, session, force_eject=force_eject, timeout=task_timeout)

    # ---- reads

    def facts(self) -> VmFacts:
        if self._prefetched is not None:
            read, self._prefetched = self._prefetched, None
        else:
            read = fetch_vm_facts(self.session, self.ref)
        self._facts = complete(self.session, read, lambda name: self._lookup(read, name))
        return self._facts

    def download(self, path: DatastorePath) -> bytes:
        return self._files().download(path, MAX_ISO_BYTES)

    def exists(self, path: DatastorePath) -> bool:
        return self._files().exists(path)

    def listing(self, folder: DatastorePath, pattern: str = "*.iso") -> list[str] | None:
        browser = self._browser(folder.datastore)
        return None if browser is None else self._files().list(folder, browser, pattern=pattern)

    def datastore(self, name: str) -> DatastoreInfo | DatastoreCluster:
        facts = self._known()
        found = find_datastore(self.session, facts, name)  # mounted by the VM's host: checked for each VM
        if isinstance(found, DatastoreCluster):
            return found  # drive/placement.py chooses a member
        remember(self.session, facts, found)
        return with_namespaces(self.session, facts.datacenter, found)

    def hosts(self, name: str) -> Hosts:
        return find_hosts(self.session, name)

    # ---- changes

    def make_folder(self, folder: DatastorePath) -> bool:
        """Where the top-level folder must be a namespace (drive/storage.py), it is made or found first; the
        folder itself, inside it, is an ordinary one."""
        facts = self._known()
        ds = facts.datastores.get(folder.datastore) or datastore_named(
            self.session, facts, folder.datastore, lambda n: self._lookup(facts, n)
        )
        top = needs_namespace(folder, ds) if ds is not None else None
        with creating(folder):
            if ds is not None and top is not None:
                made = ensure(self.session, facts.datacenter, ds, top)
                ds = replace(ds, namespaces=(*ds.namespaces, (top, made)))
            return self._files().mkdir(stable(folder, {ds.name: ds}) if ds is not None else folder)

    def upload(self, path: DatastorePath, content: bytes) -> str:
        return self._files().upload(path, content)

    def copy(self, source: DatastorePath, target: DatastorePath) -> None:
        with creating(target):
            self._files().copy(source, target)

    def delete(self, path: DatastorePath) -> bool:
        return self._files().delete(path)

    def start_delete(self, path: DatastorePath) -> Future[bool] | None:
        return self._files().start_delete(path)

    def relocate(self, facts: VmFacts, host: HostInfo) -> None:
        relocate(self.session, facts, host, timeout=self.task_timeout)

    # ----

    def _lookup(self, facts: VmFacts, name: str) -> DatastoreInfo | None:
        """A datastore the VM's own list does not name (an ISO's, on vcsim); None when there is none to use."""
        try:
            found = find_datastore(self.session, facts, name)
        except (ValidationError, ConfigDriveError):
            return None
        return found if isinstance(found, DatastoreInfo) else None  # a datastore cluster holds no file

    def _known(self) -> VmFacts:
        return self._facts if self._facts is not None else self.facts()

    def _files(self) -> DatastoreFiles:
        facts = self._known()
        return DatastoreFiles(self.session, facts.datacenter, facts.datacenter_path, self.task_timeout)

    def _browser(self, datastore: str) -> Any:
        facts = self._known()
        if datastore in facts.datastores:
            return facts.datastores[datastore].browser
        try:
            return getattr(self.datastore(datastore), "browser", None)  # a datastore cluster has none
        except (ValidationError, ConfigDriveError):
            return None
