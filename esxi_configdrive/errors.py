"""Every error the tool raises, and how any failure becomes one line of text and an exit status.

The vSphere layer (``vsphere/``) translates the faults that mean something to the operations into these types at
its edge, so nothing outside it needs pyVmomi to tell a stale read from a refused change.
"""

from __future__ import annotations

import sys

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


class ValidationError(ValueError):
    """Bad input (exit status 2; nothing was changed). ``field`` names where it is (``metadata.vm-id``,
    ``userdata``, ``vmdata[2]`` …)."""

    exit_status = EXIT_BAD_INPUT

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class UsageError(ValidationError):
    """A command line that does not parse (exit status 2)."""


class ConfigDriveError(Exception):
    """A vSphere or runtime failure with a message meant for the admin (exit status 1)."""

    exit_status = EXIT_FAILURE


class NotFound(ConfigDriveError):
    """A VM, datacenter, datastore or host named by the user does not exist (exit status 2: bad input)."""

    exit_status = EXIT_BAD_INPUT


class Stale(ConfigDriveError):
    """The VM changed since it was read (vSphere's ConcurrentAccess on a changeVersion, or a file it pointed at
    replaced meanwhile): the operation starts again from a fresh read."""


class AnswerLost(Stale):
    """A change went out and its answer was lost on the way back, where vSphere would not refuse a second copy
    (vsphere/changes.py): whether it applied is known only by reading again, so the operation starts again from a
    fresh read, as after Stale, and sees it done or plans it anew."""


class OutcomeUnknown(ConfigDriveError):
    """A change was sent and its outcome is not known (a task still running at the deadline, the connection lost
    while waiting): nothing may be cleaned up on the assumption that it failed; running the command again finishes
    or confirms it."""


class LockedDoor(ConfigDriveError):
    """The guest holds the CD-ROM locked and the question was answered 'no': the VM keeps its drive."""


class VsphereFault(ConfigDriveError):
    """vSphere refused a change (the task failed, or the request was rejected): nothing was applied. ``fault`` is
    vSphere's own fault object."""

    def __init__(self, message: str, fault: BaseException | None = None) -> None:
        super().__init__(message)
        self.fault = fault


class FileKept(ConfigDriveError):
    """vSphere kept a file it was asked to delete: locked or in use (FileLocked: a running VM holds its ISO), or
    not deletable now (CannotDeleteFile). The file stays; whoever asked decides whether that fails anything."""


def describe_failure(error: BaseException) -> tuple[str, int]:
    """One line for the admin and the exit status. Never includes request bodies (they may hold secrets)."""
    if isinstance(error, (ValidationError, ConfigDriveError)):
        return str(error), error.exit_status
    vmodl = getattr(sys.modules.get("pyVmomi"), "vmodl", None)  # faults of reads are not translated: say which
    if vmodl is not None and isinstance(error, vmodl.MethodFault):
        return fault_line(error), EXIT_FAILURE
    return f"{type(error).__name__}: {error}", EXIT_FAILURE


def one_line(message: str) -> str:
    """A failure's message on one line, whatever the cause produced."""
    return " ".join(message.split())


def changed_after(status: int) -> bool | None:
    """What a failure's ``changed`` says: false after bad input (nothing was touched), null after a vSphere
    failure (its message says what state the VM is in)."""
    return False if status == EXIT_BAD_INPUT else None


# The free ESXi licence (vSphere Hypervisor) makes the API read-only: writes fail with RestrictedVersion (REFERENCE §9).
LICENCE_REFUSAL = (
    "the host's licence does not allow changes through the vSphere API (the free ESXi licence, vSphere Hypervisor, "
    "makes it read-only); assign a licence with API access"
)


def fault_line(fault: BaseException) -> str:
    """``vSphere fault <Type>: <message>``, the one form a vSphere fault takes in every message; a refusal by the
    host's licence says so first."""
    line = f"vSphere fault {type(fault).__name__}: {fault_message(fault)}"
    return f"{LICENCE_REFUSAL} ({line})" if type(fault).__name__.endswith("RestrictedVersion") else line


def fault_message(fault: BaseException) -> str:
    """The readable part of a vSphere fault: its msg, else its localized messages, else its type."""
    msg = getattr(fault, "msg", None) or ""
    if not msg:
        parts = [getattr(m, "message", "") for m in getattr(fault, "faultMessage", None) or []]
        msg = "; ".join(p for p in parts if p)
    return msg or type(fault).__name__
