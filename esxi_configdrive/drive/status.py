"""status: the drive's device, backing, file and content, read-only (one read of the VM, one download)."""

from __future__ import annotations

import hashlib
from typing import Any

from ..content import summary
from ..errors import ValidationError
from ..iso import read_drive
from ..record import DriveRecord
from ..transport import drive_label, transport_field
from ..vsphere_values import DatastorePath
from .devices import describe_device
from .effects import VmAccess
from .keys import is_guestinfo, keys_status
from .result import Outcome
from .state import DriveState
from .steps import raise_if_changed


def status(vm: VmAccess) -> Outcome:
    state = DriveState.of(vm.facts())
    facts, record, cdrom = state.facts, state.record, state.cdrom
    out: dict[str, Any] = {"power_state": facts.power_state, "attached": False, "device": None}
    if cdrom is not None:
        out["device"] = describe_device(facts.devices, cdrom)
        out["attached"] = cdrom.iso is not None
    out["record"] = {k: v for k, v in vars(record).items() if v}
    out.update(transport_field(record.drive_transport))
    if is_guestinfo(record) and cdrom is None:
        out.update(keys_status(state))
        return Outcome(facts.name, [], extra=out)
    path = state.current
    if path:
        out.update(inspect_file(vm, DatastorePath.parse(path), record))
        if not out["file_exists"]:
            raise_if_changed(vm, facts)  # not missing: swapped by an update running now
    return Outcome(facts.name, [], iso=path, extra=out)


def inspect_file(vm: VmAccess, path: DatastorePath, record: DriveRecord) -> dict[str, Any]:
    """What the file the drive points at holds, and whether it is the one recorded."""
    try:
        iso = vm.download(path)
    except FileNotFoundError:
        return {"file_exists": False, "problem": f"the device points at {path}, which does not exist"}
    except ValidationError as e:  # too large to be a drive: reported like any other broken file
        return {"file_exists": True, "matches_record": False, "problem": e.message}
    sha = hashlib.sha256(iso).hexdigest()
    out: dict[str, Any] = {
        "file_exists": True,
        "file_bytes": len(iso),
        "sha256": sha,
        "matches_record": bool(record.sha256) and sha == record.sha256,
    }
    try:
        transport, data = read_drive(iso)
        out["content"] = summary(data, drive_label(transport, data))
    except ValidationError as e:
        out["problem"] = f"the ISO is not a readable config drive: {e}"
    return out
