"""The guestinfo transport's operations: the VM data as VMware guestinfo keys in the VM's extraConfig (the keys
themselves: guestinfo.py), with no upload, no CD-ROM and no reboot.

Everything is one ReconfigVM on the changeVersion the plan was read at (``steps.config_change``): the keys that
differ from what the VM holds (a key set to "" is removed), and the drive record (``transport`` guestinfo, a digest
of each key written, the redacted names). So an unchanged re-run sends nothing, an update only what changed, and no
crash can part the keys from their record.

Moves: a VM with an ISO drive (config drive or NoCloud) that is given guestinfo loses its CD-ROM in the same
reconfigure that writes the keys (removed, or emptied where vSphere cannot hot-remove it; the record names the ISO
as ``previous``), and the ISO file is deleted after it. At every crash point one transport works: before the
reconfigure the ISO, after it the keys; a finished run leaves only the keys (cloud-init reads NoCloud and
ConfigDrive before VMware: a stale ISO would win). The way back (attach with an ISO transport) clears the keys in
the reconfigure that adds the CD-ROM (attach.py, swap.py: ``steps.config_change``'s ``keys``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from .. import guestinfo
from ..errors import ValidationError
from ..record import DriveRecord
from ..transport import Transport
from ..vmdata import VmData
from ..vsphere_values import DatastorePath, DeviceChange, VmFacts
from .devices import can_hot_remove, plan_empty, plan_remove
from .effects import Effects, VmAccess
from .policy import Policy
from .result import Outcome
from .state import DriveState
from .steps import config_change

GUESTINFO = Transport.GUESTINFO.value  # the record's transport
SET, UNSET, AS_WRITTEN, CHANGED, REDACTED = "set", "unset", "as-written", "changed", "redacted"

READERS = (
    "anyone with read access to the VM's configuration in vCenter (extraConfig), and any process in the guest "
    "(vmware-rpctool / vmtoolsd 'info-get')"
)


def password_warning(names: Iterable[str]) -> str:
    """What the output says when a password went out over guestinfo (``names``: the keys holding it)."""
    keys = ", ".join(guestinfo.key(n) for n in names)
    return (
        f"the password is in {keys} until cloud-init in the guest has read it and blanked the key (redact); "
        f"until then it can be read by {READERS}"
    )


def current_keys(facts: VmFacts) -> dict[str, str]:
    """The guestinfo keys as the VM holds them ("" for a key it has not), each key's last value (vcsim 0.24
    appends extraConfig entries: inventory.extra_config_of keeps the last)."""
    return {k: facts.extra_config.get(k, "") for k in guestinfo.all_keys()}


def digests(keys: Mapping[str, str], redact: Iterable[str]) -> str:
    """The record's ``keys``: each key set, with a digest of its value, except the redacted values (a digest of a
    password's key could be tried against guesses)."""
    secret = _redacted_keys(redact)
    return ",".join(f"{k}={_digest(v)}" for k, v in sorted(keys.items()) if v and k not in secret)


def _redacted_keys(names: Iterable[str]) -> set[str]:
    """The extraConfig keys cloud-init overwrites for the redacted values: the value (``---``) and its encoding
    (one space: a key cannot be emptied from inside the guest; docs/guest-setup.md)."""
    return {k for n in names if n for k in (guestinfo.key(n), guestinfo.encoding_key(n))}


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]


def _recorded(record: DriveRecord) -> dict[str, str]:
    return dict(item.split("=", 1) for item in record.keys.split(",") if "=" in item)


def key_states(facts: VmFacts, record: DriveRecord) -> dict[str, str]:
    """Each key against the record: as-written, changed (another client wrote or removed it), redacted (cloud-init
    blanked it, as the record's ``redact`` says it would), set or unset (no record of it to compare)."""
    current, recorded = current_keys(facts), _recorded(record)
    secret = _redacted_keys(record.redact.split(","))
    out = {}
    for k, value in current.items():
        if k in secret:
            out[k] = REDACTED if value.strip() in (guestinfo.REDACTED, "") else SET
        elif k in recorded:
            out[k] = AS_WRITTEN if _digest(value) == recorded[k] else CHANGED
        else:
            out[k] = CHANGED if value and record.transport == GUESTINFO else UNSET if not value else SET
    return out


def changed_behind_our_back(facts: VmFacts, record: DriveRecord) -> list[str]:
    """The keys another client changed since this tool wrote them (audit's ``foreign-change``)."""
    return [k for k, s in key_states(facts, record).items() if s == CHANGED]


def is_guestinfo(record: DriveRecord) -> bool:
    return record.transport == GUESTINFO


# ---- the operations -------------------------------------------------------------------------------------------


def refuse_unasked_password(password: str | None, allowed: bool) -> None:
    """A password goes over guestinfo only when asked for (--guestinfo-password): refused, before anything is
    changed, with the ways out."""
    if password and not allowed:
        raise ValidationError(
            "password",
            f"refused over guestinfo: it could be read by {READERS}; pass --guestinfo-password (Ansible: "
            "guestinfo_password: true) to send it anyway (cloud-init blanks it once read), or use an ISO "
            "transport (--transport configdrive or nocloud)",
        )


def put_keys(
    vm: VmAccess, effects: Effects, state: DriveState, data: VmData, policy: Policy, password: bool = False
) -> Outcome:
    """Make the VM's guestinfo keys hold ``data``: only the keys that differ are written, in one reconfigure with
    the record; a VM with an ISO drive loses it in the same reconfigure (its file deleted after)."""
    refuse_unasked_password(data.password, password)
    facts, record = state.facts, state.record
    wanted = guestinfo.guestinfo_keys(data, password=password)
    redact = guestinfo.redacted(wanted)
    current = current_keys(facts)
    writes = {k: v for k, v in wanted.items() if current[k] != v}
    changes, replaced_iso = _iso_removal(state)
    new_record = DriveRecord(
        owner=facts.instance_uuid,
        transport=GUESTINFO,
        keys=digests(wanted, redact),
        redact=",".join(redact),
        previous=str(replaced_iso or (record.previous if is_guestinfo(record) else "")),
        folder=record.folder if replaced_iso or record.previous else "",
    )
    pending = _pending(state)
    if changes or writes or new_record != record:
        effects.apply_change(config_change(facts, changes, (new_record, record), policy, keys=writes))
    if replaced_iso is not None:  # the device pointed at it until now
        effects.delete(replaced_iso, why="the drive moved to guestinfo", known_to_exist=True)
    if pending is not None and pending != replaced_iso and vm.exists(pending):  # a HEAD, as finish_pending looks
        effects.delete(pending, why="left by an interrupted move", known_to_exist=True)
    outcome = Outcome(facts.name, effects.steps, extra={"transport": GUESTINFO})
    if data.password and password:
        outcome.warnings.append(password_warning(n for n in redact if n == guestinfo.VENDORDATA))
    return outcome


def clear_keys(effects: Effects, state: DriveState, policy: Policy) -> None:
    """detach and remove of a guestinfo VM: every key of ours removed, and the record, in one reconfigure (the
    ``previous`` ISO of an interrupted move stays named until deleted)."""
    facts, record = state.facts, state.record
    writes = leaving_keys(state)
    new_record = DriveRecord(owner=record.owner, folder=record.folder, previous=record.previous)
    if not record.previous:
        new_record = DriveRecord()
    if writes or new_record != record:
        effects.apply_change(config_change(facts, [], (new_record, record), policy, keys=writes))


def leaving_keys(state: DriveState) -> dict[str, str]:
    """Every key of ours removed ("" removes a key on vSphere), when the VM's transport is guestinfo: by detach and
    remove, and by a move to an ISO transport in the reconfigure that adds the CD-ROM (attach.py), so a finished
    run leaves one transport."""
    return {k: "" for k, v in current_keys(state.facts).items() if v} if is_guestinfo(state.record) else {}


def keys_status(state: DriveState) -> dict[str, Any]:
    """status of a guestinfo VM: the transport and each key's state and size, never a value."""
    facts, record = state.facts, state.record
    current, states = current_keys(facts), key_states(facts, record)
    keys: dict[str, dict[str, Any]] = {}
    for name in guestinfo.NAMES:
        k, value = guestinfo.key(name), current[guestinfo.key(name)]
        keys[k] = {"state": states[k], "bytes": len(value.encode("utf-8"))}
        if value:
            keys[k]["encoding"] = current[guestinfo.encoding_key(name)] or "plain"
    out: dict[str, Any] = {"transport": GUESTINFO, "attached": any(current.values()), "keys": keys}
    changed = changed_behind_our_back(facts, record)
    if changed:
        out["problem"] = f"changed behind the tool's back: {', '.join(changed)}"
    if record.redact:
        out["redact"] = record.redact.split(",")
    return out


def _iso_removal(state: DriveState) -> tuple[list[DeviceChange], DatastorePath | None]:
    """A move from an ISO transport: the CD-ROM removed (emptied where a running VM's cannot be hot-removed), and
    the ISO that stops being used (ours to delete after the reconfigure)."""
    facts, cdrom = state.facts, state.cdrom
    if cdrom is None:
        return [], None
    changes = plan_remove(cdrom) if not facts.powered_on or can_hot_remove(facts.devices, cdrom) else plan_empty(cdrom)
    replaced_iso = DatastorePath.parse(cdrom.iso) if cdrom.iso else None
    return list(changes), replaced_iso if replaced_iso is not None and state.is_ours(replaced_iso) else None


def _pending(state: DriveState) -> DatastorePath | None:
    """An ISO an interrupted move left (named ``previous`` in a guestinfo record): deleted by the re-run."""
    previous = state.record.previous
    if not previous or not is_guestinfo(state.record):
        return None
    path = DatastorePath.parse(previous)
    return path if state.is_ours(path) else None
