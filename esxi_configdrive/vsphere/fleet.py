"""The reads of an audit (drive/audit.py's ``FleetAccess``), in a number of calls that does not grow with the
fleet: vCenter's clock (``CurrentTime``); one ``RetrievePropertiesEx`` over the whole inventory (datacenters,
folders, VM names, hosts with their own datastore lists, clusters, datastores), paged by continuation tokens;
the scoped VMs' facts ``PAGE`` at a time (``fetch_many_vm_facts``); and one ``SearchDatastoreSubFolders_Task`` of
``[ds] ConfigDrive`` per datastore, with sizes and modification times.

vcsim 0.24's search differs from vSphere's in ways that are harmless here because the spec says everything
explicitly: it returns no file without a ``matchPattern`` (so ``*`` is given; vSphere: no pattern, every file),
folder paths have no trailing slash (vSphere's may: both are read), and it reports every folder as a
``FolderFileInfo`` in its parent's list (folders are also known from the results' own folder paths). Stock
vcsim repeats inventory children once per host; everything is keyed by managed object id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from pyVmomi import vim, vmodl

from ..defaults import DEFAULT_TASK_TIMEOUT, MAX_ISO_BYTES
from ..drive.storage import stable
from ..errors import NotFound, ValidationError, fault_line
from ..fields import check_inventory_path
from ..vsphere_values import (
    DatastoreInfo,
    DatastorePath,
    DriveFolder,
    DriveListing,
    FileEntry,
    Fleet,
    SearchPlan,
    VmFacts,
)
from .connection import Session
from .datastore import DatastoreFiles
from .inventory import DATASTORE_PROPERTIES, datastore_info, fetch_many_vm_facts, retrieve
from .namespaces import complete, with_namespaces
from .tasks import wait_for_task
from .vm import VsphereVm

PropertySpec = vmodl.query.PropertyCollector.PropertySpec
ObjectSpec = vmodl.query.PropertyCollector.ObjectSpec
FilterSpec = vmodl.query.PropertyCollector.FilterSpec
TraversalSpec = vmodl.query.PropertyCollector.TraversalSpec
SelectionSpec = vmodl.query.PropertyCollector.SelectionSpec

PAGE = 100  # VMs per facts call
Progress = Callable[[int, int, int], None]


class VsphereFleet:
    """The VMs of the datacenters in scope (``datacenter``: one, by name or inventory path; ``folder``: only the
    VMs in that VM folder and below, as ``DC/vm/path`` or relative to the datacenter)."""

    def __init__(
        self,
        session: Session,
        datacenter: str | None = None,
        folder: str | None = None,
        *,
        force_eject: bool = False,
        task_timeout: float = DEFAULT_TASK_TIMEOUT,
        progress: Progress | None = None,
    ) -> None:
        self.session = session
        self.datacenter = check_inventory_path(datacenter, "datacenter") if datacenter is not None else None
        self.folder = check_inventory_path(folder, "folder") if folder is not None else None
        self.force_eject = force_eject
        self.task_timeout = task_timeout
        self.progress = progress
        self._datastores: dict[tuple[str, str], DatastoreInfo] = {}

    # ---- FleetAccess

    def read(self, plan: SearchPlan) -> list[Fleet]:
        now = self.session.call(self.session.service_instance.CurrentTime, "CurrentTime").timestamp()
        inventory = Inventory(retrieve(self.session, _inventory_spec(self.session.content.rootFolder)))
        datacenters = inventory.datacenters(self.datacenter)
        folder = inventory.folder(self.folder, datacenters) if self.folder else None
        return [self._read_datacenter(inventory, dc, folder, now, plan) for dc in datacenters]

    def vm(self, facts: VmFacts) -> VsphereVm:
        return VsphereVm(self.session, facts.ref, force_eject=self.force_eject, task_timeout=self.task_timeout)

    def files(self, fleet: Fleet) -> DatacenterFiles:
        stores = {name: info for (dc, name), info in self._datastores.items() if dc == fleet.datacenter}
        return DatacenterFiles(DatastoreFiles(self.session, fleet.ref, fleet.datacenter, self.task_timeout), stores)

    # ----

    def _read_datacenter(
        self, inventory: Inventory, dc: Any, folder: str | None, now: float, plan: SearchPlan
    ) -> Fleet:
        dc_path = inventory.path(dc._moId)
        everyone = inventory.vms_of(dc._moId)
        scoped = [vm for vm in everyone if folder is None or _under(inventory.folder_of(vm._moId), folder)]
        stores = [with_namespaces(self.session, dc, s) for s in inventory.datastores_of(dc._moId)]
        by_name = {s.name: s for s in stores}
        facts = [complete(self.session, f, by_name.get) for f in self._facts(scoped)]
        self._datastores.update({(dc_path, info.name): info for info in stores})
        hosts = inventory.hosts_of(dc._moId)
        return Fleet(
            datacenter=dc_path,
            vms=tuple(facts),
            vm_names={vm._moId: inventory.name(vm._moId) for vm in everyone},
            complete=folder is None and len(facts) == len(everyone),
            listings={info.name: self._search(info, root) for info, root in plan(facts, stores, folder is None)},
            sees={h: frozenset(s.name for s in inventory.host_datastores(h)) for h in hosts},
            clusters=inventory.clusters_of(dc._moId),
            host_names={h: inventory.name(h) for h in hosts},
            now=now,
            ref=dc,
        )

    def _facts(self, vms: list[Any]) -> list[VmFacts]:
        out: list[VmFacts] = []
        for start in range(0, len(vms), PAGE):
            chunk = vms[start : start + PAGE]
            read = fetch_many_vm_facts(self.session, chunk, page=len(chunk))
            out += [read[vm._moId] for vm in chunk if vm._moId in read]
            if self.progress is not None:
                self.progress(len(out), 0, 0)
        return out

    def _search(self, ds: DatastoreInfo, root: DatastorePath) -> DriveListing:
        """One search of ``root`` (the plan's: ``[ds] ConfigDrive``) and every folder below it."""
        if not ds.accessible or ds.browser is None:
            return DriveListing(ds.name, problem=f"datastore {ds.name} is not accessible: its drives are not checked")
        spec = vim.host.DatastoreBrowser.SearchSpec(
            matchPattern=["*"],
            details=vim.host.DatastoreBrowser.FileInfo.Details(fileSize=True, modification=True, fileType=True),
        )
        try:
            task = self.session.call(
                lambda: ds.browser.SearchDatastoreSubFolders_Task(str(root), spec), "SearchDatastoreSubFolders"
            )
            results = wait_for_task(
                self.session, task, what=f"search {root}", want_result=True, timeout=self.task_timeout
            )
        except vim.fault.FileNotFound:
            return DriveListing(ds.name)  # no drive on this datastore yet
        except vmodl.MethodFault as fault:
            return DriveListing(ds.name, problem=f"searching {root} failed ({fault_line(fault)}): not checked")
        return read_listing(ds, root, results or [])


class DatacenterFiles:
    """drive/effects.py's ``FileAccess`` on one datacenter's datastores, for what no single VM owns: --verify's
    downloads and orphans."""

    def __init__(self, files: DatastoreFiles, datastores: Mapping[str, DatastoreInfo]) -> None:
        self._files = files
        self._datastores = datastores

    def download(self, path: DatastorePath) -> bytes:
        return self._files.download(path, MAX_ISO_BYTES)

    def exists(self, path: DatastorePath) -> bool:
        return self._files.exists(path)

    def listing(self, folder: DatastorePath, pattern: str = "*.iso") -> list[str] | None:
        info = self._datastores.get(folder.datastore)
        return None if info is None or info.browser is None else self._files.list(folder, info.browser, pattern)

    def delete(self, path: DatastorePath) -> bool:
        return self._files.delete(path)

    def start_delete(self, path: DatastorePath) -> None:
        return None  # no one confirms later: ``delete`` waits


# ---- the inventory in one call ----------------------------------------------------------------------------------


def _inventory_spec(root: Any) -> vmodl.query.PropertyCollector.FilterSpec:
    def hop(name: str, type_: Any, path: str, *then: str) -> TraversalSpec:
        return TraversalSpec(
            name=name, type=type_, path=path, skip=False, selectSet=[SelectionSpec(name=n) for n in then]
        )

    children = ("folderChildren", "dcVmFolder", "dcHostFolder", "dcDatastores", "computeHosts", "vappVms")
    traversal = [
        hop("folderChildren", vim.Folder, "childEntity", *children),
        hop("dcVmFolder", vim.Datacenter, "vmFolder", "folderChildren"),
        hop("dcHostFolder", vim.Datacenter, "hostFolder", "folderChildren"),
        hop("dcDatastores", vim.Datacenter, "datastore"),
        hop("computeHosts", vim.ComputeResource, "host"),
        hop("vappVms", vim.VirtualApp, "vm"),
    ]
    return FilterSpec(
        objectSet=[ObjectSpec(obj=root, skip=False, selectSet=traversal)],
        propSet=[
            PropertySpec(type=vim.Folder, pathSet=["name", "parent"]),
            PropertySpec(type=vim.Datacenter, pathSet=["name", "parent", "datastore"]),
            PropertySpec(type=vim.VirtualMachine, pathSet=["name", "parent", "parentVApp"]),
            PropertySpec(type=vim.VirtualApp, pathSet=["name", "parentFolder", "parentVApp"]),
            PropertySpec(type=vim.ComputeResource, pathSet=["name", "parent", "host"]),
            PropertySpec(type=vim.HostSystem, pathSet=["name", "parent", "datastore"]),
            PropertySpec(type=vim.Datastore, pathSet=list(DATASTORE_PROPERTIES)),
        ],
    )


class Inventory:
    """The one inventory read, by managed object id, and the walks over it."""

    def __init__(self, rows: Iterable[tuple[Any, dict[str, Any]]]) -> None:
        self.by_id: dict[str, tuple[Any, dict[str, Any]]] = {obj._moId: (obj, props) for obj, props in rows}

    def name(self, moid: str) -> str:
        return self.by_id[moid][1].get("name", moid) if moid in self.by_id else moid

    def up(self, moid: str) -> str | None:
        obj, props = self.by_id[moid]
        if isinstance(obj, vim.VirtualApp):
            parent = props.get("parentFolder") or props.get("parentVApp")
        elif isinstance(obj, vim.VirtualMachine):
            parent = props.get("parent") or props.get("parentVApp")
        else:
            parent = props.get("parent")
        return parent._moId if parent is not None and parent._moId in self.by_id else None

    def path(self, moid: str) -> str:
        """The inventory path, without the root folder: ``DC0/vm/web``, ``Folder1/DC0``."""
        names: list[str] = []
        node: str | None = moid
        while node is not None and self.up(node) is not None:
            names.insert(0, self.name(node))
            node = self.up(node)
        return "/".join(names)

    def datacenter_of(self, moid: str) -> str | None:
        node: str | None = moid
        while node is not None and not isinstance(self.by_id[node][0], vim.Datacenter):
            node = self.up(node)
        return node

    def of_type(self, kind: Any, dc: str | None = None) -> list[Any]:
        return [
            o
            for o, _ in self.by_id.values()
            if isinstance(o, kind) and (dc is None or self.datacenter_of(o._moId) == dc)
        ]

    def datacenters(self, wanted: str | None) -> list[Any]:
        found = self.of_type(vim.Datacenter)
        if wanted is None:
            return sorted(found, key=lambda d: self.path(d._moId))
        matches = [d for d in found if wanted in (self.path(d._moId), self.name(d._moId))]
        if not matches:
            raise NotFound(f"no datacenter named {wanted!r}")
        if len(matches) > 1:
            paths = ", ".join(sorted(self.path(d._moId) for d in matches))
            raise ValidationError(
                "datacenter", f"{len(matches)} datacenters are named {wanted!r} ({paths}): give its path"
            )
        return matches

    def folder(self, wanted: str, datacenters: list[Any]) -> str:
        """The inventory path of a VM folder given as ``DC/vm/path``, or relative to the one datacenter."""
        paths = {self.path(f._moId) for f in self.of_type(vim.Folder)} | {
            self.path(v._moId) for v in self.of_type(vim.VirtualApp)
        }
        candidates = [wanted] + [f"{self.path(dc._moId)}/vm/{wanted}" for dc in datacenters]
        found = [c for c in dict.fromkeys(candidates) if c in paths]
        if not found:
            raise NotFound(f"no VM folder {wanted!r} (give it as DC/vm/FOLDER, or with --datacenter)")
        if len(found) > 1:
            raise ValidationError("folder", f"{wanted!r} is a folder of several datacenters: give --datacenter")
        return found[0]

    def folder_of(self, moid: str) -> str:
        parent = self.up(moid)
        return self.path(parent) if parent is not None else ""

    def vms_of(self, dc: str) -> list[Any]:
        return self.of_type(vim.VirtualMachine, dc)

    def datastores_of(self, dc: str) -> list[DatastoreInfo]:
        refs = self.by_id[dc][1].get("datastore") or []
        return [datastore_info(*self.by_id[d._moId]) for d in refs if d._moId in self.by_id]

    def hosts_of(self, dc: str) -> list[str]:
        return sorted(h._moId for h in self.of_type(vim.HostSystem, dc))

    def host_datastores(self, host: str) -> list[DatastoreInfo]:
        refs = self.by_id[host][1].get("datastore") or []
        return [datastore_info(*self.by_id[d._moId]) for d in refs if d._moId in self.by_id]

    def clusters_of(self, dc: str) -> dict[str, tuple[str, ...]]:
        """host id -> the ids of the hosts of its cluster, for the hosts in clusters."""
        out: dict[str, tuple[str, ...]] = {}
        for cluster in self.of_type(vim.ClusterComputeResource, dc):
            members = tuple(sorted(dict.fromkeys(h._moId for h in self.by_id[cluster._moId][1].get("host") or [])))
            out.update({h: members for h in members})
        return out


# ---- the search's answer ------------------------------------------------------------------------------------------


def read_listing(ds: DatastoreInfo, searched: DatastorePath, results: Iterable[Any]) -> DriveListing:
    """SearchDatastoreSubFolders results -> what ``searched`` (``ConfigDrive/``) and each folder in it hold, by
    stable paths (a namespace datastore may answer with either name)."""
    datastore, top = ds.name, searched.path
    entries: dict[str, list[Any]] = {}
    for result in results:
        folder = stable(DatastorePath.parse((result.folderPath or "").rstrip("/")), {datastore: ds})
        entries[folder.path.rstrip("/")] = list(result.file or [])
    below = [p for p in entries if p.startswith(f"{top}/")]
    root = entries.get(top, [])
    names = {f.path for f in root if _is_folder(f)} | {p.split("/")[1] for p in below}
    modified = {f.path: _epoch(getattr(f, "modification", None)) for f in root}
    folders: dict[str, DriveFolder] = {}
    for name in sorted(names):
        path = f"{top}/{name}"
        inside = entries.get(path, [])
        sub = {f.path for f in inside if _is_folder(f)} | {p.split("/")[2] for p in below if p.startswith(f"{path}/")}
        files = tuple(_entry(f) for f in inside if f.path not in sub and not _is_folder(f))
        folders[path] = DriveFolder(DatastorePath(datastore, path), files, tuple(sorted(sub)), modified.get(name))
    loose = tuple(_entry(f) for f in root if f.path not in names and not _is_folder(f))
    return DriveListing(datastore, folders, loose, root=top)


def _is_folder(info: Any) -> bool:
    return isinstance(info, vim.host.DatastoreBrowser.FolderInfo)


def _entry(info: Any) -> FileEntry:
    size = getattr(info, "fileSize", None)
    return FileEntry(info.path, int(size) if size is not None else None, _epoch(getattr(info, "modification", None)))


def _epoch(when: datetime | None) -> float | None:
    return when.timestamp() if when is not None else None


def _under(folder: str, scope: str) -> bool:
    return folder == scope or folder.startswith(f"{scope}/")
