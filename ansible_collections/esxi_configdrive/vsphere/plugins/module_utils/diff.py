"""Diff mode: what the drive holds before and after the task, with no password in it.

Both sides are the drive's whole content as the package describes it (``esxi_configdrive.content.describe``: the
metadata, SSH keys, user data as text, vendor and network data; the password masked, also where the content
repeats it), plus whether a drive is attached and its ISO. ``before`` is read from the VM, ``after`` too once the
change is made; in check mode ``after`` is the content the task would write (``view``, ``planned_update``), which
the VM's real attach may still complete (a vm-id left out becomes its instance UUID, its NICs' MACs fill the
links).
"""

from __future__ import annotations

import contextlib
from typing import Any

with contextlib.suppress(ImportError):  # reported by common.require_package
    from esxi_configdrive.content import describe

NO_DRIVE: dict[str, Any] = {"attached": False}


def view(data: Any, iso: str | None) -> dict[str, Any]:
    """A drive's content (a ``VmData``, None for no drive) as one side of the diff."""
    if data is None:
        return dict(NO_DRIVE)
    return {"attached": True, "iso": iso, **describe(data)}


def planned_update(before: Any, change: Any, iso: str | None) -> dict[str, Any]:
    """The content after an update that makes ``change`` (a ``ContentChange``) to the current drive (``before``, a
    ``VmData``), applied as the update applies it."""
    if before is None:
        return dict(NO_DRIVE)
    return view(change.applied_to(before), iso)


def diff(vm: str, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        "before": before,
        "after": after,
        "before_header": f"config drive of {vm} (before)",
        "after_header": f"config drive of {vm} (after)",
    }
