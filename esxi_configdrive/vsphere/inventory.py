"""Find a VM, datastore or host, and fetch what an operation needs in one PropertyCollector call.

pyVmomi sends one request per attribute access; walking ``vm.config.hardware.device`` then ``vm.runtime`` then
``vm.parent.parent…`` costs a round trip each. Here each lookup is one ``RetrievePropertiesEx`` with traversal
specs that also collect the VM's ancestors (for the datacenter's inventory path) and its datastores. The facts
pages are read from the answer's XML (collector_xml.py: a batch's largest answers, read without a pyVmomi object
per element); the other lookups go through pyVmomi.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import methodcaller
from typing import Any

from pyVmomi import vim, vmodl

from ..errors import ConfigDriveError, NotFound, ValidationError
from ..fields import UNSENDABLE, VM_MOID_RE, VM_UUID_RE, check_datastore_name
from ..vsphere_values import DatastoreCluster, DatastoreInfo, DeviceList, HostInfo, Hosts, VmFacts
from .collector_xml import Reader, retrieve_pages
from .connection import Session, present
from .devices import read_device_elements

PropertySpec = vmodl.query.PropertyCollector.PropertySpec
ObjectSpec = vmodl.query.PropertyCollector.ObjectSpec
FilterSpec = vmodl.query.PropertyCollector.FilterSpec
TraversalSpec = vmodl.query.PropertyCollector.TraversalSpec
SelectionSpec = vmodl.query.PropertyCollector.SelectionSpec


VM_PROPERTIES = (
    "name",
    "parent",
    "datastore",
    "config.instanceUuid",
    "config.uuid",
    "config.guestId",
    "config.changeVersion",
    "config.hardware.device",
    "config.extraConfig",
    "config.files.vmPathName",
    "runtime.powerState",
    "runtime.host",
)
DATASTORE_PROPERTIES = (
    "name",
    "summary.accessible",
    "host",
    "browser",
    "summary.maintenanceMode",
    "summary.freeSpace",
    "summary.url",
    "capability.topLevelDirectoryCreateSupported",  # false: top-level folders are namespaces (drive/storage.py)
)


# ---- the collector ----------------------------------------------------------------------------------------


def retrieve(session: Session, spec: vmodl.query.PropertyCollector.FilterSpec) -> list[tuple[Any, dict[str, Any]]]:
    """RetrievePropertiesEx, following continuation tokens: (object, {property: value}) for each result."""
    options = vmodl.query.PropertyCollector.RetrieveOptions()
    result = session.collect(lambda pc: pc.RetrievePropertiesEx([spec], options))
    out: list[tuple[Any, dict[str, Any]]] = []
    while result is not None:
        for obj in result.objects:
            out.append((obj.obj, {p.name: p.val for p in obj.propSet or []}))
        token = result.token
        if not token:
            break
        result = session.collect(methodcaller("ContinueRetrievePropertiesEx", token), "ContinueRetrievePropertiesEx")
    return out


def _parent_traversal() -> TraversalSpec:
    return TraversalSpec(
        name="toParent", type=vim.ManagedEntity, path="parent", skip=False, selectSet=[SelectionSpec(name="toParent")]
    )


def _inventory_traversal() -> list[TraversalSpec]:
    """rootFolder → folders → datacenters → VM folders → VMs (and vApps)."""
    folder = TraversalSpec(
        name="folderChildren",
        type=vim.Folder,
        path="childEntity",
        skip=False,
        selectSet=[
            SelectionSpec(name="folderChildren"),
            SelectionSpec(name="dcVmFolder"),
            SelectionSpec(name="vappVms"),
        ],
    )
    dc_vm = TraversalSpec(
        name="dcVmFolder", type=vim.Datacenter, path="vmFolder", skip=False,
        selectSet=[SelectionSpec(name="folderChildren")],
    )  # fmt: skip
    vapp = TraversalSpec(name="vappVms", type=vim.VirtualApp, path="vm", skip=False)
    return [folder, dc_vm, vapp]


# ---- finding a VM -----------------------------------------------------------------------------------------


def find_vm(session: Session, ident: str, datacenter: str | None = None) -> vim.VirtualMachine:
    """A VM by managed object id (``vm-42``), instance or BIOS UUID, inventory path (``DC0/vm/web-1``), or name."""
    ident = ident.strip()
    if not ident or UNSENDABLE.search(ident):
        raise ValidationError("vm", "empty, or holds a control character or bytes that are not text")
    if VM_MOID_RE.match(ident):
        return vim.VirtualMachine(ident, session.stub)
    search = present(session.content.searchIndex, "SearchIndex")
    if VM_UUID_RE.match(ident):
        return _find_vm_by_uuid(session, ident)
    if "/" in ident:
        path = ident if not datacenter or ident.startswith(f"{datacenter}/") else f"{datacenter}/vm/{ident}"
        vm = session.call(lambda: search.FindByInventoryPath(path), "FindByInventoryPath")
        if isinstance(vm, vim.VirtualMachine):
            return vm
        raise NotFound(f"no VM at inventory path {path}")
    return _find_vm_by_name(session, ident)


def vm_name_index(session: Session) -> dict[str, list[vim.VirtualMachine]]:
    """Every VM by name, in one call (batch mode resolves a whole file's names with it)."""
    spec = FilterSpec(
        objectSet=[ObjectSpec(obj=session.content.rootFolder, skip=True, selectSet=_inventory_traversal())],
        propSet=[PropertySpec(type=vim.VirtualMachine, pathSet=["name"])],
    )
    index: dict[str, list[vim.VirtualMachine]] = {}
    for obj, props in retrieve(session, spec):
        if obj._moId not in {o._moId for o in index.get(props.get("name", ""), [])}:
            index.setdefault(props.get("name", ""), []).append(obj)
    return index


def _find_vm_by_uuid(session: Session, uuid: str) -> vim.VirtualMachine:
    """By instance UUID, else BIOS UUID, in one collector call. FindByUuid would pick one of several VMs sharing a
    BIOS UUID (a VM copied with "I copied it" keeps it) without saying so; this refuses instead."""
    spec = FilterSpec(
        objectSet=[ObjectSpec(obj=session.content.rootFolder, skip=True, selectSet=_inventory_traversal())],
        propSet=[PropertySpec(type=vim.VirtualMachine, pathSet=["config.instanceUuid", "config.uuid"])],
    )
    wanted = uuid.replace("-", "").lower()
    rows = retrieve(session, spec)
    for prop in ("config.instanceUuid", "config.uuid"):
        vms = {o._moId: o for o, p in rows if (p.get(prop) or "").replace("-", "").lower() == wanted}
        if len(vms) > 1:
            ids = ", ".join(sorted(vms))
            raise ValidationError("vm", f"{len(vms)} VMs have the UUID {uuid} ({ids}); give the id instead")
        if vms:
            return next(iter(vms.values()))
    raise NotFound(f"no VM has the UUID {uuid}")


def _find_vm_by_name(session: Session, name: str) -> vim.VirtualMachine:
    matches = vm_name_index(session).get(name, [])
    if not matches:
        raise NotFound(f"no VM named {name!r}")
    if len(matches) > 1:
        ids = ", ".join(sorted(m._moId for m in matches))
        raise ValidationError("vm", f"{len(matches)} VMs are named {name!r} ({ids}); give an inventory path or id")
    return matches[0]


# ---- the facts of one VM ----------------------------------------------------------------------------------


def fetch_vm_facts(session: Session, vm: vim.VirtualMachine) -> VmFacts:
    """Everything the operations need about ``vm``, its ancestors and its datastores, in one call."""
    try:
        by_id = _read_facts(session, [vm])
    except vmodl.fault.ManagedObjectNotFound:
        raise NotFound(f"no VM with id {vm._moId}") from None
    if vm._moId not in by_id:
        raise NotFound(f"no VM with id {vm._moId}")
    datastores = [obj for obj, _ in by_id.values() if isinstance(obj, vim.Datastore)]
    return _facts_of(vm, by_id, datastores)


def fetch_many_vm_facts(session: Session, vms: Iterable[vim.VirtualMachine], page: int = 100) -> dict[str, VmFacts]:
    """The facts of many VMs, ``page`` VMs a call (ancestors and datastores they share come once). A page naming a
    VM that is gone meanwhile is left out: those VMs are read one by one when their operation runs."""
    vms = list(vms)
    out: dict[str, VmFacts] = {}
    for start in range(0, len(vms), page):
        chunk = vms[start : start + page]
        try:
            by_id = _read_facts(session, chunk)
        except vmodl.fault.ManagedObjectNotFound:
            continue
        for vm in chunk:
            if vm._moId in by_id:
                out[vm._moId] = _facts_of(vm, by_id, by_id[vm._moId][1].get("datastore") or [])
    return out


def _read_facts(session: Session, vms: list[vim.VirtualMachine]) -> dict[str, tuple[Any, dict[str, Any]]]:
    """The facts page of ``vms``: (object, {property: value}) by id, each value as ``_facts_of`` reads it."""
    return {
        found.obj._moId: (found.obj, {name: _fact(page.reader, name, val) for name, val in found.props.items()})
        for page in retrieve_pages(session, _facts_spec(vms))
        for found in page.objects
    }


def _fact(reader: Reader, name: str, val: Any) -> Any:
    if name == "config.hardware.device":
        return read_device_elements(reader, val)  # (DeviceList, the CD-ROMs as vSphere gave them)
    if name == "config.extraConfig":
        q = reader.q
        options = val if val is not None else ()  # a property without a value element: none set
        return extra_config_of((o.findtext(f"{q}key"), reader.value(o.find(f"{q}value"))) for o in options)
    return reader.value(val)


def _facts_spec(vms: list[vim.VirtualMachine]) -> vmodl.query.PropertyCollector.FilterSpec:
    to_datastores = TraversalSpec(name="vmDatastores", type=vim.VirtualMachine, path="datastore", skip=False)
    select = [_parent_traversal(), to_datastores]  # one set of specs for every VM: the same request, less to build
    return FilterSpec(
        objectSet=[ObjectSpec(obj=vm, skip=False, selectSet=select) for vm in vms],
        propSet=[
            PropertySpec(type=vim.VirtualMachine, pathSet=list(VM_PROPERTIES)),
            PropertySpec(type=vim.Folder, pathSet=["name", "parent"]),
            PropertySpec(type=vim.Datacenter, pathSet=["name", "parent"]),
            PropertySpec(type=vim.Datastore, pathSet=list(DATASTORE_PROPERTIES)),
        ],
    )


def _facts_of(
    vm: vim.VirtualMachine, by_id: dict[str, tuple[Any, dict[str, Any]]], datastores: Iterable[Any]
) -> VmFacts:
    props = by_id[vm._moId][1]
    datacenter, dc_path = _datacenter_of(props.get("parent"), by_id)
    stores = [by_id[d._moId] for d in datastores if d._moId in by_id]
    devices, as_given = props.get("config.hardware.device") or (DeviceList(), {})
    host = props.get("runtime.host")
    return VmFacts(
        ref=vm,
        name=props.get("name", vm._moId),
        instance_uuid=props.get("config.instanceUuid") or "",
        change_version=props.get("config.changeVersion"),
        power_state=str(props.get("runtime.powerState", "poweredOff")),
        devices=devices,
        extra_config=props.get("config.extraConfig") or {},
        vmx_path=props.get("config.files.vmPathName"),
        host_id=host._moId if host is not None else None,
        datacenter_path=dc_path,
        datastores={p["name"]: datastore_info(obj, p) for obj, p in stores},
        guest_id=props.get("config.guestId") or "",
        bios_uuid=props.get("config.uuid") or "",
        host=host,
        datacenter=datacenter,
        raw_devices=as_given,
    )


def datastore_info(obj: vim.Datastore, props: dict[str, Any]) -> DatastoreInfo:
    hosts, read_only = [], []
    for mount in props.get("host") or []:
        info = getattr(mount, "mountInfo", None)
        if info is None or (info.accessible is not False and info.mounted is not False):
            hosts.append(mount.key._moId)
        if info is not None and info.accessMode == "readOnly":
            read_only.append(mount.key._moId)
    maintenance = props.get("summary.maintenanceMode") or "normal"
    return DatastoreInfo(
        props.get("name", obj._moId),
        bool(props.get("summary.accessible", True)),
        tuple(hosts),
        ref=obj,
        browser=props.get("browser"),
        read_only_on=tuple(read_only),
        maintenance="" if maintenance == "normal" else maintenance,
        free_space=props.get("summary.freeSpace"),
        url=props.get("summary.url") or "",
        top_level_create=props.get("capability.topLevelDirectoryCreateSupported") is not False,
    )


def extra_config_of(pairs: Iterable[tuple[Any, Any]]) -> dict[str, str]:
    """extraConfig's (key, value) pairs as a dict: the last value of a key wins and an empty value means unset
    (vSphere's rule; vcsim 0.24 appends instead of replacing, which this reading makes harmless)."""
    out: dict[str, str] = {}
    for key, raw in pairs:
        value = "" if raw is None else str(raw)
        if value == "":
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _datacenter_of(parent: Any, by_id: dict[str, tuple[Any, dict[str, Any]]]) -> tuple[vim.Datacenter, str]:
    """Walk the collected ancestors up to the datacenter; its inventory path is what /folder's dcPath wants."""
    node, datacenter = parent, None
    names: list[str] = []
    while node is not None and node._moId in by_id:
        obj, props = by_id[node._moId]
        if isinstance(obj, vim.Datacenter) and datacenter is None:
            datacenter = obj
            names = [props["name"]]
        elif datacenter is not None and props.get("parent") is not None:
            names.insert(0, props["name"])  # folders above the datacenter, but not the root folder
        node = props.get("parent")
    if datacenter is None:
        raise ConfigDriveError("could not find the VM's datacenter")
    return datacenter, "/".join(names)


# ---- hosts and datastores by name ---------------------------------------------------------------------------


def find_hosts(session: Session, name: str) -> Hosts:
    """A host by name or moref, and which datastores every host mounts, in one call. Visibility comes from each
    host's own ``datastore`` list for every host alike (stock vcsim's ``Datastore.host`` names one host only)."""
    name = name.strip()
    if not name or UNSENDABLE.search(name):
        raise ValidationError("host", "empty, or holds a control character or bytes that are not text")
    if session.content.about.apiType == "HostAgent":  # from the login's ServiceContent: no call
        raise ValidationError(
            "host", "connected to a standalone ESXi host, not a vCenter: a VM on it has no other host to migrate to"
        )
    folder = TraversalSpec(
        name="hostFolderChildren", type=vim.Folder, path="childEntity", skip=False,
        selectSet=[SelectionSpec(name="hostFolderChildren"), SelectionSpec(name="dcHostFolder"),
                   SelectionSpec(name="computeHosts")],
    )  # fmt: skip
    dc_hosts = TraversalSpec(
        name="dcHostFolder", type=vim.Datacenter, path="hostFolder", skip=False,
        selectSet=[SelectionSpec(name="hostFolderChildren")],
    )  # fmt: skip
    compute = TraversalSpec(
        name="computeHosts", type=vim.ComputeResource, path="host", skip=False,
        selectSet=[SelectionSpec(name="hostDatastores")],
    )  # fmt: skip
    host_ds = TraversalSpec(name="hostDatastores", type=vim.HostSystem, path="datastore", skip=False)
    spec = FilterSpec(
        objectSet=[
            ObjectSpec(obj=session.content.rootFolder, skip=True, selectSet=[folder, dc_hosts, compute, host_ds])
        ],
        propSet=[
            PropertySpec(type=vim.HostSystem, pathSet=["name", "datastore"]),
            PropertySpec(type=vim.Datastore, pathSet=list(DATASTORE_PROPERTIES)),
        ],
    )
    results = retrieve(session, spec)
    stores = {o._moId: datastore_info(o, p) for o, p in results if isinstance(o, vim.Datastore)}
    hosts = {o._moId: (o, p) for o, p in results if isinstance(o, vim.HostSystem)}
    sees = {
        host_id: frozenset(stores[d._moId].name for d in props.get("datastore") or [] if d._moId in stores)
        for host_id, (_, props) in hosts.items()
    }
    matches = [(o, p) for o, p in hosts.values() if name in (p.get("name"), o._moId)]
    if not matches:
        raise NotFound(f"no host named {name!r}")
    if len(matches) > 1:
        raise ValidationError("host", f"{len(matches)} hosts are named {name!r}; give its id (host-NN)")
    host, props = matches[0]
    mounted = tuple(stores[d._moId] for d in props.get("datastore") or [] if d._moId in stores)
    target = HostInfo(host._moId, props.get("name", host._moId), mounted, ref=host)
    return Hosts(target, sees)


def find_datastore(session: Session, facts: VmFacts, name: str) -> DatastoreInfo | DatastoreCluster:
    """A datastore of the VM's datacenter that the VM does not use yet, which the VM's host mounts (by that host's
    own ``datastore`` list), or a datastore cluster (StoragePod) of that name with its members and which of them
    each host of the VM's compute resource mounts: all read in one call."""
    check_datastore_name(name)
    to_pods = TraversalSpec(
        name="podFolders", type=vim.Folder, path="childEntity", skip=False,
        selectSet=[SelectionSpec(name="podFolders")],
    )  # fmt: skip
    object_specs = [
        ObjectSpec(
            obj=facts.datacenter,
            skip=True,
            selectSet=[
                TraversalSpec(type=vim.Datacenter, path="datastore", skip=False),
                TraversalSpec(type=vim.Datacenter, path="datastoreFolder", skip=False, selectSet=[to_pods]),
            ],
        )
    ]
    prop_specs = [
        PropertySpec(type=vim.Datastore, pathSet=list(DATASTORE_PROPERTIES)),
        PropertySpec(type=vim.StoragePod, pathSet=["name", "childEntity"]),
    ]
    if facts.host is not None:
        to_siblings = TraversalSpec(type=vim.ComputeResource, path="host", skip=False)
        to_parent = TraversalSpec(type=vim.HostSystem, path="parent", skip=True, selectSet=[to_siblings])
        object_specs.append(ObjectSpec(obj=facts.host, selectSet=[to_parent]))
        prop_specs.append(PropertySpec(type=vim.HostSystem, pathSet=["name", "datastore"]))
    results = retrieve(session, FilterSpec(objectSet=object_specs, propSet=prop_specs))
    stores = {o._moId: datastore_info(o, p) for o, p in results if isinstance(o, vim.Datastore)}
    hosts = {o._moId: p for o, p in results if isinstance(o, vim.HostSystem)}
    for obj, props in results:
        if isinstance(obj, vim.Datastore) and props.get("name") == name:
            host_sees = {d._moId for d in hosts.get(facts.host_id or "", {}).get("datastore") or []}
            if facts.host is not None and obj._moId not in host_sees:
                raise ValidationError("datastore", f"{name!r} is not mounted on the VM's host")
            return stores[obj._moId]
    for obj, props in results:
        if isinstance(obj, vim.StoragePod) and props.get("name") == name:
            members = tuple(stores[c._moId] for c in props.get("childEntity") or [] if c._moId in stores)
            sees = {
                h: frozenset(stores[d._moId].name for d in p.get("datastore") or [] if d._moId in stores)
                for h, p in hosts.items()
            }
            return DatastoreCluster(name, members, sees, {h: p.get("name", h) for h, p in hosts.items()})
    raise NotFound(f"no datastore or datastore cluster named {name!r} in the VM's datacenter")


__all__ = [
    "fetch_many_vm_facts",
    "fetch_vm_facts",
    "find_datastore",
    "find_hosts",
    "find_vm",
    "vm_name_index",
]
