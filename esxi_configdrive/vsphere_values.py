"""vSphere's objects as plain values, shared by both layers: what vSphere says about a VM (facts, devices,
datastores, hosts), paths on datastores, and the device changes an operation plans. vsphere/ reads into them and
sends them; drive/ decides on them. Both import this module; it imports neither (tests/test_architecture.py).

The vSphere layer reads pyVmomi objects into these and turns planned changes back into specs (as govmomi's
``VirtualDeviceList`` builds edits as values and sends them in one place); the operations never see pyVmomi.
Fields named ``ref`` (and ``raw_devices``) hold the vSphere layer's own handles, opaque here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from .errors import ValidationError

_PATH_RE = re.compile(r"^\[([^\[\]]+)\] ?(.*)$")

IDE, SATA = "ide", "sata"

DRIVE_ROOT = "ConfigDrive"  # the top-level folder of every datastore this tool writes into


# ---- datastore paths ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatastorePath:
    """A file on a datastore: ``[datastore] folder/file.iso``."""

    datastore: str
    path: str

    @classmethod
    def parse(cls, text: str) -> DatastorePath:
        m = _PATH_RE.match(text or "")
        if not m:
            raise ValidationError("datastore path", f"{text!r} is not of the form '[datastore] path'")
        return cls(m.group(1), m.group(2))

    def __str__(self) -> str:
        return f"[{self.datastore}] {self.path}"

    @property
    def folder(self) -> DatastorePath:
        return DatastorePath(self.datastore, self.path.rsplit("/", 1)[0] if "/" in self.path else "")

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def child(self, name: str) -> DatastorePath:
        return DatastorePath(self.datastore, f"{self.path}/{name}" if self.path else name)

    def sibling(self, name: str) -> DatastorePath:
        return self.folder.child(name)


def safe_path_component(name: str, fallback: str) -> str:
    """A VM name made safe as one folder name: letters, digits, '.', '_', '-' only, no leading dot."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".")[:80]
    return cleaned if cleaned.strip("_") else fallback


# ---- what vSphere says ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatastoreInfo:
    name: str
    accessible: bool = True
    hosts: tuple[str, ...] = ()  # ids of the hosts the datastore's own mount list names (Datastore.host)
    ref: Any = field(default=None, compare=False, repr=False)
    browser: Any = field(default=None, compare=False, repr=False)
    url: str = ""  # summary.url: what DatastoreNamespaceManager names paths by
    top_level_create: bool = True  # capability.topLevelDirectoryCreateSupported: false on vSAN and vVol
    namespaces: tuple[tuple[str, str], ...] = ()  # top-level folders known by both names: (friendly, stable)
    read_only_on: tuple[str, ...] = ()  # ids of the hosts that mount it read-only (host[].mountInfo.accessMode)
    maintenance: str = ""  # summary.maintenanceMode when not "normal" (inMaintenance, enteringMaintenance)
    free_space: int | None = None  # summary.freeSpace, bytes


@dataclass(frozen=True)
class DatastoreCluster:
    """A datastore cluster (Storage DRS pod) named where a datastore was expected: its members, and which
    datastores each host of the VM's compute resource mounts (its own list), to choose a member by."""

    name: str
    members: tuple[DatastoreInfo, ...]
    sees: Mapping[str, frozenset[str]]  # host id -> names of the datastores it mounts
    host_names: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Controller:
    key: int
    kind: str  # IDE, SATA, or the vSphere type name of another controller
    bus: int | None


@dataclass(frozen=True)
class Cdrom:
    key: int
    controller_key: int | None
    unit: int | None
    iso: str | None  # the ISO backing's "[ds] path"; None for an empty drive or any other backing
    connected: bool
    start_connected: bool
    label: str | None = None


@dataclass(frozen=True)
class Nic:
    """A network adapter, in device order: what cloud-init matches the drive's links by (the MAC)."""

    key: int
    mac: str


@dataclass(frozen=True)
class DeviceList:
    """A VM's devices, as much of them as the operations decide on."""

    controllers: tuple[Controller, ...] = ()
    cdroms: tuple[Cdrom, ...] = ()
    nics: tuple[Nic, ...] = ()  # in device order
    slots_in_use: frozenset[tuple[int, int]] = frozenset()  # (controller key, unit) of every device
    keys: frozenset[int] = frozenset()

    def controller(self, key: int | None) -> Controller | None:
        return next((c for c in self.controllers if c.key == key), None)


@dataclass(frozen=True)
class VmFacts:
    """One consistent picture of a VM, from one read."""

    ref: Any
    name: str
    instance_uuid: str
    change_version: str | None
    power_state: str
    devices: DeviceList
    extra_config: Mapping[str, str]
    vmx_path: str | None
    host_id: str | None
    datacenter_path: str
    datastores: Mapping[str, DatastoreInfo]
    guest_id: str = ""
    bios_uuid: str = ""
    host: Any = field(default=None, compare=False, repr=False)
    datacenter: Any = field(default=None, compare=False, repr=False)
    raw_devices: Mapping[int, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def id(self) -> str:
        return getattr(self.ref, "_moId", str(self.ref))

    @property
    def is_windows(self) -> bool | None:
        """From the configured guest OS: True, False, or None when vSphere does not say."""
        return self.guest_id.lower().startswith("win") if self.guest_id else None

    @property
    def powered_on(self) -> bool:
        return self.power_state == "poweredOn"

    @property
    def vmx_datastore(self) -> str | None:
        """The datastore holding the VM's configuration file."""
        if self.vmx_path and self.vmx_path.startswith("["):
            return self.vmx_path[1 : self.vmx_path.index("]")]
        return None


@dataclass(frozen=True)
class ConfigChange:
    """One ReconfigVM as a value: the device changes and extraConfig, on the changeVersion of the VM as read
    (``facts``: a stale one is refused). The drive code builds it; vsphere/reconfigure.py sends it."""

    facts: VmFacts
    devices: Sequence[DeviceChange]
    extra_config: Mapping[str, str]


@dataclass(frozen=True)
class HostInfo:
    id: str
    name: str
    datastores: tuple[DatastoreInfo, ...]  # what the host's own `datastore` list names
    ref: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Hosts:
    """A host looked up by name, and which datastores every host sees, all from the hosts' own lists: the same
    source for the source and the target of a migration (stock vcsim's Datastore.host lists one host only)."""

    target: HostInfo
    sees: Mapping[str, frozenset[str]]  # host id -> names of the datastores it mounts

    def host_sees(self, host_id: str | None, datastore: str) -> bool:
        return host_id is not None and datastore in self.sees.get(host_id, frozenset())


# ---- planned device changes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddSataController:
    key: int  # temporary (negative); vSphere assigns the real one
    bus: int


@dataclass(frozen=True)
class AddCdrom:
    key: int
    controller_key: int
    kind: str
    bus: int | None
    unit: int
    iso: str
    connected: bool


@dataclass(frozen=True)
class SetMedia:
    """Point an existing CD-ROM at an ISO, or (``iso`` None) leave it empty and disconnected."""

    key: int
    iso: str | None
    connected: bool


@dataclass(frozen=True)
class RemoveDevice:
    key: int


DeviceChange = Union[AddSataController, AddCdrom, SetMedia, RemoveDevice]


def describe_change(change: DeviceChange) -> str:
    """The line results and dry runs show for a device change."""
    if isinstance(change, AddSataController):
        return f"add SATA (AHCI) controller {change.bus}"
    if isinstance(change, AddCdrom):
        return f"add CD-ROM at {change.kind}{change.bus}:{change.unit} with {change.iso}, connected at power-on"
    if isinstance(change, SetMedia):
        if change.iso is None:
            return f"empty and disconnect CD-ROM {change.key}"
        return f"point CD-ROM {change.key} at {change.iso}"
    return f"remove CD-ROM {change.key}"


# ---- a fleet, as audit reads it -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileEntry:
    """A file as a datastore search shows it: no content, so no hash."""

    name: str
    size: int | None = None
    modified: float | None = None  # seconds since the epoch, by the datastore's clock


@dataclass(frozen=True)
class DriveFolder:
    """One folder ``ConfigDrive/<name>`` of a datastore, and what is in it."""

    path: DatastorePath
    files: tuple[FileEntry, ...] = ()
    subfolders: tuple[str, ...] = ()
    modified: float | None = None


@dataclass(frozen=True)
class DriveListing:
    """Everything under ``[datastore] ConfigDrive/`` from one search; ``problem`` says why there is none."""

    datastore: str
    folders: Mapping[str, DriveFolder] = field(default_factory=dict)  # by path: "ConfigDrive/web-1"
    loose: tuple[FileEntry, ...] = ()  # files right in ConfigDrive/ (not where this tool writes)
    problem: str = ""
    root: str = DRIVE_ROOT  # the path searched: ConfigDrive, or its stable (UUID) name on a namespace datastore


@dataclass(frozen=True)
class Fleet:
    """The VMs of one datacenter and what the datastores hold, read in a few calls. ``complete``: ``vms`` are all
    the datacenter's VMs (no folder asked for, none vanished during the read), so a file no VM points at is an
    orphan; ``vm_names`` are the names of all of them (id -> name), whatever the scope."""

    datacenter: str
    vms: tuple[VmFacts, ...]
    vm_names: Mapping[str, str]
    complete: bool
    listings: Mapping[str, DriveListing]  # datastore name -> what its ConfigDrive/ holds
    sees: Mapping[str, frozenset[str]]  # host id -> the datastores it mounts (its own list)
    clusters: Mapping[str, tuple[str, ...]]  # host id -> the hosts of its cluster (standalone hosts: absent)
    host_names: Mapping[str, str]
    now: float  # vCenter's clock when the read began
    ref: Any = field(default=None, compare=False, repr=False)

    def file(self, path: DatastorePath) -> FileEntry | None:
        """The file as the search saw it (None: not there, or not searched: see audit.unsearched)."""
        listing = self.listings.get(path.datastore)
        folder = listing.folders.get(path.folder.path) if listing is not None else None
        return next((f for f in folder.files if f.name == path.name), None) if folder is not None else None


# An audit's choice of where to look, which the adapter's read (vsphere/fleet.py) asks the core for: (the scoped VMs'
# facts, the datacenter's datastores, whether every VM of it is in scope) -> each datastore to search, with the
# folder on it (drive/audit_judge.py's ``searches``).
SearchPlan = Callable[[Sequence[VmFacts], Sequence[DatastoreInfo], bool], list[tuple[DatastoreInfo, DatastorePath]]]
