"""update: change what the drive holds (user data, password, SSH keys, anything). Download the attached ISO,
read it, apply the changes, and swap the result in (swap.py): upload under a new name, repoint the device in one
reconfigure, delete the old file. A crash at any step leaves the VM pointing at a complete ISO."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigDriveError
from ..guestinfo import read_keys
from ..transport import Transport, check_label_for, kept_or
from ..vmdata import VM_ID_KEY, ContentChange, VmData
from .attach import AttachRequest, attach_new
from .effects import Effects, VmAccess
from .keys import current_keys, is_guestinfo, put_keys
from .policy import Policy
from .result import Outcome
from .state import DriveState
from .steps import content_for_vm, download_drive, warnings_for
from .swap import swap_in

# How the drive is laid out stays as it is unless the update says otherwise, also when --vmdata replaces the rest.
LAYOUT_FIELDS = ("label", "password_vendor_data", "dated_versions", "empty_network_data")


@dataclass(frozen=True)
class UpdateRequest:
    data: VmData | None = None  # replaces the content
    change: ContentChange = field(default_factory=ContentChange)  # fields, layout, network-data choice
    new_instance_id: bool = False  # vm-id := the VM's instance UUID (a clone's fresh id)
    transport: Transport | None = None  # another transport to move to; None: the drive's own stays
    guestinfo_password: bool = False  # a password may go over guestinfo (drive/keys.py check_password)


def update(vm: VmAccess, effects: Effects, request: UpdateRequest, policy: Policy) -> Outcome:
    state = DriveState.of(vm.facts())
    facts = state.facts
    keys = is_guestinfo(state.record) and state.cdrom is None
    if not keys and (state.cdrom is None or not state.current):
        raise ConfigDriveError(f"VM {facts.name} has no config drive attached; use attach --vmdata first")
    if keys:
        current_transport, now = Transport.GUESTINFO, read_keys(current_keys(facts))
    else:
        current_transport, now = download_drive(vm, state)
    transport, change = kept_or(request.transport, current_transport), request.change
    check_label_for(transport, change.label)  # a seed's label is its transport's
    new = now if request.data is None else _replacing(now, request.data)
    new = change.applied_to(new)  # checked where it entered; the result validated without the input limit
    new = content_for_vm(new, facts, policy, change.network_data_auto, request.new_instance_id)
    if transport is Transport.GUESTINFO:
        outcome = put_keys(vm, effects, state, new, policy, request.guestinfo_password)
    elif keys:  # from guestinfo to an ISO transport: attach's path, which clears the keys as it adds the CD-ROM
        outcome = attach_new(vm, effects, state, new, AttachRequest(new, transport=transport), policy)
    else:
        outcome = swap_in(vm, effects, state, new, policy, transport)
    outcome.warnings += warnings_for(new, facts)
    return outcome


def _replacing(now: VmData, data: VmData) -> VmData:
    """New content for the drive: the layout stays, and so does the vm-id when the new data has none (an update
    is the same instance; a new id makes cloud-init provision the VM again: --new-instance-id says so)."""
    new = data.copy(**{k: getattr(now, k) for k in LAYOUT_FIELDS})
    if not new.vm_id and now.vm_id:
        new.metadata[VM_ID_KEY] = now.vm_id
    return new
