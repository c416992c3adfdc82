"""Waiting for a vSphere task with a deadline, while watching for and answering the VM's questions.

One RetrievePropertiesEx per poll collects the task's state and the VM's ``runtime.question`` together, so a
reconfigure blocked on the guest's locked CD-ROM door is noticed and answered instead of hanging. Only
``info.state``/``info.error``/``info.result`` are collected: cheaper than ``info``, and vcsim 0.24 fills
``info.entity`` of FileManager tasks with an object pyVmomi refuses to deserialize.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from pyVmomi import vim, vmodl

from ..defaults import DEFAULT_TASK_TIMEOUT
from ..errors import OutcomeUnknown, VsphereFault, fault_message

log = logging.getLogger(__name__)

# A question handler gets the question and returns the choice key to answer with, or None to leave it.
QuestionHandler = Callable[[Any], "int | str | None"]

FIRST_POLL_DELAY, MAX_POLL_DELAY = 0.05, 2.0


class TaskTimeout(OutcomeUnknown):
    """The task did not finish before the deadline."""


def wait_for_task(
    session: Any,
    task: vim.Task,
    what: str = "task",
    vm: vim.VirtualMachine | None = None,
    on_question: QuestionHandler | None = None,
    timeout: float = DEFAULT_TASK_TIMEOUT,
    want_result: bool = False,
) -> Any:
    """Poll until ``task`` ends; return its result, or raise its fault (a pyVmomi MethodFault).

    With ``vm`` given, its pending question is passed to ``on_question`` and answered with the key it returns.
    A MethodFault raised from here is always the task's own error (the task ended and failed); a failure of the
    waiting itself (polling, answering) raises OutcomeUnknown, since the task may still succeed.
    """
    PC = vmodl.query.PropertyCollector
    task_props = ["info.state", "info.error"] + (["info.result"] if want_result else [])
    object_specs = [PC.ObjectSpec(obj=task)]
    prop_specs = [PC.PropertySpec(type=vim.Task, pathSet=task_props)]
    if vm is not None:
        object_specs.append(PC.ObjectSpec(obj=vm))
        prop_specs.append(PC.PropertySpec(type=vim.VirtualMachine, pathSet=["runtime.question"]))
    spec = PC.FilterSpec(objectSet=object_specs, propSet=prop_specs)
    pc = session.property_collector()
    deadline = time.monotonic() + timeout
    delay = FIRST_POLL_DELAY
    answered: set[str] = set()
    while True:
        result = _waiting(session, lambda: pc.RetrievePropertiesEx([spec], PC.RetrieveOptions()), task, what)
        task_state, question = _read(result, task)
        state = task_state.get("info.state")
        if state == vim.TaskInfo.State.success:
            return task_state.get("info.result")
        if state == vim.TaskInfo.State.error:
            error = task_state.get("info.error")
            log.info("%s failed: %s", what, fault_message(error) if error else "no fault given")
            if isinstance(error, BaseException):
                raise error
            raise VsphereFault(f"{what} failed")
        if question is not None and question.id not in answered and on_question is not None:
            choice = on_question(question)
            if choice is not None:
                answered.add(question.id)
                log.info("answering VM question %s (%s) with %s", question.id, _message_ids(question), choice)
                _waiting(session, lambda q=question, c=choice: vm.AnswerVM(q.id, str(c)), task, what)
                delay = FIRST_POLL_DELAY
                continue
        if time.monotonic() >= deadline:
            hint = f"; the VM asks: {question_text(question)}" if question is not None else ""
            raise TaskTimeout(f"{what}: still running after {timeout:.0f} s (task {task._moId}){hint}")
        time.sleep(delay)
        delay = min(delay * 2, MAX_POLL_DELAY)


def _waiting(session: Any, call: Callable[[], Any], task: vim.Task, what: str) -> Any:
    try:
        return session.call(call, "task wait")
    except Exception as e:
        raise OutcomeUnknown(
            f"{what}: lost track of task {task._moId} ({type(e).__name__}); it may still complete. Run the same "
            "command again to finish or confirm it"
        ) from e


def _read(result: Any, task: vim.Task) -> tuple[dict[str, Any], Any]:
    task_state: dict[str, Any] = {}
    question = None
    for obj in getattr(result, "objects", None) or []:
        props = {p.name: p.val for p in obj.propSet or []}
        if obj.obj._moId == task._moId and isinstance(obj.obj, vim.Task):
            task_state = props
        else:
            question = props.get("runtime.question")
    return task_state, question


def _message_ids(question: Any) -> str:
    return ",".join(m.id for m in (getattr(question, "message", None) or []) if getattr(m, "id", None)) or "?"


def question_text(question: Any) -> str:
    return " ".join((getattr(question, "text", "") or _message_ids(question)).split())


def question_message_ids(question: Any) -> list[str]:
    return [m.id for m in (getattr(question, "message", None) or []) if getattr(m, "id", None)]


def choice_key(question: Any, label: str) -> str | None:
    """The key of the choice labelled ``label`` (``button.yes``/``button.no``): choose by label, never by
    position, since the keys differ between ESXi versions."""
    info = getattr(question, "choice", None)
    for option in getattr(info, "choiceInfo", None) or []:
        if option.label == label or option.key == label or option.summary == label:
            return option.key
    return None
