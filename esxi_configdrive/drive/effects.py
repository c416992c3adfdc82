"""What an operation may ask of vSphere (``VmAccess``: reads, and the primitives that change things), and the
effects an attempt makes through it, recorded as ``Step`` values.

An operation is one function that reads through ``VmAccess`` and changes through an ``Effects`` object. A real run
gets ``LiveEffects`` (each effect is made, then recorded with what it changed); a dry run gets ``DryRunEffects``,
which makes nothing and records what would be made, predicting each outcome from a read where one is cheap. So a
dry run runs the very code of the real run, and ``changed`` is a property of the recorded steps, never of text.
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Protocol

from ..errors import FileKept, LockedDoor, Stale, VsphereFault
from ..guestinfo import PREFIX as GUESTINFO_PREFIX
from ..vsphere_values import (
    ConfigChange,
    DatastoreCluster,
    DatastoreInfo,
    DatastorePath,
    DeviceChange,
    HostInfo,
    Hosts,
    VmFacts,
    describe_change,
)
from .storage import same_file

log = logging.getLogger(__name__)

Confirmation = Future  # of a delete sent and not waited for: True deleted, False it was gone already


class FileAccess(Protocol):
    """The datastore files of a datacenter, for what no single VM owns (the audit's --verify and its orphans):
    the file part of ``VmAccess``. Implemented in vsphere/fleet.py (``DatacenterFiles``)."""

    def download(self, path: DatastorePath) -> bytes: ...
    def exists(self, path: DatastorePath) -> bool: ...
    def listing(self, folder: DatastorePath, pattern: str = "*.iso") -> list[str] | None: ...
    def delete(self, path: DatastorePath) -> bool: ...
    def start_delete(self, path: DatastorePath) -> Confirmation | None: ...


class VmAccess(FileAccess, Protocol):
    """vSphere as one operation on one VM sees it. Implemented over a pyVmomi session in vsphere/vm.py.

    ``start_delete`` sends a delete whose outcome is confirmed later (a Future of "deleted?"), or gives None
    where no one confirms later (outside batch mode): then ``delete`` waits for it.

    Reads: ``download`` raises FileNotFoundError (and ValidationError for a file too large to be a drive);
    ``listing`` gives None for a missing folder (or one it cannot list); ``datastore`` finds one the VM does not
    use yet, or a datastore cluster of that name. Changes: ``copy`` raises FileExistsError rather than overwrite;
    ``send_config_change`` raises Stale, LockedDoor, OutcomeUnknown or VsphereFault (errors.py)."""

    def facts(self) -> VmFacts: ...
    def datastore(self, name: str) -> DatastoreInfo | DatastoreCluster: ...
    def hosts(self, name: str) -> Hosts: ...

    def make_folder(self, folder: DatastorePath) -> bool: ...
    def upload(self, path: DatastorePath, content: bytes) -> str: ...
    def copy(self, source: DatastorePath, target: DatastorePath) -> None: ...
    def send_config_change(self, change: ConfigChange) -> None: ...
    def relocate(self, facts: VmFacts, host: HostInfo) -> None: ...


class Kind(Enum):
    MKDIR = "mkdir"
    UPLOAD = "upload"
    COPY = "copy"
    DELETE = "delete"
    DELETE_FOLDER = "delete-folder"
    KEEP_FOLDER = "keep-folder"
    DEVICE = "device"
    RECORD = "record"
    KEYS = "keys"  # guestinfo keys written (target: their names) or removed (why: "removed")
    RELOCATE = "relocate"
    NOTE = "note"


@dataclass(frozen=True)
class Step:
    """One effect of an operation: made (``planned`` False) or, in a dry run, predicted."""

    kind: Kind
    target: str = ""
    changed: bool = True
    planned: bool = False
    source: str = ""  # COPY: where from
    size: int = 0  # UPLOAD: bytes
    why: str = ""  # DELETE/DELETE_FOLDER: why it goes; KEEP_FOLDER: what is left in it; NOTE: the text
    device: DeviceChange | None = None
    pending: Confirmation | None = field(default=None, compare=False, repr=False)  # a delete not confirmed yet

    def describe(self) -> str:
        """The line a result shows for this step."""
        k, t, p = self.kind, self.target, self.planned
        if k is Kind.MKDIR:
            text = f"create folder {t} if missing" if p else f"created folder {t}"
        elif k is Kind.UPLOAD:
            text = f"upload the config drive to {t}" if p else f"uploaded {self.size} bytes to {t}"
        elif k is Kind.COPY:
            text = f"copy {self.source} to {t}" if p else f"copied {self.source} to {t}"
        elif k in (Kind.DELETE, Kind.DELETE_FOLDER):
            text = f"delete {t}" + (" once empty" if p and k is Kind.DELETE_FOLDER else "") if p else f"deleted {t}"
        elif k is Kind.KEEP_FOLDER:
            return f"left {t}: it still holds {self.why}"
        elif k is Kind.DEVICE:
            return describe_change(self.device) if self.device is not None else ""
        elif k is Kind.RECORD:
            text = "clear the drive record" if p else "cleared the drive record"
        elif k is Kind.KEYS:
            verb = ("remove" if p else "removed") if self.why == "removed" else ("write" if p else "wrote")
            return f"{verb} guestinfo keys {t}"
        elif k is Kind.RELOCATE:
            text = f"migrate the VM to host {t}" if p else f"migrated the VM to host {t}"
        else:
            return self.why
        return f"{text} ({self.why})" if self.why and k is not Kind.KEEP_FOLDER else text


class FileEffects:
    """Deletes of datastore files, recorded in order (the audit's orphans, and the file part of ``Effects``)."""

    dry_run = False

    def __init__(self, files: FileAccess) -> None:
        self.files = files
        self.steps: list[Step] = []
        self.uploads: list[DatastorePath] = []
        self.warnings: list[str] = []  # files vSphere kept (locked, in use): the next run or audit --fix deletes them

    def _record(self, kind: Kind, target: object = "", **details: Any) -> None:  # Step's own fields
        self.steps.append(Step(kind, str(target), planned=self.dry_run, **details))

    def note(self, text: str) -> None:
        self._record(Kind.NOTE, changed=False, why=text)

    def delete(
        self, path: DatastorePath, why: str = "", known_to_exist: bool = False, confirm_later: bool = False
    ) -> bool:
        """Delete a file; True when it was there. ``known_to_exist``: the caller has just seen it (a dry run then
        needs no look). ``confirm_later``: nothing after this depends on the outcome (the file is named in the
        record until deleted), so in batch mode it may be confirmed after the operation, in the step's
        ``pending`` (``Result.settled``)."""
        raise NotImplementedError

    def delete_folder_if_empty(self, folder: DatastorePath, why: str = "") -> None:
        """A folder is named after its VM, and another VM of the same name may keep its drive there: it goes
        only when nothing is left in it."""
        raise NotImplementedError


class Effects(FileEffects):
    """The changes of one attempt, recorded in order. ``uploads`` are the files this attempt wrote: when the
    attempt loses a race (Stale), the retry loop decides what becomes of them."""

    file_effects: ClassVar[type[FileEffects]]  # the same kind (live or dry) for files alone: FileEffects

    def __init__(self, vm: VmAccess) -> None:
        super().__init__(vm)
        self.vm = vm

    def make_folder(self, folder: DatastorePath) -> bool:
        """Create the folder; True when this call created it (exactly one of several concurrent callers)."""
        raise NotImplementedError

    def upload(self, path: DatastorePath, iso: bytes) -> str:
        """Write a file; returns its SHA-256."""
        raise NotImplementedError

    def copy(self, source: DatastorePath, target: DatastorePath) -> None:
        raise NotImplementedError

    def apply_change(self, change: ConfigChange, uploaded: DatastorePath | None = None) -> None:
        """Make one reconfigure (steps.config_change). When vSphere says it failed, the file uploaded for it
        goes (unless some device uses it after all), so a failure leaves the VM and its folder as they were; a
        Stale attempt's upload is for the retry loop to judge, and after an unknown outcome nothing is cleaned
        up."""
        raise NotImplementedError

    def relocate(self, facts: VmFacts, host: HostInfo) -> None:
        raise NotImplementedError

    def discard_unused(self, path: DatastorePath) -> None:
        """After a failed change: delete an upload no CD-ROM of the VM uses, quietly (the failure being reported
        matters more than this clean-up)."""
        raise NotImplementedError

    def discard_folder(self, folder: DatastorePath) -> None:
        """After a failed attach: delete the folder it made when nothing is in it, quietly (as discard_unused)."""
        raise NotImplementedError

    def _record_change(self, change: ConfigChange) -> None:
        for device in change.devices:
            self._record(Kind.DEVICE, device=device)
        keys = sorted(k for k in change.extra_config if k.startswith(GUESTINFO_PREFIX))
        values = [k for k in keys if not k.endswith(".encoding")] or keys
        written = [k for k in values if change.extra_config[k]]
        removed = [k for k in values if not change.extra_config[k]]
        if written:
            self._record(Kind.KEYS, ", ".join(written))
        if removed:
            self._record(Kind.KEYS, ", ".join(removed), why="removed")
        if not change.devices and not keys:
            self._record(Kind.RECORD)


class LiveFileEffects(FileEffects):
    """Deletes each file, then records it."""

    def delete(
        self, path: DatastorePath, why: str = "", known_to_exist: bool = False, confirm_later: bool = False
    ) -> bool:
        pending = self.files.start_delete(path) if confirm_later else None
        if pending is not None:
            self._record(Kind.DELETE, path, why=why, pending=pending)
            return True
        try:
            deleted = self.files.delete(path)
        except FileKept as kept:  # the drive is complete without it; the record or the audit names it for later
            self.warnings.append(str(kept))
            return False
        if deleted:
            self._record(Kind.DELETE, path, why=why)
        return deleted

    def delete_folder_if_empty(self, folder: DatastorePath, why: str = "") -> None:
        left = self.files.listing(folder, "*")
        if left is None:
            return
        if left:
            self._record(Kind.KEEP_FOLDER, folder, changed=False, why=", ".join(left))
            return
        try:
            deleted = self.files.delete(folder)
        except FileKept as kept:
            self.warnings.append(str(kept))
            return
        if deleted:
            self._record(Kind.DELETE_FOLDER, folder, why=why)


class LiveEffects(LiveFileEffects, Effects):
    """Makes each change, then records it."""

    file_effects = LiveFileEffects

    def make_folder(self, folder: DatastorePath) -> bool:
        created = self.vm.make_folder(folder)
        if created:
            self._record(Kind.MKDIR, folder)
        return created

    def upload(self, path: DatastorePath, iso: bytes) -> str:
        try:
            sha = self.vm.upload(path, iso)
        except FileNotFoundError:  # the folder vanished since it was made or seen (a concurrent detach): again
            self.vm.make_folder(path.folder)
            sha = self.vm.upload(path, iso)
        self.uploads.append(path)
        self._record(Kind.UPLOAD, path, size=len(iso))
        return sha

    def copy(self, source: DatastorePath, target: DatastorePath) -> None:
        self.vm.copy(source, target)
        self.uploads.append(target)
        self._record(Kind.COPY, target, source=str(source))

    def apply_change(self, change: ConfigChange, uploaded: DatastorePath | None = None) -> None:
        try:
            self.vm.send_config_change(change)
        except Stale:
            if uploaded is not None and uploaded not in self.uploads:
                self.uploads.append(uploaded)  # found there, not written by this attempt: the retry loop judges it
            raise
        except (VsphereFault, LockedDoor):
            if uploaded is not None:
                self.discard_unused(uploaded)
            raise
        self._record_change(change)

    def relocate(self, facts: VmFacts, host: HostInfo) -> None:
        self.vm.relocate(facts, host)
        self._record(Kind.RELOCATE, host.name)

    def discard_unused(self, path: DatastorePath) -> None:
        try:
            facts = self.vm.facts()
            if any(c.iso and same_file(c.iso, str(path), facts.datastores) for c in facts.devices.cdroms):
                return
            self.vm.delete(path)
        except Exception:  # cleaning up must not hide the failure being reported
            log.warning("could not delete %s after the failed change", path, exc_info=True)

    def discard_folder(self, folder: DatastorePath) -> None:
        try:
            if self.vm.listing(folder, "*") == []:
                self.vm.delete(folder)
        except Exception:  # cleaning up must not hide the failure being reported
            log.warning("could not delete %s after the failed change", folder, exc_info=True)


class DryRunFileEffects(FileEffects):
    """Deletes nothing; records what a real run would delete."""

    dry_run = True

    def delete(
        self, path: DatastorePath, why: str = "", known_to_exist: bool = False, confirm_later: bool = False
    ) -> bool:
        there = known_to_exist or self.files.exists(path)
        if there:
            self._record(Kind.DELETE, path, why=why)
        return there

    def delete_folder_if_empty(self, folder: DatastorePath, why: str = "") -> None:
        self._record(Kind.DELETE_FOLDER, folder, why=why)  # what is in it then depends on the deletes before


class DryRunEffects(DryRunFileEffects, Effects):
    """Makes nothing; records what a real run would make, with outcomes predicted from reads."""

    file_effects = DryRunFileEffects

    def make_folder(self, folder: DatastorePath) -> bool:
        # Predicted as new: looking would take a datastore search, a task in vCenter's list. When the folder is
        # there after all, the real run writes a name of its own version (attach.py) and nothing else differs.
        self._record(Kind.MKDIR, folder)
        return True

    def upload(self, path: DatastorePath, iso: bytes) -> str:
        self._record(Kind.UPLOAD, path, size=len(iso))
        return hashlib.sha256(iso).hexdigest()

    def copy(self, source: DatastorePath, target: DatastorePath) -> None:
        self._record(Kind.COPY, target, source=str(source))

    def apply_change(self, change: ConfigChange, uploaded: DatastorePath | None = None) -> None:
        self._record_change(change)

    def relocate(self, facts: VmFacts, host: HostInfo) -> None:
        self._record(Kind.RELOCATE, host.name)

    def discard_unused(self, path: DatastorePath) -> None:
        return None

    def discard_folder(self, folder: DatastorePath) -> None:
        return None
