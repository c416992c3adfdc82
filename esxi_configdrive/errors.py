"""Errors the tool raises, and how any failure becomes one line of text and an exit status."""

from __future__ import annotations

import sys

from .vmdata import ValidationError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


class ConfigDriveError(Exception):
    """A vSphere or runtime failure with a message meant for the admin (exit status 1)."""

    exit_status = EXIT_FAILURE


class NotFound(ConfigDriveError):
    """A VM, datacenter, datastore or host named by the user does not exist (exit status 2: bad input)."""

    exit_status = EXIT_BAD_INPUT


class OutcomeUnknown(ConfigDriveError):
    """A change was sent and its outcome is not known (a task still running at the deadline, the connection lost
    while waiting): nothing may be cleaned up on the assumption that it failed; running the command again finishes
    or confirms it."""


class LockedDoor(ConfigDriveError):
    """The guest holds the CD-ROM locked and the question was answered 'no'."""


def describe_failure(error: BaseException) -> tuple[str, int]:
    """One line for the admin and the exit status. Never includes request bodies (they may hold secrets)."""
    if isinstance(error, ValidationError):
        return str(error), EXIT_BAD_INPUT
    if isinstance(error, ConfigDriveError):
        return str(error), error.exit_status
    vmodl = getattr(sys.modules.get("pyVmomi"), "vmodl", None)  # pyVmomi.vmodl is no module of its own
    if vmodl is not None and isinstance(error, vmodl.MethodFault):
        return f"vSphere fault {type(error).__name__}: {fault_message(error)}", EXIT_FAILURE
    return f"{type(error).__name__}: {error}", EXIT_FAILURE


def fault_message(fault: BaseException) -> str:
    """The readable part of a vSphere fault: its msg, else its localized messages, else its type."""
    msg = getattr(fault, "msg", None) or ""
    if not msg:
        parts = [getattr(m, "message", "") for m in getattr(fault, "faultMessage", None) or []]
        msg = "; ".join(p for p in parts if p)
    return msg or type(fault).__name__
