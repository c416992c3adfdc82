"""Make the config-drive CD-ROM hold some content, over one ISO transport: unchanged when it already does; else
upload under a new name, repoint the device in one reconfigure (an update's detach + reattach in one step), then
delete the old file.
What update does, and attach on a VM that already has a drive. A move between the ISO transports (config-2 and a
NoCloud seed) is this same swap: the new ISO under its own name, one reconfigure for the backing and the record
(its transport with it), the old file deleted after; a finished run never leaves both."""

from __future__ import annotations

from ..iso import tree_to_iso
from ..record import DriveRecord
from ..transport import Transport, build_drive_tree, transport_field
from ..vmdata import VmData
from ..vsphere_values import DatastorePath
from .devices import plan_swap
from .effects import Effects, VmAccess
from .placement import Placement, usable_in
from .policy import Policy
from .result import Outcome
from .state import DriveState, content_name
from .steps import config_change, delete_replaced_iso, file_matches_record, finish_pending, swap_datastore


def swap_in(
    vm: VmAccess,
    effects: Effects,
    state: DriveState,
    data: VmData,
    policy: Policy,
    transport: Transport,
    datastore: str | None = None,
    verify_current: bool = False,
) -> Outcome:
    """``datastore``: where the drive must be (another than its own: it moves there). ``verify_current``: the
    attached file must also be intact (attach repairs a deleted or overwritten file; update has just read it)."""
    facts, record, cdrom = state.facts, state.record, state.cdrom
    assert cdrom is not None, "swap_in needs the config-drive CD-ROM"
    tree = build_drive_tree(data, transport, max_userdata_bytes=None)
    digest = tree.digest()
    current = cdrom.iso

    def where() -> Placement:
        return swap_datastore(vm, facts, current, datastore, policy.default_datastore, record.cluster)

    # Asked for a datastore, or the drive's own cannot take a file any more: where it goes decides whether it moves.
    stays = not datastore and current and usable_in(facts.datastores.get(DatastorePath.parse(current).datastore))
    placement = None if stays else where()
    moving = bool(placement and current and DatastorePath.parse(current).datastore != placement.datastore.name)
    same_content = (
        (state.made_for_this_vm and not moving and current is not None and current == record.iso)
        and record.digest == digest
        and record.drive_transport is transport
    )
    iso: bytes | None = None
    if same_content and current is not None and (not verify_current or file_matches_record(vm, current, record)):
        finish_pending(vm, effects, state, current)
        if state.connected_as_it_should_be:
            return Outcome(facts.name, effects.steps, iso=current, extra=transport_field(transport))
        target = DatastorePath.parse(current)  # only the connection state needs fixing
    else:
        placement = placement or where()
        target = state.folder(placement.datastore).child(content_name(digest))
        iso = tree_to_iso(tree)
        if placement.cluster and (not current or DatastorePath.parse(current).datastore != placement.datastore.name):
            effects.note(placement.describe())  # a choice made now, not the member the drive stays on
    old = DatastorePath.parse(current) if current and str(target) != current else None
    deletable_old = old if old is not None and state.is_ours(old) else None
    sha, size = record.sha256, record.size
    if iso is not None:
        finish_pending(vm, effects, state, current or str(target), keep=str(target))
        if old is None or old.folder != target.folder:
            effects.make_folder(target.folder)
        sha, size = effects.upload(target, iso), str(len(iso))
    new_record = record.replace(
        iso=str(target),
        digest=digest,
        sha256=sha,
        size=size,
        owner=facts.instance_uuid,
        device=cdrom.key,
        previous=str(deletable_old) if deletable_old else "",
        folder=str(target.folder),
        cluster=placement.cluster if placement else record.cluster,
        transport=DriveRecord.transport_value(transport),
    )
    changes = plan_swap(cdrom, str(target), facts.powered_on)
    change = config_change(facts, changes, (new_record, record), policy)
    effects.apply_change(change, target if iso is not None else None)
    if deletable_old is not None:
        # the device pointed at it until now
        delete_replaced_iso(effects, deletable_old, str(target), known_to_exist=True)
    return Outcome(facts.name, effects.steps, iso=str(target), sha256=sha, extra=transport_field(transport))
