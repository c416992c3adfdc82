"""Batch mode in worker processes (batch_processes.py), the real CLI in its own process against the harness: every
VM attached, updated and removed exactly once with complete results and counts; a VM's lines in file order in one
worker; bad lines answered; a worker killed mid-batch leaves an error result for each line it had not answered and a
non-zero exit, and running the batch again finishes it; the vCenter password in no worker's arguments or
environment; the automatic choice keeps concurrency 8 in one process (one login)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from reliability_fixtures import CLI, Bed, assert_attached, assert_no_drive, cli_env, first_cdrom, iso_of, run_cli
from test_batch_reliability import batch_file, data, new, results

from esxi_configdrive.batch_processes import Router, process_count, shares, vm_of
from esxi_configdrive.defaults import THREADS_PER_PROCESS
from esxi_configdrive.errors import ValidationError
from esxi_configdrive.vsphere_values import DatastorePath

VMS = 40


# ---- the policy (no vSphere) ----------------------------------------------------------------------------------


def test_the_automatic_choice_is_one_process_per_sixteen_up_to_the_cores() -> None:
    cores = len(os.sched_getaffinity(0))
    assert THREADS_PER_PROCESS == 16
    assert process_count(None, 8) == 1 and process_count(None, 15) == 1
    assert process_count(None, 32) == min(cores, 2)
    assert process_count(None, 64) == min(cores, 4)
    assert process_count(1, 64) == 1 and process_count(3, 2) == 2  # never more processes than VMs at a time
    with pytest.raises(ValidationError, match="processes: must be at least 1"):
        process_count(0, 32)
    assert shares(32, 3) == [11, 11, 10] and sum(shares(64, 4)) == 64


def test_where_processes_cannot_be_forked_safely_a_batch_stays_in_one() -> None:
    assert process_count(None, 64, can_fork=False) == 1 and process_count(1, 64, can_fork=False) == 1
    with pytest.raises(ValidationError, match="processes: worker processes are forked, which is safe only on Linux"):
        process_count(2, 32, can_fork=False)


def test_a_vms_lines_go_to_its_worker_while_any_is_unanswered_else_to_the_least_loaded() -> None:
    assert vm_of('{"vm": " web-1 ", "password": "x"}') == "web-1"
    assert vm_of("not json") == vm_of('["web-1"]') == vm_of('{"vm": 7}') == ""
    router = Router(2)
    assert [router.choose(vm) for vm in ("a", "b", "a", "c", "")] == [0, 1, 0, 1, 0]
    assert router.load == [3, 2] and router.in_flight == {"a": (0, 2), "b": (1, 1), "c": (1, 1)}
    router.answered(0, "a")
    assert router.choose("a") == 0  # its first line is still unanswered
    router.answered(0, "a")
    router.answered(0, "a")
    router.answered(0, "")
    assert "a" not in router.in_flight and router.load == [0, 2]
    assert router.choose("b") == 1 and router.choose("a") == 0  # answered: to the least loaded
    router.stop(1)
    assert "b" not in router.in_flight and router.choose("b") == 0 and router.choose("d") == 0
    router.stop(0)
    assert router.choose("e") is None  # every worker stopped: the line gets its error result here


# ---- live -------------------------------------------------------------------------------------------------------

pytestmark_live = pytest.mark.live


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def logins(bed: Bed) -> int:
    return bed.sim.counters()["soap_by_method"].get("Login", 0)


@pytestmark_live
def test_two_processes_attach_update_and_remove_every_vm_once(bed: Bed, tmp_path: Path) -> None:
    vms = [bed.make_vm(powered_on=i % 4 == 0) for i in range(VMS)]
    firsts = [first_cdrom(vm) for vm in vms]
    env, run = cli_env(bed.sim), ["--concurrency", "32", "--processes", "2"]
    lines = [{"vm": vm.name, "vmdata": data(i).to_dict()} for i, vm in enumerate(vms)]
    path = batch_file(tmp_path, "attach", lines)
    path.write_text(path.read_text() + 'not json\n{"vmdata": {}}\n# a comment\n{"vm": "x", "colour": "red"}\n')
    bed.sim.reset_faults()
    attached = run_cli(["attach", "--batch", str(path), *run], env)
    assert attached.status == 2, attached.err  # every VM done, only bad lines failed
    got = results(attached.out)
    assert sorted(r["line"] for r in got) == [*range(1, VMS + 1), VMS + 1, VMS + 2, VMS + 4]
    bad = {r["line"]: r for r in got if r["line"] > VMS}
    assert all(r["exit_status"] == 2 and r["changed"] is False for r in bad.values())
    assert "not JSON" in bad[VMS + 1]["error"] and "vm: required" in bad[VMS + 2]["error"]
    assert "colour: unknown key" in bad[VMS + 4]["error"]
    assert all(r["changed"] is True and "error" not in r for r in got if r["line"] <= VMS)
    counters = bed.sim.counters()
    assert counters["soap_by_method"]["Login"] == 2  # one session per worker
    assert counters["soap_by_method"]["ReconfigVM_Task"] == VMS  # each VM once
    folders = []
    for i, vm in enumerate(vms):
        state = bed.state(vm)
        drive = assert_attached(state, firsts[i], iso_of(data(i)), bed.si, state.power_state == "poweredOn")
        folders.append(str(DatastorePath.parse(drive).folder))

    rotate = batch_file(tmp_path, "rotate", [{"vm": vm.name, "password": new(i).password} for i, vm in enumerate(vms)])
    bed.sim.reset_faults()
    updated = run_cli(["update", "--batch", str(rotate), *run], env)
    assert updated.status == 0, updated.err
    assert sorted(r["line"] for r in results(updated.out)) == list(range(1, VMS + 1))
    assert bed.sim.counters()["soap_by_method"]["ReconfigVM_Task"] == VMS
    for i, vm in enumerate(vms):
        state = bed.state(vm)
        content = iso_of(data(i).with_overrides(password=new(i).password, max_userdata_bytes=None))
        assert_attached(state, firsts[i], content, bed.si, state.power_state == "poweredOn")

    gone = batch_file(tmp_path, "remove", [{"vm": vm.name} for vm in vms])
    removed = run_cli(["remove", "--batch", str(gone), *run], env)
    assert removed.status == 0, removed.err
    assert sorted((r["line"], r["changed"]) for r in results(removed.out)) == [(n, True) for n in range(1, VMS + 1)]
    for i, vm in enumerate(vms):
        state = bed.state(vm)
        assert_no_drive(state, firsts[i], bed.si, folders[i], keep_empty=False, removed=True)


@pytestmark_live
def test_a_vms_lines_run_in_file_order_in_one_worker(bed: Bed, tmp_path: Path) -> None:
    """One thread per worker: a VM's three updates in order leave the third's content (lines of one VM split
    between the workers could run in any order)."""
    vms = [bed.make_vm() for _ in range(5)]  # odd: spread regardless of their VM, a VM's lines would split
    env = cli_env(bed.sim)
    attach = batch_file(tmp_path, "attach", [{"vm": vm.name, "vmdata": data(i).to_dict()} for i, vm in enumerate(vms)])
    assert run_cli(["attach", "--batch", str(attach), "--concurrency", "2", "--processes", "2"], env).status == 0
    lines = [{"vm": vm.name, "hostname": f"h{i}-{k}"} for k in range(3) for i, vm in enumerate(vms)]
    path = batch_file(tmp_path, "hostnames", lines)
    run = run_cli(["update", "--batch", str(path), "--concurrency", "2", "--processes", "2"], env)
    assert run.status == 0, run.err
    got = results(run.out)
    for i, vm in enumerate(vms):
        mine = [r["line"] for r in got if r["vm"] == vm.name]
        assert mine == [i + 1, i + 1 + len(vms), i + 1 + 2 * len(vms)]  # answered in file order
        state = bed.state(vm)
        third = data(i).with_overrides(hostname=f"h{i}-2", max_userdata_bytes=None)
        assert_attached(state, first_cdrom(vm), iso_of(third), bed.si, False)


@pytestmark_live
def test_a_killed_worker_leaves_error_results_and_a_rerun_finishes(bed: Bed, tmp_path: Path) -> None:
    vms = [bed.make_vm() for _ in range(VMS)]
    firsts = [first_cdrom(vm) for vm in vms]
    secret = tmp_path / "vc-password"
    secret.write_text(bed.sim.password + "\n")
    env = cli_env(bed.sim)
    del env["GOVC_PASSWORD"]  # from a file: then no process's environment holds it
    lines = [{"vm": vm.name, "vmdata": data(i).to_dict()} for i, vm in enumerate(vms)]
    path = batch_file(tmp_path, "attach", lines)
    args = [CLI, "attach", "--batch", str(path), "--concurrency", "32", "--processes", "2",
            "--vc-password-file", str(secret)]  # fmt: skip
    bed.sim.set_faults(task_seconds=1.0)  # the workers are mid-batch for seconds
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (len(children(proc.pid)) < 2 or logins(bed) < 2):
            time.sleep(0.02)
        workers = children(proc.pid)
        assert len(workers) == 2
        for pid in [proc.pid, *workers]:
            for what in ("cmdline", "environ"):
                assert bed.sim.password.encode() not in Path(f"/proc/{pid}/{what}").read_bytes(), (pid, what)
        while time.monotonic() < deadline and bed.sim.counters()["soap_by_method"].get("ReconfigVM_Task", 0) < 4:
            time.sleep(0.02)
        os.kill(workers[0], signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    got = results(out)
    assert sorted(r["line"] for r in got) == list(range(1, VMS + 1))  # every line answered
    lost = [r for r in got if "error" in r]
    assert lost and all("killed by signal 9" in r["error"] and r["changed"] is None for r in lost)
    assert all(r["exit_status"] == 1 and "run the batch again" in r["error"] for r in lost)
    assert all(r["changed"] is True for r in got if "error" not in r)

    bed.sim.reset_faults()
    again = run_cli(["attach", "--batch", str(path), "--concurrency", "32", "--processes", "2"], cli_env(bed.sim))
    assert again.status == 0, again.err
    assert len(results(again.out)) == VMS
    for i, vm in enumerate(vms):
        state = bed.state(vm)
        assert_attached(state, firsts[i], iso_of(data(i)), bed.si, False)  # one drive, the right content


def ended(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie is over
    except FileNotFoundError:
        return True


def attach_batch(bed: Bed, tmp_path: Path) -> tuple[list[Any], list[Any], Path, list[str]]:
    """VMS new VMs, their first CD-ROMs, an attach batch file for them and the CLI's arguments (two workers)."""
    vms = [bed.make_vm() for _ in range(VMS)]
    firsts = [first_cdrom(vm) for vm in vms]
    path = batch_file(tmp_path, "attach", [{"vm": vm.name, "vmdata": data(i).to_dict()} for i, vm in enumerate(vms)])
    return vms, firsts, path, [CLI, "attach", "--batch", str(path), "--concurrency", "32", "--processes", "2"]


@pytestmark_live
def test_the_workers_stop_with_their_parent_and_a_rerun_finishes(bed: Bed, tmp_path: Path) -> None:
    vms, firsts, path, args = attach_batch(bed, tmp_path)
    bed.sim.set_faults(task_seconds=1.0)
    proc = subprocess.Popen(args, env=cli_env(bed.sim), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and bed.sim.counters()["soap_by_method"].get("ReconfigVM_Task", 0) < 4:
            time.sleep(0.02)
        workers = children(proc.pid)
        assert len(workers) == 2
        proc.kill()
        proc.wait()
        while time.monotonic() < deadline and not all(ended(pid) for pid in workers):
            time.sleep(0.02)
        assert all(ended(pid) for pid in workers)  # stopped (begun operations end, no new one starts)
    finally:
        if proc.poll() is None:
            proc.kill()
    bed.sim.reset_faults()
    again = run_cli(["attach", "--batch", str(path), "--concurrency", "32", "--processes", "2"], cli_env(bed.sim))
    assert again.status == 0, again.err
    for i, vm in enumerate(vms):
        assert_attached(bed.state(vm), firsts[i], iso_of(data(i)), bed.si, False)


@pytestmark_live
def test_concurrency_8_and_processes_1_stay_in_one_process(bed: Bed, tmp_path: Path) -> None:
    vms = [bed.make_vm() for _ in range(4)]
    env = cli_env(bed.sim)
    lines = [{"vm": vm.name, "vmdata": data(i).to_dict()} for i, vm in enumerate(vms)]
    one_process = ["--concurrency", "64", "--processes", "1"]
    for command, options in (("attach", ["--concurrency", "8"]), ("remove", one_process)):
        path = batch_file(tmp_path, command, lines if command == "attach" else [{"vm": vm.name} for vm in vms])
        bed.sim.reset_faults()
        run = run_cli([command, "--batch", str(path), *options], env)
        assert run.status == 0, run.err
        assert logins(bed) == 1 and len(results(run.out)) == len(vms)
    bad = run_cli(["remove", "--batch", str(path), "--processes", "0"], env)
    assert bad.status == 2 and "processes: must be at least 1" in bad.err


# ---- workers that stop (review of this round): the plumbing with stand-in shares, in a process of its own ---------

STAND_IN = """
import json, sys
from esxi_configdrive.batch_processes import run_in_processes
from esxi_configdrive.errors import ConfigDriveError

def refused(items, threads, on_result):  # as a refused login: no line taken
    raise ConfigDriveError("login to https://vc as admin was refused")

def dies_after_one(items, threads, on_result):  # takes a line, then fails (as a crash mid-batch)
    next(iter(items))
    raise RuntimeError("lost")

run = {"refused": refused, "dies": dies_after_one}[sys.argv[1]]
lines = (json.dumps({"vm": f"vm-{i}"}) + "\\n" for i in range(int(sys.argv[2])))
got = []
try:
    summary = run_in_processes(2, run, lines, "remove", concurrency=32, max_userdata_bytes=1, on_result=got.append)
    print(json.dumps({"lines": sorted(r["line"] for r in got), "failed": summary.failed,
                      "errors": sorted({r["error"][:40] for r in got})}))
except ConfigDriveError as e:
    print(json.dumps({"raised": str(e), "results": len(got)}))
"""


def stand_in(kind: str, lines: int) -> dict:
    out = subprocess.run([sys.executable, "-c", STAND_IN, kind, str(lines)], capture_output=True, text=True,
                         timeout=120, check=True)  # fmt: skip
    return json.loads(out.stdout)


def test_when_every_worker_stops_each_line_of_a_long_file_still_gets_a_result() -> None:
    """Before the fix, lines read after the workers had stopped were dropped (2,549 results of 50,000)."""
    got = stand_in("dies", 50_000)
    assert got["lines"] == list(range(1, 50_001)) and got["failed"] == 50_000


def test_a_login_refused_in_every_worker_fails_the_batch_once_with_no_line_results() -> None:
    got = stand_in("refused", 5_000)
    assert got == {"raised": "login to https://vc as admin was refused", "results": 0}


@pytestmark_live
def test_a_wrong_password_is_one_error_as_in_one_process(bed: Bed, tmp_path: Path) -> None:
    vm = bed.make_vm()
    path = batch_file(tmp_path, "attach", [{"vm": vm.name, "vmdata": data(i).to_dict()} for i in range(3)])
    env = cli_env(bed.sim, GOVC_PASSWORD="not-the-password")
    one = run_cli(["attach", "--batch", str(path), "--concurrency", "32", "--processes", "1"], env)
    two = run_cli(["attach", "--batch", str(path), "--concurrency", "32", "--processes", "2"], env)
    assert one.status == two.status != 0
    assert two.out == one.out == "" and "was refused" in two.err and two.err == one.err
    assert "not-the-password" not in two.err


@pytestmark_live
def test_an_interrupted_batch_lets_its_workers_end_in_order_and_log_out(bed: Bed, tmp_path: Path) -> None:
    vms, firsts, path, args = attach_batch(bed, tmp_path)
    bed.sim.reset_faults()
    bed.sim.set_faults(task_seconds=3.0)  # the batch cannot end before the signal
    # Ctrl-C as from a terminal: a test run started in the background inherits SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler, so the CLI gets the default disposition back
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(args, env=cli_env(bed.sim), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=default_sigint)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and bed.sim.counters()["soap_by_method"].get("ReconfigVM_Task", 0) < 4:
            time.sleep(0.02)
        assert proc.poll() is None, "the batch ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    counters = bed.sim.counters()["soap_by_method"]
    assert counters.get("Logout", 0) == 2  # each worker's session ended by the worker, not left to expire
    assert counters["ReconfigVM_Task"] < VMS  # the lines read ahead did not start
    bed.sim.reset_faults()
    again = run_cli(["attach", "--batch", str(path), "--concurrency", "32", "--processes", "2"], cli_env(bed.sim))
    assert again.status == 0, again.err
    for i, vm in enumerate(vms):
        assert_attached(bed.state(vm), firsts[i], iso_of(data(i)), bed.si, False)
