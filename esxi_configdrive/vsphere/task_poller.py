"""Waiting for many tasks at once: batch mode's operations run side by side, and each would poll its own task
(and its VM's question) once or more. The shared poller collects the state of every task in flight, and the
question of every VM they belong to, in one RetrievePropertiesEx per round, so the polls cost a few requests
for the whole batch instead of one or more per VM.

A thread that waits registers its ``TaskWait`` and blocks. The poller's thread polls as soon as every operation
running is waiting (nothing else can happen before a poll, and one round then serves them all), or no operation
is left to run (``draining``: only confirmations remain), else a moment after a new wait arrived (at most
``GATHER_DELAY``: the others are a request or two away from theirs). A task still running is read again when
its own next look is due (``TaskWait.next_look``: a quarter of the time waited for it so far), and each round
reads every task in flight. Each wait is settled exactly as a wait of its own would be (tasks.py
``TaskWait.settle``: the same results, faults, question answers and deadlines).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from ..errors import ConfigDriveError, OutcomeUnknown
from .tasks import TaskTimeout, TaskWait, lost_track, read_task_states

log = logging.getLogger(__name__)

GATHER_DELAY = 1.0  # at most this long may a new wait wait for the others to share its first poll
# A round that failed (after the session's own retries and re-logins) is tried again next round: the tasks go on in
# vCenter whatever became of one request. After this many failed rounds in a row the waits are given up as unknown.
FAILED_ROUNDS = 3


class _Pending:
    def __init__(self, wait: TaskWait, blocking: bool) -> None:
        self.wait = wait
        self.blocking = blocking  # a thread blocks on it (False: confirmed later, see ``start``)
        self.future: Future[Any] = Future()
        self.polls = 0
        self.due = time.monotonic() + GATHER_DELAY  # when it is read next (first: unless everyone waits sooner)


class SharedTaskPoller:
    """Install on a session (``session.task_waiter``) for the length of a batch; a context manager."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.polls = 0  # requests made, for benchmarks and tests
        self._running = 0  # operations under way (``operation()``); 0: not counted, poll by time alone
        self._pending: list[_Pending] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._draining = False
        self._failed_rounds = 0
        self._thread = threading.Thread(target=self._run, name="task-poller", daemon=True)

    def __enter__(self) -> SharedTaskPoller:
        self._thread.start()
        self.session.task_waiter = self
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.task_waiter = None
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(10)

    @contextlib.contextmanager
    def operation(self) -> Iterator[None]:
        """Around each operation of the batch: when all of them wait for tasks, the poller need not wait more."""
        with self._cond:
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    def draining(self) -> None:
        """No operation will start any more: once none is running, what is left is read at once."""
        with self._cond:
            self._draining = True
            self._cond.notify_all()

    def wait(self, wait: TaskWait) -> Any:
        pending = self._register(wait, blocking=True)
        try:  # the poller enforces the deadline; this margin only guards against a poller that died
            return pending.future.result(wait.timeout + 60)
        except FutureTimeout:
            self._forget(pending)
            raise TaskTimeout(
                f"{wait.what}: still running after {wait.timeout:.0f} s (task {wait.task._moId})"
            ) from None

    def start(self, wait: TaskWait) -> Future[Any]:
        """Register a wait nobody blocks on now: its Future is settled by a later round (a batch confirms the
        deletes that follow a swap this way, while its thread goes on with the next VM)."""
        return self._register(wait, blocking=False).future

    def _register(self, wait: TaskWait, blocking: bool) -> _Pending:
        pending = _Pending(wait, blocking)
        with self._cond:
            if self._stopped:
                raise OutcomeUnknown(f"{wait.what}: the batch ended while waiting for task {wait.task._moId}")
            self._pending.append(pending)
            self._cond.notify_all()
        return pending

    # ---- the poller's thread

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._wait_for_round():
                    return
                batch = list(self._pending)
            self._poll(batch)

    def _wait_for_round(self) -> bool:
        """Under the lock: until the next poll is due (False: stopped, nothing pending)."""
        while not self._pending:
            if self._stopped:
                return False
            self._cond.wait()
        while True:
            blocked = sum(p.blocking for p in self._pending)
            fresh = any(p.polls == 0 for p in self._pending)
            everyone_waits = 0 < self._running <= blocked
            nothing_left = self._draining and self._running == 0
            due = min(p.due for p in self._pending)
            if (everyone_waits and fresh) or nothing_left or self._stopped or time.monotonic() >= due:
                return True
            self._cond.wait(max(due - time.monotonic(), 0.001))

    def _poll(self, batch: list[_Pending]) -> None:
        try:
            by_id, calls = read_task_states(self.session, [p.wait for p in batch])
            self.polls += calls
            self._failed_rounds = 0
        except Exception as e:  # the tasks may still complete: their outcome is unknown, not failed
            self.polls += 1
            self._failed_rounds += 1
            log.warning(
                "polling %d task(s) failed (%s, %d in a row)", len(batch), type(e).__name__, self._failed_rounds
            )
            if self._failed_rounds < FAILED_ROUNDS and not isinstance(e, ConfigDriveError):
                for p in batch:  # tried again when each is due
                    p.due = time.monotonic() + p.wait.next_look()
                return
            for p in batch:
                self._settled(p, error=lost_track(p.wait.what, p.wait.task, e))
            return
        for p in batch:
            p.polls += 1
            try:
                done, value = p.wait.settle(self.session, by_id)
            except BaseException as e:  # the task's fault, a timeout, a failed answer: the waiter's to raise
                self._settled(p, error=e)
                continue
            if done:
                self._settled(p, result=value)
            else:  # an answer given: look at once; else when its own next look is due
                p.due = time.monotonic() + (0 if p.wait.answered_now else p.wait.next_look())

    def _settled(self, pending: _Pending, result: Any = None, error: BaseException | None = None) -> None:
        self._forget(pending)
        if error is not None:
            pending.future.set_exception(error)
        else:
            pending.future.set_result(result)

    def _forget(self, pending: _Pending) -> None:
        with self._cond:
            if pending in self._pending:
                self._pending.remove(pending)
