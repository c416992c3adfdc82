"""The batched path keeps the single-VM safety. Batch mode reads the VMs' facts a page at a time, polls every
task in flight in one call per round and confirms a swap's delete of the old file after the operation
(batch.py, vsphere/task_poller.py). Here: the real CLI SIGKILLed after every call of an attach or update batch
leaves each VM with a complete drive or none, and running the batch again finishes it; two batches updating the
same VMs at once lose no update; a VM's second line in a batch reads the VM afresh; the locked door and a
refused reconfigure fail their own VM only."""

from __future__ import annotations

import json
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from reliability_fixtures import (
    Bed,
    assert_attached,
    assert_consistent,
    cli_env,
    cli_in_process,
    first_cdrom,
    iso_of,
    run_cli_killed_after,
    tool_session,
)
from sample_data import ED25519_KEY
from tool_fixtures import fetch_file

from esxi_configdrive import VmData, read_iso
from esxi_configdrive.batch import _Unconfirmed, read_batch, run_batch
from esxi_configdrive.controller import ConfigDriveController
from esxi_configdrive.drive.effects import Kind, Step
from esxi_configdrive.drive.result import Result
from esxi_configdrive.errors import ConfigDriveError

pytestmark = pytest.mark.live

LIMIT = 80  # no batch of three VMs makes this many calls


def data(i: int, **changes: Any) -> VmData:
    obj = {
        "metadata": {"vm-id": f"6b1f0e2a-0000-4000-8000-{i:012d}", "local-hostname": f"b-{i}",
                     "public-keys": [ED25519_KEY]},
        "userdata": f"#cloud-config\n# {i}\n",
        "password": f"First-Passw0rd-{i}",
    }  # fmt: skip
    obj.update(changes)
    return VmData.from_dict(obj)


def new(i: int) -> VmData:
    return data(i, password=f"Second-Passw0rd-{i}", userdata=f"#cloud-config\n# {i} v2\n")


def batch_file(tmp: Path, name: str, lines: list[dict]) -> Path:
    path = tmp / f"{name}.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def results(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize("command", ["attach", "update"])
def test_a_batch_killed_after_every_call_then_run_again(bed: Bed, command: str, tmp_path: Path, tally) -> None:
    env = cli_env(bed.sim)
    points = 0
    for k in range(1, LIMIT):
        vms = [bed.make_vm(powered_on=i == 0) for i in range(3)]
        if command == "update":
            with tool_session(bed.sim) as s:
                for i, vm in enumerate(vms):
                    ConfigDriveController(s, task_timeout=20).attach(vm.name, data(i))
        firsts = [first_cdrom(vm) for vm in vms]
        lines = [
            {"vm": vm.name, "vmdata": data(i).to_dict()}
            if command == "attach"
            else {"vm": vm.name, "password": new(i).password, "userdata": new(i).userdata.decode()}
            for i, vm in enumerate(vms)
        ]
        args = [command, "--batch", str(batch_file(tmp_path, f"{command}-{k}", lines)), "--concurrency", "3"]
        run = run_cli_killed_after(bed.sim, args, env, k, tmp_path)
        ends = [iso_of(data(i) if command == "attach" else new(i)) for i in range(3)]
        for i, (vm, first) in enumerate(zip(vms, firsts)):
            assert_consistent(bed.state(vm), first, [iso_of(data(i)), ends[i]])
        if not run.killed:
            assert run.status == 0, run.err
        else:
            points += 1
            again = cli_in_process(args, env)  # the admin runs the same batch again
            assert again.status == 0, again.out + again.err
        for i, (vm, first) in enumerate(zip(vms, firsts)):
            state = bed.state(vm)
            assert_attached(state, first, ends[i], bed.si, state.power_state == "poweredOn")
        if not run.killed:
            break
    else:
        pytest.fail(f"the {command} batch did not complete within {LIMIT} calls")
    assert points >= 8, "the batch made suspiciously few vSphere calls"
    tally.add("crash-sigkill", f"CLI {command} --batch (3 VMs)", interruption_points=points)


def test_two_batches_updating_the_same_vms_at_once_lose_no_update(bed: Bed) -> None:
    vms = [bed.make_vm(powered_on=i % 2 == 0) for i in range(4)]
    with tool_session(bed.sim) as s:
        for i, vm in enumerate(vms):
            ConfigDriveController(s, task_timeout=20).attach(vm.name, data(i))
    lines = {
        "password": [json.dumps({"vm": vm.name, "password": f"Raced-Passw0rd-{i}"}) for i, vm in enumerate(vms)],
        "hostname": [json.dumps({"vm": vm.name, "hostname": f"raced-{i}"}) for i, vm in enumerate(vms)],
    }
    summaries: dict[str, Any] = {}
    barrier = threading.Barrier(2)

    def run(which: str) -> None:
        with tool_session(bed.sim) as s:
            controller = ConfigDriveController(s, task_timeout=20)
            barrier.wait()
            summaries[which] = run_batch(controller, "update", read_batch(lines[which], "update"), concurrency=4)

    threads = [threading.Thread(target=run, args=(which,)) for which in lines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert {w: (s.failed, s.bad_input, s.changed) for w, s in summaries.items()} == {
        "password": (0, 0, 4),
        "hostname": (0, 0, 4),
    }
    for i, vm in enumerate(vms):
        state = bed.state(vm)
        [path] = [p for p in state.files]
        drive = read_iso(state.files[path])
        assert (drive.password, drive.hostname) == (f"Raced-Passw0rd-{i}", f"raced-{i}")  # both changes kept
        assert_attached(state, first_cdrom(vm), state.files[path], bed.si, state.power_state == "poweredOn")


def test_a_vms_second_line_reads_it_afresh(bed: Bed) -> None:
    """The facts read for a page of lines serve a VM's first line only: its next line sees what the first did."""
    vm = bed.make_vm()
    lines = [
        json.dumps({"vm": vm.name, "vmdata": data(1).to_dict()}),
        json.dumps({"vm": vm.name, "vmdata": data(1, userdata="#cloud-config\n# second\n").to_dict()}),
    ]
    got: list[dict] = []
    with tool_session(bed.sim) as s:
        summary = run_batch(ConfigDriveController(s, task_timeout=20), "attach", read_batch(lines, "attach"),
                            concurrency=1, on_result=got.append)  # fmt: skip
    assert summary.failed == 0 and [r["changed"] for r in got] == [True, True]
    state = bed.state(vm)
    assert len(state.iso_backed) == 1
    assert read_iso(fetch_file(bed.sim, bed.si, got[1]["iso"])).userdata == b"#cloud-config\n# second\n"


def test_the_locked_door_and_a_refused_reconfigure_fail_their_own_vm_only(bed: Bed, tmp_path: Path) -> None:
    vms = [bed.make_vm(powered_on=True) for _ in range(3)]
    with tool_session(bed.sim) as s:
        for i, vm in enumerate(vms):
            ConfigDriveController(s, task_timeout=20).attach(vm.name, data(i))
    locked, refused, fine = vms
    bed.sim.set_faults(locked_door={"enabled": True, "vms": [locked.name]},
                       reconfig_failures={"count": 1, "vms": [refused.name]})  # fmt: skip
    path = batch_file(tmp_path, "rotate", [{"vm": vm.name, "password": f"Third-Passw0rd-{i}"} for i, vm in
                                           enumerate(vms)])  # fmt: skip
    run = cli_in_process(["update", "--batch", str(path), "--concurrency", "3"], cli_env(bed.sim))
    assert run.status == 1
    by_vm = {r["vm"]: r for r in results(run.out)}
    assert "locked its CD-ROM door" in by_vm[locked.name]["error"]
    assert "vSphere fault" in by_vm[refused.name]["error"]
    assert by_vm[fine.name]["changed"] is True and "error" not in by_vm[fine.name]
    assert bed.sim.counters()["faults"]["questions_answered_no"] == 1
    for i, vm in enumerate(vms):  # the two that failed keep their drive; no upload is left behind
        state = bed.state(vm)
        expected = iso_of(data(i, password=f"Third-Passw0rd-{i}")) if vm is fine else iso_of(data(i))
        assert_attached(state, first_cdrom(vm), expected, bed.si, True)
    forced = cli_in_process(["update", "--batch", str(path), "--force-eject"], cli_env(bed.sim))
    assert forced.status == 0, forced.err
    assert bed.sim.counters()["faults"]["questions_answered_yes"] == 1


# ---- confirming deletes after the operation (no vSphere) ----------------------------------------------------------


def confirmed_result(outcome: Any) -> Result:
    future: Future[bool] = Future()
    step = Step(Kind.DELETE, "[ds] ConfigDrive/a/old.iso", pending=future)
    result = Result("a", True, [step.describe()], steps=[Step(Kind.UPLOAD, "[ds] ConfigDrive/a/new.iso"), step])
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
    return result


def test_a_delete_confirmed_later_leaves_the_result_as_it_turned_out() -> None:
    assert confirmed_result(True).settled(0).actions == [
        "uploaded 0 bytes to [ds] ConfigDrive/a/new.iso",
        "deleted [ds] ConfigDrive/a/old.iso",
    ]
    assert confirmed_result(False).settled(0).actions == ["uploaded 0 bytes to [ds] ConfigDrive/a/new.iso"]
    with pytest.raises(ConfigDriveError, match="the drive is attached and complete, and the next run deletes"):
        confirmed_result(OSError("datastore gone")).settled(0)
    line = _Unconfirmed({"line": 3, "vm": "a"}, confirmed_result(OSError("datastore gone"))).confirmed().result(1)
    assert line["line"] == 3 and line["exit_status"] == 1 and "while deleting" in line["error"]
