"""The harness's task time (docs/testing.md fault 10, ``task_seconds``): a reconfigure and a datastore file task
run that long, as on vCenter, and a second reconfigure of the VM meanwhile fails with TaskInProgress; the tool's
single and batch operations still finish right with it, see and answer the locked-door question while the task
runs, and keep their deadlines."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pyVmomi import vim
from reliability_fixtures import Bed, assert_attached, cli_env, cli_in_process, first_cdrom, iso_of
from reliability_fixtures import tool_session as session_of
from test_batch_reliability import batch_file, data, new
from vsphere_harness import get_property

from esxi_configdrive.controller import ConfigDriveController
from esxi_configdrive.errors import OutcomeUnknown

pytestmark = pytest.mark.live

TASK = 0.6  # seconds


def state_of(bed: Bed, task: vim.Task) -> str:
    # info.state alone: vcsim fills info.entity of FileManager tasks with an object pyVmomi refuses
    return str(get_property(bed.si, task, "info.state"))


def wait_ended(bed: Bed, task: vim.Task, limit: float = 10) -> str:
    end = time.monotonic() + limit
    while state_of(bed, task) in ("running", "queued") and time.monotonic() < end:
        time.sleep(0.02)
    return state_of(bed, task)


def test_a_reconfigure_runs_for_task_seconds_and_a_second_meanwhile_gets_task_in_progress(bed: Bed) -> None:
    vm = bed.make_vm()
    vm = vim.VirtualMachine(vm._moId, bed.si._stub)
    bed.sim.set_faults(task_seconds=TASK)
    start = time.monotonic()
    first = vm.ReconfigVM_Task(vim.vm.ConfigSpec(annotation="first"))
    assert state_of(bed, first) == "running"
    second = vm.ReconfigVM_Task(vim.vm.ConfigSpec(annotation="second"))
    assert wait_ended(bed, second) == "error"
    error = get_property(bed.si, second, "info.error")
    assert isinstance(error, vim.fault.TaskInProgress) and error.task._moId == first._moId
    assert wait_ended(bed, first) == "success"
    assert time.monotonic() - start >= TASK
    assert get_property(bed.si, first, "info.completeTime") is not None
    assert bed.sim.counters()["faults"]["reconfig_task_in_progress"] == 1
    third = vm.ReconfigVM_Task(vim.vm.ConfigSpec(annotation="third"))  # once it ended, the next one runs
    assert wait_ended(bed, third) == "success"


def test_a_datastore_file_task_runs_for_task_seconds(bed: Bed) -> None:
    content = bed.si.RetrieveContent()
    dc = content.rootFolder.childEntity[0]
    folder = f"[LocalDS_0] task-time-{time.monotonic_ns()}"
    content.fileManager.MakeDirectory(folder, dc, True)
    bed.sim.set_faults(task_seconds=TASK)
    start = time.monotonic()
    task = content.fileManager.DeleteDatastoreFile_Task(folder, dc)
    assert state_of(bed, task) == "running"
    assert wait_ended(bed, task) == "success"
    assert time.monotonic() - start >= TASK


def test_single_and_batch_operations_finish_with_task_time(bed: Bed, tmp_path: Path) -> None:
    vms = [bed.make_vm(powered_on=i == 0) for i in range(3)]
    bed.sim.set_faults(task_seconds=0.4)
    with session_of(bed.sim) as s:
        attached = ConfigDriveController(s, task_timeout=20).attach(vms[0].name, data(0))
    assert attached.changed
    path = batch_file(tmp_path, "attach", [{"vm": vm.name, "vmdata": data(i).to_dict()} for i, vm in
                                           enumerate(vms[1:], 1)])  # fmt: skip
    assert cli_in_process(["attach", "--batch", str(path), "--concurrency", "2"], cli_env(bed.sim)).status == 0
    rotate = batch_file(tmp_path, "rotate", [{"vm": vm.name, "password": new(i).password} for i, vm in
                                             enumerate(vms)])  # fmt: skip
    run = cli_in_process(["update", "--batch", str(rotate), "--concurrency", "3"], cli_env(bed.sim))
    assert run.status == 0, run.err
    for i, vm in enumerate(vms):
        assert_attached(bed.state(vm), first_cdrom(vm), iso_of(data(i, password=new(i).password)), bed.si, i == 0)


def test_the_locked_door_is_seen_and_answered_while_the_task_runs(bed: Bed, tmp_path: Path) -> None:
    vms = [bed.make_vm(powered_on=True) for _ in range(2)]
    with session_of(bed.sim) as s:
        for i, vm in enumerate(vms):
            ConfigDriveController(s, task_timeout=20).attach(vm.name, data(i))
    bed.sim.set_faults(task_seconds=TASK, locked_door={"enabled": True})
    rotate = batch_file(tmp_path, "rotate", [{"vm": vm.name, "password": new(i).password} for i, vm in
                                             enumerate(vms)])  # fmt: skip
    refused = cli_in_process(["update", "--batch", str(rotate)], cli_env(bed.sim))
    assert refused.status == 1
    assert bed.sim.counters()["faults"]["questions_answered_no"] == 2
    forced = cli_in_process(["update", "--batch", str(rotate), "--force-eject"], cli_env(bed.sim))
    assert forced.status == 0, forced.err
    assert bed.sim.counters()["faults"]["questions_answered_yes"] == 2
    for i, vm in enumerate(vms):
        assert_attached(bed.state(vm), first_cdrom(vm), iso_of(data(i, password=new(i).password)), bed.si, True)


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
def test_the_deadline_holds_while_a_task_runs_longer(bed: Bed, tmp_path: Path, batch: bool) -> None:
    vm = bed.make_vm()
    bed.sim.set_faults(task_seconds=30)
    start = time.monotonic()
    if batch:
        path = batch_file(tmp_path, "attach", [{"vm": vm.name, "vmdata": data(0).to_dict()}])
        run = cli_in_process(["attach", "--batch", str(path), "--task-timeout", "1"], cli_env(bed.sim))
        assert run.status != 0 and "still running after 1 s" in run.out
    else:
        with session_of(bed.sim) as s, pytest.raises(OutcomeUnknown, match="still running after 1 s"):
            ConfigDriveController(s, task_timeout=1).attach(vm.name, data(0))
    assert time.monotonic() - start < 10
