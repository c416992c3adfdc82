"""prepare-migration: make sure the host a VM moves to can see its ISO (else vMotion fails with "CD/DVD drive 1
uses backing … not accessible"), optionally followed by the migration itself.

When the host does not mount the ISO's datastore: copy the ISO to one it does (the given datastore, else one the
VM's disks use, else any; for a running VM also one its current host sees, since the backing changes before the
VM moves), repoint the device in one reconfigure, then delete the old copy. Which datastores a host sees comes
from each host's own list, the same source for both ends.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..errors import ConfigDriveError, ValidationError
from ..record import DriveRecord
from ..vsphere_values import DatastoreInfo, DatastorePath, Hosts, VmFacts
from .devices import plan_swap
from .effects import Effects, VmAccess
from .keys import is_guestinfo
from .placement import checked, problem
from .policy import Policy
from .result import Outcome
from .state import DriveState, content_name
from .steps import config_change, delete_replaced_iso, finish_pending


@dataclass(frozen=True)
class MigrationRequest:
    host: str
    datastore: str | None = None
    migrate: bool = False


def prepare_migration(vm: VmAccess, effects: Effects, request: MigrationRequest, policy: Policy) -> Outcome:
    state = DriveState.of(vm.facts())
    hosts = vm.hosts(request.host)
    outcome = _make_reachable(vm, effects, state, hosts, request, policy)
    outcome.extra = {"host": request.host, "host_id": hosts.target.id}
    if request.migrate:
        effects.relocate(state.facts, hosts.target)
    return outcome


def _make_reachable(
    vm: VmAccess, effects: Effects, state: DriveState, hosts: Hosts, request: MigrationRequest, policy: Policy
) -> Outcome:
    facts, record, cdrom, current = state.facts, state.record, state.cdrom, state.current
    if (cdrom is None or not current) and is_guestinfo(record):
        effects.note("transport guestinfo: the keys are in the VM's configuration and move with it: nothing to move")
        return Outcome(facts.name, effects.steps, iso=current)
    if cdrom is None or not current:
        effects.note("the VM has no config drive attached: nothing to move")
        return Outcome(facts.name, effects.steps, iso=current)
    source = DatastorePath.parse(current)
    if hosts.host_sees(hosts.target.id, source.datastore):
        finish_pending(vm, effects, state, current)
        effects.note(f"host {request.host} already sees datastore {source.datastore}")
        return Outcome(facts.name, effects.steps, iso=current)
    target_ds = _target_datastore(facts, hosts, request.datastore, request.host)
    # Named by content: a same-named VM's drive in the target folder has another name, or the same bytes.
    name = content_name(record.digest) if record.digest else source.name
    target = state.folder(target_ds).child(name)
    deletable = source if state.is_ours(source) else None
    effects.make_folder(target.folder)
    _copy_once(vm, effects, source, target, record)
    new_record = record.replace(
        iso=str(target), device=cdrom.key, previous=str(deletable or ""), folder=str(target.folder), cluster=""
    )
    changes = plan_swap(cdrom, str(target), facts.powered_on)
    effects.apply_change(config_change(facts, changes, (new_record, record), policy), uploaded=target)
    if deletable is not None:
        delete_replaced_iso(effects, deletable, str(target), known_to_exist=True)
    return Outcome(facts.name, effects.steps, iso=str(target))


def _copy_once(vm: VmAccess, effects: Effects, source: DatastorePath, target: DatastorePath, record: DriveRecord):
    """Copy without overwriting: a target already there is fine only when it is this drive (an interrupted
    run's copy); anything else there is not ours to replace."""
    try:
        effects.copy(source, target)
    except FileExistsError:
        existing = vm.download(target)
        if not record.sha256 or hashlib.sha256(existing).hexdigest() != record.sha256:
            raise ConfigDriveError(
                f"{target} already exists and is not this VM's drive; pass another --datastore"
            ) from None


def _target_datastore(facts: VmFacts, hosts: Hosts, wanted: str | None, host: str) -> DatastoreInfo:
    """The given datastore, else the VM's own (disk) datastore the host sees, else any the host mounts; for a
    running VM, one its current host sees too (the backing changes before the VM moves)."""
    visible = {d.name: d for d in hosts.target.datastores}

    def usable(d: DatastoreInfo) -> bool:
        return not problem(d) and (not facts.powered_on or hosts.host_sees(facts.host_id, d.name))

    if wanted:
        if wanted not in visible:
            raise ValidationError("datastore", f"host {host} does not mount datastore {wanted!r}")
        checked(visible[wanted])
        if not usable(visible[wanted]):
            raise ValidationError("datastore", f"the VM's current host cannot reach {wanted!r}")
        return visible[wanted]
    own = [visible[n] for n in ([facts.vmx_datastore, *sorted(facts.datastores)]) if n in visible]
    for candidate in own + sorted(visible.values(), key=lambda d: d.name):
        if usable(candidate):
            return candidate
    raise ConfigDriveError(
        f"no datastore is mounted both by host {host} and by the VM's current host; pass --datastore"
    )
