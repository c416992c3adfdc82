"""The changes to a VM: one ReconfigVM (device changes + extraConfig, on the changeVersion the plan was read at),
waited for while the guest's locked-door question is answered, and RelocateVM. vSphere's faults become the
tool's errors here: ConcurrentAccess -> Stale, a refused or failed change -> VsphereFault, a "no" to the
locked-door question -> LockedDoor, a change sent whose end was not seen -> OutcomeUnknown, a change whose answer
was lost -> AnswerLost or sent again (changes.py decides which)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from pyVmomi import vim, vmodl

from ..errors import AnswerLost, LockedDoor, OutcomeUnknown, Stale, VsphereFault, fault_line
from ..record import LOCKED_DOOR_MESSAGE_IDS
from ..vsphere_values import ConfigChange, HostInfo, VmFacts
from .changes import send_change
from .connection import Session
from .devices import device_specs
from .tasks import TaskTimeout, choice_key, question_message_ids, wait_for_task

log = logging.getLogger(__name__)


def send_config_change(session: Session, change: ConfigChange, *, force_eject: bool, timeout: float) -> None:
    """The one sender of a VM's changes: ``change`` as one ReconfigVM_Task, sent under issue 16's rule for a lost
    answer (changes.py), and waited for."""
    facts = change.facts
    spec = vim.vm.ConfigSpec(
        changeVersion=facts.change_version,
        deviceChange=device_specs(change.devices, facts.raw_devices),
        extraConfig=[vim.option.OptionValue(key=k, value=v) for k, v in sorted(change.extra_config.items())],
    )
    refused: list[str] = []
    # vSphere refuses a second copy of a spec carrying the changeVersion the VM reported (changes.py)
    with _sending(f"reconfigure VM {facts.name}"):
        task = send_change(
            session, partial(facts.ref.ReconfigVM_Task, spec), "ReconfigVM", duplicate_refused=bool(spec.changeVersion)
        )
    try:
        wait_for_task(
            session,
            task,
            what=f"reconfigure VM {facts.name}",
            vm=facts.ref,
            on_question=locked_door_answer(force_eject, refused),
            timeout=timeout,
        )
    except TaskTimeout as e:
        raise OutcomeUnknown(
            f"{e}. The change may still complete; run the same command again to finish or confirm it"
        ) from None
    except vmodl.MethodFault as fault:
        if refused:
            raise LockedDoor(
                f"the guest of VM {facts.name} has locked its CD-ROM door; the VM keeps its current drive. "
                "Unmount the drive in the guest (umount/eject) and run again, or pass --force-eject"
            ) from None
        raise _translated(fault, facts) from fault


def relocate(session: Session, facts: VmFacts, host: HostInfo, *, timeout: float) -> None:
    spec = vim.vm.RelocateSpec(host=host.ref)
    with _sending(f"migrate VM {facts.name}"):
        task = send_change(session, partial(facts.ref.RelocateVM_Task, spec), "RelocateVM", duplicate_refused=False)
    try:
        wait_for_task(session, task, what=f"migrate to {host.name}", timeout=timeout)
    except vmodl.MethodFault as fault:
        raise _translated(fault, facts) from fault


@contextmanager
def _sending(what: str) -> Iterator[None]:
    """What a failure to send a change means (a context, not a wrapper: no frame between sender and request)."""
    try:
        yield
    except vmodl.MethodFault as fault:  # vSphere refused the request: nothing was changed
        raise _translated(fault, None) from fault
    except AnswerLost:
        raise  # the operation reads the VM again (drive/attempts.py)
    except Exception as e:  # the request may have reached vCenter: whether it applies is unknown
        raise OutcomeUnknown(
            f"{what}: {type(e).__name__} while sending it; it may still apply. Run the same command again to "
            "finish or confirm it"
        ) from e


def _translated(fault: vmodl.MethodFault, facts: VmFacts | None) -> Exception:
    if isinstance(fault, vim.fault.ConcurrentAccess):
        name = facts.name if facts is not None else "the VM"
        return Stale(f"{name} changed since it was read ({fault_line(fault)})")
    return VsphereFault(fault_line(fault), fault)


def locked_door_answer(force_eject: bool, refused: list[str]) -> Callable[[Any], str | None]:
    """How the guest's locked-door question is answered: yes with ``force_eject`` (the guest loses its mounted
    drive), else no (the change fails, the VM keeps its drive; ``refused`` notes it). Any other question is left
    alone. Choices are found by label, never by position: the keys differ between ESXi versions."""

    def answer(question: Any) -> str | None:
        ids = question_message_ids(question)
        if not any(i in LOCKED_DOOR_MESSAGE_IDS for i in ids) and "locked" not in (question.text or "").lower():
            log.warning("VM question %s is not about the CD-ROM; not answering it", ",".join(ids) or "?")
            return None
        label = "button.yes" if force_eject else "button.no"
        key = choice_key(question, label)
        if key is None:
            log.warning("the locked-door question has no %s choice", label)
            return None
        if not force_eject:
            refused.append(question.id)
        return key

    return answer
