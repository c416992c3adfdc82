"""Where a batch's time goes: a per-VM timeline built from the client's own calls, for bench_fleet.py.

Run as ``python benchmarks/timeline.py EVENTS.json [--package-dir DIR] -- <CLI arguments>``: it runs the CLI's
``main`` in this process (the package from DIR instead of the installed one when given: bench_fleet.py's previous
commit) with thin wrappers around the points every request and wait passes through, and writes the events:

- per VM: queued (handed to the worker pool), start and end of its operation;
- every request: what it was, which VM's thread made it (or the poller's), when it was sent and answered
  (``Session.call``: one SOAP call with its retries; ``DatastoreFiles._exchange``: one /folder exchange);
- every task waited for: which VM, when the wait began, and when the client saw it ended (``TaskWait.settle``
  returning done or raising); the task's own start and end (``info.startTime``/``info.completeTime``) are read
  from vSphere after the batch, in one call (``add_task_times``, by the benchmark once it has read the counters).

``summarize(events, concurrency)`` turns them into the breakdown bench_fleet.py prints and docs/performance.md §3
quotes: startup (login, the name index, the first facts page), per VM on average the time on the wire, in a
task, seen late after the task ended, and the client's own (the rest of the operation), the worker slots left idle
(starved: no VM ready yet; drain: the last wave), and the tail (deletes confirmed after the last operation); and how
well ``startup + (Σ operation + idle slot time) / concurrency + tail`` accounts for the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def use_package(package_dir: str | None) -> None:
    """Import ``esxi_configdrive`` from ``package_dir`` rather than the editable install (whose meta path finder
    would win over sys.path)."""
    if not package_dir:
        return
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "").lower()]
    sys.path.insert(0, package_dir)
    import esxi_configdrive

    if not str(Path(esxi_configdrive.__file__).resolve()).startswith(str(Path(package_dir).resolve())):
        raise SystemExit(f"esxi_configdrive imported from {esxi_configdrive.__file__}, not {package_dir}")


class Recorder:
    def __init__(self) -> None:
        self.t0 = time.time()
        self.lock = threading.Lock()
        self.local = threading.local()
        self.vms: dict[str, dict[str, Any]] = defaultdict(dict)
        self.requests: list[tuple[str | None, str, float, float]] = []
        self.waits: dict[str, dict[str, Any]] = {}

    def reset(self) -> None:
        """A worker process's own events from its start (batch_processes.py forks before any is recorded)."""
        self.lock = threading.Lock()
        self.vms, self.requests, self.waits = defaultdict(dict), [], {}

    def vm(self) -> str | None:
        return getattr(self.local, "vm", None)

    def install(self, events: Path) -> None:
        from esxi_configdrive import batch
        from esxi_configdrive.vsphere import tasks
        from esxi_configdrive.vsphere.connection import Session
        from esxi_configdrive.vsphere.datastore import DatastoreFiles

        rec = self
        call, exchange, run_one = Session.call, DatastoreFiles._exchange, batch._run_one
        settle, init = tasks.TaskWait.settle, tasks.TaskWait.__init__

        def timed(what: str, fn: Any) -> Any:
            start = time.time()
            try:
                return fn()
            finally:
                with rec.lock:
                    rec.requests.append((rec.vm(), what, start, time.time()))

        def call_(self: Any, fn: Any, what: str = "vSphere call", *args: Any, **kw: Any) -> Any:
            return timed(what, lambda: call(self, fn, what, *args, **kw))

        def exchange_(self: Any, fn: Any, what: str, path: Any) -> Any:
            return timed(f"/folder {what}", lambda: exchange(self, fn, what, path))

        def run_one_(controller: Any, command: str, item: Any, *args: Any) -> Any:
            rec.local.vm = item.vm
            rec.vms[item.vm]["start"] = time.time()
            try:
                return run_one(controller, command, item, *args)
            finally:
                rec.vms[item.vm]["end"] = time.time()
                rec.local.vm = None

        class Pool(batch.ThreadPoolExecutor):  # type: ignore[misc, name-defined]
            def submit(self, fn: Any, *args: Any, **kw: Any) -> Any:
                if len(args) >= 3 and hasattr(args[2], "vm"):
                    rec.vms[args[2].vm]["queued"] = time.time()
                return super().submit(fn, *args, **kw)

        def init_(self: Any, task: Any, *args: Any, **kw: Any) -> None:
            init(self, task, *args, **kw)
            with rec.lock:
                rec.waits[task._moId] = {"vm": rec.vm(), "registered": time.time(), "what": args[0] if args else ""}

        def settle_(self: Any, *args: Any, **kw: Any) -> Any:
            try:
                done, value = settle(self, *args, **kw)
            except BaseException:
                rec.waits[self.task._moId]["seen"] = time.time()
                raise
            if done:
                rec.waits[self.task._moId]["seen"] = time.time()
            return done, value

        self._install_in_workers(events)
        Session.call = call_  # type: ignore[method-assign]
        DatastoreFiles._exchange = exchange_  # type: ignore[method-assign]
        batch._run_one = run_one_
        batch.ThreadPoolExecutor = Pool  # type: ignore[misc]
        tasks.TaskWait.settle = settle_  # type: ignore[method-assign]
        tasks.TaskWait.__init__ = init_  # type: ignore[method-assign]

    def _install_in_workers(self, events: Path) -> None:
        """Batch mode's worker processes (forked, so with these wrappers) each write their own events beside
        ``events`` as they end; ``dump`` merges them."""
        try:
            from esxi_configdrive import batch_processes
        except ImportError:  # a commit from before worker processes
            return
        work, rec = batch_processes._work, self

        def work_(*args: Any, **kw: Any) -> None:
            rec.reset()
            try:
                work(*args, **kw)
            finally:
                rec.dump(events.with_name(f"{events.name}.worker-{os.getpid()}"), 0)

        batch_processes._work = work_

    def dump(self, path: Path, status: int) -> None:
        events = {"t0": self.t0, "t_end": time.time(), "status": status, "vms": dict(self.vms),
                  "requests": self.requests, "waits": self.waits}  # fmt: skip
        for part in sorted(path.parent.glob(f"{path.name}.worker-*")):  # the worker processes'
            worker = json.loads(part.read_text())
            events["vms"].update(worker["vms"])
            events["requests"] += worker["requests"]
            events["waits"].update(worker["waits"])
            part.unlink()
        path.write_text(json.dumps(events))


def add_task_times(si: Any, events: dict[str, Any]) -> None:
    """Each task's start and end as vSphere recorded them (one call, after the batch and its counters)."""
    from pyVmomi import vim, vmodl

    waits = events["waits"]
    if not waits:
        return
    PC = vmodl.query.PropertyCollector
    spec = PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=vim.Task(moid, si._stub)) for moid in waits],
        propSet=[PC.PropertySpec(type=vim.Task, pathSet=["info.startTime", "info.completeTime"])],
    )
    result = si.content.propertyCollector.RetrievePropertiesEx([spec], PC.RetrieveOptions())
    while result is not None:
        for obj in result.objects or []:
            props = {p.name: p.val for p in obj.propSet or []}
            for key, name in (("task_start", "info.startTime"), ("task_end", "info.completeTime")):
                if props.get(name) is not None:
                    waits[obj.obj._moId][key] = props[name].timestamp()
        if not result.token:
            break
        result = si.content.propertyCollector.ContinueRetrievePropertiesEx(result.token)


def idle_slots(vms: list[dict[str, Any]], concurrency: int) -> tuple[float, float]:
    """Slot-seconds no operation ran in, between the first start and the last end: before the last VM started
    (starved: no VM ready, e.g. its facts still being read) and after it (the last wave draining)."""
    edges = sorted([(v["start"], 1) for v in vms] + [(v["end"], -1) for v in vms])
    last_start = max(v["start"] for v in vms)
    starved = drain = 0.0
    running, when = 0, edges[0][0]
    for t, step in edges:
        idle = max(concurrency - running, 0)
        before = max(min(t, last_start) - when, 0)
        starved += idle * before
        drain += idle * (t - when - before)
        running, when = running + step, t
    return starved, drain


def summarize(events: dict[str, Any], concurrency: int, wall: float | None = None) -> dict[str, float]:
    """The breakdown of one batch (seconds; per-VM figures are means over its VMs). ``wall``: the process's own
    wall time as its parent measured it (the interpreter's start before the first event counts as startup)."""
    vms = {name: v for name, v in events["vms"].items() if "start" in v and "end" in v}
    n = len(vms)
    first_start = min(v["start"] for v in vms.values())
    last_end = max(v["end"] for v in vms.values())
    wall = wall if wall is not None else events["t_end"] - events["t0"]
    before = wall - (events["t_end"] - events["t0"])  # the interpreter's start and imports
    ops = sum(v["end"] - v["start"] for v in vms.values())
    by_vm = [r for r in events["requests"] if r[0] is not None]
    wire = sum(r[3] - r[2] for r in by_vm)
    # what a VM's thread spent blocked on its tasks (a delete confirmed later is seen after its operation ended)
    waiting = in_task = late = 0.0
    late_n = 0
    for w in events["waits"].values():
        if w.get("vm") not in vms or "seen" not in w:
            continue
        until = min(w["seen"], vms[w["vm"]]["end"])
        waiting += max(until - w["registered"], 0)
        if "task_end" in w:
            in_task += max(min(w["task_end"], until) - w["registered"], 0)
            if w["seen"] <= until:
                late += max(w["seen"] - max(w["task_end"], w["registered"]), 0)
                late_n += 1
    poller = [r for r in events["requests"] if r[0] is None and r[1] == "task wait"]
    startup = before + first_start - events["t0"]
    tail = events["t_end"] - last_end
    starved, drain = idle_slots(list(vms.values()), concurrency)
    accounted = startup + (ops + starved + drain) / concurrency + tail
    return {
        "n": n,
        "wall": wall,
        "startup": startup,
        "tail": tail,
        "op": ops / n,
        "wire": wire / n,
        "requests": len(by_vm) / n,
        "request_mean": wire / max(len(by_vm), 1),
        "waiting": waiting / n,
        "in_task": in_task / n,
        "seen_late": late / n,
        "seen_late_mean": late / max(late_n, 1),
        "client": (ops - wire - waiting) / n,
        "poller_rounds": len(poller),
        "starved": starved / concurrency,
        "drain": drain / concurrency,
        "accounted": accounted,
        "unaccounted_share": abs(wall - accounted) / wall,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("events", type=Path)
    ap.add_argument("--package-dir")
    ap.add_argument("cli", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    use_package(args.package_dir)
    rec = Recorder()
    rec.install(args.events)
    from esxi_configdrive.cli import main as cli_main

    cli_args = args.cli[1:] if args.cli[:1] == ["--"] else args.cli
    status = cli_main(cli_args)
    rec.dump(args.events, status)
    return status


if __name__ == "__main__":
    sys.exit(main())
