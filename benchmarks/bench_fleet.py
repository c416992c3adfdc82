"""A fleet near the latency floor (issue 20): attach then update (password rotation) on every VM of a harness
holding 200 VMs, with the real CLI in batch mode at concurrency 1, 8, 32 and 64, 30 ms injected per request,
without and with task time (each ReconfigVM_Task and file task running 0.5 s, as on vCenter: harness fault 10).
The previous commit (``--base``, default main, unpacked with ``git archive``) runs the same batches beside the
working tree's code, in the same run, against the same harness.

For each batch it prints VMs/s, requests per VM (counted by the harness: every SOAP call and /folder request,
login included), the floor for that setting and the ratio of the rate reached to it, the CPU seconds per VM of the
tool and of vcsim, how busy the two together kept the machine's cores, and how busy the tool kept one core (its
threads share one interpreter lock: near 100 %, they wait for it rather than for vSphere). The floor is
N x (k x latency + task time) / concurrency, k being the requests on one VM's critical path (attach: folder,
upload, reconfigure, the poll that sees it end = 4; update: download, upload, reconfigure, poll, delete = 5), the
task time the reconfigure's (an update's delete is confirmed off the critical path). Each batch runs under
benchmarks/timeline.py, whose per-VM timeline gives where the time went (startup, per VM: on the wire, in a task,
seen late after it ended, the client's own; idle worker slots) and how much of the wall time that accounts for.

Beside the floor it prints the ceiling: the best ratio a client that costs nothing could reach against this harness
(``ceiling``), and for a goal missed, how much client time per wave that goal leaves against how much the tool
takes. "cores >= 90 %" is the share of the batch's wall time in which every core was at least 90 % busy (read from
/proc/stat every 0.1 s, 10 clock ticks): the average busy figure hides the bursts of a batch whose operations run in
waves.

``--large``: 2,000 VMs (vcsim -vms 1000) attached at concurrency 32: it finishes, the CLI's peak RSS stays under
100 MiB, and its time per VM is within 20 % of the 200-VM batch's at concurrency 32 (run in the same invocation).

Run: .venv/bin/python benchmarks/bench_fleet.py [--concurrency 1 8 32 64] [--task-seconds 0 0.5] [--large]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks"), str(ROOT)]

from pyVmomi import vim  # noqa: E402
from timeline import add_task_times, summarize  # noqa: E402
from vsphere_harness import Vcsim, connect, disconnect, retrieve  # noqa: E402

PYTHON = str(ROOT / ".venv/bin/python")
TIMELINE = str(ROOT / "benchmarks/timeline.py")
CRITICAL_PATH = {"attach": 4, "update": 5}  # requests on one VM's critical path (the floor's k)
STARTUP_REQUESTS = 4  # one after the other before the first operation: service content, login, name index, facts
REQUEST_GOALS = {"attach": 3.2, "update": 4.2}  # requests per VM at concurrency 8 (issue 13)
RATIO_GOALS = {(0.0, 8): 0.80, (0.0, 32): 0.40, ("task", 8): 0.70, ("task", 32): 0.70}  # issue 20
LARGE_VMS_PER_HOST, LARGE_CONCURRENCY, LARGE_RSS_MIB, LARGE_SLOWER = 1000, 32, 100, 1.20
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def vmdata(i: int) -> dict:
    return {"metadata": {"vm-id": f"00000000-0000-4000-8000-{i:012d}", "local-hostname": f"node-{i}"},
            "userdata": f"#cloud-config\n# node {i}\n", "password": f"First-pw-{i}"}  # fmt: skip


def unpack_base(base: str, tmp: Path) -> Path:
    """The package of commit ``base``, unpacked (no worktree: nothing to clean up in the repository)."""
    root = tmp / "base"
    root.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", base, "esxi_configdrive"], capture_output=True,
                             check=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return root


class CoreSampler:
    """The share of a span in which every core was at least ``SATURATED`` busy, from /proc/stat every ``PERIOD``:
    /proc/stat counts 10 ms ticks, so a shorter period could only tell 0, 1/2 or all of one."""

    SATURATED, PERIOD = 0.90, 0.1

    def __init__(self) -> None:
        self.samples = self.saturated = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _times() -> list[tuple[int, int]]:
        """(busy, total) ticks of each core: user, nice, system, irq and softirq against those and idle and iowait
        (steal is time the core was not ours; guest time is already in user)."""
        cores = []
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("cpu") and line[3:4].isdigit():
                user, nice, system, idle, iowait, irq, softirq = (int(x) for x in line.split()[1:8])
                busy = user + nice + system + irq + softirq
                cores.append((busy, busy + idle + iowait))
        return cores

    def _run(self) -> None:
        before = self._times()
        while not self._stop.wait(self.PERIOD):
            now = self._times()
            shares = [(b1 - b0) / (t1 - t0) for (b0, t0), (b1, t1) in zip(before, now) if t1 > t0]
            if shares:
                self.samples += 1
                self.saturated += min(shares) >= self.SATURATED
            before = now

    def __enter__(self) -> CoreSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def share(self) -> float:
        return self.saturated / max(self.samples, 1)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime, stime


class Fleet:
    def __init__(self, sim: Vcsim, tmp: Path) -> None:
        self.sim, self.tmp = sim, tmp
        self.env = {**os.environ, "GOVC_URL": sim.url, "GOVC_USERNAME": sim.username, "GOVC_PASSWORD": sim.password,
                    "GOVC_TLS_CA_CERTS": sim.ca_file or ""}  # fmt: skip
        si = connect(sim)
        try:
            self.names = sorted(r["name"] for r in retrieve(si, vim.VirtualMachine, ["name"]))
        finally:
            disconnect(si)
        self.lines = {
            "attach": [{"vm": n, "vmdata": vmdata(i)} for i, n in enumerate(self.names)],
            "update": [{"vm": n, "password": f"Rotated-pw-{i}"} for i, n in enumerate(self.names)],
            "remove": [{"vm": n} for n in self.names],
        }

    def batch(self, package: Path | None, command: str, concurrency: int, latency_ms: float = 0,
              task_seconds: float = 0) -> dict[str, Any]:  # fmt: skip
        """Run one batch under the timeline; its figures."""
        path, out, events = self.tmp / f"{command}.jsonl", self.tmp / "out.jsonl", self.tmp / "events.json"
        path.write_text("\n".join(json.dumps(line) for line in self.lines[command]) + "\n")
        self.sim.reset_faults()  # counters to zero
        self.sim.set_faults(latency_ms=latency_ms, task_seconds=task_seconds)
        where = ["--package-dir", str(package)] if package else []
        argv = [PYTHON, TIMELINE, *where, str(events), "--", command, "--batch", str(path),
                "--concurrency", str(concurrency)]  # fmt: skip
        sim_pid = self.sim.process.pid if self.sim.process else 0
        sim_cpu = cpu_seconds(sim_pid)
        t0 = time.perf_counter()
        with open(out, "w") as stdout, CoreSampler() as cores:
            proc = subprocess.Popen(argv, env=self.env, stdout=stdout, stderr=subprocess.PIPE)
            _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        sim_cpu = cpu_seconds(sim_pid) - sim_cpu
        counters = self.sim.counters()
        results = [json.loads(x) for x in out.read_text().splitlines() if x.strip()]
        failed = [r for r in results if "error" in r]
        n = len(self.lines[command])
        if os.waitstatus_to_exitcode(status) != 0 or failed or len(results) != n:
            raise SystemExit(f"{command} batch failed: {failed[:3]} {proc.stderr.read()[-2000:]!r}")  # type: ignore[union-attr]
        timeline = json.loads(events.read_text())
        si = connect(self.sim)
        try:
            add_task_times(si, timeline)
        finally:
            disconnect(si)
        handled = sum(counters.get("handled", {}).values())
        return {
            "n": n,
            "seconds": seconds,
            "requests": counters["soap_calls"] + sum(counters["folder_requests"].values()),
            "rss_mib": usage.ru_maxrss / 1024,
            "tool_cpu": usage.ru_utime + usage.ru_stime,
            "sim_cpu": sim_cpu,
            "handler_mean": sum(counters.get("handler_seconds", {}).values()) / max(handled, 1),
            "cores_saturated": cores.share,
            "timeline": summarize(timeline, concurrency, seconds),
        }

    def clean(self) -> None:
        self.batch(None, "remove", 32)


def floor_rate(command: str, concurrency: int, latency_ms: float, task_seconds: float) -> float:
    """VMs per second at the floor: concurrency / (k x latency + task time)."""
    return concurrency / (CRITICAL_PATH[command] * latency_ms / 1000 + task_seconds)


def waves(n: int, concurrency: int) -> int:
    """Operations one after the other on the busiest worker slot (the last wave partly idle)."""
    return math.ceil(n / concurrency)


def ceiling_seconds(command: str, concurrency: int, n: int, task_seconds: float, harness_seconds: float) -> float:
    """The wall time of a client that costs nothing beyond the harness's handling as measured in the batch (that
    time includes what the client's CPU takes from vcsim on shared cores): the startup's requests, whole waves of
    operations of the floor's k requests at that time each (the floor counts N / concurrency waves), and an
    update's last deletes confirmed after its last operation (their task time and one poll)."""
    operation = CRITICAL_PATH[command] * harness_seconds + task_seconds
    tail = task_seconds + harness_seconds if command == "update" else 0.0
    return STARTUP_REQUESTS * harness_seconds + waves(n, concurrency) * operation + tail


def ceiling_of(row: dict[str, Any]) -> tuple[float, float]:
    """(ceiling seconds, the ratio to the floor it reaches) for one row."""
    b = row["result"]
    seconds = ceiling_seconds(row["command"], row["concurrency"], b["n"], row["task_seconds"], b["handler_mean"])
    floor = floor_rate(row["command"], row["concurrency"], row["latency_ms"], row["task_seconds"])
    return seconds, b["n"] / seconds / floor


def print_rows(rows: list[dict[str, Any]]) -> None:
    print(f"{'task s':>6}{'conc':>5} {'command':<7} {'tool':<7}{'VMs/s':>7}{'req/VM':>7}{'floor':>7}{'ratio':>7}"
          f"{'tool CPU/VM':>12}{'vcsim CPU/VM':>13}{'busy':>6}{'tool':>6}{'RSS MiB':>8}{'ceiling':>8}"
          f"{f'cores >= {CoreSampler.SATURATED:.0%}':>14}")  # fmt: skip
    for r in rows:
        b = r["result"]
        rate = b["n"] / b["seconds"]
        floor = floor_rate(r["command"], r["concurrency"], r["latency_ms"], r["task_seconds"])
        busy = (b["tool_cpu"] + b["sim_cpu"]) / (b["seconds"] * (os.cpu_count() or 1))
        print(f"{r['task_seconds']:>6.1f}{r['concurrency']:>5} {r['command']:<7} {r['tool']:<7}{rate:>7.1f}"
              f"{b['requests'] / b['n']:>7.2f}{floor:>7.1f}{rate / floor:>7.0%}{b['tool_cpu'] / b['n'] * 1000:>10.1f}ms"
              f"{b['sim_cpu'] / b['n'] * 1000:>11.1f}ms{busy:>6.0%}{b['tool_cpu'] / b['seconds']:>6.0%}"
              f"{b['rss_mib']:>8.1f}{ceiling_of(r)[1]:>8.0%}{b['cores_saturated']:>14.0%}")  # fmt: skip


def print_timelines(rows: list[dict[str, Any]]) -> None:
    print("\nwhere the time went (per-VM timeline; s: wall, startup, tail, starved and drain (idle worker slots / "
          "concurrency); ms per VM: op, wire, req (requests per VM) and req ms (client) vs harness (in the handler), "
          "in task, seen late, client (the rest of op); rounds: shared polls; unacc.: wall not accounted for by "
          "startup + (sum op + idle slots) / concurrency + tail)")  # fmt: skip
    print(f"{'task s':>6}{'conc':>5} {'command':<7} {'tool':<7}{'wall s':>7}{'startup':>8}{'tail':>6}{'op':>7}"
          f"{'wire':>7}{'req':>5}{'req ms':>7}{'harness':>8}{'in task':>8}{'late':>6}{'client':>7}{'rounds':>7}"
          f"{'unacc.':>7}")  # fmt: skip
    for r in rows:
        b, t = r["result"], r["result"]["timeline"]
        ms = lambda x: x * 1000  # noqa: E731
        print(f"{r['task_seconds']:>6.1f}{r['concurrency']:>5} {r['command']:<7} {r['tool']:<7}{t['wall']:>7.2f}"
              f"{t['startup']:>8.2f}{t['tail']:>6.2f}{ms(t['op']):>7.0f}{ms(t['wire']):>7.0f}{t['requests']:>5.1f}"
              f"{ms(t['request_mean']):>7.1f}{ms(b['handler_mean']):>8.1f}{ms(t['in_task']):>8.0f}"
              f"{ms(t['seen_late']):>6.0f}{ms(t['client']):>7.0f}{t['starved']:>8.2f}{t['drain']:>6.2f}"
              f"{t['poller_rounds']:>7}"
              f"{t['unaccounted_share']:>7.1%}")  # fmt: skip


def client_budget(row: dict[str, Any], goal: float) -> str:
    """What a missed goal asks of the client: the time it may add per wave of operations (startup included) above
    the ceiling's, against the time it adds now."""
    b = row["result"]
    seconds, best = ceiling_of(row)
    count = waves(b["n"], row["concurrency"])
    floor_seconds = b["n"] / floor_rate(row["command"], row["concurrency"], row["latency_ms"], row["task_seconds"])
    allowed, taken = (floor_seconds / goal - seconds) / count, (b["seconds"] - seconds) / count
    if allowed < 0:
        return f"ceiling {best:.0%} (a client costing nothing): below the goal, unreachable against this harness"
    return (f"ceiling {best:.0%} (a client costing nothing); the goal leaves the client {allowed * 1000:.0f} ms per "
            f"wave of {count}, it takes {taken * 1000:.0f} ms")  # fmt: skip


def check_goals(rows: list[dict[str, Any]]) -> bool:
    ok = True
    for r in rows:
        if r["tool"] != "branch":
            continue
        b = r["result"]
        key = ("task" if r["task_seconds"] else 0.0, r["concurrency"])
        ratio = b["n"] / b["seconds"] / floor_rate(r["command"], r["concurrency"], r["latency_ms"], r["task_seconds"])
        if key in RATIO_GOALS:
            met = ratio >= RATIO_GOALS[key]
            print(f"goal {r['command']} at concurrency {r['concurrency']}, task {r['task_seconds']} s: >= "
                  f"{RATIO_GOALS[key]:.0%} of the floor: {ratio:.0%} ({'met' if met else 'MISSED'})")  # fmt: skip
            if not met:
                print("  " + client_budget(r, RATIO_GOALS[key]))
        if r["concurrency"] == 8 and not r["task_seconds"]:
            per_vm = b["requests"] / b["n"]
            met = per_vm <= REQUEST_GOALS[r["command"]]
            ok &= met
            print(f"goal {r['command']}: <= {REQUEST_GOALS[r['command']]} requests per VM at concurrency 8: "
                  f"{per_vm:.2f} ({'met' if met else 'MISSED'})")  # fmt: skip
        share = b["timeline"]["unaccounted_share"]
        if share > 0.05:
            print(f"timeline of {r['command']} at concurrency {r['concurrency']}: {share:.1%} of the wall time not "
                  "accounted for (> 5 %)")  # fmt: skip
    return ok


def large(tmp: Path, latency_ms: float, reference: dict[str, Any] | None) -> bool:
    with Vcsim(vms=LARGE_VMS_PER_HOST, startup_timeout=600) as sim:
        fleet = Fleet(sim, tmp)
        result = fleet.batch(None, "attach", LARGE_CONCURRENCY, latency_ms)
    per_vm = result["seconds"] / result["n"]
    print(f"\nlarge: {result['n']} VMs attached at concurrency {LARGE_CONCURRENCY}: {result['seconds']:.1f} s, "
          f"{per_vm * 1000:.1f} ms per VM, {result['requests'] / result['n']:.2f} requests per VM, peak RSS "
          f"{result['rss_mib']:.1f} MiB (goal < {LARGE_RSS_MIB})")  # fmt: skip
    ok = result["rss_mib"] < LARGE_RSS_MIB
    if reference is not None:
        ref = reference["seconds"] / reference["n"]
        ok &= per_vm <= ref * LARGE_SLOWER
        print(f"large: time per VM {per_vm / ref:.2f}x the 200-VM batch's (goal <= {LARGE_SLOWER:.2f}x)")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms-per-host", type=int, default=100, help="vcsim -vms (200 VMs at 100)")
    ap.add_argument("--latency-ms", type=float, default=30)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    ap.add_argument("--task-seconds", type=float, nargs="+", default=[0.0, 0.5])
    ap.add_argument("--base", default="main", help="the previous commit, run side by side ('' for none)")
    ap.add_argument("--large", action="store_true", help="also 2,000 VMs at concurrency 32")
    args = ap.parse_args()

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        tools: dict[str, Path | None] = {"branch": None}
        if args.base:
            tools = {args.base: unpack_base(args.base, tmp), **tools}
        with Vcsim(vms=args.vms_per_host) as sim:
            fleet = Fleet(sim, tmp)
            print(f"fleet: {len(fleet.names)} VMs, {args.latency_ms:.0f} ms injected per request, "
                  f"{os.cpu_count()} cores; tools: {', '.join(tools)}", flush=True)  # fmt: skip
            for task_seconds in args.task_seconds:
                for concurrency in args.concurrency:
                    for tool, package in tools.items():
                        for command in ("attach", "update"):
                            result = fleet.batch(package, command, concurrency, args.latency_ms, task_seconds)
                            rows.append({"tool": tool, "command": command, "concurrency": concurrency,
                                         "task_seconds": task_seconds, "latency_ms": args.latency_ms,
                                         "result": result})  # fmt: skip
                        fleet.clean()
                    print_rows(rows[-2 * len(tools) :])
        print()
        print_rows(rows)
        print_timelines(rows)
        ok = check_goals(rows)
        if args.large:
            reference = next((r["result"] for r in rows if r["tool"] == "branch" and r["command"] == "attach"
                              and r["concurrency"] == LARGE_CONCURRENCY and not r["task_seconds"]), None)  # fmt: skip
            ok &= large(tmp, args.latency_ms, reference)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
