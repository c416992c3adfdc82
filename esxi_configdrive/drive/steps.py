"""Steps several operations share: preparing the content for the guest, choosing a datastore, finishing what an
interrupted run left, retiring a replaced ISO, and the reconfigure that carries the record with the device."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from ..errors import ConfigDriveError, Stale, ValidationError
from ..iso import read_drive, read_iso
from ..layout import network_data_for_macs
from ..network import for_nics as network_for_nics
from ..record import AVOID_LOCK_QUESTION_OPTIONS, DriveRecord
from ..transport import Transport
from ..vmdata import VM_ID_KEY, VmData, check_network_choice
from ..vsphere_values import ConfigChange, DatastoreCluster, DatastorePath, DeviceChange, VmFacts
from .devices import nic_macs
from .effects import Effects, VmAccess
from .placement import Placement, checked, choose_member, problem, usable_in
from .policy import Policy
from .state import DriveState

# ---- the content, for this guest ------------------------------------------------------------------------------

# A drive's file names and sizes do not depend on the VM's instance UUID or MACs, only on their length: what a VM's
# content is sized with before the VM is read (a MAC per interface, distinct as the VM's are).
STAND_IN_VM_ID = "00000000-0000-0000-0000-000000000000"


def content_for_vm(
    data: VmData, facts: VmFacts, policy: Policy, network_data_auto: bool = False, new_instance_id: bool = False
) -> VmData:
    """The drive's content as this VM gets it: its vm-id (the VM's instance UUID when none is given, or always with
    ``new_instance_id``), meta_data.json's admin_pass decided for its guest OS, and network data whose links carry
    its NICs' real MACs (cloud-init fails on a MAC no NIC has): a `network` section's interfaces take the NICs in
    device order, ``network_data_auto`` puts every NIC on DHCP, and links given in nova's form must be its NICs'."""
    wanted = {"yes": True, "no": False}.get(policy.admin_pass)
    if wanted is None:  # cloudbase-init (Windows) reads it; cloud-init would copy it into a world-readable file
        wanted = facts.is_windows is not False
    if data.admin_pass != wanted:
        data = data.copy(admin_pass=wanted)
    data = _with_vm_id(data, facts, new_instance_id)
    data = _with_nics(data, facts, network_data_auto)
    data.validate(max_userdata_bytes=None)  # the input limit was applied where the data entered
    return data


def sized_stand_in(data: VmData) -> VmData:
    """``data`` as ``content_for_vm`` completes it, with stand-ins of the same length for what the VM supplies, so that
    its ISO can be sized before the VM is touched."""
    if not data.vm_id:
        data = data.copy(metadata={**data.metadata, VM_ID_KEY: STAND_IN_VM_ID})
    if data.network is not None:
        interfaces = data.network.get("interfaces") or []
        stand_ins = [{**iface, "mac": f"00:00:00:00:00:{n:02x}"} for n, iface in enumerate(interfaces)]
        data = data.copy(network={**data.network, "interfaces": stand_ins})
    return data


def _with_vm_id(data: VmData, facts: VmFacts, new_instance_id: bool) -> VmData:
    """The VM's own instance UUID: stable for the VM (so a re-run changes nothing), new for a clone, never the
    BIOS UUID (cloud-init then trusts its cache and ignores the drive, docs/guest-setup.md)."""
    if data.vm_id and not new_instance_id:
        return data
    if not facts.instance_uuid:
        raise ValidationError(f"metadata.{VM_ID_KEY}", f"VM {facts.name} has no instance UUID to use: give one")
    if data.vm_id == facts.instance_uuid:
        return data
    return data.copy(metadata={**data.metadata, VM_ID_KEY: facts.instance_uuid})


def _with_nics(data: VmData, facts: VmFacts, network_data_auto: bool) -> VmData:
    macs = nic_macs(facts.devices)
    if network_data_auto:
        check_network_choice("auto", data.network, {})
        if not macs:
            raise ValidationError("network-data", f"VM {facts.name} has no network adapter to describe")
        return data.copy(network_data=network_data_for_macs(macs, data.network_data))
    if data.network is not None:
        return data.copy(network=network_for_nics(data.network, macs, facts.name))
    _check_links(data.network_data, macs, facts.name)
    return data


def _check_links(network_data: dict, macs: list[str], vm: str) -> None:
    """Links in nova's form, given by hand or kept from the drive: a physical link's MAC must be one of the VM's
    NICs (bond and VLAN links name their members instead)."""
    known = {m.lower() for m in macs}
    for i, link in enumerate(network_data.get("links") or []):
        mac = link.get("ethernet_mac_address") if isinstance(link, dict) else None
        if mac and link.get("type") not in ("bond", "vlan") and mac.lower() not in known:
            raise ValidationError(
                f"network_data.links[{i}].ethernet_mac_address",
                f"{mac} is not the MAC of any of VM {vm}'s NICs ({', '.join(sorted(known)) or 'none'}): cloud-init "
                "would fail on it; give a network section (MACs follow the VM), --network-data auto or none",
            )


def warnings_for(data: VmData, facts: VmFacts) -> list[str]:
    if facts.bios_uuid and data.vm_id.lower() == facts.bios_uuid.lower():
        return [
            "vm-id equals the VM's BIOS UUID: cloud-init then trusts its cache and ignores later drive updates "
            "(hostname, password reset); give the drive its own vm-id (docs/guest-setup.md)"
        ]
    return []


# ---- where the ISO goes ---------------------------------------------------------------------------------------


def pick_datastore(vm: VmAccess, facts: VmFacts, wanted: str | None) -> Placement:
    """The datastore for a new ISO: the one asked for (one the VM uses, or any its host mounts; for a datastore
    cluster, the member placement.py chooses), refused before anything is written when it cannot take a file;
    else the one holding the VM's configuration file, or another of the VM's that can."""
    if wanted:
        found = facts.datastores.get(wanted) or vm.datastore(wanted)
        return choose_member(found) if isinstance(found, DatastoreCluster) else checked(found)
    own = sorted(facts.datastores.values(), key=lambda d: (d.name != facts.vmx_datastore, d.name))
    for ds in own:
        if not problem(ds):
            return Placement(ds)
    if own:
        reasons = "; ".join(f"{d.name}: {problem(d)}" for d in own)
        raise ValidationError(
            "datastore", f"no datastore of VM {facts.name} can take the drive ({reasons}); pass --datastore"
        )
    raise ConfigDriveError(f"VM {facts.name} uses no datastore; pass --datastore")


def swap_datastore(
    vm: VmAccess, facts: VmFacts, current: str | None, wanted: str | None, default: str | None, cluster: str = ""
) -> Placement:
    """Where a replacement ISO goes: where the current one is, while that datastore can take a file and is what
    was asked for (by its name, or by the datastore cluster it was chosen from: ``cluster``); else the asked
    datastore; else, for a drive placed in a cluster, another member of it; else the default."""
    here = facts.datastores.get(DatastorePath.parse(current).datastore) if current else None
    if here is not None and usable_in(here) and (not wanted or wanted in (here.name, cluster)):
        return Placement(here, cluster)
    if wanted or cluster:
        return pick_datastore(vm, facts, wanted or cluster)
    return pick_datastore(vm, facts, default)


# ---- reading what is there ------------------------------------------------------------------------------------


def raise_if_changed(vm: VmAccess, facts: VmFacts) -> None:
    """A file the VM pointed at when read is gone: when the VM has changed since, that is a concurrent swap,
    not a missing file, and the operation starts again from a fresh read."""
    if vm.facts().change_version != facts.change_version:
        raise Stale(f"VM {facts.name} changed while it was read")


def file_matches_record(vm: VmAccess, current: str, record: DriveRecord) -> bool:
    """The attached file is there and is the one recorded: not deleted, truncated or overwritten behind our
    back (one GET, as many round trips as a HEAD)."""
    try:
        content = vm.download(DatastorePath.parse(current))
    except (FileNotFoundError, ValidationError):
        return False
    return hashlib.sha256(content).hexdigest() == record.sha256


def leftover_isos_or_refuse(vm: VmAccess, folder: DatastorePath, vm_id: str) -> list[DatastorePath]:
    """ISOs already in the folder of a VM that has no drive: left by an interrupted run. A drive made for
    another vm-id means another VM shares the folder (same name): refuse rather than touch its file.

    Only attach looks: an update's leftovers have the name its re-run writes again (names follow the content,
    and the bytes are reproducible), detach deletes the file it detached, remove the whole folder."""
    found = []
    for name in vm.listing(folder) or []:
        path = folder.child(name)
        try:
            other = read_iso(vm.download(path))
        except (ValidationError, FileNotFoundError):
            found.append(path)  # a partial or broken upload of ours
            continue
        if other.vm_id != vm_id:
            raise ConfigDriveError(
                f"{path} holds the config drive of another VM (vm-id {other.vm_id}); two VMs named alike share "
                f"{folder}. Remove that VM's drive, or give this one another --datastore"
            )
        found.append(path)
    return found


# ---- deleting what is ours ------------------------------------------------------------------------------------


def finish_pending(vm: VmAccess, effects: Effects, state: DriveState, current: str, keep: str = "") -> None:
    """Delete the file a crashed run swapped out but did not get to delete (and its folder when the drive moved
    out of it, as the finished run would have)."""
    previous_text = state.record.previous
    if not previous_text or previous_text in (current, keep):
        return
    previous = DatastorePath.parse(previous_text)
    if not state.is_ours(previous):
        return
    if vm.exists(previous):
        delete_replaced_iso(effects, previous, current, why="left by an interrupted run", known_to_exist=True)
    elif previous.folder != DatastorePath.parse(current).folder:
        effects.delete_folder_if_empty(previous.folder)


def delete_replaced_iso(
    effects: Effects, old: DatastorePath, current: str | None, why: str = "", known_to_exist: bool = False
) -> None:
    """Delete a replaced ISO of ours; when the drive moved out of its folder, the folder too once empty. The
    record names the file as ``previous`` until then, so when nothing follows (same folder) the delete may be
    confirmed after the operation (batch mode)."""
    moved = current is None or old.folder != DatastorePath.parse(current).folder
    effects.delete(old, why=why, known_to_exist=known_to_exist, confirm_later=not moved)
    if moved:
        effects.delete_folder_if_empty(old.folder, why=why)


# ---- the reconfigure ------------------------------------------------------------------------------------------


def extra_config_changes(
    facts: VmFacts, new: DriveRecord, old: DriveRecord, avoid_lock_question: bool
) -> dict[str, str]:
    """The record's changes, and (when asked) the options that keep ESXi from asking the locked-door question."""
    options = new.changes_from(old)
    if avoid_lock_question:
        options.update({k: v for k, v in AVOID_LOCK_QUESTION_OPTIONS.items() if facts.extra_config.get(k) != v})
    return options


def config_change(
    facts: VmFacts,
    changes: Sequence[DeviceChange],
    records: tuple[DriveRecord, DriveRecord],
    policy: Policy,
    keys: Mapping[str, str] | None = None,
) -> ConfigChange:
    """One reconfigure: the device change and the record (``records``: new, old) together, so no crash can part
    them (``Effects.apply_change`` makes it); ``keys``: guestinfo keys to write ("" removes one) in the same one."""
    new, old = records
    extra = {**(keys or {}), **extra_config_changes(facts, new, old, policy.avoid_lock_question)}
    return ConfigChange(facts, tuple(changes), extra)


def download_drive(vm: VmAccess, state: DriveState) -> tuple[Transport, VmData]:
    """The transport and content of the attached ISO (update's starting point); a missing or unreadable file is
    said plainly."""
    facts, current = state.facts, state.current or ""
    try:
        iso = vm.download(DatastorePath.parse(current))
    except FileNotFoundError:
        raise_if_changed(vm, facts)  # another client swapped the drive and deleted this file meanwhile
        raise ConfigDriveError(
            f"the ISO attached to VM {facts.name} ({current}) is missing; run attach --vmdata to rebuild it"
        ) from None
    try:
        return read_drive(iso)
    except ValidationError as e:  # the datastore's file is input too: say which, and the way out
        reason = e.message if e.field == "iso" else str(e)
        raise ValidationError(
            "iso", f"{current} is not a readable config drive ({reason}); attach --vmdata rebuilds it"
        ) from None
