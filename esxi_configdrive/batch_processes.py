"""Batch mode in several processes: at high concurrency one interpreter lock, not vSphere, limits a batch (its threads
wait for the lock most of the time), so the lines are shared among worker processes, each running
``batch.run_batch`` unchanged on its share, with its own session, controller, task poller and threads.

The workers are forked before any thread or connection exists: they inherit the code already imported and the
connection settings in memory (the password is never in an argument, the environment or a file). This process reads
the batch file as it goes and sends each line to a worker (``Router``: the one running the VM's earlier lines while
any is unanswered, so they keep their order, else the least loaded); the workers send each result back, and this
process prints them as they come, counts them into one summary and keeps the progress line. A worker that stops
before answering (killed, out of memory, its login refused) leaves an error result for each of its unanswered lines,
and the batch exits non-zero; every operation is idempotent, so running the batch again finishes it. A worker whose
parent dies is stopped at once (every step of an operation is crash-safe)."""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from .batch import MAX_LINE_BYTES, BatchItem, BatchSummary, Progress, is_skipped, parse_line
from .defaults import THREADS_PER_PROCESS
from .errors import EXIT_FAILURE, ConfigDriveError, ValidationError, changed_after, describe_failure, one_line

PR_SET_PDEATHSIG = 1  # prctl(2)
WAKE_SECONDS = 0.2  # how often the collector looks for lines sent to a worker that had already stopped
# What a batch imports on first use (the controller and the vSphere layer, the ISO library, the NoCloud layout, what
# requests and pyVmomi load on their first call): imported once here before the fork rather than by every worker.
PRELOADED = ("esxi_configdrive.controller", "pycdlib", "esxi_configdrive.nocloud", "uuid", "netrc", "_strptime")

# Runs a share of the batch in one process: the items, the VMs at a time, where each result goes.
RunShare = Callable[[Iterable[BatchItem], int, Callable[[dict[str, Any]], None]], BatchSummary]


def process_count(requested: int | None, concurrency: int, can_fork: bool | None = None) -> int:
    """``--processes``: as given (at most one per VM at a time); ``None``, automatic: one per
    ``THREADS_PER_PROCESS`` VMs at a time, at most one per core, at least one. Where processes cannot be forked
    safely (anywhere but Linux: Windows has no fork, and macOS's system libraries are not safe to use in a forked
    child, which is why Python starts processes there by spawning), one."""
    can_fork = sys.platform.startswith("linux") if can_fork is None else can_fork
    if requested is not None:
        if requested < 1:
            raise ValidationError("processes", "must be at least 1")
        if requested > 1 and not can_fork:
            raise ValidationError("processes", "worker processes are forked, which is safe only on Linux: give 1")
        return min(requested, concurrency)
    return max(1, min(_cores(), concurrency // THREADS_PER_PROCESS)) if can_fork else 1


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def shares(concurrency: int, processes: int) -> list[int]:
    """The VMs at a time of each worker: the concurrency split as evenly as it goes."""
    return [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]


class Router:
    """Which worker a line goes to: while a VM has lines unanswered, the worker running them, so that lines naming
    a VM the same way run in file order in one process; otherwise the worker with the fewest lines unanswered, so
    the workers finish together. It remembers only the VMs in flight: memory stays flat however long the file."""

    def __init__(self, processes: int) -> None:
        self.load = [0] * processes  # lines sent and not answered, per worker
        self.stopped: set[int] = set()
        self.in_flight: dict[str, tuple[int, int]] = {}  # vm -> (worker, its lines unanswered)

    def choose(self, vm: str) -> int | None:
        """The worker for a line naming ``vm`` ("" for a line without one), counted as sent; None: every worker
        has stopped."""
        if vm in self.in_flight:
            worker, lines = self.in_flight[vm]
        else:
            live = [i for i in range(len(self.load)) if i not in self.stopped]
            if not live:
                return None
            worker, lines = min(live, key=lambda i: self.load[i]), 0
        if vm:
            self.in_flight[vm] = (worker, lines + 1)
        self.load[worker] += 1
        return worker

    def answered(self, worker: int, vm: str) -> None:
        self.load[worker] -= 1
        if vm in self.in_flight:
            lines = self.in_flight[vm][1] - 1
            if lines:
                self.in_flight[vm] = (worker, lines)
            else:
                del self.in_flight[vm]

    def stop(self, worker: int) -> None:
        """The worker has ended: what it had is lost (written off by the caller), no line goes to it again."""
        self.stopped.add(worker)
        self.load[worker] = 0
        self.in_flight = {vm: held for vm, held in self.in_flight.items() if held[0] != worker}


def vm_of(raw: str) -> str:
    """A line's ``vm`` value, or "" (the worker's parse says what is wrong with the line)."""
    with contextlib.suppress(ValueError, RecursionError):
        obj = json.loads(raw) if len(raw) <= MAX_LINE_BYTES else None
        if isinstance(obj, dict) and isinstance(obj.get("vm"), str):
            return obj["vm"].strip()
    return ""


# ---- the workers -------------------------------------------------------------------------------------------------


def _work(run: RunShare, threads: int, command: str, max_userdata_bytes: int, lines: Connection,
          results: Connection, inherited: list[Connection], parent: int) -> None:  # fmt: skip
    """A worker process: its share of the lines in, each result out; a failure of its own (its login refused)
    goes out as its last message."""
    _stop_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    signal.signal(signal.SIGTERM, _stop_in_order)
    for connection in inherited:  # the other workers' pipe ends: else their input would never end
        connection.close()
    taken = False  # whether run has taken a line: before that (its login refused), nothing was changed

    def items() -> Iterator[BatchItem]:
        nonlocal taken
        for number, raw in _received(lines):
            taken = True
            yield parse_line(number, raw, command, max_userdata_bytes)

    try:
        run(items(), threads, lambda result: results.send(("result", result)))
    except Exception as e:
        message, status = describe_failure(e)
        results.send(("failed", one_line(message), status, taken))
        raise SystemExit(status) from None
    finally:
        results.close()


def _stop_in_order(signum: int, frame: Any) -> None:
    """Asked to stop (the parent interrupted, or gone): unwind as an interrupted batch does in one process, so the
    operations begun finish and the session is logged out; a second SIGTERM ends the worker at once."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise SystemExit(128 + signum)


def _received(lines: Connection) -> Iterator[tuple[int, str]]:
    while True:
        try:
            yield lines.recv()
        except EOFError:  # the parent has sent every line (or is gone)
            return


def _stop_with(parent: int) -> None:
    """The worker ends when its parent does (Linux), and not later: lines it has not run stay for a re-run."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(EXIT_FAILURE)


# ---- the parent --------------------------------------------------------------------------------------------------


@dataclass
class _Worker:
    process: Any
    lines: Connection  # our end: lines out
    results: Connection  # our end: results in
    unanswered: dict[int, str] = field(default_factory=dict)  # line -> vm
    stopped: bool = False
    failure: tuple[str, int] | None = None  # what the worker said stopped it
    took_lines: bool = True  # False: it stopped before taking any line (nothing changed)


def run_in_processes(
    processes: int,
    run: RunShare,
    stream: Iterable[str],
    command: str,
    *,
    concurrency: int,
    max_userdata_bytes: int,
    on_result: Callable[[dict[str, Any]], None],
    progress: Progress | None = None,
) -> BatchSummary:
    """The batch in ``stream`` on ``processes`` workers, ``concurrency`` VMs at a time in all; ``on_result`` gets
    each result as it arrives, from this thread."""
    started = time.monotonic()
    workers = _start(processes, run, concurrency, command, max_userdata_bytes)
    collector = _Collector(workers)
    feeder = threading.Thread(target=collector.feed, args=(stream,), name="batch-feeder", daemon=True)
    try:
        feeder.start()
        summary = collector.collect(on_result, progress)
    except BaseException:
        _stop(workers)
        raise
    finally:
        for worker in workers:
            worker.process.join()
    feeder.join()
    if collector.reading_failed is not None:
        raise collector.reading_failed
    summary.seconds = time.monotonic() - started
    if progress:
        progress.close(summary)
    return summary


def _stop(workers: list[_Worker]) -> None:
    """Interrupted: each worker is asked to stop (SIGTERM: the operations it has begun finish and it logs out, as an
    interrupted batch does in one process); interrupted again, they are killed (every step is crash-safe)."""
    for worker in workers:
        if worker.process.is_alive():
            worker.process.terminate()
    try:
        for worker in workers:
            worker.process.join()
    except KeyboardInterrupt:
        for worker in workers:
            if worker.process.is_alive():
                worker.process.kill()
        raise


def _start(processes: int, run: RunShare, concurrency: int, command: str, max_userdata_bytes: int) -> list[_Worker]:
    """Fork the workers, each with its own pair of pipes (this process has no other thread yet)."""
    context = multiprocessing.get_context("fork")
    for module in PRELOADED:
        importlib.import_module(module)
    for stream in (sys.stdout, sys.stderr):  # else what is buffered would be written again by each worker
        stream.flush()
    workers: list[_Worker] = []
    for threads in shares(concurrency, processes):
        lines_in, lines_out = context.Pipe(duplex=False)
        results_in, results_out = context.Pipe(duplex=False)
        inherited = [end for w in workers for end in (w.lines, w.results)] + [lines_out, results_in]
        process = context.Process(
            target=_work,
            args=(run, threads, command, max_userdata_bytes, lines_in, results_out, inherited, os.getpid()),
            name=f"batch-worker-{len(workers)}",
        )
        process.start()
        lines_in.close()
        results_out.close()
        workers.append(_Worker(process, lines_out, results_in))
    return workers


class _Collector:
    """Lines out to the workers (from a thread of its own, so a full pipe never holds up the results) and results
    in; what a worker left unanswered becomes error results."""

    def __init__(self, workers: list[_Worker]) -> None:
        self.workers = workers
        self.router = Router(len(workers))
        self.lock = threading.Lock()
        # results of lines no worker ran: those that found every worker stopped, and those of a worker that stopped
        # before taking any (its login refused); given at the end, or, if no worker took a line, one error instead
        self.held: list[dict[str, Any]] = []
        self.reading_failed: BaseException | None = None
        self.fed = threading.Event()  # every line of the file has been read (or reading stopped)

    def feed(self, stream: Iterable[str]) -> None:
        try:
            for number, raw in enumerate(stream, start=1):
                if not is_skipped(raw) and not self._send(number, vm_of(raw), raw):
                    break  # every worker stopped before taking a line: the batch fails as a whole
        except BaseException as e:  # an unreadable file: the lines sent so far finish, then the batch fails
            self.reading_failed = e
        finally:
            for worker in self.workers:
                worker.lines.close()
            self.fed.set()

    def _send(self, number: int, vm: str, raw: str) -> bool:
        """Send a line to its worker; False: no worker took any line, and none is left to."""
        with self.lock:
            index = self.router.choose(vm)
            if index is None:
                if self.nothing_taken():
                    return False
                self.held.append(_lost(number, vm, self.workers[-1]))
                return True
            worker = self.workers[index]
            worker.unanswered[number] = vm
        with contextlib.suppress(OSError):  # the worker is gone: its end is counted when its results end
            worker.lines.send((number, raw))
        return True

    def nothing_taken(self) -> bool:
        return all(not worker.took_lines for worker in self.workers)

    def collect(self, on_result: Callable[[dict[str, Any]], None], progress: Progress | None) -> BatchSummary:
        summary = BatchSummary()

        def emit(result: dict[str, Any]) -> None:
            summary.add(result)
            on_result(result)
            if progress:
                progress.update(summary)

        running = {worker.results: worker for worker in self.workers}
        while running:
            for ready in wait(list(running), timeout=WAKE_SECONDS):
                worker = running[ready]  # type: ignore[index]
                for result in self._receive(worker):
                    emit(result)
                if worker.stopped:
                    del running[ready]  # type: ignore[arg-type]
        # every worker has stopped: what is left of the file becomes results of lines no worker ran, given as the
        # file is read (memory stays flat) unless no worker took any line
        while not self.fed.wait(WAKE_SECONDS):
            if not self.nothing_taken():
                for result in self._take_held():
                    emit(result)
        if self.nothing_taken():  # as in one process: the login's failure is the batch's, and no line has a result
            failure = next(w.failure for w in self.workers if w.failure is not None)
            raise ConfigDriveError(failure[0])
        for result in self._take_held():
            emit(result)
        return summary

    def _take_held(self) -> list[dict[str, Any]]:
        with self.lock:
            held, self.held = self.held, []
        return held

    def _receive(self, worker: _Worker) -> list[dict[str, Any]]:
        try:
            message = worker.results.recv()
        except EOFError:  # the worker has ended: whatever it did not answer is lost
            worker.process.join()
            with self.lock:
                worker.stopped = True
                self.router.stop(self.workers.index(worker))
                lost, worker.unanswered = worker.unanswered, {}
                results = [_lost(number, vm, worker) for number, vm in sorted(lost.items())]
                if not worker.took_lines:
                    self.held += results
                    return []
            return results
        if message[0] == "failed":
            with self.lock:
                worker.failure, worker.took_lines = (message[1], message[2]), message[3]
                if not worker.took_lines:  # no line goes to it any more
                    self.router.stop(self.workers.index(worker))
            return []
        result = message[1]
        with self.lock:
            if result["line"] in worker.unanswered:
                self.router.answered(self.workers.index(worker), worker.unanswered.pop(result["line"]))
        return [result]


def _lost(number: int, vm: str, worker: _Worker) -> dict[str, Any]:
    """The result of a line its worker stopped before answering."""
    status = EXIT_FAILURE
    if worker.failure is not None:
        how, status = worker.failure
    elif worker.process.exitcode is not None and worker.process.exitcode < 0:
        how = f"killed by signal {-worker.process.exitcode}"
    else:
        how = f"exit status {worker.process.exitcode}"
    if not worker.took_lines:  # nothing was done for this line
        message = f"not run: the worker process for this line stopped before it began ({how})"
        return {"line": number, "vm": vm, "changed": False, "error": one_line(message), "exit_status": status}
    message = (f"the worker process running this line stopped ({how}) before it answered; the VM may be part-way: "
               "run the batch again (every operation is idempotent)")  # fmt: skip
    return {"line": number, "vm": vm, "changed": changed_after(status), "error": one_line(message),
            "exit_status": status}  # fmt: skip
