"""Concurrent operations on one VM, each thread with its own Session: never two drives, no lost update, the record
always naming the attached file, nothing left in the drive's folder. vSphere's optimistic lock (the VM's
``config.changeVersion`` in every ReconfigVM, ConcurrentAccess when it moved) is what the controller relies on;
the harness enforces it as vCenter does."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from pyVmomi import vim
from reliability_fixtures import (
    CallTap,
    Crash,
    assert_attached,
    assert_consistent,
    assert_no_drive,
    drive_state,
    first_cdrom,
    iso_of,
    tool_session,
)
from sample_data import ED25519_KEY, RSA_KEY
from tool_fixtures import fetch_file
from vsphere_harness import TaskFailed, Vcsim, get_property, reconfigure

from esxi_configdrive import VmData, read_iso
from esxi_configdrive.controller import ConfigDriveController

pytestmark = pytest.mark.live

BASE = VmData.from_dict(
    {
        "metadata": {"vm-id": "9b7f3c1e-2d4a-4e8b-8c6d-1a2b3c4d5e6f", "local-hostname": "race-0"},
        "userdata": "#cloud-config\n# base\n",
        "password": "base-Passw0rd",
    }
)
ROUNDS = 3  # each race runs this many times on a fresh VM: interleavings differ from run to run


def race(
    sim: Vcsim, jobs: list[Callable[[ConfigDriveController], Any]], delays: Sequence[float] = ()
) -> list[BaseException]:
    """Run each job in its own thread with its own Session, all released at once (job i after ``delays[i]``
    seconds); the errors they raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(jobs))

    def run(job: Callable[[ConfigDriveController], Any], delay: float) -> None:
        try:
            with tool_session(sim) as s:
                barrier.wait(30)
                time.sleep(delay)
                job(ConfigDriveController(s, task_timeout=20))
        except BaseException as e:  # collected, asserted on by the test
            errors.append(e)

    delays = list(delays) + [0.0] * (len(jobs) - len(delays))
    threads = [threading.Thread(target=run, args=(job, delay)) for job, delay in zip(jobs, delays)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return errors


def test_the_harness_enforces_change_version(vcsim_faults: Vcsim, vsphere, make_vm) -> None:
    assert vcsim_faults.faults()["change_version"] is True  # on by default
    vm = make_vm()
    stale = get_property(vsphere, vm, "config.changeVersion")
    assert stale
    reconfigure(vsphere, vm, vim.vm.ConfigSpec(changeVersion=stale, annotation="first"))
    fresh = get_property(vsphere, vm, "config.changeVersion")
    assert fresh != stale
    with pytest.raises(TaskFailed) as failed:
        reconfigure(vsphere, vm, vim.vm.ConfigSpec(changeVersion=stale, annotation="lost"))
    assert isinstance(failed.value.fault, vim.fault.ConcurrentAccess)
    assert get_property(vsphere, vm, "config.annotation") == "first"


@pytest.mark.parametrize("powered_on", [False, True], ids=["off", "on"])
def test_concurrent_updates_of_different_fields_all_land(vcsim_faults, vsphere, make_vm, powered_on, tally) -> None:
    """Four updates at once, each changing another field: each re-reads the drive when it loses the race, so
    the final drive carries all four changes (a lost update would miss one)."""
    changes = [
        {"password": "racer-Passw0rd-1"},
        {"userdata": b"#cloud-config\n# racer 2\n"},
        {"public_keys": [ED25519_KEY, RSA_KEY]},
        {"hostname": "racer-4"},
    ]
    expected = BASE
    for change in changes:
        expected = expected.with_overrides(**change)
    conflicts = 0
    for _ in range(ROUNDS):
        vm = make_vm(powered_on=powered_on)
        with tool_session(vcsim_faults) as s:
            ConfigDriveController(s).attach(vm.name, BASE)
        first = first_cdrom(vm)
        vcsim_faults.reset_faults()  # counters to zero
        errors = race(vcsim_faults, [lambda c, ch=ch, name=vm.name: c.update(name, overrides=ch) for ch in changes])
        assert errors == []
        conflicts += vcsim_faults.counters()["faults"]["concurrent_access"]
        assert_attached(drive_state(vcsim_faults, vsphere, vm), first, iso_of(expected), vsphere, powered_on)
    assert conflicts >= ROUNDS, "the updates never collided: the race did not happen"
    tally.add("concurrency", f"4 updates, different fields ({'on' if powered_on else 'off'})",
              races=ROUNDS, conflicts=conflicts)  # fmt: skip


def test_concurrent_updates_of_the_same_field_keep_one_of_them(vcsim_faults, vsphere, make_vm, tally) -> None:
    passwords = [f"same-field-Passw0rd-{i}" for i in range(4)]
    candidates = [iso_of(BASE.with_overrides(password=p)) for p in passwords]
    conflicts = 0
    for _ in range(ROUNDS):
        vm = make_vm(powered_on=True)
        with tool_session(vcsim_faults) as s:
            ConfigDriveController(s).attach(vm.name, BASE)
        first = first_cdrom(vm)
        vcsim_faults.reset_faults()
        jobs = [lambda c, p=p, name=vm.name: c.update(name, overrides={"password": p}) for p in passwords]
        errors = race(vcsim_faults, jobs)
        assert errors == []
        conflicts += vcsim_faults.counters()["faults"]["concurrent_access"]
        state = drive_state(vcsim_faults, vsphere, vm)
        content = next(iter(state.files.values()))
        assert content in candidates, "the drive holds none of the updates"
        assert_attached(state, first, content, vsphere, True)
    assert conflicts >= ROUNDS
    tally.add("concurrency", "4 updates, same field (on)", races=ROUNDS, conflicts=conflicts)


@pytest.mark.parametrize("powered_on", [False, True], ids=["off", "on"])
def test_concurrent_attaches_with_different_data_make_one_drive(vcsim_faults, vsphere, make_vm, powered_on, tally):
    inputs = [BASE.with_overrides(userdata=f"#cloud-config\n# attach {i}\n".encode()) for i in range(4)]
    conflicts = 0
    for _ in range(ROUNDS):
        vm = make_vm(powered_on=powered_on)
        first = first_cdrom(vm)
        vcsim_faults.reset_faults()
        errors = race(vcsim_faults, [lambda c, d=d, name=vm.name: c.attach(name, d) for d in inputs])
        assert errors == []
        conflicts += vcsim_faults.counters()["faults"]["concurrent_access"]
        state = drive_state(vcsim_faults, vsphere, vm)
        assert len(state.files) == 1
        content = next(iter(state.files.values()))
        assert content in [iso_of(d) for d in inputs]
        assert_attached(state, first, content, vsphere, powered_on)
    assert conflicts >= ROUNDS
    tally.add("concurrency", f"4 attaches, different data ({'on' if powered_on else 'off'})",
              races=ROUNDS, conflicts=conflicts)  # fmt: skip


@pytest.mark.parametrize("powered_on", [False, True], ids=["off", "on"])
def test_attach_against_detach(vcsim_faults, vsphere, make_vm, powered_on, tally) -> None:
    """attach and detach at once, on a VM that has a drive: whichever wins, the VM ends attached (one drive,
    complete ISO, nothing else in the folder) or detached (nothing attached, the folder gone)."""
    other = BASE.with_overrides(hostname="after-race")
    outcomes = {"attached": 0, "detached": 0}
    # Start one or the other a little later (0-60 ms: an operation takes some tens of ms here) so that the
    # interleavings vary from overlapping to one after the other.
    schedule = [(0, 0), (0, 0.02), (0.02, 0), (0, 0.06), (0.06, 0), (0.01, 0)]
    for delays in schedule:
        vm = make_vm(powered_on=powered_on)
        with tool_session(vcsim_faults) as s:
            ConfigDriveController(s).attach(vm.name, BASE)
        first = first_cdrom(vm)
        name = vm.name
        errors = race(vcsim_faults, [lambda c: c.attach(name, other), lambda c: c.detach(name)], delays)  # noqa: B023
        assert errors == []
        state = drive_state(vcsim_faults, vsphere, vm)
        if state.iso_backed:
            outcomes["attached"] += 1
            assert_attached(state, first, iso_of(other), vsphere, powered_on)
        else:
            outcomes["detached"] += 1
            assert_no_drive(state, first, vsphere, f"[LocalDS_0] ConfigDrive/{vm.name}", keep_empty=powered_on)
    tally.add("concurrency", f"attach vs detach ({'on' if powered_on else 'off'})", races=len(schedule), **outcomes)


def test_update_against_reset_password_and_status(vcsim_faults, vsphere, make_vm, tally) -> None:
    """A password reset, a user-data update and two status reads at once: both changes land, the reads see a
    complete drive (old or new), never an error."""
    vm = make_vm(powered_on=True)
    with tool_session(vcsim_faults) as s:
        ConfigDriveController(s).attach(vm.name, BASE)
    first = first_cdrom(vm)
    reset: list[str] = []
    seen: list[dict] = []
    errors = race(
        vcsim_faults,
        [
            lambda c: reset.append(c.reset_password(vm.name).extra["password"]),
            lambda c: c.update(vm.name, overrides={"userdata": b"#cloud-config\n# racing reset\n"}),
            lambda c: seen.append(c.status(vm.name).extra),
            lambda c: seen.append(c.status(vm.name).extra),
        ],
    )
    assert errors == []
    assert all(s["attached"] and s.get("file_exists") for s in seen), seen
    state = drive_state(vcsim_faults, vsphere, vm)
    path = next(iter(state.files))
    data = read_iso(fetch_file(vcsim_faults, vsphere, path))
    assert data.password == reset[0] and data.userdata == b"#cloud-config\n# racing reset\n"
    assert_attached(state, first, state.files[path], vsphere, True)
    tally.add("concurrency", "reset-password vs update vs 2 status (on)", races=1)


@pytest.mark.parametrize("powered_on", [False, True], ids=["off", "on"])
def test_attach_completing_inside_a_detach_keeps_its_iso(vcsim_faults, vsphere, make_vm, powered_on) -> None:
    """Deterministic: the detach is held right before its DeleteDatastoreFile while a whole attach runs. The
    detach deletes only the file it detached; the attach wrote another name (the folder existed)."""
    vm = make_vm(powered_on=powered_on)
    with tool_session(vcsim_faults) as s:
        ConfigDriveController(s).attach(vm.name, BASE)
    first = first_cdrom(vm)

    def attach_now(n: int, what: str) -> None:
        if what == "DeleteFile":
            with tool_session(vcsim_faults) as other:
                ConfigDriveController(other).attach(vm.name, BASE)

    with tool_session(vcsim_faults) as s, CallTap(s, before_each=attach_now):
        ConfigDriveController(s).detach(vm.name)
    assert_attached(drive_state(vcsim_faults, vsphere, vm), first, iso_of(BASE), vsphere, powered_on)


def test_losing_first_attach_does_not_overwrite_the_winners_iso(vcsim_faults, vsphere, make_vm) -> None:
    """Deterministic: attach B is held right before its upload while attach A (other data) runs through; B then
    uploads and dies. Only the run that created the folder writes configdrive.iso (the folder is made without
    createParentDirectories, so exactly one MakeDirectory succeeds): B wrote another name, A's drive is intact."""
    vm = make_vm()
    first = first_cdrom(vm)
    a, b = BASE, BASE.with_overrides(hostname="other-data")

    def attach_a_now(n: int, what: str) -> None:
        if what.startswith("HTTP upload"):
            with tool_session(vcsim_faults) as other:
                ConfigDriveController(other).attach(vm.name, a)

    with tool_session(vcsim_faults) as s, CallTap(s, before_each=attach_a_now) as tap:
        tap.crash_after = 4  # find, read, MakeDirectory, upload: B dies right after its upload
        with contextlib.suppress(Crash):
            ConfigDriveController(s).attach(vm.name, b)
    assert tap.crashed
    assert_consistent(drive_state(vcsim_faults, vsphere, vm), first, [iso_of(a), iso_of(b)])
