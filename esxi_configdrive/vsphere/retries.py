"""Which failures are worth another try, and the one retry policy (tenacity's exponential backoff) for them."""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
from collections.abc import Callable

import requests
from pyVmomi import vim, vmodl
from tenacity import RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential
from tenacity import Retrying as _Retrying

from ..errors import ConfigDriveError

log = logging.getLogger(__name__)

TRANSIENT_NETWORK_ERRORS = (
    ConnectionError,
    http.client.RemoteDisconnected,
    http.client.IncompleteRead,
    socket.timeout,
    requests.ConnectionError,
    requests.Timeout,
)


# An overloaded vCenter, or the reverse proxy in front of it, answers these instead of a SOAP response. A retried
# change is safe: a reconfigure carries the changeVersion it was planned on, so one applied before is refused
# (Stale), and the operation reads the VM again.
THROTTLED_STATUSES = frozenset({"429", "502", "503", "504"})


class TransientHttpError(ConfigDriveError):
    """An HTTP answer worth retrying (5xx, 429)."""


def is_transient(error: BaseException) -> bool:
    """Worth another try: connection trouble, 5xx, or vSphere saying another task holds the object."""
    if isinstance(error, requests.exceptions.SSLError):
        error = root_cause(error)  # a refused certificate or thumbprint is permanent; a cut connection is not
    if isinstance(error, (TransientHttpError, *TRANSIENT_NETWORK_ERRORS)):
        return True
    if isinstance(error, ssl.SSLError) and not isinstance(error, ssl.SSLCertVerificationError):
        return "EOF" in str(error) or "reset" in str(error).lower()
    return is_throttled(error) or isinstance(error, (vim.fault.TaskInProgress, vmodl.fault.HostCommunication))


def is_throttled(error: BaseException) -> bool:
    """vCenter too busy to answer: HTTP 429/502/503/504 where a SOAP response was due."""
    # pyVmomi raises a bare HTTPException("<status> <reason>") for a SOAP answer that is neither 200 nor 500
    return type(error) is http.client.HTTPException and str(error).split(" ", 1)[0] in THROTTLED_STATUSES


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception requests/urllib3 wrapped (each of their layers repeats the URL)."""
    for _ in range(10):
        inner = getattr(error, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in getattr(error, "args", ()) if isinstance(a, BaseException)), None)
        if inner is None:
            break
        error = inner
    return error


def describe_network_error(error: BaseException) -> str:
    """One line for a failed HTTP exchange: its root cause, without the URL."""
    root = root_cause(error)
    text = " ".join(str(root).split()) or type(root).__name__
    if isinstance(root, ssl.SSLCertVerificationError) or "fingerprint" in text.lower():
        return f"TLS verification failed ({text}); trust the server with --ca-file/--thumbprint, or pass --insecure"
    return f"connection failed ({type(root).__name__}: {text})"


def retrying(
    attempts: int = 5,
    max_wait: float = 8.0,
    what: str = "call",
    worth_it: Callable[[BaseException], bool] = is_transient,
) -> _Retrying:
    """A tenacity policy: exponential backoff on transient errors only (``worth_it``); others raise at once."""

    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("%s failed (%s); retrying (attempt %d)", what, type(error).__name__, state.attempt_number + 1)

    return _Retrying(
        retry=retry_if_exception(worth_it),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.25, max=max_wait),
        before_sleep=log_retry,
        reraise=True,
    )
