"""A crash at every step loses nothing: each operation is interrupted after its 1st, 2nd, … vSphere call until it
runs through; at the interruption the VM is consistent (at most one config drive, backed by a complete ISO with
the old or the new content), and running the operation again finishes it with no orphan left.

Two ways to interrupt: an injected BaseException after the k-th call in this process (every operation, powered
on and off), and SIGKILL of the real CLI child process stopped right after its k-th call (attach and update).
Also the faults the harness injects: session expiry before every call, failing uploads, failing reconfigures,
the locked door on detach, IDE hot-add refusal.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tenacity
from pyVmomi import vim, vmodl
from reliability_fixtures import (
    Bed,
    CallTap,
    Crash,
    assert_attached,
    assert_consistent,
    assert_no_drive,
    cli_env,
    cli_in_process,
    first_cdrom,
    iso_of,
    run_cli_killed_after,
    tool_session,
)
from sample_data import ED25519_KEY
from tool_fixtures import fetch_file, folder_listing, record_of
from vsphere_harness import (
    create_local_datastore,
    hosts_seeing,
    power_on,
)

from esxi_configdrive import VmData
from esxi_configdrive.controller import ConfigDriveController
from esxi_configdrive.errors import ConfigDriveError, LockedDoor, ValidationError, VsphereFault
from esxi_configdrive.transport import Transport
from esxi_configdrive.vsphere_values import DatastorePath

pytestmark = pytest.mark.live

OLD = VmData.from_dict(
    {
        "metadata": {
            "vm-id": "5d0c3a7e-8f51-4b8e-9a40-5c2e7d1f0b11",
            "instance-id": "i-7-42-VM",
            "local-hostname": "crash-1",
            "public-keys": [ED25519_KEY],
        },
        "userdata": "#cloud-config\nruncmd:\n  - [sh, -c, 'echo first']\n",
        "password": "first-Passw0rd",
    }
)
NEW = OLD.with_overrides(password="second-Passw0rd", userdata=b"#cloud-config\nruncmd:\n  - [sh, -c, 'echo 2']\n")
OVERRIDES = {"password": NEW.password, "userdata": NEW.userdata}
LIMIT = 60  # no operation makes this many calls; reaching it means the loop never saw a complete run


def controller(session: Any, **options: Any) -> ConfigDriveController:
    return ConfigDriveController(session, task_timeout=20, **options)


@dataclass
class Case:
    """One operation from one start state, and what its end state must be."""

    name: str
    powered_on: bool
    prepare: Callable[[ConfigDriveController, vim.VirtualMachine, Any], None]  # (controller, vm, bed): start state
    run: Callable[[ConfigDriveController, str, Any], Any]  # (controller, vm name, bed)
    contents: list[bytes]  # what an attached ISO may hold at any moment
    check_end: Callable[[Any, vim.VirtualMachine, tuple], None]  # (bed, vm, first cdrom)
    host: str = "DC0_H0"
    power_on_after_prepare: bool = False
    local_datastore_on: str | None = None  # make bed.datastore, mounted by this host only


def _attach_old(c: ConfigDriveController, vm: vim.VirtualMachine, bed: Bed) -> None:
    c.attach(vm.name, OLD, datastore=bed.datastore)


def end_attached(content: bytes) -> Callable[[Bed, vim.VirtualMachine, tuple], None]:
    def check(bed: Bed, vm: vim.VirtualMachine, first: tuple) -> None:
        state = bed.state(vm)
        assert_attached(state, first, content, bed.si, state.power_state == "poweredOn")

    return check


def end_detached(keep_empty: bool, removed: bool = False) -> Callable[[Bed, vim.VirtualMachine, tuple], None]:
    def check(bed: Bed, vm: vim.VirtualMachine, first: tuple) -> None:
        assert_no_drive(bed.state(vm), first, bed.si, f"[LocalDS_0] ConfigDrive/{vm.name}", keep_empty, removed)

    return check


def end_migrated(bed: Bed, vm: vim.VirtualMachine, first: tuple) -> None:
    state = bed.state(vm)
    path = assert_attached(state, first, iso_of(OLD), bed.si, state.power_state == "poweredOn")
    datastore = DatastorePath.parse(path).datastore
    assert datastore != bed.datastore and "DC0_C0_H1" in hosts_seeing(bed.si, datastore)
    assert folder_listing(bed.si, f"[{bed.datastore}] ConfigDrive/{vm.name}") is None, "the old folder is left"


def end_moved(bed: Bed, vm: vim.VirtualMachine, first: tuple) -> None:
    state = bed.state(vm)
    path = assert_attached(state, first, iso_of(OLD), bed.si, state.power_state == "poweredOn")
    assert DatastorePath.parse(path).datastore == bed.datastore
    assert folder_listing(bed.si, f"[LocalDS_0] ConfigDrive/{vm.name}") is None, "the old folder is left"


def case(name: str, powered_on: bool, **kw: Any) -> Case:
    kinds: dict[str, dict[str, Any]] = {
        "attach": dict(
            prepare=lambda c, vm, bed: None,
            run=lambda c, vm, bed: c.attach(vm, OLD),
            contents=[iso_of(OLD)],
            check_end=end_attached(iso_of(OLD)),
        ),
        "update": dict(
            prepare=_attach_old,
            run=lambda c, vm, bed: c.update(vm, overrides=OVERRIDES),
            contents=[iso_of(OLD), iso_of(NEW)],
            check_end=end_attached(iso_of(NEW)),
        ),
        "detach": dict(
            prepare=_attach_old,
            run=lambda c, vm, bed: c.detach(vm),
            contents=[iso_of(OLD)],
            check_end=end_detached(keep_empty=powered_on),
        ),
        "remove": dict(
            prepare=_attach_old,
            run=lambda c, vm, bed: c.remove(vm),
            contents=[iso_of(OLD)],
            check_end=end_detached(keep_empty=kw.get("power_on_after_prepare", False), removed=True),
        ),
        "prepare-migration": dict(
            prepare=_attach_old,
            run=lambda c, vm, bed: c.prepare_migration(vm, "DC0_C0_H1"),
            contents=[iso_of(OLD)],
            check_end=end_migrated,
            host="DC0_C0_H0",
            local_datastore_on="DC0_C0_H0",
        ),
        # moves between the ISO transports: update --transport, one swap (upload, one reconfigure, delete)
        "move-to-nocloud": dict(
            prepare=_attach_old,
            run=lambda c, vm, bed: c.update(vm, transport="nocloud"),
            contents=[iso_of(OLD), iso_of(OLD, Transport.NOCLOUD)],
            check_end=end_attached(iso_of(OLD, Transport.NOCLOUD)),
        ),
        "move-to-configdrive": dict(
            prepare=lambda c, vm, bed: c.attach(vm.name, OLD, datastore=bed.datastore, transport="nocloud"),
            run=lambda c, vm, bed: c.update(vm, transport="configdrive"),
            contents=[iso_of(OLD, Transport.NOCLOUD), iso_of(OLD)],
            check_end=end_attached(iso_of(OLD)),
        ),
        "attach-elsewhere": dict(  # attach with --datastore naming another datastore: the drive moves there
            prepare=lambda c, vm, bed: c.attach(vm.name, OLD),
            run=lambda c, vm, bed: c.attach(vm, OLD, datastore=bed.datastore),
            contents=[iso_of(OLD)],
            check_end=end_moved,
            local_datastore_on="DC0_H0",
        ),
    }
    spec = kinds[name.split(" ")[0]]
    spec.update(kw)
    return Case(name=name, powered_on=powered_on, **spec)


CASES = [
    case("attach", False),
    case("attach", True),
    case("update", False),
    case("update", True),
    case("detach", False),
    case("detach", True),
    case("remove", False),
    case("remove", True),
    case("remove (IDE drive, VM powered on since)", False, power_on_after_prepare=True),
    case("prepare-migration", False),
    case("prepare-migration", True),
    case("attach-elsewhere", False),
    case("attach-elsewhere", True),
    case("move-to-nocloud", False),
    case("move-to-nocloud", True),
    case("move-to-configdrive", False),
    case("move-to-configdrive", True),
]


def _local_datastore(bed: Bed, c: Case) -> None:
    if c.local_datastore_on:
        bed.datastore = f"Only{c.local_datastore_on.replace('_', '')}-{uuid.uuid4().hex[:6]}"
        create_local_datastore(bed.si, c.local_datastore_on, bed.datastore)


def _start(bed: Bed, c: Case) -> tuple[vim.VirtualMachine, tuple]:
    vm = bed.make_vm(host=c.host, powered_on=c.powered_on)
    with tool_session(bed.sim) as s:
        c.prepare(controller(s), vm, bed)
    if c.power_on_after_prepare:
        power_on(bed.si, vm)
    return vm, first_cdrom(vm)


@pytest.mark.parametrize("c", CASES, ids=lambda c: f"{c.name}-{'on' if c.powered_on else 'off'}")
def test_interrupted_after_every_call_then_run_again(bed: Bed, c: Case, tally) -> None:
    _local_datastore(bed, c)
    points = 0
    for k in range(1, LIMIT):
        vm, first = _start(bed, c)
        with tool_session(bed.sim) as s, CallTap(s, crash_after=k) as tap, contextlib.suppress(Crash):
            c.run(controller(s), vm.name, bed)
        assert_consistent(bed.state(vm), first, c.contents)
        if not tap.crashed:
            assert tap.count == k - 1
            c.check_end(bed, vm, first)
            break
        points += 1
        with tool_session(bed.sim) as s:  # the admin runs the same command again
            c.run(controller(s), vm.name, bed)
        c.check_end(bed, vm, first)
    else:
        pytest.fail(f"{c.name} did not complete within {LIMIT} calls")
    assert points >= 3, "the operation made suspiciously few vSphere calls"
    tally.add("crash", f"{c.name} ({'on' if c.powered_on else 'off'})", interruption_points=points)


# ---- the real CLI, SIGKILLed ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["attach", "update", "move-to-nocloud", "move-to-configdrive"])
def test_cli_killed_after_every_call_then_run_again(bed: Bed, command: str, tmp_path: Path, tally) -> None:
    vmdata = tmp_path / "vm.json"
    vmdata.write_text(__import__("json").dumps(OLD.to_dict()))
    (tmp_path / "pw").write_text(NEW.password + "\n")
    (tmp_path / "ud").write_bytes(NEW.userdata)
    update_args = ["--password-file", str(tmp_path / "pw"), "--userdata-file", str(tmp_path / "ud")]
    env = cli_env(bed.sim)
    c = case(command, False)
    offsets: set[int] = set()
    points = 0
    for k in range(1, LIMIT):
        vm, first = _start(bed, c)
        args = {
            "attach": ["attach", vm.name, "--vmdata", str(vmdata)],
            "update": ["update", vm.name, *update_args],
            "move-to-nocloud": ["update", vm.name, "--transport", "nocloud"],
            "move-to-configdrive": ["update", vm.name, "--transport", "configdrive"],
        }[command]
        run = run_cli_killed_after(bed.sim, args, env, k, tmp_path)
        assert_consistent(bed.state(vm), first, c.contents)
        if not run.killed:
            assert run.status == 0, run.err
            c.check_end(bed, vm, first)
            break
        points += 1
        # Requests the harness saw beyond the tool's k counted calls: the login only, the same every time,
        # so the count is exact (no call bypasses Session.call / DatastoreFiles._exchange).
        offsets.add(run.requests_at_kill - k)
        again = cli_in_process(args, env)
        assert again.status == 0, again.err
        c.check_end(bed, vm, first)
    else:
        pytest.fail(f"{command} did not complete within {LIMIT} calls")
    assert points >= 3
    assert len(offsets) == 1, f"the harness counted a varying number of extra requests: {offsets}"
    tally.add("crash-sigkill", f"CLI {command} (off)", interruption_points=points, login_requests=offsets.pop())


# ---- session expiry before every call ------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["attach", "update", "detach"])
def test_session_expires_before_every_call(bed: Bed, operation: str, tally) -> None:
    """All sessions are terminated right before the tool's n-th call (SOAP or datastore HTTP), for every n:
    the tool logs in again and the operation succeeds as if nothing happened."""
    c = case(operation, True)
    points = 0
    for n in range(1, LIMIT):
        vm, first = _start(bed, c)
        expire = lambda i, what, n=n: bed.sim.expire_sessions() if i == n else None  # noqa: E731
        with tool_session(bed.sim) as s, CallTap(s, before_each=expire) as tap:
            generation = s.login_generation
            c.run(controller(s), vm.name, bed)
            logins = s.login_generation - generation
        if tap.count < n:
            break
        points += 1
        assert logins == 1, f"expected one new login after the expiry before call {n} ({tap.calls[n - 1]})"
        bed.reconnect()  # the checker's own session expired too
        c.check_end(bed, vim.VirtualMachine(vm._moId, bed.si._stub), first)
    assert points >= 3
    tally.add("faults", f"session expiry before call n, {operation} (on)", expiry_points=points)


# ---- failing uploads: backoff, a clear error, no partial file ------------------------------------------------


class _Sleeps:
    """Stands in for the time module inside tenacity.nap: records the backoff waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def backoff(monkeypatch: pytest.MonkeyPatch) -> _Sleeps:
    sleeps = _Sleeps()
    monkeypatch.setattr(tenacity.nap, "time", sleeps)
    return sleeps


@pytest.mark.parametrize("mode", ["status", "reset"])
def test_transient_upload_failures_back_off_then_succeed(bed: Bed, backoff: _Sleeps, mode: str, tally) -> None:
    vm = bed.make_vm()
    bed.sim.set_faults(upload_failures={"count": 3, "mode": mode})
    with tool_session(bed.sim) as s:
        controller(s).attach(vm.name, OLD)
    assert bed.sim.counters()["faults"]["upload_failed"] == 3
    assert backoff.waits == [0.25, 0.5, 1.0]  # exponential: 0.25 s doubling (wait_exponential(0.25))
    end_attached(iso_of(OLD))(bed, vm, first_cdrom(vm))
    tally.add("faults", f"upload {mode}: 3 failures then success", backoff_waits=len(backoff.waits))


@pytest.mark.parametrize("mode", ["status", "reset"])
def test_persistent_upload_failure_clear_error_no_partial_file(
    bed: Bed, backoff: _Sleeps, mode: str, tmp_path: Path, tally
) -> None:
    vm = bed.make_vm()
    first = first_cdrom(vm)
    vmdata = tmp_path / "vm.json"
    vmdata.write_text(__import__("json").dumps(OLD.to_dict()))
    bed.sim.set_faults(upload_failures={"count": 1000, "mode": mode})
    run = cli_in_process(["attach", vm.name, "--vmdata", str(vmdata)], cli_env(bed.sim))
    assert run.status == 1
    assert len(run.lines) == 1 and "Traceback" not in run.err
    target = f"[LocalDS_0] ConfigDrive/{vm.name}/configdrive.iso"
    assert f"upload to {target}" in run.err  # says what failed, where
    assert ("HTTP 503" if mode == "status" else "connection failed") in run.err
    assert "dcPath" not in run.err and "Max retries" not in run.err  # no URL, no urllib3 noise
    assert backoff.waits == [0.25, 0.5, 1.0, 2.0]  # five attempts
    assert bed.sim.counters()["faults"]["upload_failed"] == 5
    bed.sim.reset_faults()
    assert fetch_file(bed.sim, bed.si, target) is None
    assert folder_listing(bed.si, f"[LocalDS_0] ConfigDrive/{vm.name}") is None  # the folder it made goes too
    assert_no_drive(bed.state(vm), first, bed.si, "[LocalDS_0] nothing", keep_empty=False)
    tally.add("faults", f"upload {mode}: persistent failure", backoff_waits=len(backoff.waits))


# ---- failing reconfigures: the upload removed, the VM unchanged ------------------------------------------------


@pytest.mark.parametrize(
    "fault", ["GenericVmConfigFault", "SystemError", "InvalidState", "NotSupported", "TaskInProgress"]
)
@pytest.mark.parametrize("operation", ["attach", "update", "prepare-migration"])
def test_failed_reconfigure_leaves_vm_and_folder_as_they_were(bed: Bed, operation: str, fault: str, tally) -> None:
    c = case(operation, True)
    _local_datastore(bed, c)
    vm, first = _start(bed, c)
    before = bed.state(vm)
    version = vm.config.changeVersion
    listings = {p: folder_listing(bed.si, str(DatastorePath.parse(p).folder)) for p in before.files}
    bed.sim.set_faults(reconfig_failures={"count": 1, "vms": [vm.name], "fault": fault, "message": "injected"})
    with tool_session(bed.sim) as s, pytest.raises(VsphereFault) as refused:
        c.run(controller(s), vm.name, bed)
    assert isinstance(refused.value.fault, vmodl.MethodFault)  # translated at the vSphere layer's edge
    assert bed.sim.counters()["faults"]["reconfig_failed"] == 1
    after = bed.state(vm)
    assert vm.config.changeVersion == version
    assert after.record == before.record and after.files == before.files
    assert [d.key for d in after.others] == [d.key for d in before.others]
    assert {p: folder_listing(bed.si, str(DatastorePath.parse(p).folder)) for p in before.files} == listings
    if operation == "attach":  # the folder it made goes too (issue 18)
        assert folder_listing(bed.si, f"[LocalDS_0] ConfigDrive/{vm.name}") is None
    if operation == "prepare-migration":
        assert folder_listing(bed.si, f"[LocalDS_0] ConfigDrive/{vm.name}") == []  # the copy went again
    assert_consistent(after, first, c.contents)
    tally.add("faults", f"reconfigure fails ({operation})", cases=1)


@pytest.mark.parametrize("losses", [2, 5])
def test_concurrent_access_is_retried_then_given_up_cleanly(bed: Bed, losses: int, tally) -> None:
    """ConcurrentAccess (another client changed the VM) on the first ``losses`` reconfigures: the update reads the
    VM again and retries; after max_attempts (5) it gives up, its uploads removed, the old drive kept."""
    c = case("update", True)
    vm, first = _start(bed, c)
    bed.sim.set_faults(reconfig_failures={"count": losses, "vms": [vm.name], "fault": "ConcurrentAccess"})
    with tool_session(bed.sim) as s:
        tool = controller(s)
        if losses < tool.policy.max_attempts:
            tool.update(vm.name, overrides=OVERRIDES)
        else:
            with pytest.raises(ConfigDriveError, match="kept changing"):
                tool.update(vm.name, overrides=OVERRIDES)
    assert bed.sim.counters()["faults"]["reconfig_failed"] == losses
    expected = iso_of(NEW) if losses < 5 else iso_of(OLD)
    end_attached(expected)(bed, vm, first)
    tally.add("faults", f"ConcurrentAccess x{losses} on update", cases=1)


# ---- the locked door on detach, and IDE hot-add refusal --------------------------------------------------------


def test_locked_door_on_detach_keeps_the_drive_unless_forced(bed: Bed, tally) -> None:
    c = case("detach", True)
    vm, first = _start(bed, c)
    before = bed.state(vm)
    bed.sim.set_faults(locked_door={"enabled": True, "vms": [vm.name]})
    with tool_session(bed.sim) as s, pytest.raises(LockedDoor, match="--force-eject"):
        controller(s).detach(vm.name)
    assert bed.sim.counters()["faults"]["questions_answered_no"] == 1
    after = bed.state(vm)
    assert after.record == before.record and after.files == before.files  # drive and ISO kept
    assert_consistent(after, first, c.contents)
    with tool_session(bed.sim) as s:
        controller(s, force_eject=True).detach(vm.name)
    assert bed.sim.counters()["faults"]["questions_answered_yes"] == 1
    c.check_end(bed, vm, first)
    tally.add("faults", "locked door on detach (no, then --force-eject)", cases=2)


def test_running_vm_without_sata_gets_a_new_sata_controller_not_ide(bed: Bed, tally) -> None:
    vm = bed.make_vm(sata_controller=False, powered_on=True)
    with tool_session(bed.sim) as s:
        result = controller(s).attach(vm.name, OLD)
    assert "add SATA (AHCI) controller 0" in result.actions
    assert bed.sim.counters()["faults"]["ide_hotplug_refused"] == 0
    end_attached(iso_of(OLD))(bed, vm, first_cdrom(vm))
    # and --controller ide is refused before anything is written
    vm2 = bed.make_vm(powered_on=True)
    bed.sim.reset_faults()
    with tool_session(bed.sim) as s, pytest.raises(ValidationError, match="controller"):
        controller(s).attach(vm2.name, OLD, controller="ide")
    assert bed.sim.counters()["folder_requests"] == {}
    tally.add("faults", "IDE refusal on a running VM", cases=2)


def test_no_drive_left_behind_when_logging_shows_retries(bed: Bed, caplog, backoff) -> None:
    """The retries are visible to the admin: one warning per retry, naming the upload."""
    vm = bed.make_vm()
    bed.sim.set_faults(upload_failures={"count": 2, "mode": "status"})
    with caplog.at_level(logging.WARNING, logger="esxi_configdrive"), tool_session(bed.sim) as s:
        controller(s).attach(vm.name, OLD)
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2 and all("upload to [LocalDS_0] ConfigDrive/" in m for m in retries)
    assert record_of(bed.si, vm)["iso"].endswith("configdrive.iso")
