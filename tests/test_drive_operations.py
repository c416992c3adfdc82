"""The operations (drive/) without vSphere: each runs against a recording stand-in (drive_fake.py) through live
and dry-run effects. What is asserted is the order that keeps a VM safe (an ISO is uploaded before the
reconfigure that points at it; a reconfigure stops pointing at a file before the file is deleted), and that a dry
run lists exactly the effects the real run then makes. vSphere's own behaviour is tested against vcsim."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from drive_fake import DS, OTHER_DS, FakeVsphereVm, refused
from sample_data import ED25519_KEY, RSA_KEY

from esxi_configdrive import VmData, read_iso
from esxi_configdrive.drive.attach import AttachRequest, attach
from esxi_configdrive.drive.attempts import run_attempts
from esxi_configdrive.drive.detach import detach
from esxi_configdrive.drive.effects import DryRunEffects, Effects, Kind, LiveEffects
from esxi_configdrive.drive.migrate import MigrationRequest, prepare_migration
from esxi_configdrive.drive.policy import Policy
from esxi_configdrive.drive.result import Outcome, Result
from esxi_configdrive.drive.update import UpdateRequest, update
from esxi_configdrive.errors import Stale, VsphereFault
from esxi_configdrive.record import PREFIX
from esxi_configdrive.transport import Transport
from esxi_configdrive.vmdata import ContentChange
from esxi_configdrive.vsphere_values import AddCdrom, RemoveDevice, SetMedia

POLICY = Policy()
Operation = Callable[[FakeVsphereVm, Effects], Outcome]


def vmdata(**changes: Any) -> VmData:
    obj = {
        "metadata": {"vm-id": "5d7e9c10-1b2a-4c3d-8e4f-5a6b7c8d9e0f", "local-hostname": "web-1",
                     "public-keys": [ED25519_KEY]},
        "userdata": "#cloud-config\n",
    }  # fmt: skip
    obj.update(changes)
    return VmData.from_dict(obj)


def run(vm: FakeVsphereVm, operation: Operation, dry_run: bool = False) -> Result:
    effects_type = DryRunEffects if dry_run else LiveEffects
    outcome = run_attempts(lambda effects: operation(vm, effects), lambda: effects_type(vm), POLICY.max_attempts)
    return Result.of(outcome, dry_run)


def attach_op(data: VmData | None = None, **request: Any) -> Operation:
    return lambda vm, effects: attach(vm, effects, AttachRequest(data or vmdata(), **request), POLICY)


def update_op(
    data: VmData | None = None,
    new_instance_id: bool = False,
    transport: Transport | None = None,
    guestinfo_password: bool = False,
    **change: Any,
) -> Operation:
    """update with ``data``, and a ``ContentChange`` of the fields given (``public_keys=(key,)``, ``network_data``)."""
    request = UpdateRequest(data, ContentChange(**change), new_instance_id, transport, guestinfo_password)
    return lambda vm, effects: update(vm, effects, request, POLICY)


def detach_op(remove: bool = False) -> Operation:
    return lambda vm, effects: detach(vm, effects, POLICY, remove=remove)


def attached(**vm: Any) -> FakeVsphereVm:
    """A VM with a drive attached (by a real run of attach), its call log cleared."""
    fake = FakeVsphereVm(**vm)
    run(fake, attach_op())
    fake.log.clear()
    return fake


def index(calls: list[tuple[str, Any]], kind: str, test: Callable[[Any], bool] = lambda v: True) -> int:
    return next(i for i, (k, v) in enumerate(calls) if k == kind and test(v))


def points_at(path: str) -> Callable[[Any], bool]:
    changes_and_extra = lambda v: v  # noqa: E731
    return lambda v: any(getattr(c, "iso", None) == path for c in changes_and_extra(v)[0])


# ---- the order that keeps a VM safe ---------------------------------------------------------------------------


@pytest.mark.parametrize("powered_on", [False, True])
def test_attach_uploads_before_the_reconfigure_that_points_at_it(powered_on: bool) -> None:
    vm = FakeVsphereVm(powered_on=powered_on)
    result = run(vm, attach_op())
    calls = vm.calls()
    assert [k for k, _ in calls] == ["make_folder", "upload", "reconfigure"]
    assert calls[1][1] == result.iso == f"[{DS}] ConfigDrive/web-1/configdrive.iso"
    changes, extra = calls[2][1]
    added = [c for c in changes if isinstance(c, AddCdrom)]
    assert len(added) == 1 and added[0].iso == result.iso and added[0].kind == ("sata" if powered_on else "ide")
    assert extra[PREFIX + "iso"] == result.iso  # the record travels with the device, in the same reconfigure
    assert vm.our_cdrom().iso == result.iso and vm.cdroms[0].iso is None  # the VM's own CD-ROM is untouched
    assert read_iso(vm.files[result.iso]).hostname == "web-1"


def test_update_repoints_before_deleting_the_old_file() -> None:
    vm = attached()
    old = vm.our_cdrom().iso
    result = run(vm, update_op(public_keys=(RSA_KEY,)))
    calls = vm.calls()
    new = result.iso
    assert new != old
    upload, swap, delete = index(calls, "upload"), index(calls, "reconfigure"), index(calls, "delete")
    assert upload < swap < delete
    assert calls[upload][1] == new and calls[delete][1] == old
    (change,), extra = calls[swap][1]
    assert change == SetMedia(vm.our_cdrom().key, new, connected=False)
    assert extra[PREFIX + "previous"] == old  # named in the record until deleted: a re-run finishes it
    assert old not in vm.files and read_iso(vm.files[new]).public_keys == [RSA_KEY]


@pytest.mark.parametrize("powered_on", [False, True])
def test_detach_stops_pointing_at_the_file_before_deleting_it(powered_on: bool) -> None:
    vm = attached(powered_on=powered_on)
    iso = vm.our_cdrom().iso
    key = vm.our_cdrom().key
    run(vm, detach_op())
    calls = vm.calls()
    assert [k for k, _ in calls] == ["reconfigure", "delete"]
    (change,), extra = calls[0][1]
    # off: the device goes; on: an IDE device cannot be hot-removed, so it is emptied and disconnected
    assert change == (SetMedia(key, None, connected=False) if powered_on else RemoveDevice(key))
    assert extra[PREFIX + "previous"] == iso and extra[PREFIX + "iso"] == ""
    assert calls[1] == ("delete", iso)
    assert f"[{DS}] ConfigDrive/web-1" in vm.folders  # detach keeps the folder: a start may attach into it


def test_remove_deletes_the_folder_last_and_only_once_empty() -> None:
    vm = attached()
    folder = f"[{DS}] ConfigDrive/web-1"
    vm.files[f"{folder}/someone-else.iso"] = b"not ours"  # another VM of the same name keeps its drive here
    result = run(vm, detach_op(remove=True))
    assert [k for k, _ in vm.calls()] == ["reconfigure", "delete"]  # the folder is not empty: kept
    assert any(a.startswith(f"left {folder}: it still holds someone-else.iso") for a in result.actions)
    del vm.files[f"{folder}/someone-else.iso"]
    vm.log.clear()
    again = run(vm, detach_op(remove=True))
    assert vm.calls()[-1] == ("delete", folder) and again.changed  # (after the recorded file, gone already)
    assert again.actions == [f"deleted {folder}"]
    assert run(vm, detach_op(remove=True)).changed is False


def test_migration_copies_repoints_then_deletes_the_source() -> None:
    vm = attached(datastores=(DS,))
    vm.host_sees = {"host-1": frozenset({DS}), "host-2": frozenset({DS, OTHER_DS}), "host-3": frozenset({OTHER_DS})}
    source = vm.our_cdrom().iso
    request = MigrationRequest("host-3", datastore=OTHER_DS)
    # the VM is off: the target host's own list is what counts, and it sees only ds2
    result = run(vm, lambda v, e: prepare_migration(v, e, request, POLICY))
    calls = vm.calls()
    copy, swap, delete = index(calls, "copy"), index(calls, "reconfigure"), index(calls, "delete")
    assert copy < swap < delete
    assert calls[copy][1] == (source, result.iso) and result.iso.startswith(f"[{OTHER_DS}] ConfigDrive/web-1/")
    assert calls[delete][1] == source and vm.our_cdrom().iso == result.iso
    assert result.extra == {"host": "host-3", "host_id": "host-3"}


# ---- failures and races ---------------------------------------------------------------------------------------


def test_a_refused_reconfigure_deletes_its_upload_and_changes_nothing_else() -> None:
    vm = FakeVsphereVm(fail_reconfigure=[refused()])
    with pytest.raises(VsphereFault):
        run(vm, attach_op())
    assert [k for k, _ in vm.calls()] == ["make_folder", "upload", "reconfigure", "delete", "delete"]
    assert vm.files == {} and vm.our_cdrom() is None and vm.extra_config == {}
    assert vm.calls("delete")[-1][1] == vm.calls("make_folder")[0][1]  # the folder it made goes too (issue 18)


def test_an_attempt_that_lost_a_race_is_run_again_on_a_fresh_read() -> None:
    vm = attached()
    vm.fail_reconfigure = [Stale("another client changed the VM")]
    result = run(vm, update_op(hostname="web-2"))
    reads = [k for k, _ in vm.log if k == "facts"]
    assert len(reads) >= 2  # the second attempt read the VM again
    uploads = [v for k, v in vm.calls("upload")]
    assert uploads == [result.iso, result.iso]  # the same name again (content-named): nothing left over
    assert read_iso(vm.files[result.iso]).hostname == "web-2"
    assert sorted(p for p in vm.files if p.endswith(".iso")) == [result.iso]


def test_the_same_data_again_changes_nothing() -> None:
    vm = attached()
    again = run(vm, attach_op())
    assert again.changed is False and again.actions == [] and vm.calls() == []


# ---- dry runs ---------------------------------------------------------------------------------------------


DRY_RUN_CASES: dict[str, tuple[Callable[[], FakeVsphereVm], Operation]] = {
    "attach off": (FakeVsphereVm, attach_op()),
    "attach on": (lambda: FakeVsphereVm(powered_on=True), attach_op()),
    "attach other content": (attached, attach_op(vmdata(userdata="#cloud-config\n# v2\n"))),
    "update": (attached, update_op(password="n3w-Passw0rd")),
    "detach off": (attached, detach_op()),
    "detach on": (lambda: attached(powered_on=True), detach_op()),
    "remove": (attached, detach_op(remove=True)),
}


@pytest.mark.parametrize("case", list(DRY_RUN_CASES))
def test_a_dry_run_lists_exactly_the_effects_the_real_run_makes(case: str) -> None:
    make, operation = DRY_RUN_CASES[case]
    planned_vm, real_vm = make(), make()
    planned = run(planned_vm, operation, dry_run=True)
    assert planned_vm.calls() == []  # nothing changed
    real = run(real_vm, operation)
    assert planned.dry_run and not real.dry_run
    assert [(s.kind, s.target) for s in planned.steps] == [(s.kind, s.target) for s in real.steps]
    assert all(s.planned for s in planned.steps) and not any(s.planned for s in real.steps)
    assert planned.changed == real.changed is True
    assert planned.iso == real.iso


def test_step_kinds_are_data_and_changed_comes_from_them() -> None:
    vm = attached()
    result = run(vm, detach_op())
    assert [s.kind for s in result.steps] == [Kind.DEVICE, Kind.DELETE]
    assert result.changed and all(s.changed for s in result.steps)
    json.dumps(result.to_dict())  # what the CLI prints is plain JSON


# ---- the user-data limit is applied where data enters, once -----------------------------------------------


def test_large_user_data_with_network_data_auto_under_a_raised_limit() -> None:
    """The limit is the caller's (here 4 MiB); deriving network data from the NICs must not re-check the content
    against the default 1 MiB (it did: ``_with_nic_network_data`` called ``validate()`` without the limit)."""
    big = VmData.from_dict(
        {"metadata": {"vm-id": "x"}, "userdata_base64": "QUFB" * (2 * 1024 * 1024 // 3)},
        max_userdata_bytes=4 * 1024 * 1024,
    )
    vm = FakeVsphereVm()
    policy = Policy(max_userdata_bytes=4 * 1024 * 1024)
    result = run(vm, lambda v, e: attach(v, e, AttachRequest(big, network_data_auto=True), policy))
    drive = read_iso(vm.files[result.iso])
    assert len(drive.userdata) == len(big.userdata) > 1024 * 1024
    assert drive.network_data["links"][0]["ethernet_mac_address"] == "00:50:56:aa:bb:01"
