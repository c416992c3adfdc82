"""A hand-written stand-in for vSphere, for the unit tests of the operations (tests/test_drive_operations.py) only.

It implements ``VmAccess`` (drive/effects.py) over a few dicts: one VM's devices and extraConfig, datastore files
and folders. It logs every call, so a test can assert the order an operation works in, and it applies changes so
an operation reads back what it did. It knows nothing of vSphere's real behaviour (changeVersion, locked doors,
task faults beyond what a test injects): that is tested against vcsim, live and from cassettes.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field, replace
from typing import Any

from esxi_configdrive.errors import NotFound, Stale, VsphereFault
from esxi_configdrive.vsphere_values import (
    IDE,
    SATA,
    AddCdrom,
    AddSataController,
    Cdrom,
    ConfigChange,
    Controller,
    DatastoreInfo,
    DatastorePath,
    DeviceChange,
    DeviceList,
    HostInfo,
    Hosts,
    Nic,
    RemoveDevice,
    SetMedia,
    VmFacts,
)

DS = "ds1"
OTHER_DS = "ds2"


@dataclass
class FakeVsphereVm:
    name: str = "web-1"
    powered_on: bool = False
    instance_uuid: str = "5001aaaa-0000-4000-8000-000000000001"
    controllers: list[Controller] = field(default_factory=lambda: [Controller(200, IDE, 0), Controller(201, IDE, 1)])
    cdroms: list[Cdrom] = field(
        default_factory=lambda: [Cdrom(3000, 201, 0, None, connected=False, start_connected=False)]
    )  # the VM's own CD-ROM, never ours
    nics: list[Nic] = field(default_factory=lambda: [Nic(4000, "00:50:56:aa:bb:01")])
    extra_config: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # "[ds] path" -> content
    folders: set[str] = field(default_factory=set)  # "[ds] path"
    datastores: tuple[str, ...] = (DS,)
    version: int = 1
    log: list[tuple[str, Any]] = field(default_factory=list)
    fail_reconfigure: list[Exception] = field(default_factory=list)  # raised by the next reconfigures, in order
    host_sees: dict[str, frozenset[str]] = field(default_factory=lambda: {"host-1": frozenset({DS})})
    _keys: Any = field(default_factory=lambda: itertools.count(9000))

    # ---- reads

    def facts(self) -> VmFacts:
        self.log.append(("facts", None))
        slots = {(c.controller_key, c.unit) for c in self.cdroms} | {(200, 0)}  # a disk on ide0:0
        return VmFacts(
            ref=self,
            name=self.name,
            instance_uuid=self.instance_uuid,
            change_version=str(self.version),
            power_state="poweredOn" if self.powered_on else "poweredOff",
            devices=DeviceList(
                controllers=tuple(self.controllers),
                cdroms=tuple(self.cdroms),
                nics=tuple(self.nics),
                slots_in_use=frozenset(slots),
                keys=frozenset({c.key for c in self.controllers} | {c.key for c in self.cdroms} | {2000}),
            ),
            extra_config=dict(self.extra_config),
            vmx_path=f"[{DS}] {self.name}/{self.name}.vmx",
            host_id="host-1",
            datacenter_path="DC0",
            datastores={name: DatastoreInfo(name) for name in self.datastores},
        )

    def download(self, path: DatastorePath) -> bytes:
        self.log.append(("download", str(path)))
        if str(path) not in self.files:
            raise FileNotFoundError(str(path))
        return self.files[str(path)]

    def exists(self, path: DatastorePath) -> bool:
        self.log.append(("exists", str(path)))
        return str(path) in self.files

    def listing(self, folder: DatastorePath, pattern: str = "*.iso") -> list[str] | None:
        self.log.append(("listing", str(folder)))
        if str(folder) not in self.folders:
            return None
        prefix = f"{folder}/"
        names = [p[len(prefix) :] for p in self.files if p.startswith(prefix) and "/" not in p[len(prefix) :]]
        return sorted(n for n in names if pattern == "*" or n.endswith(".iso"))

    def datastore(self, name: str) -> DatastoreInfo:
        raise NotFound(f"no datastore named {name!r} in the VM's datacenter")

    def hosts(self, name: str) -> Hosts:
        self.log.append(("hosts", name))
        sees = self.host_sees.get(name, frozenset())
        return Hosts(HostInfo(name, name, tuple(DatastoreInfo(d) for d in sorted(sees))), self.host_sees)

    # ---- changes

    def make_folder(self, folder: DatastorePath) -> bool:
        self.log.append(("make_folder", str(folder)))
        if str(folder) in self.folders:
            return False
        self.folders.add(str(folder))
        return True

    def upload(self, path: DatastorePath, content: bytes) -> str:
        self.log.append(("upload", str(path)))
        if str(path.folder) not in self.folders:
            raise FileNotFoundError(str(path.folder))
        self.files[str(path)] = content
        return hashlib.sha256(content).hexdigest()

    def copy(self, source: DatastorePath, target: DatastorePath) -> None:
        self.log.append(("copy", (str(source), str(target))))
        if str(target) in self.files:
            raise FileExistsError(str(target))
        self.files[str(target)] = self.files[str(source)]

    def delete(self, path: DatastorePath) -> bool:
        self.log.append(("delete", str(path)))
        if str(path) in self.files:
            del self.files[str(path)]
            return True
        if str(path) in self.folders:
            self.folders.discard(str(path))
            return True
        return False

    def start_delete(self, path: DatastorePath) -> None:
        return None  # no batch poller here: deletes are waited for

    def send_config_change(self, change: ConfigChange) -> None:
        facts, changes, extra_config = change.facts, change.devices, change.extra_config
        self.log.append(("reconfigure", (list(changes), dict(extra_config))))
        if self.fail_reconfigure:
            raise self.fail_reconfigure.pop(0)
        if facts.change_version != str(self.version):
            raise Stale("changed since it was read")
        new_keys: dict[int, int] = {}
        for change in changes:
            self._apply(change, new_keys)
        for key, value in extra_config.items():
            if value:
                self.extra_config[key] = value
            else:
                self.extra_config.pop(key, None)
        self.version += 1

    def relocate(self, facts: VmFacts, host: HostInfo) -> None:
        self.log.append(("relocate", host.name))

    def _apply(self, change: DeviceChange, new_keys: dict[int, int]) -> None:
        if isinstance(change, AddSataController):
            new_keys[change.key] = next(self._keys)
            self.controllers.append(Controller(new_keys[change.key], SATA, change.bus))
        elif isinstance(change, AddCdrom):
            controller = new_keys.get(change.controller_key, change.controller_key)
            self.cdroms.append(Cdrom(next(self._keys), controller, change.unit, change.iso, change.connected, True))
        elif isinstance(change, SetMedia):
            self.cdroms = [
                replace(c, iso=change.iso, connected=change.connected, start_connected=change.iso is not None)
                if c.key == change.key
                else c
                for c in self.cdroms
            ]
        elif isinstance(change, RemoveDevice):
            self.cdroms = [c for c in self.cdroms if c.key != change.key]

    # ---- for the tests

    def calls(self, *kinds: str) -> list[tuple[str, Any]]:
        """The logged calls of these kinds (all changes, when none are named), in order."""
        wanted = kinds or ("make_folder", "upload", "copy", "delete", "reconfigure", "relocate")
        return [(k, v) for k, v in self.log if k in wanted]

    def our_cdrom(self) -> Cdrom | None:
        return next((c for c in self.cdroms if c.key != 3000), None)


def refused() -> VsphereFault:
    return VsphereFault("vSphere fault GenericVmConfigFault: injected")
