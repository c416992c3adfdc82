"""attach: give a VM a config drive on a second CD-ROM (never its own first one), connected at power-on.

Order, so that a crash at any step leaves a complete drive or none: make the folder, upload the ISO, then one
ReconfigVM adds the CD-ROM pointing at it together with the record. On a VM that has a drive already (maybe
emptied by a detach) attach makes that drive hold the data instead (swap.py). Idempotent: the same data again
changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..defaults import DEFAULT_LABEL
from ..errors import ConfigDriveError, OutcomeUnknown, Stale, ValidationError
from ..iso import tree_to_iso
from ..record import DriveRecord
from ..transport import Transport, build_drive_tree, check_label_for, kept_or, transport_field
from ..vmdata import VmData
from ..vsphere_values import DeviceChange, VmFacts
from .devices import DevicePlanError, plan_attach
from .effects import Effects, VmAccess
from .keys import leaving_keys, put_keys
from .policy import Policy
from .result import Outcome
from .state import FIRST_ISO_NAME, DriveState, attach_name
from .steps import config_change, content_for_vm, leftover_isos_or_refuse, pick_datastore, warnings_for
from .swap import swap_in


@dataclass(frozen=True)
class AttachRequest:
    data: VmData
    datastore: str | None = None
    controller: str = "auto"
    network_data_auto: bool = False
    new_instance_id: bool = False  # vm-id := the VM's instance UUID, whatever the data says (a clone's fresh id)
    transport: Transport | None = None  # None: the drive's own (a new drive: the default, transport.kept_or)
    guestinfo_password: bool = False  # a password may go over guestinfo (drive/keys.py check_password)


def attach(vm: VmAccess, effects: Effects, request: AttachRequest, policy: Policy) -> Outcome:
    state = DriveState.of(vm.facts())
    facts = state.facts
    transport = kept_or(request.transport, state.record.drive_transport)
    check_label_for(transport, request.data.label if request.data.label != DEFAULT_LABEL else None)
    data = content_for_vm(request.data, facts, policy, request.network_data_auto, request.new_instance_id)
    if transport is Transport.GUESTINFO:
        outcome = put_keys(vm, effects, state, data, policy, request.guestinfo_password)
    elif state.cdrom is not None:
        outcome = swap_in(vm, effects, state, data, policy, transport, request.datastore, verify_current=True)
    else:
        outcome = attach_new(vm, effects, state, data, replace(request, transport=transport), policy)
    outcome.warnings += warnings_for(data, facts)
    return outcome


def attach_new(
    vm: VmAccess, effects: Effects, state: DriveState, data: VmData, request: AttachRequest, policy: Policy
) -> Outcome:
    facts, transport = state.facts, kept_or(request.transport, state.record.drive_transport)
    placement = pick_datastore(vm, facts, request.datastore or policy.default_datastore)
    ds = placement.datastore
    if placement.cluster:
        effects.note(placement.describe())
    folder = state.folder(ds)
    target = folder.child(FIRST_ISO_NAME)
    changes = _plan(facts, str(target), request.controller)  # a slot must be free before anything is written
    tree = build_drive_tree(data, transport, max_userdata_bytes=None)
    left: list = []
    created = effects.make_folder(folder)
    if not created:
        # The folder was there: left by a detach, an interrupted run, or a run going on right now. Never write a
        # name another run may be using or deleting: this one is unique to the VM's current version.
        left = leftover_isos_or_refuse(vm, folder, data.vm_id)
        target = folder.child(attach_name(tree.digest(), facts.change_version))
        changes = _plan(facts, str(target), request.controller)
    try:
        iso = tree_to_iso(tree)
        sha = effects.upload(target, iso)
        new_record = DriveRecord(
            iso=str(target),
            digest=tree.digest(),
            sha256=sha,
            size=str(len(iso)),
            owner=facts.instance_uuid,
            folder=str(folder),
            cluster=placement.cluster,
            transport=DriveRecord.transport_value(transport),
        )
        change = config_change(facts, changes, (new_record, state.record), policy, keys=leaving_keys(state))
        effects.apply_change(change, uploaded=target)
    except (Stale, OutcomeUnknown):
        raise  # the retry loop, or the next run, finishes what this one started
    except (ConfigDriveError, FileNotFoundError):  # FileNotFoundError: a datastore /folder does not find
        if created:  # refused (licence, datastore, vSphere): the folder this run made goes too
            effects.discard_folder(folder)
        raise
    for stray in left:
        if stray != target:
            effects.delete(stray, known_to_exist=True)
    return Outcome(facts.name, effects.steps, iso=str(target), sha256=sha, extra=transport_field(transport))


def _plan(facts: VmFacts, iso_path: str, controller: str) -> list[DeviceChange]:
    try:
        return plan_attach(facts.devices, iso_path, facts.powered_on, controller)
    except DevicePlanError as e:
        raise ValidationError("controller", str(e)) from None
