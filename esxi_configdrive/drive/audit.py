"""audit: every config drive of a fleet, judged from reads whose number does not grow with the fleet, and --fix
for what is safe to repair.

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

--fix, through an ``Effects`` object like every operation (so ``--dry-run`` shows it): a removed or emptied or
disconnected drive gets its recorded ISO back, when that file is there and is the recorded one (its SHA-256,
downloaded), through the device planning attach uses, in one reconfigure with the record (``repair``); nothing
is ever re-uploaded (the VM's data is not known here). Orphans are deleted by this rule, since a run of this tool
elsewhere may be between the upload of an ISO and the reconfigure that points at it, and other VMs may share a
folder by name:

1. Only orphans of a complete read (every VM of the datacenter, none vanished during it; not with ``--folder``).
2. Only files this tool writes (``configdrive.iso``, ``configdrive-<12 hex>[-<6 hex>].iso``) in a folder
   ``ConfigDrive/<name>``; nothing right in ``ConfigDrive/``, no subfolder, no other file.
3. Only files last modified ``min_age`` ago or more (defaults.ORPHAN_MIN_AGE, by vCenter's clock): a run holds
   an unreferenced upload for at most its task timeout per attempt, and every attempt writes the file again.
4. A folder goes only when no VM of the datacenter has the name it stands for (an attach only writes into the
   folder of its VM's name), it holds nothing but rule-2 files, and it and its files satisfy rule 3; it is
   deleted after its files, and only when a listing just before shows it empty. A folder some VM's name stands
   for keeps its place; its orphan ISOs go one by one.
5. Just before deleting, everything is read again and only what is still an orphan under these rules goes.

What is left: a file becomes referenced in the moment between the second read and its deletion only if another
client attaches a day-old file it did not upload again, which this tool never does (every run uploads anew,
prepare-migration copies only onto a file that is this very drive).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..defaults import ORPHAN_MIN_AGE
from ..errors import ValidationError, describe_failure, one_line
from ..record import DriveRecord
from .attempts import run_attempts
from .devices import DevicePlanError, plan_attach, plan_swap
from .effects import Effects, VmAccess
from .model import DatastorePath, DeviceChange, DriveFolder, Fleet, VmFacts, safe_path_component
from .policy import Policy
from .result import Outcome, Result
from .state import DRIVE_ROOT, DriveState, is_drive_name
from .steps import intact, reconfigure

OK, DETACHED, DEVICE_REMOVED, MISSING_FILE = "ok", "detached", "device-removed", "missing-file"
FOREIGN_CHANGE, DISCONNECTED, NOT_SHARED, INHERITED = "foreign-change", "disconnected", "not-shared", "inherited"
UNCHECKED, ORPHAN = "unchecked", "orphan"
STATES = (OK, DETACHED, DEVICE_REMOVED, MISSING_FILE, FOREIGN_CHANGE, DISCONNECTED, NOT_SHARED, INHERITED,
          UNCHECKED, ORPHAN)  # fmt: skip

REATTACH, RECONNECT, DELETE, DELETE_FOLDER = "reattach", "reconnect", "delete", "delete-folder"
FIX_TEXT = {
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
    fix: str = ""  # what --fix does (REATTACH, RECONNECT, DELETE, DELETE_FOLDER), "" for nothing

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

    def read(self) -> list[Fleet]: ...
    def vm(self, facts: VmFacts) -> VmAccess: ...
    def files(self, fleet: Fleet) -> VmAccess: ...  # only download/exists/listing/delete: datastore files


# ---- the audit ------------------------------------------------------------------------------------------------


def audit(
    access: FleetAccess,
    request: AuditRequest,
    policy: Policy,
    effects_type: type[Effects],
    progress: Progress | None = None,
) -> AuditReport:
    fleets = access.read()
    report = AuditReport(dry_run=effects_type.dry_run)
    for fleet in fleets:
        digests = verify(access.files(fleet), fleet, progress) if request.verify else None
        report.findings += judge(fleet, digests, request.min_age)
        report.vms += len(fleet.vms)
        report.datastores += sum(1 for listing in fleet.listings.values() if not listing.problem)
        if not fleet.complete:
            report.notes.append(f"orphans in {fleet.datacenter} not judged: {incomplete_reason(fleet)}")
    if request.fix:
        fix(access, fleets, report, request, policy, effects_type, progress)
    return report


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
        return Finding(state_, facts.name, facts.id, fleet.datacenter, path, size, notes=text, fix=fix, **kw)

    if not record.iso:
        held = f"; its CD-ROM holds {cdrom.iso}, which is not this tool's" if cdrom is not None and cdrom.iso else ""
        return row(DETACHED, f"detached by esxi-configdrive{held}", attention=False)
    iso = _parse(record.iso)
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
    return row(OK, *file_notes, path=str(iso), size=size, attention=False)


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
    if path.folder.folder.path != DRIVE_ROOT:
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


def _parse(text: str) -> DatastorePath | None:
    try:
        return DatastorePath.parse(text)
    except ValidationError:
        return None


# ---- orphans --------------------------------------------------------------------------------------------------


def references(vms: Iterable[VmFacts]) -> tuple[set[str], set[str]]:
    """Every file a VM's device or record points at, and every folder they are in or a record names."""
    files: set[str] = set()
    folders: set[str] = set()
    for facts in vms:
        record = DriveRecord.from_extra_config(dict(facts.extra_config))
        named = [c.iso for c in facts.devices.cdroms if c.iso] + [record.iso, record.previous]
        for path in filter(None, map(_parse, filter(None, named))):
            files.add(str(path))
            folders.add(str(path.folder))
        folder = _parse(record.folder) if record.folder else None
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
        root = DatastorePath(listing.datastore, DRIVE_ROOT)
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


# ---- verify ---------------------------------------------------------------------------------------------------


def verify(files: VmAccess, fleet: Fleet, progress: Progress | None = None) -> dict[str, str]:
    """The SHA-256 of each drive's recorded ISO the search saw (one GET each): VM id -> digest, or NOT_THERE."""
    out: dict[str, str] = {}
    for facts in fleet.vms:
        record = DriveRecord.from_extra_config(dict(facts.extra_config))
        path = _parse(record.iso) if record.iso else None
        if path is None or unsearched(fleet, path) or fleet.file(path) is None:
            continue
        try:
            out[facts.id] = hashlib.sha256(files.download(path)).hexdigest()
        except FileNotFoundError:
            out[facts.id] = NOT_THERE
        except ValidationError:  # larger than any drive: surely not the recorded file
            out[facts.id] = "too large"
        if progress is not None:
            progress(len(out), 0, 0)
    return out


# ---- --fix ----------------------------------------------------------------------------------------------------


def fix(
    access: FleetAccess,
    fleets: Sequence[Fleet],
    report: AuditReport,
    request: AuditRequest,
    policy: Policy,
    effects_type: type[Effects],
    progress: Progress | None = None,
) -> None:
    """Repair the VMs' drives, then read everything again and delete the orphans that read confirms (rule 5)."""
    facts_by_id = {facts.id: facts for fleet in fleets for facts in fleet.vms}
    repairs = [i for i, f in enumerate(report.findings) if f.fix in (REATTACH, RECONNECT)]
    deletions = [i for i, f in enumerate(report.findings) if f.fix in (DELETE, DELETE_FOLDER)]
    tally = [0, 0, 0]  # done, changed, failed

    def attempt(index: int, make: Callable[[], Outcome]) -> None:
        try:
            result = Result.of(make(), effects_type.dry_run)
            report.fixes[index] = result
            tally[1] += result.changed
        except Exception as e:  # one fix's failure is its row's; the others go on
            report.fixes[index] = one_line(describe_failure(e)[0])
            tally[2] += 1
        tally[0] += 1
        if progress is not None:
            progress(*tally)

    for index in repairs:
        vm = access.vm(facts_by_id[report.findings[index].vm_id])
        attempt(index, lambda vm=vm: run_attempts(
            lambda effects: repair(vm, effects, policy), lambda: effects_type(vm), policy.max_attempts))  # fmt: skip
    if deletions:
        again = _read_again(access, request.min_age)
        for index in deletions:
            attempt(index, lambda index=index: delete_orphan(access, *again, report.findings[index], effects_type))


def _read_again(access: FleetAccess, min_age: float) -> tuple[dict[str, Fleet], set[tuple[str, str, str]]]:
    """Rule 5: everything read again just before deleting, and the orphans that may go by that read."""
    fleets = {fleet.datacenter: fleet for fleet in access.read()}
    confirmed = {
        (f.datacenter, f.path, f.fix)
        for fleet in fleets.values()
        for f in judge(fleet, None, min_age)
        if f.state == ORPHAN and f.fix
    }
    return fleets, confirmed


def repair(vm: VmAccess, effects: Effects, policy: Policy) -> Outcome:
    """Give a VM's drive back its recorded ISO, decided again on a fresh read: a CD-ROM added (the slot chosen as
    attach chooses it) or the existing one repointed and connected, with the record, in one reconfigure; only
    when the file is there and is the recorded one."""
    state = DriveState.of(vm.facts())
    facts, record = state.facts, state.record
    plan = plan_repair(state)
    if isinstance(plan, str):
        effects.note(plan)
        return Outcome(facts.name, effects.steps, iso=state.current)
    if not intact(vm, record.iso, record):
        effects.note(f"{record.iso} is missing or not the recorded file: left as it is (attach --vmdata rebuilds it)")
        return Outcome(facts.name, effects.steps, iso=state.current)
    changes, new_record = plan
    reconfigure(vm, effects, facts, changes, (new_record, record), policy)
    return Outcome(facts.name, effects.steps, iso=record.iso)


def plan_repair(state: DriveState) -> tuple[list[DeviceChange], DriveRecord] | str:
    """The device change that gives the drive its recorded ISO back, or why there is none."""
    facts, record, cdrom = state.facts, state.record, state.cdrom
    if not record.iso or not state.made_for_this_vm:
        return "the VM has no recorded drive of its own to give back"
    if cdrom is None:
        try:
            changes = plan_attach(facts.devices, record.iso, facts.powered_on)
        except DevicePlanError as e:
            return f"no place for the CD-ROM: {e}"
        return changes, record.replace(device="")  # the removed device's key may be another device's by now
    if cdrom.iso not in (None, record.iso):
        return f"the CD-ROM holds {cdrom.iso}, which is not the recorded ISO: left as it is"
    if cdrom.iso is not None and state.connected_as_it_should_be:
        return "the drive holds its recorded ISO and is connected: nothing to do"
    return plan_swap(cdrom, record.iso, facts.powered_on), record.replace(device=cdrom.key)


def delete_orphan(
    access: FleetAccess,
    fleets: Mapping[str, Fleet],
    confirmed: set[tuple[str, str, str]],
    finding: Finding,
    effects_type: type[Effects],
) -> Outcome:
    """Delete an orphan that the second read (``fleets``, ``confirmed``) still finds one under the same rule."""
    fleet = fleets.get(finding.datacenter)
    if fleet is None:
        raise ValidationError("datacenter", f"{finding.datacenter} was not found again")
    effects = effects_type(access.files(fleet))
    if (finding.datacenter, finding.path, finding.fix) not in confirmed:
        effects.note(f"{finding.path} is no longer an orphan that may go (read again just now): left alone")
        return Outcome(finding.vm, effects.steps)
    if finding.fix == DELETE:
        effects.delete(DatastorePath.parse(finding.path), why="orphan", known_to_exist=True)
        return Outcome(finding.vm, effects.steps)
    folder = DatastorePath.parse(finding.path.rstrip("/"))
    for entry in fleet.listings[folder.datastore].folders[folder.path].files:
        effects.delete(folder.child(entry.name), why="orphan", known_to_exist=True)
    effects.delete_folder_if_empty(folder, why="orphan")
    return Outcome(finding.vm, effects.steps)
