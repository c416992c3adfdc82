"""The one rule for sending a change: what is done when its answer was lost.

A request whose answer never came (the connection cut after it went out) may have been applied or not; the client
cannot tell. Sending it again is safe only where vSphere refuses a duplicate:

- ReconfigVM_Task carrying the changeVersion the VM reported: a second copy is refused (ConcurrentAccess -> Stale)
  once the first applied. Without one (stock vcsim 0.24 neither sets nor checks ``config.changeVersion``,
  REFERENCE §9) a second copy applies again: a second CD-ROM, a second SATA controller.
- MakeDirectory, DatastoreNamespaceManager.CreateDirectory, DeleteDatastoreFile_Task, CopyDatastoreFile_Task
  (without force): a second copy is refused with FileAlreadyExists / FileNotFound. A caller for whom that answer
  means "another client did it" (MakeDirectory: True only for the one caller that made the folder) names it in
  ``refused_as_done``: after a lost answer the refusal is the first copy's doing, so the change is this run's.
- A /folder PUT writes the same bytes to the same name again (datastore.py retries it as any HTTP exchange).

Everything else (ReconfigVM without a changeVersion, RelocateVM_Task, AnswerVM) is never sent again blindly: the
lost answer raises ``AnswerLost``, a kind of Stale, and whoever sent it settles it by reading again. An operation's
retry loop (drive/attempts.py) reads the VM afresh and plans from what it finds: a change that applied is seen
done (attach on a VM that has the drive does nothing more), one that did not is planned and sent as a new change.
A VM question's answer is settled by the next poll: the question still pending is answered again, one gone was
answered. vSphere's tasks run before the answer is written on vcsim; on vCenter a change in flight when read again
carries a changeVersion, so its re-plan is refused and read again (the first rule).

Failures that prove nothing was applied (an HTTP 429/503 answer, a vSphere fault such as TaskInProgress, a
connection refused before sending) are retried for every change, as before.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any, TypeVar, overload

from ..errors import AnswerLost
from .retries import TRANSIENT_NETWORK_ERRORS, is_transient

T = TypeVar("T")


def answer_lost(error: BaseException) -> bool:
    """The request may have reached vSphere and only its answer is missing (the connection cut or timed out after
    it went out). A connection refused before sending is not that: nothing went out."""
    if isinstance(error, ConnectionRefusedError):
        return False
    if isinstance(error, ssl.SSLError) and not isinstance(error, ssl.SSLCertVerificationError):
        return is_transient(error)
    return isinstance(error, TRANSIENT_NETWORK_ERRORS)


def not_applied(error: BaseException) -> bool:
    """Worth another try for any change: transient, and known not to have been applied."""
    return is_transient(error) and not answer_lost(error)


@overload
def send_change(session: Any, call: Callable[[], T], what: str, *, duplicate_refused: bool) -> T: ...


@overload
def send_change(
    session: Any,
    call: Callable[[], T],
    what: str,
    *,
    duplicate_refused: bool,
    refused_as_done: tuple[type[BaseException], ...],
) -> T | None: ...


def send_change(
    session: Any,
    call: Callable[[], T],
    what: str,
    *,
    duplicate_refused: bool,
    refused_as_done: tuple[type[BaseException], ...] = (),
) -> T | None:
    """Send one change through ``session``. ``duplicate_refused``: vSphere refuses a second copy once the first
    applied (see above), so a lost answer is sent again; otherwise a lost answer raises AnswerLost.
    ``refused_as_done``: the faults that refusal comes as (FileAlreadyExists for a MakeDirectory): from a copy sent
    after a lost answer they mean the first copy applied, so the change is done (None is returned); from a first
    copy they are raised, as vSphere's own answer."""
    if duplicate_refused and not refused_as_done:
        return session.call(call, what)
    if duplicate_refused:  # which refusal means "done" depends on whether an answer was lost: noted on the way
        lost: list[BaseException] = []

        def noting_lost() -> T:
            try:
                return call()
            except Exception as e:
                if answer_lost(e):
                    lost.append(e)
                raise

        try:
            return session.call(noting_lost, what)
        except refused_as_done:
            if not lost:
                raise
            return None
    try:
        return session.call(call, what, worth_it=not_applied)
    except Exception as e:
        if answer_lost(e):
            raise AnswerLost(
                f"{what}: the answer was lost ({type(e).__name__}); reading again whether it applied"
            ) from e
        raise
