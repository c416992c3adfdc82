"""Diff mode: what the drive holds before and after the task, with no password in it.

The package's ``status`` reads the drive and summarises its content (label, ids, host name, how many keys, user
data size, whether a password is set: never the password). Both sides of the diff are that summary, so they
compare field by field: ``before`` from ``status``, ``after`` from ``status`` once the change is made, or, in
check mode, the content the task would write (``view_of_data``, ``planned_update``).
"""

from __future__ import annotations

from typing import Any

NO_DRIVE: dict[str, Any] = {"attached": False}


def view_of_status(status: dict[str, Any]) -> dict[str, Any]:
    """The drive as ``ConfigDriveController.status(vm).to_dict()`` describes it."""
    if not status.get("attached"):
        return dict(NO_DRIVE)
    view: dict[str, Any] = {"attached": True, "iso": status.get("iso")}
    if status.get("problem"):
        view["problem"] = status["problem"]
    view.update(status.get("content") or {})
    return view


def view_of_data(data: Any, iso: str | None) -> dict[str, Any]:
    """The same summary for content about to be written (a ``VmData``)."""
    return {
        "attached": True,
        "iso": iso,
        "label": data.label,
        "vm_id": data.vm_id,
        "instance_id": data.metadata.get("instance-id"),
        "hostname": data.hostname,
        "public_keys": len(data.public_keys),
        "userdata_bytes": len(data.userdata or b""),
        "password_set": bool(data.password),
    }


def planned_update(
    before: dict[str, Any], overrides: dict[str, Any], label: str | None, iso: str | None
) -> dict[str, Any]:
    """The summary after an update that replaces some fields of the current drive."""
    after = {**before, "iso": iso}
    if "userdata" in overrides:
        after["userdata_bytes"] = len(overrides["userdata"])
    if "public_keys" in overrides:
        after["public_keys"] = len(overrides["public_keys"])
    if "hostname" in overrides:
        after["hostname"] = overrides["hostname"]
    if "password" in overrides:
        after["password_set"] = True
    if label:
        after["label"] = label
    return after


def diff(vm: str, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        "before": before,
        "after": after,
        "before_header": f"config drive of {vm} (before)",
        "after_header": f"config drive of {vm} (after)",
    }
