"""The audit's judging: every config drive of a fleet, from reads whose number does not grow with the fleet.

The reads (``FleetAccess``, vsphere/fleet.py) give one ``Fleet`` per datacenter: every VM's facts, each host's
own datastore list, the hosts of each cluster, and one search of each datastore's ``ConfigDrive/`` (names, sizes
and modification times; no content, so no hashes). Here, over those plain values, each VM with a drive or a
record gets one row and a state:

- ``ok``; ``detached`` (a record, no media: by this tool's detach, or emptied by another client, which needs
  attention); ``device-removed`` (the record names an ISO, the CD-ROM is gone: Terraform's vsphere provider and
  vmware.vmware's ``vm`` module remove CD-ROMs they do not manage); ``missing-file`` (the device points at a file
  that is gone); ``foreign-change`` (the file's size differs from the record's, or with ``verify`` its SHA-256;
  or the CD-ROM holds another ISO); ``disconnected`` (not connected at power-on, or now on a running VM);
  ``not-shared`` (a host of the VM's cluster does not mount the ISO's datastore, by its own list: vMotion/DRS
  to it fails); ``inherited`` (a clone's drive, recorded for its parent); ``unchecked`` (the datastore could not
  be searched);
- and ``orphan`` rows for ISOs and folders under ``ConfigDrive/`` that no VM's device or record points at.

Records written before sizes were kept are judged by the ISO's sector size instead (a whole number of 2048-byte
sectors) and said to need ``verify`` for a full check.

--fix (audit.py) repairs what is safe, and deletes orphans by the rule written there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..defaults import ORPHAN_MIN_AGE
from ..errors import ValidationError
from ..record import DriveRecord
from ..transport import DEFAULT_TRANSPORT, Transport, transport_field
from ..vsphere_values import DatastoreInfo, DatastorePath, DriveFolder, Fleet, SearchPlan, VmFacts, safe_path_component
from .effects import FileAccess, VmAccess
from .keys import changed_behind_our_back, is_guestinfo
from .result import Result
from .state import DRIVE_ROOT, DriveState, is_drive_name
from .storage import drive_root, stable_devices, stable_record

OK, DETACHED, DEVICE_REMOVED, MISSING_FILE = "ok", "detached", "device-removed", "missing-file"
FOREIGN_CHANGE, DISCONNECTED, NOT_SHARED, INHERITED = "foreign-change", "disconnected", "not-shared", "inherited"
UNCHECKED, ORPHAN = "unchecked", "orphan"
STATES = (OK, DETACHED, DEVICE_REMOVED, MISSING_FILE, FOREIGN_CHANGE, DISCONNECTED, NOT_SHARED, INHERITED,
          UNCHECKED, ORPHAN)  # fmt: skip

REATTACH, RECONNECT, DELETE, DELETE_FOLDER = "reattach", "reconnect", "delete", "delete-folder"
FINISH = "finish"  # delete the replaced ISO vSphere kept (locked, in use) when it was to go
FIX_TEXT = {
    FINISH: "--fix deletes it once vSphere lets it go",
    REATTACH: "--fix adds a CD-ROM with the recorded ISO",
    RECONNECT: "--fix points the CD-ROM at the recorded ISO, connected",
    DELETE: "--fix deletes it",
    DELETE_FOLDER: "--fix deletes it",
}
ISO_SECTOR = 2048
NOT_THERE = ""  # in ``digests``: the download found no file

Progress = Callable[[int, int, int], None]  # (done, changed, failed) so far


@dataclass(frozen=True)
class Finding:
    """One row: a VM's drive, or an orphan (``vm`` then names the VMs whose name its folder stands for)."""

    state: str
    vm: str = ""
    vm_id: str = ""
    datacenter: str = ""
    path: str = ""  # the ISO the drive is about, or the orphan ("[ds] ConfigDrive/x/" for a folder)
    size: int | None = None
    attention: bool = True
    notes: tuple[str, ...] = ()
    fix: str = ""  # what --fix does (REATTACH, RECONNECT, FINISH, DELETE, DELETE_FOLDER), "" for nothing
    transport: Transport = DEFAULT_TRANSPORT  # a VM's, from its record

    def to_dict(self) -> dict[str, Any]:
        return {
            "vm": self.vm or None,
            "id": self.vm_id or None,
            "datacenter": self.datacenter,
            "state": self.state,
            "attention": self.attention,
            "path": self.path or None,
            "size": self.size,
            "notes": list(self.notes),
            "fix": self.fix or None,
            **transport_field(self.transport),
        }


@dataclass(frozen=True)
class AuditRequest:
    verify: bool = False  # download each drive's ISO and compare its SHA-256 (a GET per VM)
    fix: bool = False
    min_age: float = ORPHAN_MIN_AGE


@dataclass
class AuditReport:
    findings: list[Finding] = field(default_factory=list)
    fixes: dict[int, Result | str] = field(default_factory=dict)  # finding index -> what --fix did, or why it failed
    vms: int = 0  # VMs read
    datastores: int = 0  # datastores searched
    notes: list[str] = field(default_factory=list)  # what the audit did not judge, and why
    dry_run: bool = False

    def resolved(self, index: int) -> bool:
        fixed = self.fixes.get(index)
        return isinstance(fixed, Result) and fixed.changed and not self.dry_run

    @property
    def needs_attention(self) -> list[int]:
        return [i for i, f in enumerate(self.findings) if f.attention and not self.resolved(i)]

    @property
    def exit_status(self) -> int:
        """0 all is well (or was made so), 1 something needs attention."""
        return 1 if self.needs_attention else 0


class FleetAccess(Protocol):
    """The reads the audit needs, and access for its fixes. Implemented over a session in vsphere/fleet.py."""

    def read(self, plan: SearchPlan) -> list[Fleet]: ...
    def vm(self, facts: VmFacts) -> VmAccess: ...
    def files(self, fleet: Fleet) -> FileAccess: ...


# ---- the audit ------------------------------------------------------------------------------------------------


def searches(
    vms: Sequence[VmFacts], datastores: Sequence[DatastoreInfo], whole_datacenter: bool
) -> list[tuple[DatastoreInfo, DatastorePath]]:
    """Where an audit looks for drives: ``ConfigDrive/`` on every datastore of a datacenter read whole (orphans
    are judged there), else only on the datastores the scoped VMs' drives and records name (a --folder audit)."""
    if whole_datacenter:
        chosen = list(datastores)
    else:
        files, folders = references(vms)
        named = {DatastorePath.parse(path).datastore for path in files | folders}
        chosen = [ds for ds in datastores if ds.name in named]
    return [(ds, drive_root(ds)) for ds in chosen]


def incomplete_reason(fleet: Fleet) -> str:
    if len(fleet.vms) < len(fleet.vm_names):
        return "not every VM of the datacenter was read (a folder was asked for, or VMs came or went meanwhile)"
    return "the read was incomplete"


def judge(fleet: Fleet, digests: Mapping[str, str] | None = None, min_age: float = ORPHAN_MIN_AGE) -> list[Finding]:
    """The rows of one datacenter: each VM with a drive or a record, then (after a complete read) the orphans."""
    rows = [row for row in (judge_vm(fleet, facts, digests) for facts in fleet.vms) if row is not None]
    if fleet.complete:
        rows += orphans(fleet, min_age)
    for listing in fleet.listings.values():
        if listing.problem:
            rows.append(Finding(UNCHECKED, datacenter=fleet.datacenter, path=f"[{listing.datastore}] {DRIVE_ROOT}/",
                                notes=(listing.problem,)))  # fmt: skip
    return rows


# ---- one VM ---------------------------------------------------------------------------------------------------


def judge_vm(fleet: Fleet, facts: VmFacts, digests: Mapping[str, str] | None = None) -> Finding | None:
    state = DriveState.of(facts)
    record, cdrom = state.record, state.cdrom
    if record == DriveRecord() and cdrom is None:
        return None

    def row(state_: str, *notes: str, path: str = "", size: int | None = None, fix: str = "", **kw: Any) -> Finding:
        text = tuple(n for n in notes if n) + ((FIX_TEXT[fix],) if fix else ())
        return Finding(
            state_, facts.name, facts.id, fleet.datacenter, path, size, notes=text, fix=fix,
            transport=record.drive_transport, **kw,
        )  # fmt: skip

    if is_guestinfo(record) and cdrom is None:
        return judge_keys(facts, state, row)
    if not record.iso:
        held = f"; its CD-ROM holds {cdrom.iso}, which is not this tool's" if cdrom is not None and cdrom.iso else ""
        return row(DETACHED, f"detached by esxi-configdrive{held}", attention=False)
    iso = path_or_none(record.iso)
    if iso is None:
        return row(FOREIGN_CHANGE, f"the record names {record.iso!r}, which is not a datastore path")
    problem, file_notes, size = check_file(fleet, iso, record, (digests or {}).get(facts.id))
    shared = not_shared(fleet, facts, iso.datastore)
    mine = state.made_for_this_vm
    fixable = problem is None and mine
    if cdrom is None:
        gone = "no CD-ROM holds the recorded ISO: another tool removed the drive (or emptied it)"
        return row(DEVICE_REMOVED, gone, *file_notes, shared, path=str(iso), size=size, fix=REATTACH if fixable else "")
    if cdrom.iso is None:
        emptied = "the CD-ROM was emptied by another client; the record still names the ISO"
        return row(DETACHED, emptied, *file_notes, shared, path=str(iso), size=size, fix=RECONNECT if fixable else "")
    if cdrom.iso != record.iso:
        return row(FOREIGN_CHANGE, f"the CD-ROM holds {cdrom.iso}, not the recorded ISO", path=str(iso), size=size)
    if problem is not None:
        return row(problem, *file_notes, shared, path=str(iso), size=size)
    if record.owner and not mine:
        inherited = (
            f"recorded for the VM with instance UUID {record.owner} (a clone's inherited drive): give this VM its "
            "own with attach"
        )
        return row(INHERITED, inherited, shared, path=str(iso), size=size)
    if not state.connected_as_it_should_be:
        off = "not connected at power-on" if not cdrom.start_connected else "not connected while the VM runs"
        return row(DISCONNECTED, off, *file_notes, shared, path=str(iso), size=size, fix=RECONNECT if mine else "")
    if shared:
        return row(NOT_SHARED, shared, *file_notes, path=str(iso), size=size)
    kept = kept_file(fleet, state)
    if kept:
        note = f"the replaced ISO {kept} is still there: vSphere kept it (locked or in use) when it was to go"
        return row(OK, *file_notes, note, path=str(iso), size=size, attention=False, fix=FINISH)
    return row(OK, *file_notes, path=str(iso), size=size, attention=False)


def judge_keys(facts: VmFacts, state: DriveState, row: Callable[..., Finding]) -> Finding:
    """A guestinfo VM (drive/keys.py): its keys against the record's digests, from the facts already read."""
    if state.record.owner and not state.made_for_this_vm:
        return row(INHERITED, f"guestinfo keys recorded for the VM with instance UUID {state.record.owner} (a "
                   "clone's inherited keys): give this VM its own with attach")  # fmt: skip
    changed = changed_behind_our_back(facts, state.record)
    if changed:
        return row(FOREIGN_CHANGE, f"transport guestinfo: {', '.join(changed)} changed behind the tool's back "
                   "(attach --transport guestinfo writes them again)")  # fmt: skip
    return row(OK, "transport guestinfo", attention=False)


def kept_file(fleet: Fleet, state: DriveState) -> str:
    """The ISO a swap replaced, still there and ours to delete: a delete vSphere refused (a locked file)."""
    previous = path_or_none(state.record.previous) if state.record.previous else None
    if previous is None or str(previous) == state.record.iso or not state.is_ours(previous):
        return ""
    return str(previous) if fleet.file(previous) is not None else ""


def check_file(
    fleet: Fleet, iso: DatastorePath, record: DriveRecord, digest: str | None
) -> tuple[str | None, tuple[str, ...], int | None]:
    """What the search (and with --verify the download) says of the recorded ISO: a problem state or None, the
    notes, and the file's size."""
    why = unsearched(fleet, iso)
    if why:
        return UNCHECKED, (why,), None
    entry = fleet.file(iso)
    if entry is None or digest == NOT_THERE:
        return MISSING_FILE, (f"{iso} is gone: attach --vmdata rebuilds the drive",), None
    size, expected = entry.size, record.iso_bytes
    if expected is not None and size is not None and size != expected:
        return FOREIGN_CHANGE, (f"{size} bytes where the record says {expected}: another client wrote it",), size
    if expected is None and size is not None and size % ISO_SECTOR:
        return FOREIGN_CHANGE, (f"{size} bytes is no whole number of 2048-byte sectors: not an ISO of ours",), size
    if digest is not None and digest != record.sha256:
        return FOREIGN_CHANGE, ("its SHA-256 is not the recorded one: another client wrote it",), size
    if expected is None and digest is None:
        return None, ("the record has no size (an earlier version wrote it): --verify compares the content",), size
    return None, (), size


def unsearched(fleet: Fleet, path: DatastorePath) -> str:
    """Why the search says nothing about this file ("" when it covered it)."""
    listing = fleet.listings.get(path.datastore)
    if listing is None:
        return f"datastore {path.datastore} was not searched"
    if listing.problem:
        return listing.problem
    if path.folder.folder.path != listing.root:
        return f"{path} is not in a folder under {DRIVE_ROOT}/, the only place the audit searches"
    return ""


def not_shared(fleet: Fleet, facts: VmFacts, datastore: str) -> str:
    """Empty when every host of the VM's cluster mounts the datastore (by its own list), else which do not."""
    cluster = fleet.clusters.get(facts.host_id or "", ())
    blind = sorted(fleet.host_names.get(h, h) for h in cluster if datastore not in fleet.sees.get(h, frozenset()))
    if not blind:
        return ""
    return (
        f"datastore {datastore} is not mounted by {', '.join(blind)} of the VM's cluster: vMotion and DRS to "
        "there fail (prepare-migration --host moves the ISO)"
    )


def path_or_none(text: str) -> DatastorePath | None:
    try:
        return DatastorePath.parse(text)
    except ValidationError:
        return None


# ---- orphans --------------------------------------------------------------------------------------------------


def references(vms: Iterable[VmFacts]) -> tuple[set[str], set[str]]:
    """Every file a VM's device or record points at, and every folder they are in or a record names."""
    files: set[str] = set()
    folders: set[str] = set()
    for facts in vms:  # each path stable, as the listings' are (drive/storage.py)
        record = stable_record(DriveRecord.from_extra_config(dict(facts.extra_config)), facts.datastores)
        cdroms = stable_devices(facts.devices, facts.datastores).cdroms
        named = [c.iso for c in cdroms if c.iso] + [record.iso, record.previous]
        for path in filter(None, map(path_or_none, filter(None, named))):
            files.add(str(path))
            folders.add(str(path.folder))
        folder = path_or_none(record.folder) if record.folder else None
        if folder is not None:
            folders.add(str(folder))
    return files, folders


def orphans(fleet: Fleet, min_age: float = ORPHAN_MIN_AGE) -> list[Finding]:
    """ISOs and folders under ConfigDrive/ that no VM's device or record points at, each with what --fix may do
    (the rule is in this module's docstring)."""
    files, folders = references(fleet.vms)
    owners: dict[str, list[str]] = {}
    for vm_id, name in sorted(fleet.vm_names.items(), key=lambda kv: kv[1]):
        owners.setdefault(safe_path_component(name, vm_id), []).append(name)
    rows: list[Finding] = []
    for listing in fleet.listings.values():
        if listing.problem:
            continue
        root = DatastorePath(listing.datastore, listing.root)
        for entry in listing.loose:
            if entry.name.lower().endswith(".iso") and str(root.child(entry.name)) not in files:
                rows.append(_orphan(fleet, str(root.child(entry.name)), entry.size, f"right in {DRIVE_ROOT}/, "
                                    "where this tool never writes: left alone"))  # fmt: skip
        for folder in listing.folders.values():
            rows += _orphans_in(fleet, folder, files, folders, owners.get(folder.path.name, []), min_age)
    return rows


def _orphans_in(
    fleet: Fleet, folder: DriveFolder, files: set[str], folders: set[str], owners: list[str], min_age: float
) -> list[Finding]:
    label = ", ".join(owners)
    if str(folder.path) not in folders and not owners:
        blocked = _folder_blocked(fleet, folder, min_age)
        size = sum(f.size or 0 for f in folder.files)
        what = f"a folder ({_files(len(folder.files))}) nothing points into, and no VM has its name"
        return [_orphan(fleet, f"{folder.path}/", size, what, blocked, DELETE_FOLDER)]
    rows = []
    for entry in folder.files:
        path = folder.path.child(entry.name)
        if str(path) in files or not entry.name.lower().endswith(".iso"):
            continue
        what = "no VM's drive or record points at it" + (f" (the folder stands for VM {label})" if label else "")
        blocked = _file_blocked(fleet, entry.name, entry.modified, min_age)
        rows.append(_orphan(fleet, str(path), entry.size, what, blocked, DELETE, vm=label))
    return rows


def _orphan(
    fleet: Fleet, path: str, size: int | None, what: str, blocked: str = "", fix: str = "", vm: str = ""
) -> Finding:
    chosen = "" if blocked or not fix else fix
    notes = (what, blocked or FIX_TEXT[fix]) if fix else (what,)
    return Finding(ORPHAN, vm, "", fleet.datacenter, path, size, notes=notes, fix=chosen)


def _file_blocked(fleet: Fleet, name: str, modified: float | None, min_age: float) -> str:
    """Why --fix leaves this orphan file ("" when it may delete it)."""
    if not is_drive_name(name):
        return "not a name this tool writes: left alone"
    return _too_young(fleet, modified, min_age, "modified")


def _folder_blocked(fleet: Fleet, folder: DriveFolder, min_age: float) -> str:
    if folder.subfolders:
        return "it holds subfolders, which this tool never makes: left alone"
    foreign = [f.name for f in folder.files if not is_drive_name(f.name)]
    if foreign:
        return f"it holds files this tool does not write ({', '.join(foreign[:3])}): left alone"
    for modified in [folder.modified, *(f.modified for f in folder.files)]:
        young = _too_young(fleet, modified, min_age, "changed")
        if young:
            return young
    return ""


def _too_young(fleet: Fleet, modified: float | None, min_age: float, verb: str) -> str:
    if modified is None:
        return "its age is not known: left alone"
    age = fleet.now - modified
    if age >= min_age:
        return ""
    return (
        f"{verb} {_duration(max(age, 0))} ago: a run may be attaching it right now; --fix deletes it once it is "
        f"{_duration(min_age)} old"
    )


def _files(n: int) -> str:
    return "empty" if not n else "1 file" if n == 1 else f"{n} files"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"
