"""detach (the VM stopped) and remove (the VM expunged).

Order: the device stops pointing at the ISO first (emptied and disconnected, or removed) in one reconfigure that
also names the ISO as ``previous`` in the record; only then is the file deleted, so no backing ever points at a
missing file, and a run interrupted in between is finished by the next one. detach keeps the (empty) folder: a
start may be attaching into it right now. remove also deletes the folder, once nothing else is in it (another VM
of the same name may keep its drive there).
"""

from __future__ import annotations

from ..record import DriveRecord
from ..transport import transport_field
from ..vsphere_values import DatastorePath, DeviceChange
from .devices import can_hot_remove, plan_empty, plan_remove
from .effects import Effects, VmAccess
from .keys import clear_keys, is_guestinfo
from .policy import Policy
from .result import Outcome
from .state import DriveState
from .steps import config_change


def detach(vm: VmAccess, effects: Effects, policy: Policy, remove: bool = False) -> Outcome:
    state = DriveState.of(vm.facts())
    facts, record, cdrom = state.facts, state.record, state.cdrom
    if is_guestinfo(record) and cdrom is None:  # the keys and the record go in one reconfigure (drive/keys.py)
        clear_keys(effects, state, policy)
        _delete_left(effects, state, [DatastorePath.parse(record.previous) if record.previous else None], remove)
        return Outcome(facts.name, effects.steps, extra=transport_field(record.drive_transport))
    # The file that stops being used: deleted after the reconfigure, and named in the record until then.
    detached = (cdrom.iso if cdrom is not None else None) or record.iso or record.previous
    file_to_delete = DatastorePath.parse(detached) if detached else None
    if file_to_delete is not None and not state.is_ours(file_to_delete):
        file_to_delete = None  # a clone's inherited drive: its file belongs to the parent
    # The transport stays recorded: status and audit still say what was detached.
    new_record = DriveRecord(
        owner=record.owner, folder=record.folder, previous=str(file_to_delete or ""), transport=record.transport
    )
    changes: list[DeviceChange] = []
    if cdrom is not None:
        removable = not facts.powered_on or (remove and can_hot_remove(facts.devices, cdrom))
        if removable:
            changes = plan_remove(cdrom)
        else:
            new_record = new_record.replace(device=cdrom.key)
            if cdrom.iso or cdrom.connected:
                changes = plan_empty(cdrom)
        if remove and not removable:
            effects.note("the IDE CD-ROM of a running VM cannot be removed: emptied instead")
    if changes or new_record != record:
        effects.apply_change(config_change(facts, changes, (new_record, record), policy))
    previous = DatastorePath.parse(record.previous) if record.previous else None
    _delete_left(effects, state, [file_to_delete, previous], remove)
    return Outcome(facts.name, effects.steps, extra=transport_field(record.drive_transport))


def _delete_left(effects: Effects, state: DriveState, paths: list[DatastorePath | None], remove: bool) -> None:
    """After the reconfigure: the files it stopped using (ours only), and on remove the folder once empty."""
    for path in dict.fromkeys(paths):
        if path is not None and state.is_ours(path):
            effects.delete(path)
    folder = state.own_folder() if remove else None
    if folder is not None:
        effects.delete_folder_if_empty(folder)
