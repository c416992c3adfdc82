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
from typing import Any, TypeVar

from pyVmomi import vim, vmodl

from ..defaults import DEFAULT_TASK_TIMEOUT
from ..errors import AnswerLost, OutcomeUnknown, VsphereFault, fault_message
from .changes import send_change
from .collector_xml import retrieve_pages

log = logging.getLogger(__name__)

# A question handler gets the question and returns the choice key to answer with, or None to leave it.
QuestionHandler = Callable[[Any], "int | str | None"]

FIRST_POLL_DELAY, MAX_POLL_DELAY = 0.05, 2.0
LOOK_AGAIN = 0.25  # a running task is read again after this share of the time waited for it so far
T = TypeVar("T")


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
    while True:
        by_id, _ = _waiting(lambda: read_task_states(session, [wait]), task, what)
        done, value = wait.settle(session, by_id)
        if done:
            return value
        if not wait.answered_now:
            time.sleep(wait.next_look())


def read_task_states(session: Any, waits: list[TaskWait]) -> tuple[dict[str, dict[str, Any]], int]:
    """The state of every task of ``waits`` and the question of every VM they belong to, in one
    RetrievePropertiesEx (and its continuations, if vSphere pages the answer): by managed object id, and the
    number of calls it took."""
    PC = vmodl.query.PropertyCollector
    objects, seen = [], set()
    for w in waits:
        for spec in w.object_specs():
            if spec.obj._moId not in seen:
                seen.add(spec.obj._moId)
                objects.append(spec)
    props = [PC.PropertySpec(type=vim.Task, pathSet=list(dict.fromkeys(p for w in waits for p in w.task_properties())))]
    if any(w.vm is not None for w in waits):
        props.append(PC.PropertySpec(type=vim.VirtualMachine, pathSet=["runtime.question"]))
    spec = PC.FilterSpec(objectSet=objects, propSet=props)
    calls, by_id = 0, {}
    for page in retrieve_pages(session, spec, "task wait"):  # read from the answer's XML, as the facts pages
        calls += 1
        for found in page.objects:
            by_id[found.obj._moId] = {name: page.reader.value(val) for name, val in found.props.items()}
    return by_id, calls


def lost_track(what: str, task: vim.Task, error: BaseException) -> OutcomeUnknown:
    """Waiting failed, not the task: it may still complete."""
    return OutcomeUnknown(
        f"{what}: lost track of task {task._moId} ({type(error).__name__}); it may still complete. Run the same "
        "command again to finish or confirm it"
    )


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
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.answered: set[str] = set()
        self.answered_now = False

    def next_look(self) -> float:
        """Seconds until the task is worth reading again: a quarter of the time waited so far (within
        ``FIRST_POLL_DELAY``..``MAX_POLL_DELAY``), so a task's end is seen at most about a quarter late, at a
        cost of requests that grows with the log of its run time."""
        return min(max((time.monotonic() - self.started) * LOOK_AGAIN, FIRST_POLL_DELAY), MAX_POLL_DELAY)

    def task_properties(self) -> list[str]:
        return ["info.state", "info.error"] + (["info.result"] if self.want_result else [])

    def object_specs(self) -> list[Any]:
        PC = vmodl.query.PropertyCollector
        return [PC.ObjectSpec(obj=self.task)] + ([PC.ObjectSpec(obj=self.vm)] if self.vm is not None else [])

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


def _waiting(send: Callable[[], T], task: vim.Task, what: str) -> T:
    try:
        return send()
    except AnswerLost:
        raise
    except Exception as e:
        raise lost_track(what, task, e) from e


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
