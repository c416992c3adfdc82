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
from ..errors import AnswerLost, OutcomeUnknown, VsphereFault, fault_message
from .changes import send_change

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
    background: bool = False,
) -> Any:
    """Poll until ``task`` ends; return its result, or raise its fault (a pyVmomi MethodFault). With
    ``background`` and a shared waiter (batch mode), return a Future of that at once instead.

    With ``vm`` given, its pending question is passed to ``on_question`` and answered with the key it returns.
    A MethodFault raised from here is always the task's own error (the task ended and failed); a failure of the
    waiting itself (polling, answering) raises OutcomeUnknown, since the task may still succeed. A session with a
    shared ``task_waiter`` (batch mode: task_poller.py) polls every in-flight task in one call per round instead.
    """
    wait = TaskWait(task, what, vm, on_question, timeout, want_result)
    waiter = getattr(session, "task_waiter", None)
    if waiter is not None:
        return waiter.start(wait) if background else waiter.wait(wait)
    PC = vmodl.query.PropertyCollector
    spec = PC.FilterSpec(objectSet=wait.object_specs(), propSet=wait.property_specs())
    delay = FIRST_POLL_DELAY
    while True:
        poll = lambda: session.collect(lambda pc: pc.RetrievePropertiesEx([spec], PC.RetrieveOptions()), "task wait")  # noqa: E731
        result = _waiting(poll, task, what)
        by_id = {obj.obj._moId: {p.name: p.val for p in obj.propSet or []} for obj in result.objects or []}
        done, value = wait.settle(session, by_id)
        if done:
            return value
        if wait.answered_now:
            delay = FIRST_POLL_DELAY
            continue
        time.sleep(delay)
        delay = min(delay * 2, MAX_POLL_DELAY)


class TaskWait:
    """One task being waited for: what to collect about it, and what the collected state means."""

    def __init__(
        self,
        task: vim.Task,
        what: str,
        vm: vim.VirtualMachine | None,
        on_question: QuestionHandler | None,
        timeout: float,
        want_result: bool,
    ) -> None:
        self.task, self.what, self.vm, self.on_question = task, what, vm, on_question
        self.timeout, self.want_result = timeout, want_result
        self.deadline = time.monotonic() + timeout
        self.answered: set[str] = set()
        self.answered_now = False

    def task_properties(self) -> list[str]:
        return ["info.state", "info.error"] + (["info.result"] if self.want_result else [])

    def object_specs(self) -> list[Any]:
        PC = vmodl.query.PropertyCollector
        return [PC.ObjectSpec(obj=self.task)] + ([PC.ObjectSpec(obj=self.vm)] if self.vm is not None else [])

    def property_specs(self) -> list[Any]:
        PC = vmodl.query.PropertyCollector
        specs = [PC.PropertySpec(type=vim.Task, pathSet=self.task_properties())]
        if self.vm is not None:
            specs.append(PC.PropertySpec(type=vim.VirtualMachine, pathSet=["runtime.question"]))
        return specs

    def settle(self, session: Any, by_id: dict[str, dict[str, Any]]) -> tuple[bool, Any]:
        """(True, result) when the task succeeded; raises its fault when it failed; answers the VM's question
        when asked to; raises TaskTimeout past the deadline; else (False, None): poll again."""
        self.answered_now = False
        task_state = by_id.get(self.task._moId, {})
        question = by_id.get(self.vm._moId, {}).get("runtime.question") if self.vm is not None else None
        state = task_state.get("info.state")
        if state == vim.TaskInfo.State.success:
            return True, task_state.get("info.result")
        if state == vim.TaskInfo.State.error:
            error = task_state.get("info.error")
            log.info("%s failed: %s", self.what, fault_message(error) if error else "no fault given")
            if isinstance(error, BaseException):
                raise error
            raise VsphereFault(f"{self.what} failed")
        if question is not None and question.id not in self.answered and self.on_question is not None:
            choice = self.on_question(question)
            if choice is not None:
                self.answered.add(question.id)
                log.info("answering VM question %s (%s) with %s", question.id, _message_ids(question), choice)
                self._answer(session, question.id, str(choice))
                self.answered_now = True
                return False, None
        if time.monotonic() >= self.deadline:
            hint = f"; the VM asks: {question_text(question)}" if question is not None else ""
            raise TaskTimeout(f"{self.what}: still running after {self.timeout:.0f} s (task {self.task._moId}){hint}")
        return False, None

    def _answer(self, session: Any, question_id: str, choice: str) -> None:
        vm = self.vm
        assert vm is not None  # the question was read from it
        send = lambda: vm.AnswerVM(question_id, choice)  # noqa: E731
        try:
            _waiting(lambda: send_change(session, send, "AnswerVM", duplicate_refused=False), self.task, self.what)
        except AnswerLost:  # settled by the next poll: a question still asked is answered again
            self.answered.discard(question_id)


def _waiting(send: Callable[[], Any], task: vim.Task, what: str) -> Any:
    try:
        return send()
    except AnswerLost:
        raise
    except Exception as e:
        raise OutcomeUnknown(
            f"{what}: lost track of task {task._moId} ({type(e).__name__}); it may still complete. Run the same "
            "command again to finish or confirm it"
        ) from e


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
