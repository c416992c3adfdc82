"""audit: every config drive of a fleet judged (audit_judge.py) from a few reads, the ISOs downloaded with
--verify, and with --fix what is safe repaired, through an ``Effects`` object like every operation.

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
from collections.abc import Callable, Mapping, Sequence
from functools import partial

from ..errors import ValidationError, describe_failure, one_line
from ..record import DriveRecord
from ..vsphere_values import DatastorePath, DeviceChange, Fleet
from .attempts import run_attempts
from .audit_judge import (
    DELETE,
    DELETE_FOLDER,
    FINISH,
    NOT_THERE,
    ORPHAN,
    REATTACH,
    RECONNECT,
    AuditReport,
    AuditRequest,
    Finding,
    FleetAccess,
    Progress,
    incomplete_reason,
    judge,
    path_or_none,
    searches,
    unsearched,
)
from .devices import DevicePlanError, plan_attach, plan_swap
from .effects import Effects, FileAccess, VmAccess
from .policy import Policy
from .result import Outcome, Result
from .state import DriveState
from .steps import config_change, file_matches_record, finish_pending


def audit(
    access: FleetAccess,
    request: AuditRequest,
    policy: Policy,
    effects_type: type[Effects],
    progress: Progress | None = None,
) -> AuditReport:
    fleets = access.read(searches)
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


# ---- verify ---------------------------------------------------------------------------------------------------


def verify(files: FileAccess, fleet: Fleet, progress: Progress | None = None) -> dict[str, str]:
    """The SHA-256 of each drive's recorded ISO the search saw (one GET each): VM id -> digest, or NOT_THERE."""
    out: dict[str, str] = {}
    for facts in fleet.vms:
        record = DriveRecord.from_extra_config(dict(facts.extra_config))
        path = path_or_none(record.iso) if record.iso else None
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
    repairs = [i for i, f in enumerate(report.findings) if f.fix in (REATTACH, RECONNECT, FINISH)]
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
        attempt(index, partial(_repaired, vm, policy, effects_type))
    if deletions:
        again = _read_again(access, request.min_age)
        for index in deletions:
            attempt(index, partial(delete_orphan, access, *again, report.findings[index], effects_type))


def _repaired(vm: VmAccess, policy: Policy, effects_type: type[Effects]) -> Outcome:
    return run_attempts(lambda effects: repair(vm, effects, policy), lambda: effects_type(vm), policy.max_attempts)


def _read_again(access: FleetAccess, min_age: float) -> tuple[dict[str, Fleet], set[tuple[str, str, str]]]:
    """Rule 5: everything read again just before deleting, and the orphans that may go by that read."""
    fleets = {fleet.datacenter: fleet for fleet in access.read(searches)}
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
    if state.current:
        finish_pending(vm, effects, state, state.current)  # a replaced ISO vSphere kept (locked) goes once it may
    plan = plan_repair(state)
    if isinstance(plan, str):
        if not effects.steps:
            effects.note(plan)
        return Outcome(facts.name, effects.steps, iso=state.current)
    if not file_matches_record(vm, record.iso, record):
        effects.note(f"{record.iso} is missing or not the recorded file: left as it is (attach --vmdata rebuilds it)")
        return Outcome(facts.name, effects.steps, iso=state.current)
    changes, new_record = plan
    effects.apply_change(config_change(facts, changes, (new_record, record), policy))
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
    effects = effects_type.file_effects(access.files(fleet))
    if (finding.datacenter, finding.path, finding.fix) not in confirmed:
        effects.note(f"{finding.path} is no longer an orphan that may go (read again just now): left alone")
        return Outcome(finding.vm, effects.steps)
    if finding.fix == DELETE:
        effects.delete(DatastorePath.parse(finding.path), why="orphan", known_to_exist=True)
        return Outcome(finding.vm, effects.steps, warnings=effects.warnings)
    folder = DatastorePath.parse(finding.path.rstrip("/"))
    for entry in fleet.listings[folder.datastore].folders[folder.path].files:
        effects.delete(folder.child(entry.name), why="orphan", known_to_exist=True)
    effects.delete_folder_if_empty(folder, why="orphan")
    return Outcome(finding.vm, effects.steps, warnings=effects.warnings)  # a locked file stays, for the next --fix
