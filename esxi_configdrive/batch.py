"""Batch mode: one operation over many VMs from a JSON-lines file, with bounded concurrency on one session.

Each line names a VM and, for attach/update, its data. Lines are read as they are needed and results are
written as they finish, so memory stays flat however long the file is. A line that fails (bad input or a vSphere
error) gets an error result; the others go on.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from . import dispatch
from . import network as network_section
from .defaults import DEFAULT_CONCURRENCY, DEFAULT_MAX_USERDATA_BYTES
from .errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, ValidationError, changed_after, describe_failure, one_line
from .fields import check_concurrency, check_password, userdata_from
from .transport import parse_transport
from .vmdata import ContentChange, VmData

if TYPE_CHECKING:  # the controller loads the vSphere layer: a batch is handed one
    from .controller import ConfigDriveController

COMMANDS = ("attach", "update", "detach", "remove")
LINE_KEYS = {
    "attach": {"vm", "vmdata", "vmdata_file", "network", "datastore", "controller", "network_data", "new_instance_id",
               "transport", "guestinfo_password"},
    "update": {
        "vm", "vmdata", "vmdata_file", "userdata", "userdata_base64", "password", "public_keys", "hostname",
        "network", "network_data", "new_instance_id", "transport", "guestinfo_password",
    },
    "detach": {"vm"},
    "remove": {"vm"},
}  # fmt: skip
MAX_LINE_BYTES = 16 * 1024 * 1024
PAGE = 100  # lines read ahead, and VMs whose facts are read in one call


@dataclass
class BatchItem:
    """One line: the VM and what to do to it, or why the line is unusable."""

    line: int
    vm: str = ""
    data: VmData | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    error: ValidationError | None = None
    ref: Any = None  # the VM's managed object, when the name was resolved up front


@dataclass
class BatchSummary:
    total: int = 0
    changed: int = 0
    failed: int = 0
    bad_input: int = 0
    seconds: float = 0.0

    def add(self, result: dict[str, Any]) -> None:
        """Count one VM's result line."""
        self.total += 1
        if "error" in result:
            if result["exit_status"] == EXIT_BAD_INPUT:
                self.bad_input += 1
            else:
                self.failed += 1
        elif result.get("changed"):
            self.changed += 1

    @property
    def exit_status(self) -> int:
        """0 every VM done; 1 some VM failed on vSphere; 2 only bad lines failed."""
        if self.failed:
            return EXIT_FAILURE
        return EXIT_BAD_INPUT if self.bad_input else EXIT_OK


# ---- reading the file ---------------------------------------------------------------------------------------


def read_batch(
    stream: Iterable[str], command: str, max_userdata_bytes: int = DEFAULT_MAX_USERDATA_BYTES
) -> Iterator[BatchItem]:
    """Parse JSON lines lazily; blank lines and ``#`` comments are skipped."""
    if command not in COMMANDS:
        raise ValidationError("batch", f"batch mode works with {', '.join(COMMANDS)}")
    for number, raw in enumerate(stream, start=1):
        if not is_skipped(raw):
            yield parse_line(number, raw, command, max_userdata_bytes)


def is_skipped(raw: str) -> bool:
    """A blank line or a ``#`` comment: no VM, no result."""
    text = raw.strip()
    return not text or text.startswith("#")


def parse_line(number: int, raw: str, command: str, max_userdata_bytes: int) -> BatchItem:
    """Line ``number`` of a batch (not skipped) as an item: what to do, or why the line is unusable."""
    item = BatchItem(line=number)
    try:
        _parse_line(item, raw.strip(), command, max_userdata_bytes)
    except ValidationError as e:
        item.error = ValidationError(f"line {number}: {e.field}", e.message)
    return item


def _parse_line(item: BatchItem, text: str, command: str, max_userdata_bytes: int) -> None:
    if len(text) > MAX_LINE_BYTES:
        raise ValidationError("line", f"longer than {MAX_LINE_BYTES} bytes")
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ValidationError("line", f"not JSON ({getattr(e, 'msg', 'nested too deeply')})") from None
    if not isinstance(obj, dict):
        raise ValidationError("line", 'must be a JSON object with at least a "vm" key')
    unknown = sorted(set(obj) - LINE_KEYS[command])
    if unknown:
        raise ValidationError(
            unknown[0], f"unknown key for {command} (expected {', '.join(sorted(LINE_KEYS[command]))})"
        )
    vm = obj.get("vm")
    if not isinstance(vm, str) or not vm.strip() or "\x00" in vm:
        raise ValidationError("vm", "required: the VM's name, inventory path, UUID or id")
    item.vm = vm.strip()
    if "vmdata" in obj and "vmdata_file" in obj:
        raise ValidationError("vmdata", "give vmdata or vmdata_file, not both")
    if "vmdata" in obj:
        item.data = VmData.from_object(obj["vmdata"], max_userdata_bytes=max_userdata_bytes)
    elif "vmdata_file" in obj:
        if not isinstance(obj["vmdata_file"], str):
            raise ValidationError("vmdata_file", "must be a path")
        item.data = VmData.from_file(obj["vmdata_file"], max_userdata_bytes=max_userdata_bytes)
    if command == "attach" and item.data is None:
        raise ValidationError("vmdata", "attach needs vmdata or vmdata_file")
    item.overrides = _overrides(obj, max_userdata_bytes)
    if command == "attach" and "network" in item.overrides and item.data is not None:  # replaces the data's
        item.data = item.data.with_overrides(network=item.overrides.pop("network"), max_userdata_bytes=None)
    for key in ("datastore", "controller", "network_data"):
        if key in obj:
            if not isinstance(obj[key], str):
                raise ValidationError(key, "must be a string")
            item.options[key] = obj[key]
    if "transport" in obj:
        item.options["transport"] = parse_transport(obj["transport"])
    for flag in ("new_instance_id", "guestinfo_password"):
        if flag in obj:
            if not isinstance(obj[flag], bool):
                raise ValidationError(flag, "must be true or false")
            item.options[flag] = obj[flag]
    changes_something = (
        item.options.get("network_data") is not None
        or item.options.get("new_instance_id")
        or "transport" in item.options
    )
    if command == "update" and item.data is None and not item.overrides and not changes_something:
        raise ValidationError("update", "nothing to change on this line")
    dispatch.check_network_data_option(command, item.options.get("network_data"), "network_data")


def _overrides(obj: dict[str, Any], max_userdata_bytes: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "userdata" in obj or "userdata_base64" in obj:
        out["userdata"] = userdata_from(obj) or b""
    if "password" in obj:
        check_password(obj["password"])
        out["password"] = obj["password"]
    if "public_keys" in obj:
        keys = obj["public_keys"]
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValidationError("public_keys", "must be a list of strings")
        out["public_keys"] = keys
    if "hostname" in obj:
        out["hostname"] = obj["hostname"]
    if obj.get("network") is not None:
        out["network"] = network_section.normalized(obj["network"])
    ContentChange.parse(out, {}, max_userdata_bytes=max_userdata_bytes)  # the checks the request's parse gives
    return out


# ---- running ------------------------------------------------------------------------------------------------------


def batch_defaults(
    *,
    dry_run: bool,
    new_instance_id: bool = False,
    datastore: str | None = None,
    controller: str | None = None,
    network_data: str | None = None,
    transport: str | None = None,
    guestinfo_password: bool = False,
) -> dict[str, Any]:
    """What every line of a batch inherits from its command (the CLI's flags, the Ansible module's options): only
    what was chosen, so that a line's own value wins and an unchosen one keeps the operation's default."""
    defaults: dict[str, Any] = {"dry_run": dry_run}
    if new_instance_id:
        defaults["new_instance_id"] = True
    if guestinfo_password:
        defaults["guestinfo_password"] = True
    chosen = {"datastore": datastore, "controller": controller, "network_data": network_data, "transport": transport}
    defaults.update({key: value for key, value in chosen.items() if value})
    return defaults


def run_batch(
    controller: ConfigDriveController,
    command: str,
    items: Iterable[BatchItem],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    defaults: dict[str, Any] | None = None,
    on_result: Callable[[dict[str, Any]], None] = lambda r: None,
    progress: Progress | None = None,
) -> BatchSummary:
    """Run ``command`` for every item, at most ``concurrency`` at a time; ``on_result`` gets each result as
    it finishes (from the calling thread, so output needs no lock).

    What the VMs have in common is read for all of them at once: their names in one call, their facts a page of
    lines at a time (a VM's first line runs on those; later lines for the same VM read it afresh, as it has
    changed), and every task in flight is polled in one call per round (the controller's ``fleet``). Per VM
    only what must be done for it remains: the uploads, downloads, deletes and reconfigures."""
    check_concurrency(concurrency)
    summary = BatchSummary()
    started = time.monotonic()
    defaults = defaults or {}
    pending: set[Future[Any]] = set()

    def finish(done: Iterable[Future[Any]]) -> None:
        for future in done:
            result = future.result()
            if isinstance(result, _Unconfirmed):  # emitted once its deletes are confirmed; the thread goes on
                pending.add(result.confirmed())
                continue
            summary.add(result)
            on_result(result)
            if progress:
                progress.update(summary)

    names = controller.name_index()  # every VM name in one call, not a look-up per line
    seen: set[str] = set()
    with (
        controller.fleet(concurrency) as poller,
        ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="batch") as pool,
    ):
        running = poller.operation
        try:
            # the first page as large as the concurrency, so the workers start after a short read, then each twice
            # the last up to a full page: the next page's read overlaps the workers' operations on the last
            for window in _windows(items, min(concurrency, PAGE), PAGE):
                _resolve(controller, window, names, seen)
                for item in window:
                    while len(pending) >= max(concurrency * 2, PAGE):  # read ahead a page, not the whole file
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        finish(done)
                    pending.add(pool.submit(_run_one, controller, command, item, defaults, running))
            poller.draining()
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                finish(done)
        except BaseException:  # interrupted (Ctrl-C, a worker process told to stop): what has begun ends, the
            pool.shutdown(wait=False, cancel_futures=True)  # lines read ahead do not start
            raise
    summary.seconds = time.monotonic() - started
    if progress:
        progress.close(summary)
    return summary


def _windows(items: Iterable[BatchItem], first: int, size: int) -> Iterator[list[BatchItem]]:
    """The items a window at a time: ``first`` of them, then twice as many each time, up to ``size``."""
    window: list[BatchItem] = []
    for item in items:
        window.append(item)
        if len(window) >= first:
            yield window
            window, first = [], min(first * 2, size)
    if window:
        yield window


def _resolve(
    controller: ConfigDriveController, window: list[BatchItem], names: dict[str, list[Any]], seen: set[str]
) -> None:
    """Each line's VM from the name index, and, for a VM's first line in the batch, its facts of one read."""
    first = []
    for item in window:
        matches = names.get(item.vm, [])
        item.ref = matches[0] if len(matches) == 1 and item.error is None else None
        if item.ref is not None and item.ref._moId not in seen:
            seen.add(item.ref._moId)
            first.append(item)
    facts = controller.prefetch([item.ref for item in first]) if first else {}
    for item in first:
        item.ref = facts.get(item.ref._moId, item.ref)


def _run_one(
    controller: ConfigDriveController,
    command: str,
    item: BatchItem,
    defaults: dict[str, Any],
    running: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> dict[str, Any] | _Unconfirmed:
    base = {"line": item.line, "vm": item.vm}
    if item.error is not None:
        return {**base, "changed": False, "error": str(item.error), "exit_status": EXIT_BAD_INPUT}
    options = {**defaults, **item.options}
    request = dispatch.Request(
        vm=item.ref if item.ref is not None else item.vm,
        data=item.data,
        overrides=item.overrides,
        datastore=options.get("datastore"),
        controller=options.get("controller", "auto"),
        network_data=options.get("network_data"),
        new_instance_id=options.get("new_instance_id", False),
        dry_run=options.get("dry_run", False),
        transport=options.get("transport"),
        guestinfo_password=options.get("guestinfo_password", False),
    )
    try:
        call = dispatch.parse(command, request, controller.policy.max_userdata_bytes)
        with running():
            result = controller.run(call)
    except Exception as e:  # one VM's failure is its own result; the batch goes on
        return _failed(base, e)
    if getattr(result, "pending", None):
        return _Unconfirmed(base, result)
    return {**base, **result.to_dict()}


def _failed(base: dict[str, Any], error: BaseException) -> dict[str, Any]:
    message, status = describe_failure(error)
    return {**base, "changed": changed_after(status), "error": one_line(message), "exit_status": status}


@dataclass
class _Unconfirmed:
    """A VM whose operation is done but for deletes the shared poller confirms later (``Result.settled``)."""

    base: dict[str, Any]
    result: Any

    def confirmed(self) -> Future[dict[str, Any]]:
        """The VM's result line, once every pending delete is settled (set from the poller's thread)."""
        line: Future[dict[str, Any]] = Future()
        left = list(self.result.pending)
        lock = threading.Lock()

        def one_done(_: Future[Any]) -> None:
            with lock:
                left.pop()
                last = not left
            if last:
                try:
                    line.set_result({**self.base, **self.result.settled(0).to_dict()})
                except Exception as e:
                    line.set_result(_failed(self.base, e))

        for confirmation in list(left):
            confirmation.add_done_callback(one_done)
        return line


# ---- progress ---------------------------------------------------------------------------------------------------


class Progress:
    """A one-line progress display on a terminal; silent elsewhere (pipelines read stdout only)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def update(self, s: BatchSummary) -> None:
        if not self.enabled:
            return
        rate = s.total / max(time.monotonic() - self._started, 1e-6)
        with self._lock:
            self.stream.write(
                f"\r{s.total} done ({s.changed} changed, {s.failed + s.bad_input} failed), {rate:.1f} VMs/s "
            )
            self.stream.flush()

    def close(self, s: BatchSummary) -> None:
        if not self.enabled:
            return
        self.stream.write(
            f"\n{s.total} VMs in {s.seconds:.1f} s: {s.changed} changed, {s.failed} failed, {s.bad_input} bad input\n"
        )
        self.stream.flush()
