"""A lost session never stalls a batch: 100-VM batches at concurrency 8 while another client terminates the
tool's sessions every 0.3 s (what a vCenter restart, a failover or an admin's "terminate session" does), on stock
vcsim (SessionManager.TerminateSession from a second client) and on the harness (its control API's
expire-sessions). Every VM must end with one drive holding its data, and no line may fail.

How a terminated session shows (checked on both, docs/testing.md): a call answers NotAuthenticated; on stock vcsim
a property collector the session created answers ManagedObjectNotFound, and the service's default collector
answers without a fault, every property missing with NotAuthenticated (a waiter that ignored that would poll to its
task timeout). The time figures (disturbed against undisturbed) are printed, and recorded in docs/reliability.md."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from reliability_fixtures import Bed, CliRun, assert_attached, cli_env, cli_in_process, first_cdrom, iso_of
from sample_data import numbered_vmdata
from vsphere_harness import connect, disconnect

from esxi_configdrive import VmData

pytestmark = pytest.mark.live

VMS = 100
CONCURRENCY = 8
PERIOD = 0.3  # seconds between terminations
FIRST_KILL = 0.1  # seconds from the batch's start to the first: after its login (the CLI runs in this process)
STALL = 60.0  # a batch that takes this long has lost track of something (the task timeout is 600 s)


def data(i: int, version: int = 1) -> VmData:
    return numbered_vmdata(i, version, uuid_prefix="5e2b8c4d", hostname_prefix="kill")


class StockTerminator:
    """TerminateSession, from a session of its own, of every session opened after it started (the tool's, not the
    test's own): what an admin's client does."""

    def __init__(self, sim: Any) -> None:
        self.si = connect(sim)
        self.manager = self.si.content.sessionManager
        self.spared = {s.key for s in self.manager.sessionList or []}

    def __call__(self) -> int:
        others = [s.key for s in self.manager.sessionList or [] if s.key not in self.spared]
        for key in others:
            try:
                self.manager.TerminateSession([key])
            except Exception:  # it logged out or was killed meanwhile
                continue
        return len(others)

    def close(self) -> None:
        disconnect(self.si)


class HarnessExpiry:
    """The harness's control API: every session it has seen expires (the test's own too)."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim

    def __call__(self) -> int:
        return self.sim.expire_sessions()

    def close(self) -> None:
        return None


@contextmanager
def terminating(kill: Callable[[], int], period: float) -> Iterator[list[int]]:
    """Terminate sessions every ``period`` seconds while the block runs, the first time right after the login
    (a batch on stock vcsim now lasts under a second); yields the sessions terminated each time."""
    killed: list[int] = []
    stop = threading.Event()

    def loop() -> None:
        wait = FIRST_KILL
        while not stop.wait(wait):
            killed.append(kill())
            wait = period

    thread = threading.Thread(target=loop, name="session-killer", daemon=True)
    thread.start()
    try:
        yield killed
    finally:
        stop.set()
        thread.join(10)


@pytest.fixture(params=["stock", "harness"])
def killing_bed(request: pytest.FixtureRequest) -> Iterator[tuple[Bed, Callable[..., Any], Any]]:
    if request.param == "stock":
        sim = request.getfixturevalue("stock_vcsim")
        bed, make_vm = Bed(sim, request.getfixturevalue("stock_si")), request.getfixturevalue("stock_make_vm")
        kill: Any = StockTerminator(sim)
    else:
        bed = request.getfixturevalue("bed")
        make_vm, kill = bed.make_vm, HarnessExpiry(bed.sim)
    try:
        yield bed, make_vm, kill
    finally:
        kill.close()


def timed(args: list[str], env: dict[str, str]) -> tuple[CliRun, float]:
    start = time.monotonic()
    run = cli_in_process(args, env)
    return run, time.monotonic() - start


def lines_for(command: str, names: list[str], version: int | None) -> list[dict]:
    if version is None:
        return [{"vm": name} for name in names]
    if command == "attach":
        return [{"vm": name, "vmdata": data(i, version).to_dict()} for i, name in enumerate(names)]
    return [{"vm": name, "userdata": data(i, version).userdata.decode()} for i, name in enumerate(names)]


def test_batches_finish_while_sessions_are_terminated_every_300_ms(killing_bed, tmp_path: Path) -> None:
    bed, make_vm, kill = killing_bed
    vms = [make_vm(powered_on=i % 2 == 0) for i in range(VMS)]
    firsts = [first_cdrom(vm) for vm in vms]
    names = [vm.name for vm in vms]  # read now: the harness expires the session these objects were read with
    env = cli_env(bed.sim)
    figures: dict[str, Any] = {}

    def batch(command: str, version: int | None, disturbed: bool) -> None:
        path = tmp_path / f"{command}-{version}-{disturbed}.jsonl"
        path.write_text("\n".join(json.dumps(line) for line in lines_for(command, names, version)) + "\n")
        args = [command, "--batch", str(path), "--concurrency", str(CONCURRENCY)]
        if disturbed:
            with terminating(kill, PERIOD) as killed:
                run, seconds = timed(args, env)
            if isinstance(kill, HarnessExpiry):
                bed.reconnect()  # the harness expired the test's own session too
            figures[f"{command} killed"] = {"seconds": round(seconds, 1), "terminations": sum(killed)}
            assert sum(killed) >= 2, "too few sessions were terminated for the batch to count"
        else:
            run, seconds = timed(args, env)
            figures[f"{command} undisturbed"] = {"seconds": round(seconds, 1)}
        failed = [r for r in map(json.loads, run.out.splitlines()) if r.get("exit_status")]
        errors = sorted({r["error"] for r in failed})[:3]
        assert run.status == 0 and not failed, f"{command}: {len(failed)} VMs failed in {seconds:.0f} s: {errors}"
        assert seconds < STALL, f"{command} took {seconds:.0f} s: something waited for a lost session"
        if disturbed:  # the undisturbed runs are there for their times
            for i, (vm, first) in enumerate(zip(vms, firsts)):
                assert_attached(bed.state(vm), first, iso_of(data(i, version)), bed.si, i % 2 == 0)

    batch("attach", 1, disturbed=True)
    batch("update", 2, disturbed=True)
    batch("update", 3, disturbed=False)  # the undisturbed figures, on the same VMs
    batch("remove", None, disturbed=False)
    batch("attach", 1, disturbed=False)
    print(f"sessions terminated every {PERIOD} s, {VMS} VMs at concurrency {CONCURRENCY}: {figures}")
